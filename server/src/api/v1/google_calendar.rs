//! `/api/v1/google-calendar`: the tenant's Google Calendar connection (`integrations:read` /
//! `integrations:write`). Connecting is the console's OAuth flow in the browser; tokens are
//! never returned.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use app::types::{GoogleCalendar, GoogleSettings};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/google-calendar",
        get(get_google_calendar)
            .patch(update_google_calendar)
            .delete(disconnect_google_calendar),
    )
}

/// The connection: whether it works, what Google granted, who connected it.
#[utoipa::path(get, path = "/api/v1/google-calendar", tag = "google-calendar",
    responses(
        (status = 200, body = GoogleCalendar),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_google_calendar(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<GoogleCalendar>> {
    Ok(Json(s.services.google.get_google_calendar(&a).await?))
}

/// Changes what the agents do while the connection needs reconnecting: book in the built-in
/// calendar (`built_in`) or say they cannot book now (`refuse`).
#[utoipa::path(patch, path = "/api/v1/google-calendar", tag = "google-calendar",
    request_body = GoogleSettings,
    responses(
        (status = 200, body = GoogleCalendar),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_google_calendar(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(settings): ApiJson<GoogleSettings>,
) -> ApiResult<Json<GoogleCalendar>> {
    Ok(Json(
        s.services
            .google
            .update_google_calendar(&a, settings)
            .await?,
    ))
}

/// Disconnects: the grant is revoked at Google and the tokens are deleted.
#[utoipa::path(delete, path = "/api/v1/google-calendar", tag = "google-calendar",
    responses(
        (status = 204, description = "Disconnected"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn disconnect_google_calendar(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<StatusCode> {
    s.services.google.disconnect_google_calendar(&a).await?;
    Ok(StatusCode::NO_CONTENT)
}
