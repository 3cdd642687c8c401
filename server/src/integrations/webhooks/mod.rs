//! Outgoing webhooks: a tenant subscribes HTTPS endpoints to its events; each event reaches
//! each subscribed endpoint as one signed POST, delivered by a job.
//!
//! - **Outbox.** [`Subscriptions::emit`] runs on the caller's connection, in the transaction
//!   of the change that caused the event (a message saved, a document ready): it inserts one
//!   delivery row and one `webhook.deliver` job per subscribed endpoint, so a committed change
//!   never lacks its deliveries and a rolled-back one never has them. A tenant without
//!   endpoints pays nothing but the lookup, which a chat turn reads from its cached
//!   configuration ([`FINGERPRINT`]).
//! - **Workflows listen too.** A published workflow whose trigger is one of the tenant's
//!   events (`workflows.trigger_event`) is a subscriber like an endpoint: the same emit queues
//!   a `workflow.event` job per such workflow, which starts one run per event. Events caused
//!   by a workflow's own steps ([`Event::caused_by`]) start none, so a workflow that books on
//!   `booking.created` or asks an agent on `message.created` cannot feed itself.
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
use crate::store::{webhook_deliveries, webhook_endpoints, workflows};

/// The job kind that delivers one event to one endpoint.
pub const DELIVER: &str = "webhook.deliver";
/// Attempts per delivery: with the queue's backoff (5 s doubling, capped at an hour) the last
/// one comes about 1¼–2½ hours after the first (the delays' ceilings add up to 8,715 s).
pub const MAX_ATTEMPTS: u32 = 12;
/// What an endpoint's secret is bound to (with the tenant id).
pub const SECRET_PURPOSE: &str = "webhook.secret";
/// Endpoints one tenant may have.
pub const MAX_WEBHOOKS: u64 = 20;
/// Refused incoming webhooks, by `source` and `reason` (every signed-webhook receiver counts
/// here).
pub const REJECTIONS: &str = "webhook_rejections_total";
/// How old (or how far ahead) a signed incoming request's timestamp may be.
pub const MAX_SKEW_SECS: i64 = 300;

/// A fingerprint of a tenant's endpoints and event-triggered workflows for a query on
/// `tenants` (as `tenant_for_turn` reads its other configuration): their counts and newest
/// changes.
pub const FINGERPRINT: &str = "(SELECT CAST(COUNT(*) AS TEXT) || '/' || \
    COALESCE(CAST(MAX(w.updated_at) AS TEXT), '') FROM webhook_endpoints w \
    WHERE w.tenant_id = tenants.id) || '/' || \
    (SELECT CAST(COUNT(*) AS TEXT) || '/' || \
    COALESCE(CAST(MAX(f.updated_at) AS TEXT), '') FROM workflows f \
    WHERE f.tenant_id = tenants.id AND f.trigger_event IS NOT NULL)";

/// Something that happened, for the endpoints and workflows that subscribe to its kind.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: WebhookEvent,
    pub data: serde_json::Value,
    /// Caused by one of the tenant's workflows: endpoints get it, workflows do not.
    pub by_workflow: bool,
}

impl Event {
    pub fn new(kind: WebhookEvent, data: impl Serialize) -> Event {
        Event {
            kind,
            data: serde_json::to_value(data).unwrap_or_default(),
            by_workflow: false,
        }
    }

