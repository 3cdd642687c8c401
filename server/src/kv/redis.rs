//! Redis through fred: a small pool with reconnects and command timeouts. Budgets are spent by
//! one Lua script (GCRA, using Redis's own clock), so any number of instances share them
//! exactly.

use std::time::Duration;

use fred::prelude::*;
use fred::types::scripts::Script;

use super::{Decision, KvError, KvStore, Rate};

const POOL_SIZE: usize = 4;

/// The same arithmetic as `super::gcra`, run inside Redis so read-modify-write is atomic.
/// Returns {allowed, remaining, retry_after_us, reset_after_us}.
const GCRA_LUA: &str = r#"
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = interval * limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
local remaining = math.floor((now - allow_at) / interval)
if remaining > limit then remaining = limit end
return {1, remaining, 0, new_tat - now}
"#;

pub struct RedisStore {
    pool: Pool,
    gcra: Script,
}

impl RedisStore {
    pub async fn connect(url: &str) -> Result<RedisStore, KvError> {
        let config = Config::from_url(url)?;
        let pool = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(3);
                c.internal_command_timeout = Duration::from_secs(3);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(2);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build_pool(POOL_SIZE)?;
        pool.init().await?;
        Ok(RedisStore {
            pool,
            gcra: Script::from_lua(GCRA_LUA),
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl KvStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.pool.get::<Option<Vec<u8>>, _>(key).await?)
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), KvError> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let _: () = self
            .pool
            .set(key, value, Some(Expiration::PX(ms)), None, false)
            .await?;
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<bool, KvError> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let set: Option<String> = self
            .pool
            .set(
                key,
                value,
                Some(Expiration::PX(ms)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let _: i64 = self.pool.del(key).await?;
        Ok(())
    }

    async fn spend(&self, key: &str, rate: Rate) -> Result<Decision, KvError> {
        let args = vec![rate.interval_micros() as i64, i64::from(rate.limit)];
        let reply: Vec<i64> = self
            .gcra
            .evalsha_with_reload(self.pool.next(), vec![key], args)
            .await?;
        let at = |i: usize| u64::try_from(reply.get(i).copied().unwrap_or(0)).unwrap_or(0);
        Ok(Decision {
            allowed: at(0) == 1,
            limit: rate.limit,
            remaining: u32::try_from(at(1)).unwrap_or(u32::MAX),
            retry_after: Duration::from_micros(at(2)),
            reset_after: Duration::from_micros(at(3)),
        })
    }

    async fn ping(&self) -> Result<(), KvError> {
        let _: String = self.pool.ping(None).await?;
        Ok(())
    }

    fn record_metrics(&self) {
        let connected = self
            .pool
            .clients()
            .iter()
            .filter(|c| c.is_connected())
            .count();
        metrics::gauge!("redis_pool_connections", "state" => "configured").set(POOL_SIZE as f64);
        metrics::gauge!("redis_pool_connections", "state" => "connected").set(connected as f64);
    }
}
