//! What the HTTP layer enforces per tenant, its own rate limits and the browser origins allowed
//! to call the API, read from the database at most once a minute per tenant and cached in the
//! shared store. Changes made through the service or the CLI drop the cached copy at once
//! (with Redis, on every instance).

use std::time::Duration;

use sea_orm::{EntityTrait, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::kv::{Kv, Scope};
use crate::state::AppState;
use crate::store::tenants;

/// A tenant's own budgets, requests per minute; unset figures use the configured defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, garde::Validate)]
pub struct TenantLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 1))]
    pub read_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 1))]
    pub write_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 1))]
    pub tenant_per_minute: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TenantPolicy {
    pub limits: TenantLimits,
    pub allowed_origins: Vec<String>,
}

const AREA: &str = "policy";
const TTL: Duration = Duration::from_secs(60);

fn parse<T: serde::de::DeserializeOwned + Default>(value: Option<serde_json::Value>) -> T {
    value
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

pub async fn get(state: &AppState, tenant_id: Uuid) -> TenantPolicy {
    let scope = Scope::Tenant(tenant_id);
    if let Ok(Some(policy)) = state.kv.get::<TenantPolicy>(scope, AREA, "").await {
        return policy;
    }
    let policy = match tenants::Entity::find_by_id(tenant_id).one(&state.db).await {
        Ok(Some(t)) => TenantPolicy {
            limits: parse(t.rate_limits),
            allowed_origins: parse(t.allowed_origins),
        },
        Ok(None) => TenantPolicy::default(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read a tenant's policy");
            return TenantPolicy::default();
        }
    };
    if let Err(e) = state.kv.set(scope, AREA, "", &policy, TTL).await {
        tracing::warn!(error = %e, "could not cache a tenant's policy");
    }
    policy
}

/// Whether any tenant allows `origin`; answers CORS preflights, which carry no key.
pub async fn any_tenant_allows(state: &AppState, origin: &str) -> bool {
    let scope = Scope::Platform;
    let all = match state.kv.get::<Vec<String>>(scope, AREA, "origins").await {
        Ok(Some(all)) => all,
        _ => {
            let rows: Vec<Option<serde_json::Value>> = tenants::Entity::find()
                .select_only()
                .column(tenants::Column::AllowedOrigins)
                .into_tuple()
                .all(&state.db)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "could not read allowed origins");
                    Vec::new()
                });
            let mut all: Vec<String> = rows.into_iter().flat_map(parse::<Vec<String>>).collect();
            all.sort();
            all.dedup();
            if let Err(e) = state.kv.set(scope, AREA, "origins", &all, TTL).await {
                tracing::warn!(error = %e, "could not cache allowed origins");
            }
            all
        }
    };
    all.iter().any(|o| o == origin)
}

/// Drops the cached policy of a tenant after it changed.
pub async fn forget(kv: &Kv, tenant_id: Uuid) {
    for (scope, rest) in [(Scope::Tenant(tenant_id), ""), (Scope::Platform, "origins")] {
        if let Err(e) = kv.delete(scope, AREA, rest).await {
            tracing::warn!(error = %e, "could not drop a cached tenant policy");
        }
    }
}
