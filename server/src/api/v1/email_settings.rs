//! `/api/v1/email-settings`: who sends the tenant's email, the platform's SMTP relay or the
//! tenant's own SendGrid or Mailgun account (`integrations:read` / `integrations:write`). The
//! API key is write-only: responses carry its last four characters at most.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use app::types::{EmailSettings, Job, TestEmail, UpdateEmailSettings};

use crate::auth::ApiAccess;
use crate::http::error::{ApiJson, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/email-settings",
            get(get_email_settings)
                .put(update_email_settings)
                .delete(reset_email_settings),
        )
        .route("/api/v1/email-settings/test", post(send_test_email))
}

/// Who sends the tenant's email, and whether email can be sent at all.
#[utoipa::path(get, path = "/api/v1/email-settings", tag = "email",
    responses(
        (status = 200, body = EmailSettings),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_email_settings(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<EmailSettings>> {
    Ok(Json(s.services.email.get_email_settings(&a).await?))
}

/// Send through the tenant's own SendGrid or Mailgun account from now on. The API key is
/// stored encrypted; leave it out to keep the stored key of the same provider.
#[utoipa::path(put, path = "/api/v1/email-settings", tag = "email", request_body = UpdateEmailSettings,
    responses(
        (status = 200, body = EmailSettings),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_email_settings(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(update): ApiJson<UpdateEmailSettings>,
) -> ApiResult<Json<EmailSettings>> {
    Ok(Json(
        s.services.email.update_email_settings(&a, update).await?,
    ))
}

/// Go back to the platform's SMTP relay; the stored key is deleted.
#[utoipa::path(delete, path = "/api/v1/email-settings", tag = "email",
    responses(
        (status = 200, body = EmailSettings),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reset_email_settings(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
) -> ApiResult<Json<EmailSettings>> {
    Ok(Json(s.services.email.reset_email_settings(&a).await?))
}

/// Queue a short test message through the service in use; follow the returned job.
#[utoipa::path(post, path = "/api/v1/email-settings/test", tag = "email", request_body = TestEmail,
    responses(
        (status = 202, body = Job),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn send_test_email(
    State(s): State<AppState>,
    ApiAccess(a): ApiAccess,
    ApiJson(test): ApiJson<TestEmail>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.services.email.send_test_email(&a, test).await?),
    ))
}
