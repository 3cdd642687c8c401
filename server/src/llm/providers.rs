//! Which provider answers a tenant: its own (`tenant_llm_settings`, key decrypted with the
//! platform's [`KeyRing`]) or the platform's. Tenants' clients are cached by tenant and the
//! settings' `updated_at`, so a change (made by any instance) takes effect on the next turn; each
//! has its own circuit breaker, so one tenant's broken endpoint never opens another's circuit.
//! Prices, timeouts and retries are the platform's.
//!
//! A tenant chooses the URL the server calls, so its client refuses private, loopback and
//! link-local addresses (resolved names too, and redirects are not followed) unless
//! `FETCH_ALLOW_PRIVATE` allows internal targets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, EntityTrait};
use secrecy::SecretString;
use uuid::Uuid;

use app::error::AppError;

use crate::config::CircuitConfig;
use crate::rag::fetch::is_public;
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
        let http = tenant_client(self.allow_private)
            .map_err(|e| AppError::Internal(format!("building the LLM client: {e}")))?;
        Ok(Llm::with_client(
            &format!("llm:tenant:{}", row.tenant_id),
            config,
            self.circuit,
            http,
        ))
    }
}

/// An IP literal host (`127.0.0.1`, `[::1]`).
fn literal_ip(host: &str) -> Option<IpAddr> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Refuses a URL whose host is an internal address (names are checked when resolved).
pub fn check_target(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    let host = parsed.host_str().ok_or("has no host")?;
    if allow_private {
        return Ok(());
    }
    let internal = match literal_ip(host) {
        Some(ip) => !is_public(ip),
        None => host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost"),
    };
    if internal {
        return Err(format!(
            "{host} is a private or loopback address, which tenants' providers may not use"
        ));
    }
    Ok(())
}

/// Resolves names to public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address; tenants' providers may not use \
                     internal ones"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client of a tenant's provider: no redirects, and (unless internal targets are
/// allowed) no proxy and public addresses only.
fn tenant_client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    let mut builder = super::http_client().redirect(reqwest::redirect::Policy::none());
    if !allow_private {
        builder = builder.no_proxy().dns_resolver(Arc::new(PublicOnly));
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_targets_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1:11434/v1",
            "http://localhost:11434/v1",
            "http://169.254.169.254/latest",
            "http://[::1]/v1",
            "http://10.0.0.5/v1",
        ] {
            assert!(check_target(bad, false).is_err(), "{bad}");
            assert!(check_target(bad, true).is_ok(), "{bad}");
        }
        assert!(check_target("https://api.openai.com/v1", false).is_ok());
        assert!(check_target("ftp://example.com", true).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_refused() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(PublicOnly.resolve(name).await.is_err());
    }
}
