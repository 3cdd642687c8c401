//! `POST /hooks/workflows/{id}`: starts a run of a workflow whose published trigger is a
//! signed webhook (`webhook_trigger`). Checked like Chatwoot's hook, cheapest refusal first
//! and nothing written before the signature holds: the workflow exists and has a secret,
//! `X-Webhook-Signature` is HMAC-SHA256 of `"{X-Webhook-Timestamp}.{body}"` under it
//! (constant time), the timestamp is within 5 minutes, the workflow's budget is not spent, the
//! body is JSON. The run is keyed by `X-Webhook-Id` (or the hash of the timestamp and body):
//! a delivery sent again gets the run it started, never a second one. Every refusal is logged
//! and counted (`webhook_rejections_total{source="workflow", reason}`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use sea_orm::EntityTrait;
use serde_json::json;
use sha2::Digest;
use uuid::Uuid;

use app::error::AppError;

use super::service::{Started, SECRET_PURPOSE};
use crate::http::error::{ApiError, Problem};
use crate::http::rate_limit::spend_all;
use crate::integrations::webhooks::{header, refuse, verify, REJECTIONS};
use crate::kv::{Rate, Scope};
use crate::secrets::aad;
use crate::state::AppState;
use crate::store::workflows;
use crate::tenancy::db_error;

/// Requests one workflow's webhook may take per minute.
const REQUESTS_PER_MINUTE: u32 = 600;

pub fn routes() -> Router<AppState> {
    Router::new().route("/hooks/workflows/{id}", post(receive_workflow_webhook))
}

/// Starts a run of the workflow's published version with the JSON body as its input
/// (`trigger.*`). Sign it like the platform's outgoing webhooks, with the secret made in the
/// editor (or `POST /api/v1/workflows/{id}/webhook-secret`).
#[utoipa::path(post, path = "/hooks/workflows/{id}", tag = "workflows",
    security(()),
    params(
        ("id" = Uuid, Path, description = "The workflow's id, from its webhook URL"),
        ("X-Webhook-Signature" = String, Header, description = "`sha256=<hex>`: HMAC-SHA256 of `{timestamp}.{body}` under the workflow's webhook secret"),
        ("X-Webhook-Timestamp" = String, Header, description = "Unix seconds; at most 5 minutes from now"),
        ("X-Webhook-Id" = Option<String>, Header, description = "The delivery's id (at most 100 characters): sent again, it gets the run it started. Without it, the same timestamp and body do"),
    ),
    request_body(content = serde_json::Value, description = "Any JSON (at most 64 KiB); the run's `trigger`"),
    responses(
        (status = 202, description = "The run started (or started before by this delivery): `{\"run_id\", \"status\"}`", body = serde_json::Value),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No workflow here, or its published trigger is not a webhook", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has as many unfinished runs as it may", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive_workflow_webhook(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match receive(&s, &id, &headers, &body).await {
        Ok(run) => (
            StatusCode::ACCEPTED,
            Json(json!({ "run_id": run.id, "status": run.status })),
        )
            .into_response(),
        Err(response) => response,
    }
}

async fn receive(
    s: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<app::types::WorkflowRun, Response> {
    let unknown = || AppError::not_found("workflow");
    let Ok(workflow_id) = Uuid::parse_str(id) else {
        return Err(refuse("workflow", id, "unknown_workflow", unknown()));
    };
    let workflow = workflows::Entity::find_by_id(workflow_id)
        .one(&s.db)
        .await
        .map_err(|e| ApiError(db_error(e)).into_response())?
        .ok_or_else(|| refuse("workflow", id, "unknown_workflow", unknown()))?;
    let (Some(signature), Some(timestamp)) = (
        header(headers, "x-webhook-signature"),
        header(headers, "x-webhook-timestamp"),
    ) else {
        return Err(refuse(
            "workflow",
            id,
            "missing_signature",
            AppError::Unauthorized,
        ));
    };
    let Some(sealed) = &workflow.webhook_secret else {
        return Err(refuse("workflow", id, "no_secret", AppError::Unauthorized));
    };
    let secret = s
        .secret_keys
        .decrypt_str(&aad(SECRET_PURPOSE, workflow.tenant_id), sealed)
        .map_err(|e| {
            tracing::error!(error = %e, workflow = %workflow_id, "a workflow's webhook secret cannot be opened");
            ApiError(AppError::Unavailable("the workflow's secret cannot be read".into()))
                .into_response()
        })?;
    if let Err(reason) = verify(&secret, timestamp, body, signature, Utc::now().timestamp()) {
        return Err(refuse("workflow", id, reason, AppError::Unauthorized));
    }
    let budget = (
        Scope::Tenant(workflow.tenant_id),
        format!("workflow-hook:{workflow_id}"),
        Rate::per_minute(REQUESTS_PER_MINUTE),
    );
    if let Err(response) = spend_all(s, &[budget], "workflows").await {
        metrics::counter!(REJECTIONS, "source" => "workflow", "reason" => "rate_limited")
            .increment(1);
        return Err(response);
    }
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice::<serde_json::Value>(body).map_err(|e| {
            refuse(
                "workflow",
                id,
                "malformed",
                AppError::invalid("body", format!("must be JSON: {e}")),
            )
        })?
    };
    let delivery = match header(headers, "x-webhook-id") {
        Some(d) => d.chars().take(100).collect::<String>(),
        None => {
            let mut hash = sha2::Sha256::new();
            hash.update(timestamp.as_bytes());
            hash.update(b".");
            hash.update(body);
            crate::auth::api_key::hex(&hash.finalize())
        }
    };
    s.workflows
        .start_by(
            workflow.tenant_id,
            workflow_id,
            Started::Webhook,
            input,
            format!("hook:{delivery}"),
        )
        .await
        .map_err(|e| ApiError(e).into_response())
}
