//! The website chat widget: what a tenant configures (console and `/api/v1/widgets`) and what
//! the widget itself exchanges with the server (`/widget-api/v1`), as a visitor.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ConversationStatus, MessageRole, Rating};
use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

string_enum! {
    /// Which corner the launcher sits in.
    #[derive(Default)]
    WidgetPosition {
        #[default]
        Right = "right",
        Left = "left",
    }
}

string_enum! {
    /// Whether visitors must be identified by the tenant's own site.
    #[derive(Default)]
    IdentityMode {
        /// Every visitor is anonymous.
        #[default]
        Off = "off",
        /// A visitor whose id the site signed is verified; others chat anonymously.
        Optional = "optional",
        /// Only visitors whose id the site signed may chat.
        Enforced = "enforced",
    }
}

string_enum! {
    /// The form shown before the first message.
    #[derive(Default)]
    PrechatForm {
        #[default]
        Off = "off",
        /// Name and email may be left empty.
        Optional = "optional",
        /// Name and email are needed before the first message.
        Required = "required",
    }
}

/// Everything a tenant sets on a widget. Sent whole on create and update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
#[serde(default)]
pub struct WidgetSettings {
    /// 1–100 characters; shown in the console and as the panel's title.
    #[garde(custom(v::name::<100>))]
    pub name: String,
    /// The specialist that answers every message; none: the tenant's agent graph (the router
    /// chooses).
    #[garde(custom(v::optional(v::agent_name)))]
    pub agent: Option<String>,
    /// The first message visitors see; at most 500 characters.
    #[garde(length(max = 500))]
    pub greeting: String,
    /// Up to 4 suggestions a visitor can click, each 1–100 characters.
    #[garde(length(max = 4), inner(custom(v::name::<100>)))]
    pub starter_prompts: Vec<String>,
    /// `#rrggbb`; white or black text is chosen on it for contrast.
    #[garde(custom(v::hex_color))]
    pub color: String,
    #[garde(skip)]
    pub position: WidgetPosition,
    /// The launcher's text; at most 40 characters (empty: an icon only).
    #[garde(length(max = 40))]
    pub launcher_label: String,
    /// An `https://` image shown beside answers.
    #[garde(custom(v::optional(v::http_url)))]
    pub avatar_url: Option<String>,
    /// `auto` (the visitor's browser) or a language code such as `en` or `de`.
    #[garde(custom(v::widget_language))]
    pub language: String,
    /// Shown outside the tenant's business hours; empty: no notice.
    #[garde(length(max = 500))]
    pub offline_message: String,
    #[garde(skip)]
    pub prechat: PrechatForm,
    /// Origins whose pages may embed the widget (`https://shop.example`); none: the console's
    /// preview only.
    #[garde(custom(v::origins))]
    pub allowed_domains: Vec<String>,
    #[garde(skip)]
    pub identity: IdentityMode,
    /// Messages one visitor may send per hour, 1–1000.
    #[garde(range(min = 1, max = 1000))]
    pub messages_per_hour: u32,
    /// Longest message a visitor may send, 1–8000 characters.
    #[garde(range(min = 1, max = 8000))]
    pub max_message_length: u32,
}

impl Default for WidgetSettings {
    fn default() -> Self {
        WidgetSettings {
            name: String::new(),
            agent: None,
            greeting: "Hi! How can we help?".into(),
            starter_prompts: Vec::new(),
            color: "#2563eb".into(),
            position: WidgetPosition::Right,
            launcher_label: "Chat with us".into(),
            avatar_url: None,
            language: "auto".into(),
            offline_message: String::new(),
            prechat: PrechatForm::Off,
            allowed_domains: Vec::new(),
            identity: IdentityMode::Off,
            messages_per_hour: 30,
            max_message_length: 2000,
        }
    }
}

/// A widget as the console and the API show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Widget {
    pub id: Uuid,
    /// What the snippet names (`wgt_…`); public.
    pub public_id: String,
    pub settings: WidgetSettings,
    /// The `<script>` tag to paste into the site.
    pub snippet: String,
    /// Whether an identity-verification secret exists (it is shown once, when made).
    pub has_secret: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A widget with its identity-verification secret: shown once, after creating or rotating.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WidgetWithSecret {
    pub widget: Widget,
    /// Signs visitors' ids: hex HMAC-SHA256 of the id with this secret (as Chatwoot's
    /// `identifier_hash`). Store it on your server; it is not shown again.
    pub secret: String,
}

