use sea_orm::entity::prelude::*;

/// Which of our conversations a Chatwoot conversation is.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chatwoot_conversations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: Uuid,
    /// Chatwoot's conversation id (its `display_id`, the number in its URLs).
    #[sea_orm(primary_key, auto_increment = false)]
    pub chatwoot_id: i64,
    pub tenant_id: Uuid,
    #[sea_orm(unique)]
    pub conversation_id: Uuid,
    pub contact_id: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
