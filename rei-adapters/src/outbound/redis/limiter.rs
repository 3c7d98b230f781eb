//! [`RedisLimiter`]: `RATE_LIMIT_PER_MINUTE` per user, one budget shared by every process.
//!
//! ## Algorithm
//!
//! GCRA (the generic cell rate algorithm, as in `governor`): each user has a "theoretical
//! arrival time" `tat`; with `n` updates per `period` the emission interval is
//! `T = period / n` and up to `n` updates may come at once. An update at `now` is
//! allowed when `max(tat, now) + T - n·T <= now`, and then `tat` becomes
//! `max(tat, now) + T`; otherwise it is limited until that instant. One key per user
//! (`{prefix}rl:{user}`) holds `tat` in microseconds, expiring when it no longer matters
//! (at `tat`), so idle users cost nothing.
//!
//! The check is one Lua script (`EVALSHA`, loaded on first use and again after a Redis
//! restart), so it is atomic across processes, and it reads the clock with Redis
//! `TIME`: every process agrees on "now", and restarting our processes loses nothing.
//!
//! ## Failures
//!
//! When Redis cannot be reached [`RateLimiter::check`] returns `LimiterError`; while it is
//! known to be down it fails at once, probing again at most once per second. The limiter
//! does not log: the caller decides, and the bot **fails open** — it handles the update
//! and logs a warning (once per outage) — because refusing every user while Redis is down
//! would be worse than letting a few extra updates through.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use rei_core::ids::UserId;
use rei_core::ports::{LimiterError, RateDecision, RateLimiter};

use super::{Fault, Health, Link, RedisError};

/// GCRA step. KEYS: the user's key. ARGV: emission interval (µs), burst (updates).
/// Returns `{allowed (1|0), retry after (µs)}`.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = math.max(tonumber(stored), now)
end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
";

/// How long one connection attempt or one check may take.
const TIMEOUT: Duration = Duration::from_secs(1);
/// While Redis is down, how often a check tries it again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Per-user rate limiting in Redis; see the [module docs](self).
pub struct RedisLimiter {
    link: Link,
    health: Health,
    prefix: String,
    interval_us: u64,
    burst: u32,
    script: ::redis::Script,
    url: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("interval_us", &self.interval_us)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// `per_minute` updates per user per minute (bursts of up to `per_minute`), keys
    /// `{key_prefix}rl:{user}`. Connects on the first check.
    ///
    /// # Errors
    /// [`RedisError::BadUrl`] when `url` is not a Redis URL.
    pub fn new(url: &str, key_prefix: &str, per_minute: NonZeroU32) -> Result<Self, RedisError> {
        Self::with_period(url, key_prefix, per_minute, Duration::from_secs(60))
    }

    /// `max` updates per user per `period` (bursts of up to `max`).
    ///
    /// # Errors
    /// [`RedisError::BadUrl`] when `url` is not a Redis URL.
    pub fn with_period(
        url: &str,
        key_prefix: &str,
        max: NonZeroU32,
        period: Duration,
    ) -> Result<Self, RedisError> {
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        Ok(Self {
            link: Link::new(url, TIMEOUT, TIMEOUT)?,
            health: Health::new(PROBE_EVERY),
            prefix: key_prefix.to_owned(),
            interval_us: (period_us / u64::from(max.get())).max(1),
            burst: max.get(),
            script: ::redis::Script::new(GCRA),
            url: crate::outbound::sql::redact(url),
        })
    }

    /// The key of `user`'s state.
    #[must_use]
    pub fn key(&self, user: UserId) -> String {
        format!("{}rl:{user}", self.prefix)
    }

    async fn run(&self, user: UserId) -> Result<(i64, i64), ::redis::RedisError> {
        let mut conn = self.link.get().await?;
        self.script
            .key(self.key(user))
            .arg(self.interval_us)
            .arg(self.burst)
            .invoke_async(&mut conn)
            .await
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, user: UserId) -> Result<RateDecision, LimiterError> {
        if !self.health.may_try() {
            // Redis failed a moment ago: not asked again until the back-off passes.
            metrics::counter!("rate_limiter_errors_total", "reason" => "down").increment(1);
            return Err(RedisError::Down.into());
        }
        match self.run(user).await {
            Ok((1, _)) => {
                self.health.succeeded();
                Ok(RateDecision::Allowed)
            }
            Ok((_, wait_us)) => {
                self.health.succeeded();
                let wait_us = u64::try_from(wait_us).unwrap_or(0).max(1);
                Ok(RateDecision::Limited {
                    retry_after: Duration::from_micros(wait_us),
                })
            }
            Err(e) => {
                self.health.failed();
                // The engine lets the update through (fails open): say so, and count it.
                metrics::counter!("rate_limiter_errors_total", "reason" => "error").increment(1);
                tracing::warn!(user_id = %user, error = %e, "the rate limiter failed: the update is let through");
                Err(RedisError::from(Fault::Redis(e)).into())
            }
        }
    }
}
