use sea_orm::entity::prelude::*;

/// A tenant's Chatwoot inbox, answered by its agents (one per tenant).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "chatwoot_connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub tenant_id: Uuid,
    pub base_url: String,
    pub account_id: i64,
    pub inbox_id: i64,
    /// The agent bot's access token, sealed with the key ring (`chatwoot.token`).
    pub token: String,
    /// The webhook secret, sealed with the key ring (`chatwoot.secret`).
    pub secret: String,
    pub enabled: bool,
    pub last_event_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
