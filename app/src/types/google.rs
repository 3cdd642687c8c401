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

string_enum! {
    /// What the agents do while the connection needs reconnecting.
    CalendarFallback {
        /// Book in the platform's built-in calendar (the bookings page shows them).
        BuiltIn = "built_in",
        /// Say they cannot book now, and offer a person.
        Refuse = "refuse",
    }
}

/// The tenant's choices for its Google Calendar connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct GoogleSettings {
    pub fallback: CalendarFallback,
}

/// What the console's panel shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GooglePanel {
    /// The platform has a Google client (`GOOGLE_CLIENT_ID`): tenants can connect.
    pub configured: bool,
    pub connection: Option<GoogleCalendar>,
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
    pub fallback: CalendarFallback,
    /// The last incremental sync (every 15 minutes) that completed.
    pub synced_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
