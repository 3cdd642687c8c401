use sea_orm::entity::prelude::*;

/// A tenant's own specialist, or (named like a built-in, without a prompt) its changes to one.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    /// The default prompt of a tenant-defined agent (its saved versions are in `prompts`).
    pub prompt: Option<String>,
    /// Tool names (`["knowledge_search", …]`).
    pub tools: Json,
    /// The knowledge bases its searches read; empty reads all of the tenant's.
    pub knowledge_base_ids: Json,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
