use sea_orm::entity::prelude::*;

/// One node run of a turn: what the console's step trace shows.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "run_steps")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub conversation_id: Uuid,
    /// The customer message whose turn this step belongs to.
    pub message_id: Uuid,
    pub seq: i32,
    pub node: String,
    /// `app::types::StepDetail`.
    pub detail: Json,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub duration_ms: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
