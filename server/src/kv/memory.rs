//! The in-process store: a size-bounded moka cache with per-entry expiry for values, and a
//! mutex-guarded map of GCRA arrival times for budgets (exact under any concurrency).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::{gcra, Decision, KvError, KvStore, Rate};

/// Cached bytes kept at most, by encoded size.
const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;
/// Budgets are swept of refilled entries once this many are held.
const SWEEP_AT: usize = 10_000;

#[derive(Clone)]
struct Entry {
    bytes: std::sync::Arc<Vec<u8>>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

pub struct MemoryStore {
    values: Cache<String, Entry>,
    budgets: Mutex<HashMap<String, u64>>,
    epoch: Instant,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore {
            values: Cache::builder()
                .weigher(|k: &String, v: &Entry| {
                    u32::try_from(k.len() + v.bytes.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(CAPACITY_BYTES)
                .expire_after(PerEntryTtl)
                .build(),
            budgets: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    fn now_micros(&self) -> u64 {
        // Offset so that "no earlier arrival" is never confused with the epoch itself.
        self.epoch.elapsed().as_micros() as u64 + 3_600_000_000
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

#[async_trait::async_trait]
impl KvStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.values.get(key).await.map(|e| e.bytes.as_ref().clone()))
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), KvError> {
        let entry = Entry {
            bytes: std::sync::Arc::new(value),
            ttl,
        };
        self.values.insert(key.to_string(), entry).await;
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, KvError> {
        let entry = Entry {
            bytes: std::sync::Arc::new(value),
            ttl,
        };
        Ok(self
            .values
            .entry(key.to_string())
            .or_insert(entry)
            .await
            .is_fresh())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.values.invalidate(key).await;
        Ok(())
    }

    async fn spend(&self, key: &str, rate: Rate) -> Result<Decision, KvError> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        // Read the clock under the lock: a later arrival must never see an earlier "now".
        let now = self.now_micros();
        let (decision, new_tat) = gcra(rate, now, budgets.get(key).copied());
        if let Some(tat) = new_tat {
            budgets.insert(key.to_string(), tat);
            if budgets.len() >= SWEEP_AT {
                budgets.retain(|_, tat| *tat > now);
            }
        }
        Ok(decision)
    }

    async fn ping(&self) -> Result<(), KvError> {
        Ok(())
    }
}
