use sea_orm::entity::prelude::*;

/// A tenant's own email provider; without a row the platform's SMTP relay sends.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_email_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    /// sendgrid or mailgun.
    pub provider: String,
    /// The sender, `Name <address>` or a bare address.
    pub from_address: String,
    /// The provider's API key, sealed with the key ring (`tenant_email_settings.api_key`).
    pub api_key_encrypted: String,
    pub mailgun_domain: Option<String>,
    /// us or eu.
    pub mailgun_region: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
