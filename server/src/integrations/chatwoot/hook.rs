//! `POST /hooks/chatwoot/{connection}`: Chatwoot's events for one connection. Checked in this
//! order, cheapest refusal first and nothing written before the signature holds: the
//! connection exists, `X-Chatwoot-Signature` is HMAC-SHA256 of `"{X-Chatwoot-Timestamp}.{body}"`
//! under its secret (constant time), the timestamp is within 5 minutes, the connection's
//! budget is not spent, the body is JSON, and its `X-Chatwoot-Delivery` id (or the body's
//! hash) was not seen in the last 24 hours (shared store). A customer's message is then
//! queued as a `chatwoot.event` job and the webhook answered at once; the turn runs in the
//! worker. Every refusal is logged and counted (`webhook_rejections_total{reason}`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use sea_orm::EntityTrait;
use serde_json::json;
use sha2::Digest;
use uuid::Uuid;

use app::error::AppError;

use super::{interpret, Ignored, DELIVERY_TTL, EVENT};
use crate::http::error::{ApiError, Problem};
use crate::http::rate_limit::spend_all;
use crate::integrations::webhooks::{header, refuse, verify, REJECTIONS};
use crate::jobs::{self, NewJob};
use crate::kv::{Rate, Scope};
use crate::secrets::aad;
use crate::state::AppState;
use crate::store::chatwoot_connections;
use crate::tenancy::db_error;

/// Events one connection may send per minute (all of them at once if need be).
const EVENTS_PER_MINUTE: u32 = 6000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/hooks/chatwoot/{connection}", post(receive_chatwoot_event))
}

/// Receives a Chatwoot event (set this URL as the agent bot's webhook). Answers at once; a
/// customer's message is answered by the agents through Chatwoot's API shortly after.
#[utoipa::path(post, path = "/hooks/chatwoot/{connection}", tag = "chatwoot",
    security(()),
    params(
        ("connection" = String, Path, description = "The connection's id, from its webhook URL"),
        ("X-Chatwoot-Signature" = String, Header, description = "`sha256=<hex>`: HMAC-SHA256 of `{timestamp}.{body}` under the webhook secret"),
        ("X-Chatwoot-Timestamp" = String, Header, description = "Unix seconds; at most 5 minutes old"),
        ("X-Chatwoot-Delivery" = Option<String>, Header, description = "The delivery's id; a repeat within 24 hours is dropped"),
    ),
    request_body(content = serde_json::Value, description = "Chatwoot's webhook body (`message_created`, `conversation_status_changed`, …)"),
    responses(
        (status = 200, description = "Taken: `queued`, `ignored` or `duplicate`", body = serde_json::Value),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive_chatwoot_event(
    State(s): State<AppState>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match receive(&s, &connection, &headers, &body).await {
        Ok(status) => Json(json!({ "status": status })).into_response(),
        Err(response) => response,
    }
}

async fn receive(
    s: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, Response> {
    let unknown = || AppError::not_found("Chatwoot connection");
    let Ok(connection_id) = Uuid::parse_str(id) else {
        return Err(refuse("chatwoot", id, "unknown_connection", unknown()));
    };
    let connection = chatwoot_connections::Entity::find_by_id(connection_id)
        .one(&s.db)
        .await
        .map_err(|e| ApiError(db_error(e)).into_response())?
        .ok_or_else(|| refuse("chatwoot", id, "unknown_connection", unknown()))?;
    let (Some(signature), Some(timestamp)) = (
        header(headers, "x-chatwoot-signature"),
        header(headers, "x-chatwoot-timestamp"),
    ) else {
        return Err(refuse(
            "chatwoot",
            id,
            "missing_signature",
            AppError::Unauthorized,
        ));
    };
    let secret = s
        .secret_keys
        .decrypt_str(
            &aad(super::SECRET_PURPOSE, connection.tenant_id),
            &connection.secret,
        )
        .map_err(|e| {
            tracing::error!(error = %e, connection = %connection.id, "a Chatwoot webhook secret cannot be opened");
            ApiError(AppError::Unavailable("the connection's secret cannot be read".into()))
                .into_response()
        })?;
    if let Err(reason) = verify(&secret, timestamp, body, signature, Utc::now().timestamp()) {
        return Err(refuse("chatwoot", id, reason, AppError::Unauthorized));
    }
    let tenant = Scope::Tenant(connection.tenant_id);
    let budget = (
        tenant,
        format!("chatwoot:{connection_id}"),
        Rate::per_minute(EVENTS_PER_MINUTE),
    );
    if let Err(response) = spend_all(s, &[budget], "chatwoot").await {
        metrics::counter!(REJECTIONS, "source" => "chatwoot", "reason" => "rate_limited")
            .increment(1);
        return Err(response);
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err(refuse(
            "chatwoot",
            id,
            "malformed",
            AppError::invalid("body", "must be Chatwoot's JSON event"),
        ));
    };
    let delivery = match header(headers, "x-chatwoot-delivery") {
        Some(d) => d.chars().take(100).collect::<String>(),
        None => crate::auth::api_key::hex(&sha2::Sha256::digest(body)),
    };
    let seen_key = format!("delivery:{connection_id}:{delivery}");
    // A store that cannot be asked lets the event through: the job's key drops a repeat too.
    let first =
        s.kv.set_nx(tenant, "chatwoot", &seen_key, &1u8, DELIVERY_TTL)
            .await
            .unwrap_or(true);
    if !first {
        metrics::counter!(REJECTIONS, "source" => "chatwoot", "reason" => "replayed").increment(1);
        tracing::info!(connection = %connection_id, "a repeated Chatwoot delivery was dropped");
        return Ok("duplicate");
    }
    if !connection.enabled {
        return Ok("ignored");
    }
    let inbound = match interpret(&connection, &event) {
        Ok(inbound) => inbound,
        Err(Ignored::Event | Ignored::NotFromCustomer | Ignored::OtherInbox) => {
            return Ok("ignored")
        }
    };
    let job = NewJob::new(
        Some(connection.tenant_id),
        EVENT,
        serde_json::to_value(&inbound).unwrap_or_default(),
    )
    .key(format!("{connection_id}:{delivery}"));
    if let Err(e) = jobs::enqueue(&s.db, job).await {
        // Forget the delivery, so Chatwoot's retry of it is taken.
        let _ = s.kv.delete(tenant, "chatwoot", &seen_key).await;
        return Err(ApiError(db_error(e)).into_response());
    }
    Ok("queued")
}
