//! Router assembly and cross-cutting middleware.

pub mod access_log;
pub mod client_ip;
pub mod cors;
pub mod error;
pub mod metrics;
pub mod rate_limit;
pub mod tenant_policy;

use axum::extract::State;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Extension, Json, Router};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use app::error::AppError;

use crate::auth::{self, SessionBackend};
use crate::state::AppState;

pub fn router(state: AppState, sessions: SessionBackend) -> Router {
    let services = state.services.clone();
    let options = state.leptos_options.clone();
    // Connecting Google Calendar posts a form whose answer redirects to Google.
    let form_targets = app::FormTargets(
        state
            .config
            .google
            .as_ref()
            .and_then(|g| reqwest::Url::parse(&g.auth_url).ok())
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default(),
    );
    let console = Router::new()
        .leptos_routes_with_context(
            &state,
            generate_route_list(app::App),
            move || {
                provide_context(services.clone());
                provide_context(form_targets.clone());
            },
            move || app::shell(options.clone()),
        )
        .merge(auth::console_routes())
        .merge(crate::integrations::google::routes::routes())
        .merge(crate::api::v1::knowledge::console_routes(
            state.upload_limit(),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit_signed_in,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::console_context,
        ))
        .layer(auth::session_layer(
            sessions,
            state.db.clone(),
            &state.config,
        ))
        .layer(middleware::from_fn(auth::same_origin_writes))
        // The console is never framed; the chat widget will get its own per-tenant policy.
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            "frame-ancestors 'none'",
        ));

    let request_id = HeaderName::from_static(access_log::REQUEST_ID);
    let limit = state.config.max_body_bytes;
    Router::new()
        .merge(console)
        .merge(
            crate::api::v1::router(state.upload_limit())
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    rate_limit::limit,
                ))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    auth::api_auth,
                ))
                .layer(middleware::from_fn_with_state(state.clone(), cors::cors)),
        )
        .merge(crate::widget::api::routes())
        .merge(crate::integrations::chatwoot::hook::routes())
        .merge(crate::workflows::hook::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(
            header::REFERRER_POLICY,
            "strict-origin-when-cross-origin",
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(error::BodyLimit(limit)))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        .layer(middleware::from_fn(access_log::access_log))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            client_ip::resolve_client,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The process can serve: its database answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let mut response =
                error::ApiError(AppError::Internal("database unreachable".into())).into_response();
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    }
}
