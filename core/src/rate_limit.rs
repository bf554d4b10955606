//! Per-user rate limits, shared by every API replica (issue #10, item 8).
//!
//! Each limit is a GCRA (generic cell rate algorithm, the "virtual scheduling" form of a
//! token bucket) kept in Redis: one key per (limit, user) holds the *theoretical arrival
//! time* (TAT) of the next request. One Lua script reads the key, decides and writes it back
//! in one round trip, atomically, with Redis's own clock, so every replica sees one bucket
//! and API hosts' clocks do not matter. The key's hash tag is the user id, so the script
//! touches one slot and runs unchanged on a Redis Cluster.
//!
//! With a rate of `r` per minute and a burst of `b`, requests are spaced by the emission
//! interval `T = 60 s / r`; a request is allowed while `now >= TAT - (b - 1) T`, and each
//! allowed request moves the TAT on by `T`. From rest a user gets `b` requests back to back,
//! then one every `T`. The settings come from the site config (`*_per_minute`, `*_burst`;
//! `0` per minute turns a limit off), read through a [`SiteConfigCache`].
//!
//! **The limiter fails open.** When Redis does not answer within the configured timeout, or
//! the settings cannot be read, the request goes through: a Redis outage must not take the
//! API down with it (chat creation even works without Redis, see ARCHITECTURE.md §7). Each such
//! pass is logged and counted in `agentq_rate_limit_errors_total`.
//!
//! ```no_run
//! # async fn example(limiter: agentq_core::rate_limit::RateLimiter, user: uuid::Uuid) {
//! use agentq_core::rate_limit::Limit;
//! match limiter.check(Limit::Messages, user).await {
//!     Ok(()) => { /* do the work */ }
//!     Err(limited) => println!("429, retry in {} s", limited.retry_after_secs()),
//! }
//! # }
//! ```

use std::{sync::Arc, sync::LazyLock, time::Duration};

use crate::redis_conn::RedisConn;
use uuid::Uuid;

use crate::{
    queue::rate_limit_key,
    store::{SiteConfig, SiteConfigCache},
};

/// The GCRA step: `KEYS[1]` the (limit, user) key; `ARGV[1]` the emission interval in
/// microseconds; `ARGV[2]` the burst. Returns `{1, 0}` when the request is allowed and
/// `{0, wait_us}` when it is not (nothing is written then, so refused requests cost the
/// user nothing). Times are microseconds from Redis's `TIME`; Redis turns Lua numbers into
/// `%.17g` strings, exact for integers far beyond these.
const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000))
return {1, 0}
"#;

/// Loaded once per process; `invoke_async` sends `EVALSHA` and falls back to `EVAL` (which
/// caches the script) when a Redis restart forgot it.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_SCRIPT));

/// The things a user can do that are rate limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `POST /api/v1/chats`.
    Chats,
    /// `POST /api/v1/chats/{id}/messages`.
    Messages,
    /// `GET /api/v1/chats/{id}/stream`.
    StreamConnects,
}

impl Limit {
    /// The site-config field that sets the limit; clients see it in a 429's `limit`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Chats => "chats_per_minute",
            Limit::Messages => "messages_per_minute",
            Limit::StreamConnects => "stream_connects_per_minute",
        }
    }

    /// What is counted, for messages to people.
    pub fn counts(self) -> &'static str {
        match self {
            Limit::Chats => "new chats",
            Limit::Messages => "messages",
            Limit::StreamConnects => "event stream connections",
        }
    }

    /// The rate the site config sets for this limit.
    pub fn rate(self, config: &SiteConfig) -> Rate {
        let (per_minute, burst) = match self {
            Limit::Chats => (config.chats_per_minute, config.chats_burst),
            Limit::Messages => (config.messages_per_minute, config.messages_burst),
            Limit::StreamConnects => (
                config.stream_connects_per_minute,
                config.stream_connects_burst,
            ),
        };
        Rate {
            per_minute: per_minute.max(0) as u32,
            burst: burst.max(1) as u32,
        }
    }

    fn key_part(self) -> &'static str {
        match self {
            Limit::Chats => "chats",
            Limit::Messages => "messages",
            Limit::StreamConnects => "stream_connects",
        }
    }
}

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per minute, sustained; 0 = unlimited.
    pub per_minute: u32,
    /// Requests allowed back to back from rest; capped at `per_minute`, so a burst never
    /// exceeds a minute's allowance.
    pub burst: u32,
}

