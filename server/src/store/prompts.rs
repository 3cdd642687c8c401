use sea_orm::entity::prelude::*;

/// One saved version of a tenant's system prompt for one agent (the newest is in use).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "prompts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub agent: String,
    /// 1, 2, … per tenant and agent (0 is the built-in default, never stored).
    pub version: i32,
    pub text: String,
    pub note: String,
    pub created_by: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
