//! `Authorization: Bearer <key>` for the REST API.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::ActiveValue::Set;

use app::error::AppError;
use app::services::{Access, Actor};
use app::types::Scope;

use super::api_key;
use crate::http::client_ip::client_ip;
use crate::http::cors::{foreign_origin, OriginAllowed};
use crate::http::error::ApiError;
use crate::http::{rate_limit, tenant_policy};
use crate::kv::{Kv, Scope as KvScope};
use crate::state::AppState;
use crate::store::api_keys;
use crate::tenancy::db_error;

/// The caller of a REST request, authenticated by its API key (see [`api_auth`]).
pub struct ApiAccess(pub Access);

impl FromRequestParts<AppState> for ApiAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Access>()
            .cloned()
            .map(ApiAccess)
            .ok_or(ApiError(AppError::Unauthorized))
    }
}

/// Marks a request from a platform operator (by the key's issuer), which skips rate limits.
#[derive(Clone, Copy)]
pub struct PlatformAdmin;

/// What authenticating a key needs, cached (see [`KEY_CACHE_TTL`]) so a busy key costs no
/// database query per request. Revoking a key deletes its entry.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct KeyRecord {
    id: Uuid,
    tenant_id: Uuid,
    prefix: String,
    secret_hash: String,
    scopes: Vec<String>,
    created_by: String,
    last_used_at: Option<chrono::DateTime<Utc>>,
    revoked: bool,
}

const KEY_CACHE_AREA: &str = "apikey";
const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// What the key cache holds for a prefix: the record, or a mark that it changed (revoked,
/// narrowed, its tenant deleted) and must be read from the database for a while.
#[derive(serde::Serialize, serde::Deserialize)]
enum Cached {
    Key(KeyRecord),
    Changed,
}

/// Where "this key's use was recorded" lives for a minute (see [`touch_last_used`]).
const KEY_TOUCH_AREA: &str = "apikey-used";

/// Marks a key changed, after the change committed. The mark replaces any cached record and
/// stays for the cache's lifetime; records are only ever cached where nothing is (`set_nx`),
/// so a request that read the key before the change cannot put the old record back.
pub async fn forget_key(kv: &Kv, prefix: &str) {
    if let Err(e) = kv
        .set(
            KvScope::Platform,
            KEY_CACHE_AREA,
            prefix,
            &Cached::Changed,
            KEY_CACHE_TTL,
        )
        .await
    {
        tracing::warn!(error = %e, "could not drop a cached API key");
    }
}

/// Middleware for `/api/v1`: a request with a bearer token must carry a valid key, and then
/// carries its `Access`; a request without one stays anonymous (public routes answer it,
/// protected ones refuse it). Both then meet the rate limiter.
pub async fn api_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(secret) = bearer_token(req.headers()) {
        match authenticate(&state, secret).await {
            Ok(key) => {
                let origin = foreign_origin(req.headers(), state.config.public_url.as_deref());
                if let Some(origin) = &origin {
                    let mut allowed = state.config.cors_allowed_origins.contains(origin);
                    if !allowed {
                        let policy = tenant_policy::get(&state, key.tenant_id).await;
                        allowed = policy.allowed_origins.contains(origin);
                        // The rate limiter reads the same policy next.
                        req.extensions_mut().insert(policy);
                    }
                    if !allowed {
                        return ApiError(AppError::Forbidden(format!(
                            "requests from {origin} are not allowed for this tenant \
                             (add it under Settings, allowed origins)"
                        )))
                        .into_response();
                    }
                }
                if key
                    .created_by
                    .strip_prefix("user:")
                    .is_some_and(|email| state.config.is_platform_admin(email))
                {
                    req.extensions_mut().insert(PlatformAdmin);
                }
                let ip = client_ip(req.extensions());
                req.extensions_mut().insert(Access {
                    tenant_id: key.tenant_id,
                    actor: Actor::ApiKey {
                        id: key.id,
                        prefix: key.prefix,
                    },
                    role: None,
                    scopes: key.scopes.iter().filter_map(|n| Scope::parse(n)).collect(),
                    ip,
                });
                if origin.is_some() {
                    let mut response = next.run(req).await;
                    response.extensions_mut().insert(OriginAllowed);
                    return response;
                }
            }
            Err(e) => {
                // A bad key spends the address's public budget, so guessing keys is throttled.
                return match rate_limit::spend_public(&state, req.extensions()).await {
                    Err(refused) => refused,
                    Ok(_) => e.into_response(),
                };
            }
        }
    }
    next.run(req).await
}

async fn authenticate(state: &AppState, secret: &str) -> Result<KeyRecord, ApiError> {
    let prefix = api_key::prefix_of(secret).ok_or(AppError::Unauthorized)?;
    let cached = state
        .kv
        .get::<Cached>(KvScope::Platform, KEY_CACHE_AREA, prefix)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "API key cache unavailable");
            None
        });
    let record = match cached {
        Some(Cached::Key(record)) => record,
        Some(Cached::Changed) | None => {
            let Some(key) = api_keys::Entity::find()
                .filter(api_keys::Column::Prefix.eq(prefix))
                .one(&state.db)
                .await
                .map_err(db_error)?
            else {
                return Err(AppError::Unauthorized.into());
            };
            let record = KeyRecord {
                id: key.id,
                tenant_id: key.tenant_id,
                prefix: key.prefix,
                secret_hash: key.secret_hash,
                scopes: serde_json::from_value(key.scopes).unwrap_or_default(),
                created_by: key.created_by,
                last_used_at: key.last_used_at,
                revoked: key.revoked_at.is_some(),
            };
            cache_key(state, &record).await;
            record
        }
    };
    if record.revoked || !api_key::matches(secret, &record.secret_hash) {
        return Err(AppError::Unauthorized.into());
    }
    touch_last_used(state, &record).await;
    Ok(record)
}

/// Caches a record read from the database, unless the entry holds anything (a change mark
/// above all).
async fn cache_key(state: &AppState, record: &KeyRecord) {
    if let Err(e) = state
        .kv
        .set_nx(
            KvScope::Platform,
            KEY_CACHE_AREA,
            &record.prefix,
            &Cached::Key(record.clone()),
            KEY_CACHE_TTL,
        )
        .await
    {
        tracing::warn!(error = %e, "could not cache an API key");
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Records use at most once a minute per key (across instances), off the request path.
async fn touch_last_used(state: &AppState, key: &KeyRecord) {
    let now = Utc::now();
    if key
        .last_used_at
        .is_some_and(|t| now - t <= Duration::minutes(1))
    {
        return;
    }
    let first = state
        .kv
        .set_nx(
            KvScope::Platform,
            KEY_TOUCH_AREA,
            &key.prefix,
            &true,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap_or(true);
    if !first {
        return;
    }
    let db = state.db.clone();
    let row = api_keys::ActiveModel {
        id: Set(key.id),
        last_used_at: Set(Some(now)),
        ..Default::default()
    };
    tokio::spawn(async move {
        if let Err(e) = row.update(&db).await {
            tracing::warn!(error = %e, "could not record API key use");
        }
    });
}
