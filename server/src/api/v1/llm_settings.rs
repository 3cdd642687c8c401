//! `/api/v1/llm-settings`: the tenant's own LLM provider (endpoint, models, API key), or the
//! platform's. The key is write-only: responses carry its last four characters at most.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use app::types::{LlmSettings, UpdateLlmSettings};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/llm-settings",
        get(get_llm_settings)
            .put(update_llm_settings)
            .delete(reset_llm_settings),
    )
}

/// The provider the tenant's agents answer with (needs `tenant:read`).
#[utoipa::path(get, path = "/api/v1/llm-settings", tag = "llm",
    responses(
        (status = 200, body = LlmSettings),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_llm_settings(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<LlmSettings>> {
    Ok(Json(s.services.llm.get_llm_settings(&a).await?))
}

/// Use the tenant's own OpenAI-compatible provider from the next turn (needs `tenant:write`).
/// The API key is stored encrypted; leave it out to keep the stored one.
#[utoipa::path(put, path = "/api/v1/llm-settings", tag = "llm", request_body = UpdateLlmSettings,
    responses(
        (status = 200, body = LlmSettings),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_llm_settings(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(update): ApiJson<UpdateLlmSettings>,
) -> ApiResult<Json<LlmSettings>> {
    Ok(Json(s.services.llm.update_llm_settings(&a, update).await?))
}

/// Go back to the platform's provider; the stored key is deleted (needs `tenant:write`).
#[utoipa::path(delete, path = "/api/v1/llm-settings", tag = "llm",
    responses(
        (status = 200, description = "The provider now in use", body = LlmSettings),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset_llm_settings(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<LlmSettings>> {
    Ok(Json(s.services.llm.reset_llm_settings(&a).await?))
}
