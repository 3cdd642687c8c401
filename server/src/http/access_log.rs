//! One span per request carrying its request id (so every log line inside names it), and one
//! access-log line per request: method, route template, status, latency; and the same as
//! Prometheus metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::metrics::{HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS};

pub const REQUEST_ID: &str = "x-request-id";

pub async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or_else(
        || "(static or not found)".to_string(),
        |p| p.as_str().to_string(),
    );
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let span = tracing::info_span!("request", request_id = %request_id);
    let in_flight = ::metrics::gauge!(HTTP_IN_FLIGHT);
    in_flight.increment(1.0);
    let response = next.run(req).instrument(span.clone()).await;
    in_flight.decrement(1.0);
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_string()),
        ("route", route.clone()),
        ("status", status),
    ];
    ::metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    ::metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route = %route,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    response
}
