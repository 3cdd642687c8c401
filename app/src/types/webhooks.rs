//! Outgoing webhooks: endpoints a tenant subscribes to its events (console Integrations page
//! and `/api/v1/webhooks`), and the log of every delivery.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validate as v;

#[cfg(feature = "ssr")]
use utoipa::ToSchema;

string_enum! {
    /// What happened. The name is the `type` of the event's body and its `X-Webhook-Event`
    /// header.
    WebhookEvent {
        /// A conversation was started (any channel).
        #[serde(rename = "conversation.created")]
        ConversationCreated = "conversation.created",
        /// A message was added to a conversation: the customer's, an agent's answer, or a
        /// person's reply.
        #[serde(rename = "message.created")]
        MessageCreated = "message.created",
        /// An agent handed the conversation to a person.
        #[serde(rename = "handoff.requested")]
        HandoffRequested = "handoff.requested",
        /// An appointment was booked (by an agent, in the console or through the API).
        #[serde(rename = "booking.created")]
        BookingCreated = "booking.created",
        /// A booking was moved to another time.
        #[serde(rename = "booking.rescheduled")]
        BookingRescheduled = "booking.rescheduled",
        /// A booking was cancelled.
        #[serde(rename = "booking.cancelled")]
        BookingCancelled = "booking.cancelled",
        /// A document finished ingesting and can be searched.
        #[serde(rename = "document.ingested")]
        DocumentIngested = "document.ingested",
        /// Sent by "Send test event"; never subscribed to.
        #[serde(rename = "webhook.test")]
        Test = "webhook.test",
    }
}

impl WebhookEvent {
    /// The events an endpoint can subscribe to.
    pub fn subscribable() -> impl Iterator<Item = WebhookEvent> {
        Self::ALL
            .iter()
            .copied()
            .filter(|e| *e != WebhookEvent::Test)
    }

    /// What the console says about it.
    pub fn describe(self) -> &'static str {
        match self {
            WebhookEvent::ConversationCreated => "A conversation starts",
            WebhookEvent::MessageCreated => "A message is added (customer, agent or person)",
            WebhookEvent::HandoffRequested => "An agent hands a conversation to a person",
            WebhookEvent::BookingCreated => "An appointment is booked",
            WebhookEvent::BookingRescheduled => "A booking is moved to another time",
            WebhookEvent::BookingCancelled => "A booking is cancelled",
            WebhookEvent::DocumentIngested => "A document is ready to be searched",
            WebhookEvent::Test => "A test event",
        }
    }
}

/// What a tenant sets on an endpoint. Sent whole on create and update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WebhookSettings {
    /// Where events are POSTed: an `https://` URL (plain `http://` only where the platform
    /// allows private addresses, e.g. development). At most 2,000 characters.
    #[garde(custom(v::http_url))]
    pub url: String,
    /// A note for the console; at most 200 characters.
    #[garde(length(max = 200))]
    #[serde(default)]
    pub description: String,
    /// The events to send: at least one, each at most once.
    #[garde(custom(v::webhook_events))]
    pub events: Vec<WebhookEvent>,
    /// A disabled endpoint keeps its settings and log but gets nothing.
    #[garde(skip)]
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            url: String::new(),
            description: String::new(),
            events: Vec::new(),
            enabled: true,
        }
    }
}

/// An endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct Webhook {
    pub id: Uuid,
    #[serde(flatten)]
    pub settings: WebhookSettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint with its signing secret: returned once, on creation and on rotation.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_…`: the key of the HMAC-SHA256 in `X-Webhook-Signature`. Shown only now.
    pub secret: String,
}

impl std::fmt::Debug for WebhookWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookWithSecret")
            .field("webhook", &self.webhook)
            .field("secret", &"[redacted]")
            .finish()
    }
}

string_enum! {
    /// Where a delivery stands.
    DeliveryState {
        /// Waiting for its first attempt or for a retry.
        Pending = "pending",
        /// The endpoint answered 2xx.
        Delivered = "delivered",
        /// Every attempt failed (or the endpoint was disabled or deleted meanwhile).
        Failed = "failed",
    }
}

/// One event sent to one endpoint, with the outcome of its last attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(ToSchema))]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// The same in every delivery of the event, replays included (`X-Webhook-Id`).
    pub event_id: Uuid,
    pub event: WebhookEvent,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The HTTP status of the last answer.
    pub response_status: Option<u16>,
    /// The first 1,000 characters of the last answer's body.
    pub response_body: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub duration_ms: Option<u32>,
    /// The delivery this one replays.
    pub replay_of: Option<Uuid>,
    /// The body as sent: `{id, type, created_at, tenant_id, data}`.
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Filters of the delivery log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
#[cfg_attr(feature = "ssr", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "ssr", into_params(parameter_in = Query))]
pub struct DeliveryQuery {
    /// pending, delivered or failed.
    #[garde(skip)]
    pub state: Option<DeliveryState>,
    /// `next_cursor` of the previous page.
    #[garde(skip)]
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[garde(range(min = 1, max = 100))]
    pub limit: Option<u32>,
}