    /// The event as caused by `access`: when that is a workflow's step, no workflow starts on it.
    pub fn caused_by(mut self, access: &app::services::Access) -> Event {
        self.by_workflow = crate::workflows::nodes::is_workflow(access);
        self
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

/// A tenant's enabled endpoints and the events each takes, and its published workflows that
/// start on an event.
#[derive(Clone, Debug, Default)]
pub struct Subscriptions {
    endpoints: Vec<(Uuid, Vec<WebhookEvent>)>,
    workflows: Vec<(Uuid, WebhookEvent)>,
}

impl Subscriptions {
    pub async fn load(conn: &impl ConnectionTrait, tenant: Uuid) -> Result<Subscriptions, DbErr> {
        let endpoints: Vec<(Uuid, serde_json::Value)> = webhook_endpoints::Entity::find()
            .select_only()
            .column(webhook_endpoints::Column::Id)
            .column(webhook_endpoints::Column::Events)
            .filter(webhook_endpoints::Column::TenantId.eq(tenant))
            .filter(webhook_endpoints::Column::Enabled.eq(true))
            .into_tuple()
            .all(conn)
            .await?;
        let workflows: Vec<(Uuid, Option<String>)> = workflows::Entity::find()
            .select_only()
            .column(workflows::Column::Id)
            .column(workflows::Column::TriggerEvent)
            .filter(workflows::Column::TenantId.eq(tenant))
            .filter(workflows::Column::TriggerEvent.is_not_null())
            .into_tuple()
            .all(conn)
            .await?;
        Ok(Subscriptions {
            endpoints: endpoints
                .into_iter()
                .map(|(id, events)| (id, events_of(&events)))
                .collect(),
            workflows: workflows
                .into_iter()
                .filter_map(|(id, event)| Some((id, WebhookEvent::parse(&event?)?)))
                .collect(),
        })
    }

    /// Whether any endpoint or workflow takes `kind`.
    pub fn wants(&self, kind: WebhookEvent) -> bool {
        self.endpoints
            .iter()
            .any(|(_, events)| events.contains(&kind))
            || self.workflows.iter().any(|(_, event)| *event == kind)
    }

    /// Queues a delivery of each event to each endpoint that takes it, and a run of each
    /// workflow that starts on it, on `conn` (the transaction of the change that caused them).
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
            for (endpoint, kinds) in &self.endpoints {
                if kinds.contains(&event.kind) {
                    queue(conn, tenant, *endpoint, id, event.kind, body.clone(), None).await?;
                }
            }
            if event.by_workflow {
                continue;
            }
            for (workflow, kind) in &self.workflows {
                if *kind == event.kind {
                    let job = NewJob::new(
                        Some(tenant),
                        crate::workflows::service::EVENT,
                        json!({ "workflow_id": workflow, "event": body }),
                    )
                    .key(format!("{id}:{workflow}"));
                    jobs::enqueue(conn, job).await?;
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

/// The hex HMAC-SHA256 under `secret` of `"{timestamp}.{body}"`.
fn mac_hex(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    crate::auth::api_key::hex(&mac.finalize().into_bytes())
}

/// `sha256=<hex>`: HMAC-SHA256 under `secret` of `"{timestamp}.{body}"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", mac_hex(secret, &timestamp.to_string(), body))
}

/// Whether `given` (`sha256=<hex>`) is the HMAC-SHA256 under `secret` of
/// `"{timestamp}.{body}"`, compared in constant time.
pub fn signature_matches(secret: &str, timestamp: &str, body: &[u8], given: &str) -> bool {
    let Some(hex) = given.trim().strip_prefix("sha256=") else {
        return false;
    };
    let expected = mac_hex(secret, timestamp, body);
    crate::auth::api_key::constant_time_eq(expected.as_bytes(), hex.to_lowercase().as_bytes())
}

/// Checks a signed incoming request (the receivers of Chatwoot's events and of workflows'
/// webhook triggers): the signature, then that the timestamp is within [`MAX_SKEW_SECS`] of
/// `now`. The refusal's reason, for [`REJECTIONS`].
pub fn verify(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    given: &str,
    now: i64,
) -> Result<(), &'static str> {
    if !signature_matches(secret, timestamp, body, given) {
        return Err("bad_signature");
    }
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() <= MAX_SKEW_SECS);
    if !fresh {
        return Err("stale_timestamp");
    }
    Ok(())
}

/// A request's header, trimmed; none when absent, empty or not text.
pub fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Counts and logs a refused incoming webhook (`source`: who sends them; `target`: the path's
/// id, as given); the response to send.
pub fn refuse(
    source: &'static str,
    target: &str,
    reason: &'static str,
    error: app::error::AppError,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    metrics::counter!(REJECTIONS, "source" => source, "reason" => reason).increment(1);
    tracing::warn!(
        source,
        target = %target.chars().take(40).collect::<String>(),
        reason,
        "an incoming webhook was refused"
    );
    crate::http::error::ApiError(error).into_response()
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
    fn signatures_are_checked_over_timestamp_dot_body() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let good = "sha256=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789";
        assert!(signature_matches(
            "whsec_test",
            "1700000000",
            br#"{"a":1}"#,
            good
        ));
        assert!(signature_matches(
            "whsec_test",
            "1700000000",
            br#"{"a":1}"#,
            &good.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!signature_matches(
            "whsec_test",
            "1700000001",
            br#"{"a":1}"#,
            good
        ));
        assert!(!signature_matches(
            "whsec_test",
            "1700000000",
            br#"{"a":2}"#,
            good
        ));
        assert!(!signature_matches(
            "other",
            "1700000000",
            br#"{"a":1}"#,
            good
        ));
        assert!(!signature_matches(
            "whsec_test",
            "1700000000",
            br#"{"a":1}"#,
            &good[7..]
        ));
        assert!(!signature_matches(
            "whsec_test",
            "1700000000",
            br#"{"a":1}"#,
            ""
        ));
    }

    #[test]
    fn a_signed_request_is_refused_when_stale_or_forged() {
        let body = br#"{"a":1}"#;
        let good = signature("whsec_test", 1_700_000_000, body);
        assert_eq!(
            verify("whsec_test", "1700000000", body, &good, 1_700_000_299),
            Ok(())
        );
        assert_eq!(
            verify("whsec_test", "1700000000", body, &good, 1_699_999_701),
            Ok(())
        );
        assert_eq!(
            verify("whsec_test", "1700000000", body, &good, 1_700_000_301),
            Err("stale_timestamp")
        );
        assert_eq!(
            verify("whsec_other", "1700000000", body, &good, 1_700_000_000),
            Err("bad_signature")
        );
        assert_eq!(
            verify(
                "whsec_test",
                "soon",
                body,
                &signature("whsec_test", 0, body),
                0
            ),
            Err("bad_signature")
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
