use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    /// `app::types::MessageRole`.
    pub role: String,
    pub agent: Option<String>,
    pub content: String,
    /// `Vec<app::types::Source>`.
    pub sources: Json,
    /// `app::types::Usage` of the turn that produced the message.
    pub usage: Option<Json>,
    /// 1 up, -1 down.
    pub feedback: Option<i16>,
    pub feedback_comment: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
