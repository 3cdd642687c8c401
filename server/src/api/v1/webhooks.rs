//! `/api/v1/webhooks`: outgoing webhooks, their signing secrets and delivery logs
//! (`integrations:read` / `integrations:write`). docs/webhooks.md says how to verify them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use app::types::{
    DeliveryQuery, Page, Webhook, WebhookDelivery, WebhookSettings, WebhookWithSecret,
};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/api/v1/webhooks/{id}",
            get(get_webhook).put(update_webhook).delete(delete_webhook),
        )
        .route(
            "/api/v1/webhooks/{id}/rotate-secret",
            post(rotate_webhook_secret),
        )
        .route("/api/v1/webhooks/{id}/test", post(test_webhook))
        .route("/api/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .route(
            "/api/v1/webhooks/{id}/deliveries/{delivery}/replay",
            post(replay_delivery),
        )
}

/// The tenant's webhook endpoints, oldest first.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, body = Vec<Webhook>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_webhooks(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<Webhook>>> {
    Ok(Json(s.services.webhooks.list_webhooks(&a).await?))
}

/// Subscribe an HTTPS endpoint to events. The response holds its signing `secret` this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = WebhookSettings,
    responses(
        (status = 201, body = WebhookWithSecret),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_webhook(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(settings): ApiJson<WebhookSettings>,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.webhooks.create_webhook(&a, settings).await?),
    ))
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, body = Webhook),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_webhook(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Webhook>> {
    Ok(Json(s.services.webhooks.get_webhook(&a, id).await?))
}

/// Replace an endpoint's URL, events, description and whether it is enabled.
#[utoipa::path(put, path = "/api/v1/webhooks/{id}", tag = "webhooks", request_body = WebhookSettings,
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, body = Webhook),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_webhook(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(settings): ApiJson<WebhookSettings>,
) -> ApiResult<Json<Webhook>> {
    Ok(Json(
        s.services.webhooks.update_webhook(&a, id, settings).await?,
    ))
}

/// A new signing secret, shown this once; deliveries from now on are signed with it.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, body = WebhookWithSecret),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_webhook_secret(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<WebhookWithSecret>> {
    Ok(Json(
        s.services.webhooks.rotate_webhook_secret(&a, id).await?,
    ))
}

/// Delete an endpoint and its delivery log.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_webhook(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    s.services.webhooks.delete_webhook(&a, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queue a `webhook.test` event to the endpoint (whatever it subscribes to).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 202, body = WebhookDelivery),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn test_webhook(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<WebhookDelivery>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.services.webhooks.test_webhook(&a, id).await?),
    ))
}

/// The endpoint's deliveries, newest first, with each one's last attempt. Follow
/// `next_cursor` for older ones.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint's id"), DeliveryQuery),
    responses(
        (status = 200, body = Page<WebhookDelivery>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_deliveries(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Page<WebhookDelivery>>> {
    Ok(Json(
        s.services.webhooks.list_deliveries(&a, id, query).await?,
    ))
}

/// Send a finished delivery's event again: a new delivery with the same event id and body.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery}/replay", tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "The endpoint's id"),
        ("delivery" = Uuid, Path, description = "The delivery to send again"),
    ),
    responses(
        (status = 202, body = WebhookDelivery),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn replay_delivery(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath((id, delivery)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<(StatusCode, Json<WebhookDelivery>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(
            s.services
                .webhooks
                .replay_delivery(&a, id, delivery)
                .await?,
        ),
    ))
}
