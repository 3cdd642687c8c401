//! Outgoing webhooks: a tenant subscribes HTTPS endpoints to its events; each event reaches
//! each subscribed endpoint as one signed POST, delivered by a job.
//!
//! - **Outbox.** [`Subscriptions::emit`] runs on the caller's connection, in the transaction
//!   of the change that caused the event (a message saved, a document ready): it inserts one
//!   delivery row and one `webhook.deliver` job per subscribed endpoint, so a committed change
//!   never lacks its deliveries and a rolled-back one never has them. A tenant without
//!   endpoints pays nothing but the lookup, which a chat turn reads from its cached
//!   configuration ([`FINGERPRINT`]).
//! - **Signature.** `X-Webhook-Signature: sha256=<hex>` is HMAC-SHA256 under the endpoint's
//!   secret of `"{X-Webhook-Timestamp}.{raw body}"` ([`signature`]); receivers recompute it,
//!   compare in constant time and refuse old timestamps (docs/webhooks.md has the snippets).
//!   `X-Webhook-Id` is the event's id, the same in every retry and replay, to drop copies.
//! - **Delivery** ([`deliver::Deliver`]): a guarded client (public addresses only unless
//!   `FETCH_ALLOW_PRIVATE`, no redirects, no proxy), a 10-second limit, 2xx is success;
//!   anything else is retried with the queue's backoff up to [`MAX_ATTEMPTS`], then the
//!   delivery is failed and its job dead. Every attempt's outcome is on the delivery row (the
//!   console's delivery log), from which a delivery can be replayed. Finished deliveries are
//!   kept 30 days ([`sweep`]).

pub mod deliver;
pub mod service;
pub mod sweep;

use chrono::Utc;
use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QuerySelect,
};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use app::types::{DeliveryState, WebhookEvent};

use crate::jobs::{self, NewJob};
use crate::secrets::{self, KeyRing, Rotation};
use crate::store::{webhook_deliveries, webhook_endpoints};

/// The job kind that delivers one event to one endpoint.
pub const DELIVER: &str = "webhook.deliver";
/// Attempts per delivery: with the queue's backoff (5 s doubling, capped at an hour) the last
/// one comes about 1¼–2½ hours after the first (the delays' ceilings add up to 8,715 s).
pub const MAX_ATTEMPTS: u32 = 12;
/// What an endpoint's secret is bound to (with the tenant id).
pub const SECRET_PURPOSE: &str = "webhook.secret";
/// Endpoints one tenant may have.
pub const MAX_WEBHOOKS: u64 = 20;

/// A fingerprint of a tenant's endpoints for a query on `tenants` (as `tenant_for_turn`
/// reads its other configuration): their count and newest change.
pub const FINGERPRINT: &str = "(SELECT CAST(COUNT(*) AS TEXT) || '/' || \
    COALESCE(CAST(MAX(w.updated_at) AS TEXT), '') FROM webhook_endpoints w \
    WHERE w.tenant_id = tenants.id)";

/// Something that happened, for the endpoints that subscribe to its kind.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: WebhookEvent,
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(kind: WebhookEvent, data: impl Serialize) -> Event {
        Event {
            kind,
            data: serde_json::to_value(data).unwrap_or_default(),
        }
    }

    /// The body every delivery of this event sends.
    fn body(&self, id: Uuid, tenant: Uuid) -> serde_json::Value {
        json!({
            "id": id,
            "type": self.kind.as_str(),
            "created_at": Utc::now(),
            "tenant_id": tenant,
            "data": self.data,
        })
    }
}

/// A tenant's enabled endpoints and the events each takes.
#[derive(Clone, Debug, Default)]
pub struct Subscriptions(Vec<(Uuid, Vec<WebhookEvent>)>);

impl Subscriptions {
    pub async fn load(conn: &impl ConnectionTrait, tenant: Uuid) -> Result<Subscriptions, DbErr> {
        let rows: Vec<(Uuid, serde_json::Value)> = webhook_endpoints::Entity::find()
            .select_only()
            .column(webhook_endpoints::Column::Id)
            .column(webhook_endpoints::Column::Events)
            .filter(webhook_endpoints::Column::TenantId.eq(tenant))
            .filter(webhook_endpoints::Column::Enabled.eq(true))
            .into_tuple()
            .all(conn)
            .await?;
        Ok(Subscriptions(
            rows.into_iter()
                .map(|(id, events)| (id, events_of(&events)))
                .collect(),
        ))
    }

