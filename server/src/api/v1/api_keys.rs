use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use uuid::Uuid;

use app::types::{ApiKey, CreateApiKey, CreatedApiKey};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiPath, ApiResult, Problem};
use crate::state::AppState;

/// The tenant's API keys, newest first, revoked ones included. Secrets are never returned.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys",
    responses(
        (status = 200, body = Vec<ApiKey>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_api_keys(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Vec<ApiKey>>> {
    Ok(Json(s.services.tenancy.list_api_keys(&a).await?))
}

/// Create a key. The response holds the whole key (`secret`) this once; store it safely.
/// A key cannot grant permissions its creator does not hold.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses(
        (status = 201, body = CreatedApiKey),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_api_key(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(create): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.services.tenancy.create_api_key(&a, create).await?),
    ))
}

/// One key, by id.
#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, body = ApiKey),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_api_key(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(s.services.tenancy.get_api_key(&a, id).await?))
}

/// Revoke a key; it stops working at once. Revoking twice is harmless.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    responses(
        (status = 200, body = ApiKey, description = "The revoked key"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_api_key(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(s.services.tenancy.revoke_api_key(&a, id).await?))
}
