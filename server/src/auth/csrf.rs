//! CSRF protection for cookie-authenticated writes: a state-changing request must come from
//! our own origin (OWASP's "verify origin with standard headers"), on top of SameSite=Lax
//! cookies. Bearer-authenticated REST calls carry no ambient credentials and are not checked.

use axum::extract::Request;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use app::error::AppError;

use crate::http::error::ApiError;

pub async fn same_origin_writes(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || is_same_origin(&req) {
        next.run(req).await
    } else {
        tracing::warn!(path = %req.uri().path(), "cross-origin write refused");
        ApiError::from(AppError::Forbidden(
            "cross-site request refused: the Origin header does not match this site".into(),
        ))
        .into_response()
    }
}

fn is_same_origin(req: &Request) -> bool {
    let headers = req.headers();
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    origin
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host))
}
