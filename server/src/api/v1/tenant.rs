use axum::extract::State;
use axum::Json;

use app::types::{Tenant, UpdateTenant};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiResult, Problem};
use crate::state::AppState;

/// The tenant the API key belongs to.
#[utoipa::path(get, path = "/api/v1/tenant", tag = "tenant",
    responses(
        (status = 200, body = Tenant),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_tenant(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(s.services.tenancy.get_tenant(&a).await?))
}

/// Change the tenant's name, time zone or business hours (needs `tenant:write`).
#[utoipa::path(patch, path = "/api/v1/tenant", tag = "tenant", request_body = UpdateTenant,
    responses(
        (status = 200, body = Tenant),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_tenant(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(update): ApiJson<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(s.services.tenancy.update_tenant(&a, update).await?))
}
