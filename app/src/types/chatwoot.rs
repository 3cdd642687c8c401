//! Chatwoot as a channel: the tenant's Chatwoot inbox, answered by its agents through an agent
//! bot (console Integrations page and `/api/v1/chatwoot`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// The tenant's Chatwoot connection. The access token is never returned; the webhook secret
/// only when it was just made (connecting, or rotating it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ChatwootConnection {
    pub id: Uuid,
    pub base_url: String,
    pub account_id: u64,
    pub inbox_id: u64,
    /// Whether the agents answer (off: webhooks are acknowledged and dropped).
    pub enabled: bool,
    /// The agent bot token's last four characters, to recognise it.
    pub token_hint: Option<String>,
    /// Where Chatwoot sends its events: the agent bot's (or the inbox's webhook's) URL.
    pub webhook_url: String,
    /// The webhook secret Chatwoot signs with; shown once, when made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// The last event taken, and the last failure talking to Chatwoot.
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Connects (or changes) the tenant's Chatwoot inbox. Leaving `access_token` out keeps the
/// stored one.
#[derive(Clone, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct ChatwootSettings {
    /// The Chatwoot installation, e.g. `https://app.chatwoot.com` or your own.
    #[garde(custom(v::http_url))]
    pub base_url: String,
    /// The account id (in Chatwoot's URLs: `/app/accounts/<id>/…`).
    #[garde(range(min = 1))]
    pub account_id: u64,
    /// The inbox the bot answers in (Settings → Inboxes → the inbox's id).
    #[garde(range(min = 1))]
    pub inbox_id: u64,
    /// The agent bot's access token (stored encrypted); absent keeps the stored one.
    #[serde(default)]
    #[garde(custom(v::optional(v::api_key)))]
    pub access_token: Option<String>,
    #[serde(default = "yes")]
    #[garde(skip)]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// The token stays out of logs.
impl std::fmt::Debug for ChatwootSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatwootSettings")
            .field("base_url", &self.base_url)
            .field("account_id", &self.account_id)
            .field("inbox_id", &self.inbox_id)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field("enabled", &self.enabled)
            .finish()
    }
}
