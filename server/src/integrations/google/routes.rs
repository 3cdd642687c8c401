//! The browser's side of connecting Google Calendar, in the console (signed in, same-origin
//! writes): `POST /integrations/google/connect` sends the browser to Google;
//! `GET /integrations/google/callback` is where Google sends it back. Both end on the
//! Integrations page, saying what happened.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_sessions::Session;

use app::error::AppError;
use app::services::Access;

use super::Callback;
use crate::http::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/integrations/google/connect", post(connect))
        .route("/integrations/google/callback", get(callback))
}

/// The Integrations page with a message (`google=connected` or `google_error=…`).
fn back(key: &str, value: &str) -> Response {
    let mut url = reqwest::Url::parse("http://console/integrations")
        .unwrap_or_else(|_| unreachable!("a constant URL parses"));
    url.query_pairs_mut().append_pair(key, value);
    Redirect::to(&format!(
        "/integrations?{}",
        url.query().unwrap_or_default()
    ))
    .into_response()
}

async fn connect(
    State(s): State<AppState>,
    access: Option<Extension<Access>>,
    session: Session,
) -> Response {
    let Some(Extension(access)) = access else {
        return ApiError(AppError::Unauthorized).into_response();
    };
    let Some(oauth) = &s.google else {
        return ApiError(AppError::Unavailable(
            "Google Calendar is not configured on this platform (GOOGLE_CLIENT_ID)".into(),
        ))
        .into_response();
    };
    let Some(id) = session.id() else {
        return ApiError(AppError::Unauthorized).into_response();
    };
    match oauth.start(&access, &id.to_string()).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

async fn callback(
    State(s): State<AppState>,
    access: Option<Extension<Access>>,
    session: Session,
    Query(answer): Query<Callback>,
) -> Response {
    let Some(oauth) = &s.google else {
        return back(
            "google_error",
            "Google Calendar is not configured on this platform",
        );
    };
    let session = session.id().map(|id| id.to_string());
    match oauth
        .finish(access.as_ref().map(|a| &a.0), session.as_deref(), answer)
        .await
    {
        Ok(()) => back("google", "connected"),
        Err(refused) => back("google_error", &refused.message),
    }
}
