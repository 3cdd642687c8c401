use sea_orm::entity::prelude::*;

/// One authorization request's `state`: `{id}.{secret}` goes to the provider; only the
/// secret's SHA-256 is kept, with who started it and the PKCE verifier (sealed).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    pub secret_hash: String,
    /// SHA-256 of the console session's id.
    pub session_hash: String,
    /// The PKCE code verifier, sealed with the key ring (`oauth.verifier`).
    pub verifier: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