/// What the widget shows before anyone types: the public part of its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct PublicWidget {
    pub public_id: String,
    pub name: String,
    pub greeting: String,
    pub starter_prompts: Vec<String>,
    pub color: String,
    pub position: WidgetPosition,
    pub launcher_label: String,
    pub avatar_url: Option<String>,
    pub language: String,
    pub prechat: PrechatForm,
    pub identity: IdentityMode,
    pub max_message_length: u32,
    /// Within the tenant's business hours now.
    pub open: bool,
    /// Shown when not `open` (may be empty).
    pub offline_message: String,
}

/// A visitor's identity as the tenant's site vouches for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VisitorIdentity {
    /// The site's own id for the person, 1–200 characters.
    #[garde(custom(v::name::<200>))]
    pub id: String,
    /// Hex HMAC-SHA256 of `id` with the widget's secret.
    #[garde(length(max = 128))]
    pub hash: String,
    #[serde(default)]
    #[garde(custom(v::optional(v::name::<200>)))]
    pub name: Option<String>,
    #[serde(default)]
    #[garde(custom(v::optional(v::email)))]
    pub email: Option<String>,
}

/// Opens a visitor session for a widget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct StartVisitorSession {
    /// The origin of the page the widget is on (`https://shop.example`), as the loader saw
    /// it; must be one of the widget's allowed domains (or the console, for its preview).
    #[garde(custom(v::origin))]
    pub origin: String,
    #[serde(default)]
    #[garde(dive)]
    pub identity: Option<VisitorIdentity>,
}

/// Exchanges a refresh token for a new pair. Each refresh token works once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RefreshVisitorSession {
    #[garde(length(min = 1, max = 128))]
    pub refresh_token: String,
    /// The embedding page's origin, checked again as when the session started.
    #[garde(custom(v::origin))]
    pub origin: String,
}

/// The visitor as the widget knows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Visitor {
    pub id: Uuid,
    pub name: Option<String>,
    pub email: Option<String>,
    /// The tenant's site vouched for this visitor's id.
    pub verified: bool,
}

/// A visitor's tokens: a short-lived access token (a JWT for this widget and visitor only)
/// and a refresh token that works once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VisitorSession {
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    pub visitor: Visitor,
    pub widget: PublicWidget,
}

/// What a visitor may tell about themselves (the pre-chat form). Verified visitors' details
/// come from the site and cannot be changed here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct UpdateVisitor {
    #[serde(default)]
    #[garde(custom(v::optional(v::name::<200>)))]
    pub name: Option<String>,
    #[serde(default)]
    #[garde(custom(v::optional(v::email)))]
    pub email: Option<String>,
}

/// Starts a conversation from the page the visitor is on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct StartVisitorConversation {
    /// The page's address, at most 2000 characters.
    #[serde(default)]
    #[garde(custom(v::optional(v::http_url)))]
    pub page_url: Option<String>,
}

/// A conversation as its visitor sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VisitorConversation {
    pub id: Uuid,
    pub status: ConversationStatus,
    pub title: String,
    pub csat: Option<u8>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A link to a passage an answer was built from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VisitorSource {
    pub title: String,
    /// The document's address when it came from the web; otherwise absent.
    pub url: Option<String>,
}

/// A message as its visitor sees it: the text, and for answers sanitised HTML (markdown
/// rendered on the server; no raw HTML survives).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VisitorMessage {
    pub id: Uuid,
    pub role: MessageRole,
    pub content: String,
    pub html: String,
    pub sources: Vec<VisitorSource>,
    pub feedback: Option<Rating>,
    pub created_at: DateTime<Utc>,
}

/// A visitor's conversation with its messages, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct VisitorTranscript {
    pub conversation: VisitorConversation,
    pub messages: Vec<VisitorMessage>,
}

/// The visitor's end-of-conversation rating.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct RateConversation {
    /// 1 (very unhappy) to 5 (very happy).
    #[garde(range(min = 1, max = 5))]
    pub score: u8,
    #[serde(default)]
    #[garde(custom(v::optional(v::name::<1000>)))]
    pub comment: Option<String>,
}

/// Where a widget conversation came from, as the console shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WidgetOrigin {
    pub widget_id: Uuid,
    pub visitor: Option<Visitor>,
    pub page_url: Option<String>,
    pub csat: Option<u8>,
    pub csat_comment: Option<String>,
}
