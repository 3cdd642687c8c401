use sea_orm::entity::prelude::*;

/// A tenant's Google Calendar, reached over OAuth (one per tenant).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "google_connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub tenant_id: Uuid,
    /// The member who connected it.
    pub connected_by: Option<Uuid>,
    /// Sealed with the key ring (`google.access_token`).
    pub access_token: String,
    /// Sealed with the key ring (`google.refresh_token`).
    pub refresh_token: String,
    pub expires_at: DateTimeUtc,
    /// The scopes Google granted, space-separated.
    pub scopes: String,
    /// `app::types::GoogleStatus`.
    pub status: String,
    pub calendar_id: String,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// While it needs reconnecting: `built_in` (book in the built-in calendar) or `refuse`
    /// (`app::types::CalendarFallback`).
    pub fallback: String,
    /// Google's `nextSyncToken` of the last incremental sync.
    pub sync_token: Option<String>,
    pub synced_at: Option<DateTimeUtc>,
    /// Who refreshes the access token now, and until when (one refresh at a time).
    pub lease_until: Option<DateTimeUtc>,
    pub lease_holder: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
