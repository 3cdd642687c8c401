//! `Authorization: Bearer <key>` for the REST API.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap};
use chrono::{Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::ActiveValue::Set;

use app::error::AppError;
use app::services::{Access, Actor};
use app::types::Scope;

use super::api_key;
use crate::http::client_ip::client_ip;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::api_keys;
use crate::tenancy::db_error;

/// The caller of a REST request, authenticated by its API key.
pub struct ApiAccess(pub Access);

impl FromRequestParts<AppState> for ApiAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer_token(&parts.headers).ok_or(AppError::Unauthorized)?;
        let prefix = api_key::prefix_of(secret).ok_or(AppError::Unauthorized)?;
        let key = api_keys::Entity::find()
            .filter(api_keys::Column::Prefix.eq(prefix))
            .one(&state.db)
            .await
            .map_err(db_error)?
            .filter(|k| k.revoked_at.is_none() && api_key::matches(secret, &k.secret_hash))
            .ok_or(AppError::Unauthorized)?;
        touch_last_used(state, &key);
        let names: Vec<String> = serde_json::from_value(key.scopes.clone()).unwrap_or_default();
        let ip = client_ip(&parts.extensions);
        Ok(ApiAccess(Access {
            tenant_id: key.tenant_id,
            actor: Actor::ApiKey {
                id: key.id,
                prefix: key.prefix,
            },
            role: None,
            scopes: names.iter().filter_map(|n| Scope::parse(n)).collect(),
            ip,
        }))
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

/// Records use at most once a minute per key, off the request path.
fn touch_last_used(state: &AppState, key: &api_keys::Model) {
    let stale = key
        .last_used_at
        .is_none_or(|t| Utc::now() - t > Duration::minutes(1));
    if !stale {
        return;
    }
    let db = state.db.clone();
    let row = api_keys::ActiveModel {
        id: Set(key.id),
        last_used_at: Set(Some(Utc::now())),
        ..Default::default()
    };
    tokio::spawn(async move {
        if let Err(e) = row.update(&db).await {
            tracing::warn!(error = %e, "could not record API key use");
        }
    });
}
