//! Which provider answers a tenant: its own (`tenant_llm_settings`, key decrypted with the
//! platform's [`KeyRing`]) or the platform's. Tenants' clients are cached by tenant and the
//! settings' `updated_at`, so a change (made by any instance) takes effect on the next turn; each
//! has its own circuit breaker, so one tenant's broken endpoint never opens another's circuit.
//! Prices, timeouts and retries are the platform's.
//!
//! A tenant chooses the URL the server calls, so its client refuses private, loopback and
//! link-local addresses (resolved names too, and redirects are not followed) unless
//! `FETCH_ALLOW_PRIVATE` allows internal targets.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, EntityTrait};
use secrecy::SecretString;
use uuid::Uuid;

use app::error::AppError;

use crate::config::CircuitConfig;
use crate::outbound::guard;
pub use crate::outbound::guard::check_target;
use crate::secrets::{self, KeyRing};
use crate::store::tenant_llm_settings;
use crate::tenancy::db_error;

use super::{Llm, LlmConfig};

/// What the API key's ciphertext is bound to (with the tenant id).
pub const API_KEY_PURPOSE: &str = "tenant_llm_settings.api_key";

/// The associated data of a tenant's API key.
pub fn api_key_aad(tenant_id: Uuid) -> Vec<u8> {
    secrets::aad(API_KEY_PURPOSE, tenant_id)
}

#[derive(Clone)]
pub struct Providers {
    platform: Arc<Llm>,
    config: LlmConfig,
    circuit: CircuitConfig,
    keys: KeyRing,
    allow_private: bool,
    cache: moka::future::Cache<Uuid, (DateTime<Utc>, Arc<Llm>)>,
}

impl Providers {
    /// `config`: the platform's provider, whose prices, timeout and retries tenants share.
    pub fn new(
        config: LlmConfig,
        circuit: CircuitConfig,
        keys: KeyRing,
        allow_private: bool,
    ) -> Providers {
        Providers {
            platform: Arc::new(Llm::new(config.clone(), circuit)),
            config,
            circuit,
            keys,
            allow_private,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    pub fn platform(&self) -> Arc<Llm> {
        self.platform.clone()
    }

    pub fn platform_config(&self) -> &LlmConfig {
        &self.config
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// The tenant's own provider if it set one, the platform's otherwise.
    pub async fn for_tenant(
        &self,
        db: &impl ConnectionTrait,
        tenant_id: Uuid,
    ) -> Result<Arc<Llm>, AppError> {
        let row = tenant_llm_settings::Entity::find_by_id(tenant_id)
            .one(db)
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            self.cache.invalidate(&tenant_id).await;
            return Ok(self.platform.clone());
        };
        if let Some((updated_at, llm)) = self.cache.get(&tenant_id).await {
            if updated_at == row.updated_at {
                return Ok(llm);
            }
        }
        let llm = Arc::new(self.build(&row)?);
        self.cache
            .insert(tenant_id, (row.updated_at, llm.clone()))
            .await;
        Ok(llm)
    }

    /// Drops the tenant's cached client (its settings changed or were deleted).
    pub async fn forget(&self, tenant_id: Uuid) {
        self.cache.invalidate(&tenant_id).await;
    }

    fn build(&self, row: &tenant_llm_settings::Model) -> Result<Llm, AppError> {
        let api_key = match &row.api_key_encrypted {
            Some(sealed) => Some(
                self.keys
                    .decrypt_str(&api_key_aad(row.tenant_id), sealed)
                    .map_err(|e| {
                        tracing::error!(tenant = %row.tenant_id, error = %e,
                            "the tenant's LLM API key cannot be decrypted");
                        AppError::Unavailable(
                            "the LLM provider's API key cannot be read; an administrator must \
                             enter it again (Settings, LLM provider)"
                                .into(),
                        )
                    })?,
            ),
            None => None,
        };
        check_target(&row.base_url, self.allow_private).map_err(AppError::Unavailable)?;
        let config = LlmConfig {
            base_url: Some(row.base_url.clone()),
            api_key: api_key.map(|key| SecretString::from(key.as_str())),
            chat_model: row.chat_model.clone(),
            router_model: row
                .router_model
                .clone()
                .unwrap_or_else(|| row.chat_model.clone()),
            ..self.config.clone()
        };
        let http = guard::guarded(super::http_client(), self.allow_private)
            .map_err(|e| AppError::Internal(format!("building the LLM client: {e}")))?;
        Ok(Llm::with_client(
            &format!("llm:tenant:{}", row.tenant_id),
            config,
            self.circuit,
            http,
        ))
    }
}
