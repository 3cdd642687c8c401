//! CORS for `/api/v1`, decided per tenant. A browser page may call the API when its origin is
//! in `CORS_ALLOWED_ORIGINS` (every tenant) or in the allowed origins of the tenant whose key
//! it presents (Settings in the console). Keys travel in `Authorization`, never cookies, so
//! credentials mode stays off.
//!
//! tower-http's `CorsLayer` decides before the request is authenticated, so it cannot know the
//! tenant; this middleware answers preflights (which carry no key) for origins some tenant or
//! the configuration allows, and lets key authentication (`auth::api_auth`) refuse a request
//! from an origin the key's tenant does not allow, before it runs.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use app::validate::normal_origin;

use super::tenant_policy;
use crate::state::AppState;

/// Set on a response by key authentication when the tenant allows the request's origin.
#[derive(Clone, Copy)]
pub struct OriginAllowed;

const ALLOW_METHODS: &str = "GET, POST, PATCH, DELETE";
const ALLOW_HEADERS: &str = "authorization, content-type, x-request-id";
const EXPOSE_HEADERS: &str =
    "x-request-id, ratelimit-limit, ratelimit-remaining, ratelimit-reset, retry-after";

/// The request's `Origin`, normalised, unless it is this site itself.
pub fn foreign_origin(headers: &HeaderMap, public_url: Option<&str>) -> Option<String> {
    let origin = normal_origin(headers.get(header::ORIGIN)?.to_str().ok()?);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same_host = host.is_some_and(|h| {
        origin
            .split_once("://")
            .is_some_and(|(_, o)| o.eq_ignore_ascii_case(h))
    });
    let public = public_url.is_some_and(|u| normal_origin(u) == origin);
    (!same_host && !public).then_some(origin)
}

pub async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = foreign_origin(req.headers(), state.config.public_url.as_deref()) else {
        return next.run(req).await;
    };
    let configured = state.config.cors_allowed_origins.contains(&origin);
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if configured || tenant_policy::any_tenant_allows(&state, &origin).await {
            let headers = response.headers_mut();
            allow(headers, &origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(600));
        }
        vary(response.headers_mut());
        return response;
    }
    let mut response = next.run(req).await;
    if configured || response.extensions().get::<OriginAllowed>().is_some() {
        allow(response.headers_mut(), &origin);
        response.headers_mut().insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    vary(response.headers_mut());
    response
}

fn allow(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
}

fn vary(headers: &mut HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_site_requests_are_not_cross_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:3000"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:3000"),
        );
        assert_eq!(foreign_origin(&headers, None), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://Shop.example/"),
        );
        assert_eq!(
            foreign_origin(&headers, None).as_deref(),
            Some("https://shop.example")
        );
        assert_eq!(foreign_origin(&headers, Some("https://shop.example")), None);
    }
}
