//! Shared fast state: cache entries and rate-limit budgets.
//!
//! With `REDIS_URL` set every instance talks to one Redis through fred, so a budget or a cached
//! value is the same whichever instance serves a request. Without it an in-process store stands
//! in behind the same trait, which is right for a single binary on a laptop.
//!
//! Keys are namespaced `{namespace}:{scope}:{area}:{rest}`: the namespace separates
//! environments (and test runs) sharing one Redis, the scope is `t.{tenant id}` or `platform`,
//! so no tenant's entry can be addressed through another tenant's key.

mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

pub use memory::MemoryStore;
pub use redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("encoding a cached value: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// A GCRA budget: `limit` requests per `period`, all of which may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
}

impl Rate {
    pub fn per_minute(limit: u32) -> Rate {
        Rate {
            limit: limit.max(1),
            period: Duration::from_secs(60),
        }
    }

    /// At least 1 µs, so huge limits stay well-defined.
    fn interval_micros(&self) -> u64 {
        ((self.period.as_micros() as u64) / u64::from(self.limit.max(1))).max(1)
    }
}

/// The outcome of spending one unit of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Wait before a refused request may succeed (zero when allowed).
    pub retry_after: Duration,
    /// Time until the budget is whole again.
    pub reset_after: Duration,
}

/// The generic cell rate algorithm, shared by both stores so they decide identically.
/// `tat` is the stored theoretical arrival time; all values in microseconds.
pub(crate) fn gcra(rate: Rate, now: u64, tat: Option<u64>) -> (Decision, Option<u64>) {
    let interval = rate.interval_micros();
    let period = interval * u64::from(rate.limit);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(period);
    if now < allow_at {
        let decision = Decision {
            allowed: false,
            limit: rate.limit,
            remaining: 0,
            retry_after: Duration::from_micros(allow_at - now),
            reset_after: Duration::from_micros(tat - now),
        };
        return (decision, None);
    }
    let remaining = ((now - allow_at) / interval.max(1)).min(u64::from(rate.limit)) as u32;
    let decision = Decision {
        allowed: true,
        limit: rate.limit,
        remaining,
        retry_after: Duration::ZERO,
        reset_after: Duration::from_micros(new_tat - now),
    };
    (decision, Some(new_tat))
}

/// What a store must do; keys arrive fully namespaced.
#[async_trait::async_trait]
pub trait KvStore: Send + Sync {
    fn backend(&self) -> &'static str;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), KvError>;
    /// Sets `key` only when it holds nothing; returns whether it did (atomic across instances).
    async fn set_nx(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, KvError>;
    async fn delete(&self, key: &str) -> Result<(), KvError>;
    /// Spends one unit of the budget at `key`, atomically for every instance sharing the store.
    async fn spend(&self, key: &str, rate: Rate) -> Result<Decision, KvError>;
    async fn ping(&self) -> Result<(), KvError>;
    /// Records backend gauges (connections) for `/metrics`.
    fn record_metrics(&self) {}
}

/// Whose entry a key addresses.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Platform,
    Tenant(Uuid),
}

/// The handle the application holds: a store plus the namespace every key gets.
#[derive(Clone)]
pub struct Kv {
    store: Arc<dyn KvStore>,
    namespace: Arc<str>,
}

impl Kv {
    pub fn new(store: Arc<dyn KvStore>, namespace: &str) -> Kv {
        Kv {
            store,
            namespace: namespace.into(),
        }
    }

    /// Redis when `REDIS_URL` is set (its pool is returned too, for the session store),
    /// otherwise the in-process store.
    pub async fn from_config(
        config: &crate::config::Config,
    ) -> Result<(Kv, Option<fred::clients::Pool>), KvError> {
        Ok(match config.redis_url() {
            Some(url) => {
                let store = RedisStore::connect(url).await?;
                let pool = store.pool().clone();
                (Kv::new(Arc::new(store), &config.kv_namespace), Some(pool))
            }
            None => (
                Kv::new(Arc::new(MemoryStore::new()), &config.kv_namespace),
                None,
            ),
        })
    }

    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    pub fn key(&self, scope: Scope, area: &str, rest: &str) -> String {
        match scope {
            Scope::Platform => format!("{}:platform:{area}:{rest}", self.namespace),
            Scope::Tenant(id) => format!("{}:t.{id}:{area}:{rest}", self.namespace),
        }
    }

    /// A cached value, MessagePack-encoded. An entry that no longer decodes (its type changed
    /// between releases) counts as a miss.
    pub async fn get<T: DeserializeOwned>(
        &self,
        scope: Scope,
        area: &str,
        rest: &str,
    ) -> Result<Option<T>, KvError> {
        let key = self.key(scope, area, rest);
        let Some(bytes) = self.store.get(&key).await? else {
            return Ok(None);
        };
        Ok(rmp_serde::from_slice(&bytes).ok())
    }

    pub async fn set<T: Serialize>(
        &self,
        scope: Scope,
        area: &str,
        rest: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), KvError> {
        let bytes = rmp_serde::to_vec_named(value)?;
        self.store
            .set(&self.key(scope, area, rest), bytes, ttl)
            .await
    }

    /// Stores `value` unless the entry holds something already; returns whether it did.
    pub async fn set_nx<T: Serialize>(
        &self,
        scope: Scope,
        area: &str,
        rest: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<bool, KvError> {
        let bytes = rmp_serde::to_vec_named(value)?;
        self.store
            .set_nx(&self.key(scope, area, rest), bytes, ttl)
            .await
    }

    pub async fn delete(&self, scope: Scope, area: &str, rest: &str) -> Result<(), KvError> {
        self.store.delete(&self.key(scope, area, rest)).await
    }

    pub async fn spend(&self, scope: Scope, bucket: &str, rate: Rate) -> Result<Decision, KvError> {
        self.store
            .spend(&self.key(scope, "ratelimit", bucket), rate)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_huge_budget_never_refuses_concurrent_spenders() {
        let store = Arc::new(MemoryStore::new());
        let rate = Rate::per_minute(u32::MAX);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut refused = 0;
                    for _ in 0..5000 {
                        if !store.spend("k", rate).await.unwrap().allowed {
                            refused += 1;
                        }
                    }
                    refused
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 0);
        }
    }

    #[test]
    fn gcra_allows_the_burst_then_refills_one_per_interval() {
        let rate = Rate::per_minute(3); // one every 20 s
        let mut tat = None;
        let mut now = 1_000_000_000;
        for expected_remaining in [2, 1, 0] {
            let (d, t) = gcra(rate, now, tat);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = t;
        }
        let (d, t) = gcra(rate, now, tat);
        assert!(!d.allowed);
        assert_eq!(t, None);
        assert_eq!(d.retry_after, Duration::from_secs(20));
        assert_eq!(d.reset_after, Duration::from_secs(60));
        now += 20_000_000;
        let (d, t) = gcra(rate, now, tat);
        assert!(d.allowed, "one unit refilled after one interval");
        assert_eq!(d.remaining, 0);
        tat = t;
        now += 60_000_000;
        let (d, _) = gcra(rate, now, tat);
        assert_eq!(d.remaining, 2, "whole again after the period");
    }
}
