//! Prometheus metrics at `/metrics`, served only with `Authorization: Bearer $METRICS_TOKEN`
//! (the endpoint does not exist without a token configured).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use app::error::AppError;

use super::error::ApiError;
use crate::auth::api_key::constant_time_eq;
use crate::auth::bearer_token;
use crate::state::AppState;

pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_IN_FLIGHT: &str = "http_requests_in_flight";

/// Enqueue-to-start of jobs: from idle polling (sub-second) to long backlogs.
const START_DELAY_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0,
];

const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The process-wide recorder (the `metrics` facade has one global), installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(crate::jobs::worker::START_DELAY.into()),
                    &START_DELAY_BUCKETS,
                )
            })
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        handle
    })
}

pub async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.config.metrics_token else {
        return ApiError(AppError::not_found("route")).into_response();
    };
    let presented = bearer_token(&headers).unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
        return ApiError(AppError::Unauthorized).into_response();
    }
    record_pool(&state.db);
    state.kv.store().record_metrics();
    crate::jobs::record_metrics(&state.db).await;
    let handle = handle();
    handle.run_upkeep();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Connection-pool gauges, read at scrape time.
fn record_pool(db: &DatabaseConnection) {
    let (size, idle) = match db {
        DatabaseConnection::SqlxSqlitePoolConnection(_) => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DatabaseConnection::SqlxPostgresPoolConnection(_) => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => return,
    };
    metrics::gauge!("db_pool_connections", "state" => "open").set(f64::from(size));
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
}
