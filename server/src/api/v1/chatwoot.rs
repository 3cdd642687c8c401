//! `/api/v1/chatwoot`: the tenant's Chatwoot inbox as a channel (`integrations:read` /
//! `integrations:write`). The agent bot's token is write-only; the webhook secret is returned
//! only when it is made (connecting, rotating).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use app::types::{ChatwootConnection, ChatwootSettings};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/chatwoot",
            get(get_chatwoot).put(save_chatwoot).delete(delete_chatwoot),
        )
        .route(
            "/api/v1/chatwoot/rotate-secret",
            post(rotate_chatwoot_secret),
        )
}

/// The Chatwoot connection, with the webhook URL to give Chatwoot and the last event taken.
#[utoipa::path(get, path = "/api/v1/chatwoot", tag = "chatwoot",
    responses(
        (status = 200, body = ChatwootConnection),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_chatwoot(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<ChatwootConnection>> {
    Ok(Json(s.services.chatwoot.get_chatwoot(&a).await?))
}

/// Connects a Chatwoot inbox (the response carries the webhook secret, this once), or changes
/// the connection (leave `access_token` out to keep the stored one).
#[utoipa::path(put, path = "/api/v1/chatwoot", tag = "chatwoot", request_body = ChatwootSettings,
    responses(
        (status = 200, body = ChatwootConnection),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn save_chatwoot(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(settings): ApiJson<ChatwootSettings>,
) -> ApiResult<Json<ChatwootConnection>> {
    Ok(Json(s.services.chatwoot.save_chatwoot(&a, settings).await?))
}

/// A new webhook secret (returned this once); events signed with the old one are refused.
#[utoipa::path(post, path = "/api/v1/chatwoot/rotate-secret", tag = "chatwoot",
    responses(
        (status = 200, body = ChatwootConnection),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_chatwoot_secret(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<ChatwootConnection>> {
    Ok(Json(s.services.chatwoot.rotate_chatwoot_secret(&a).await?))
}

/// Disconnects: the token and secret are deleted; the conversations stay.
#[utoipa::path(delete, path = "/api/v1/chatwoot", tag = "chatwoot",
    responses(
        (status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_chatwoot(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<StatusCode> {
    s.services.chatwoot.delete_chatwoot(&a).await?;
    Ok(StatusCode::NO_CONTENT)
}
