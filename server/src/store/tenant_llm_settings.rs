use sea_orm::entity::prelude::*;

/// A tenant's own LLM provider; no row means the platform's.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_llm_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    pub base_url: String,
    pub chat_model: String,
    pub router_model: Option<String>,
    /// `crate::secrets` text (`v1:<key id>:<data>`), bound to the tenant; never plaintext.
    pub api_key_encrypted: Option<String>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