impl Rate {
    fn emission_interval_us(self) -> u64 {
        60_000_000 / u64::from(self.per_minute.max(1))
    }

    fn effective_burst(self) -> u32 {
        self.burst.clamp(1, self.per_minute.max(1))
    }
}

/// A request over a limit.
#[derive(Debug, Clone)]
pub struct RateLimited {
    /// Which limit.
    pub limit: Limit,
    /// Its sustained rate.
    pub per_minute: u32,
    /// When the next request would be allowed.
    pub retry_after: Duration,
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rate limit exceeded: at most {} {} a minute (`{}`); retry in {} s",
            self.per_minute,
            self.limit.counts(),
            self.limit.name(),
            self.retry_after_secs()
        )
    }
}

impl std::error::Error for RateLimited {}

impl RateLimited {
    /// Whole seconds to wait, at least 1 (the `Retry-After` header's unit).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_micros().div_ceil(1_000_000).max(1) as u64
    }
}

/// Checks the per-user limits; cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    conn: RedisConn,
    prefix: Arc<str>,
    settings: SiteConfigCache,
    timeout: Duration,
}

impl RateLimiter {
    /// A limiter over the shared Redis connection, reading its settings from `settings` and
    /// letting requests through when a check takes longer than `timeout`.
    pub fn new(
        conn: RedisConn,
        prefix: &str,
        settings: SiteConfigCache,
        timeout: Duration,
    ) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            settings,
            timeout,
        }
    }

    /// The settings this limiter reads (the API refreshes them after a change).
    pub fn settings(&self) -> &SiteConfigCache {
        &self.settings
    }

    /// Counts one `limit` request of `user`: `Err` when it is over the limit. Fails open
    /// (see the module page).
    pub async fn check(&self, limit: Limit, user: Uuid) -> Result<(), RateLimited> {
        let checked = tokio::time::timeout(self.timeout, async {
            let config = self.settings.get().await.map_err(|e| e.to_string())?;
            let rate = limit.rate(&config);
            if rate.per_minute == 0 {
                return Ok(None);
            }
            self.acquire(limit, user, rate)
                .await
                .map(|wait| wait.map(|retry_after| (rate, retry_after)))
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
        match checked {
            Ok(None) => Ok(()),
            Ok(Some((rate, retry_after))) => {
                metrics::counter!("agentq_rate_limited_total", "limit" => limit.name())
                    .increment(1);
                Err(RateLimited {
                    limit,
                    per_minute: rate.per_minute,
                    retry_after,
                })
            }
            Err(error) => {
                metrics::counter!("agentq_rate_limit_errors_total", "limit" => limit.name())
                    .increment(1);
                tracing::warn!(limit = limit.name(), %error, "rate limit not checked; letting the request through");
                Ok(())
            }
        }
    }

    /// One GCRA step for `user` at `rate`: `None` when allowed, else how long to wait.
    pub async fn acquire(
        &self,
        limit: Limit,
        user: Uuid,
        rate: Rate,
    ) -> redis::RedisResult<Option<Duration>> {
        let key = rate_limit_key(&self.prefix, user, limit.key_part());
        let mut conn = self.conn.clone();
        let (allowed, wait_us): (i64, i64) = GCRA
            .key(key)
            .arg(rate.emission_interval_us())
            .arg(rate.effective_burst())
            .invoke_async(&mut conn)
            .await?;
        Ok((allowed == 0).then(|| Duration::from_micros(wait_us.max(0) as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_never_exceeds_a_minutes_allowance() {
        let rate = Rate {
            per_minute: 3,
            burst: 30,
        };
        assert_eq!(rate.effective_burst(), 3);
        assert_eq!(rate.emission_interval_us(), 20_000_000);
        let rate = Rate {
            per_minute: 600,
            burst: 10,
        };
        assert_eq!(rate.effective_burst(), 10);
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let limited = |micros| RateLimited {
            limit: Limit::Messages,
            per_minute: 3,
            retry_after: Duration::from_micros(micros),
        };
        assert_eq!(limited(1).retry_after_secs(), 1);
        assert_eq!(limited(0).retry_after_secs(), 1);
        assert_eq!(limited(19_000_001).retry_after_secs(), 20);
        assert_eq!(limited(20_000_000).retry_after_secs(), 20);
        assert_eq!(
            limited(20_000_000).to_string(),
            "rate limit exceeded: at most 3 messages a minute (`messages_per_minute`); retry in 20 s"
        );
    }
}
