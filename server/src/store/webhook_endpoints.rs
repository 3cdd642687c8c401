use sea_orm::entity::prelude::*;

/// An HTTPS endpoint of a tenant that receives the events it subscribed to.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: String,
    pub description: String,
    /// The event types it takes (`app::types::WebhookEvent` names), as a JSON array.
    pub events: Json,
    pub enabled: bool,
    /// The signing secret, sealed with the key ring (`webhook.secret`).
    pub secret: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
