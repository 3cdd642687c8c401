//! Google Calendar over OAuth: the tenant's connection (console Integrations page and
//! `/api/v1/google-calendar`). Connecting is a browser flow (`POST
//! /integrations/google/connect` from the console), not an API call.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

string_enum! {
    /// Whether the platform can reach the tenant's calendar.
    GoogleStatus {
        Connected = "connected",
        /// Google refused the grant (revoked, expired, password changed): connect again.
        NeedsReconnect = "needs_reconnect",
    }
}

/// The tenant's Google Calendar connection. Tokens are never returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct GoogleCalendar {
    pub status: GoogleStatus,
    /// The calendar booked in (`primary`: the account's own).
    pub calendar_id: String,
    /// What Google granted.
    pub scopes: Vec<String>,
    pub connected_by: Option<Uuid>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