    /// Whether any endpoint takes `kind`.
    pub fn wants(&self, kind: WebhookEvent) -> bool {
        self.0.iter().any(|(_, events)| events.contains(&kind))
    }

    /// Queues a delivery of each event to each endpoint that takes it, on `conn` (the
    /// transaction of the change that caused them).
    pub async fn emit(
        &self,
        conn: &impl ConnectionTrait,
        tenant: Uuid,
        events: &[Event],
    ) -> Result<(), DbErr> {
        for event in events {
            if !self.wants(event.kind) {
                continue;
            }
            let id = Uuid::now_v7();
            let body = event.body(id, tenant);
            for (endpoint, kinds) in &self.0 {
                if kinds.contains(&event.kind) {
                    queue(conn, tenant, *endpoint, id, event.kind, body.clone(), None).await?;
                }
            }
        }
        Ok(())
    }
}

/// Queues the events for the tenant's endpoints, reading its subscriptions on `conn`.
pub async fn emit(
    conn: &impl ConnectionTrait,
    tenant: Uuid,
    events: &[Event],
) -> Result<(), DbErr> {
    Subscriptions::load(conn, tenant)
        .await?
        .emit(conn, tenant, events)
        .await
}

/// The event names stored on an endpoint (unknown names, from a newer version, are skipped).
pub fn events_of(value: &serde_json::Value) -> Vec<WebhookEvent> {
    value
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().and_then(WebhookEvent::parse))
                .collect()
        })
        .unwrap_or_default()
}

/// Inserts a pending delivery and the job that sends it.
async fn queue(
    conn: &impl ConnectionTrait,
    tenant: Uuid,
    endpoint: Uuid,
    event_id: Uuid,
    kind: WebhookEvent,
    body: serde_json::Value,
    replay_of: Option<Uuid>,
) -> Result<webhook_deliveries::Model, DbErr> {
    let row = webhook_deliveries::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant),
        endpoint_id: Set(endpoint),
        event_id: Set(event_id),
        event_type: Set(kind.as_str().into()),
        payload: Set(body),
        state: Set(DeliveryState::Pending.as_str().into()),
        attempts: Set(0),
        response_status: Set(None),
        response_body: Set(None),
        last_error: Set(None),
        duration_ms: Set(None),
        replay_of: Set(replay_of),
        created_at: Set(Utc::now()),
        last_attempt_at: Set(None),
        delivered_at: Set(None),
    }
    .insert(conn)
    .await?;
    jobs::enqueue(
        conn,
        NewJob::new(Some(tenant), DELIVER, json!({ "delivery_id": row.id }))
            .key(row.id.to_string())
            .max_attempts(MAX_ATTEMPTS),
    )
    .await?;
    Ok(row)
}

/// `sha256=<hex>`: HMAC-SHA256 under `secret` of `"{timestamp}.{body}"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: the error case cannot happen.
    <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .map(|mut mac| {
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!(
                "sha256={}",
                crate::auth::api_key::hex(&mac.finalize().into_bytes())
            )
        })
        .unwrap_or_default()
}

/// Re-encrypts every endpoint's secret not yet under the current key.
pub async fn rotate(db: &sea_orm::DatabaseConnection, keys: &KeyRing) -> Result<Rotation, DbErr> {
    secrets::rotate_column::<webhook_endpoints::Entity>(
        db,
        keys,
        "webhook secret",
        SECRET_PURPOSE,
        (
            webhook_endpoints::Column::Id,
            webhook_endpoints::Column::TenantId,
            webhook_endpoints::Column::Secret,
        ),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "sha256=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn stored_event_names_round_trip_and_unknown_ones_are_skipped() {
        let stored = json!(["message.created", "no.such", "document.ingested"]);
        assert_eq!(
            events_of(&stored),
            vec![WebhookEvent::MessageCreated, WebhookEvent::DocumentIngested]
        );
        assert_eq!(
            serde_json::to_value(WebhookEvent::HandoffRequested).unwrap(),
            json!("handoff.requested")
        );
    }
}
