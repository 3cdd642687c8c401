//! The baseline of `server/bench/load.sh`: a bare axum handler answering `GET /api/v1/tenant`
//! with a tenant-shaped JSON body, without middleware, authentication or a database.
//! Usage: `bare_axum PORT`

use axum::routing::get;
use axum::{Json, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(3932);
    let tenant = serde_json::json!({
        "id": "01900000-0000-7000-8000-000000000000",
        "slug": "bench",
        "name": "bench",
        "timezone": "UTC",
        "business_hours": [],
        "allowed_origins": [],
        "created_at": "2026-11-26T00:00:00Z"
    });
    let app = Router::new().route(
        "/api/v1/tenant",
        get(move || {
            let tenant = tenant.clone();
            async move { Json(tenant) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
