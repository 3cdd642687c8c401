//! The tenant's LLM provider: its own OpenAI-compatible endpoint, models and API key, or the
//! platform's. The key goes in and never comes out (only its last four characters).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

/// Whose provider answers the tenant's conversations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LlmSource {
    /// The tenant's own endpoint and key.
    Tenant,
    /// The platform's provider (`LLM_BASE_URL`).
    Platform,
    /// No provider: answers are quoted from the tenant's documents.
    Offline,
}

impl LlmSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmSource::Tenant => "tenant",
            LlmSource::Platform => "platform",
            LlmSource::Offline => "offline",
        }
    }
}

/// The provider in use. The API key is never returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct LlmSettings {
    pub source: LlmSource,
    /// The tenant's endpoint; not shown for the platform's provider.
    pub base_url: Option<String>,
    /// Model of the specialists (none offline).
    pub chat_model: Option<String>,
    /// Model of the router's classification (the chat model when absent).
    pub router_model: Option<String>,
    /// Whether the tenant stored an API key.
    pub api_key_set: bool,
    /// The stored key's last four characters, to recognise it.
    pub api_key_hint: Option<String>,
    /// When the tenant last changed its settings (none on the platform's provider).
    pub updated_at: Option<DateTime<Utc>>,
}

/// The tenant's own provider. Leaving `api_key` out keeps the stored key.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UpdateLlmSettings {
    /// An OpenAI-compatible endpoint, e.g. `https://api.openai.com/v1`.
    #[garde(custom(v::http_url))]
    pub base_url: String,
    /// 1–200 characters.
    #[garde(custom(v::name::<200>))]
    pub chat_model: String,
    /// 1–200 characters; the chat model when absent.
    #[serde(default)]
    #[garde(custom(v::optional(v::name::<200>)))]
    pub router_model: Option<String>,
    /// A new key (stored encrypted); absent keeps the stored one.
    #[serde(default)]
    #[garde(custom(v::optional(v::api_key)))]
    pub api_key: Option<String>,
    /// Forget the stored key (for endpoints without authentication).
    #[serde(default)]
    #[garde(skip)]
    pub clear_api_key: bool,
}

/// The key stays out of logs.
impl std::fmt::Debug for UpdateLlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateLlmSettings")
            .field("base_url", &self.base_url)
            .field("chat_model", &self.chat_model)
            .field("router_model", &self.router_model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("clear_api_key", &self.clear_api_key)
            .finish()
    }
}
