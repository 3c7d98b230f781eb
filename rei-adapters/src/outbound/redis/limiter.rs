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
//! When Redis cannot be reached the limiter **falls back to an in-process limiter** with
//! the same quota: each process then counts on its own (a user may get the budget once
//! per process) until Redis answers again — neither refusing everyone nor letting floods
//! through. While Redis is known to be down it is not asked, probing again at most once
//! per second. Every fallback is counted (`rate_limiter_fallbacks_total`), and a warning
//! is logged at most once a minute (strangers can cause it: the log must not flood).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rei_core::ids::UserId;
use rei_core::ports::{LimiterError, RateDecision, RateLimiter};

use super::{Fault, Health, Link, RedisError};
use crate::outbound::limiter::InProcessLimiter;

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
/// At most one warning about the fallback per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Per-user rate limiting in Redis; see the [module docs](self).
pub struct RedisLimiter {
    link: Link,
    health: Health,
    prefix: String,
    interval_us: u64,
    burst: u32,
    script: ::redis::Script,
    url: String,
    fallback: InProcessLimiter,
    warned_at: Mutex<Option<Instant>>,
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
            fallback: InProcessLimiter::with_period(max, period),
            warned_at: Mutex::new(None),
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
    /// Never fails: without Redis the in-process fallback decides.
    async fn check(&self, user: UserId) -> Result<RateDecision, LimiterError> {
        if !self.health.may_try() {
            // Redis failed a moment ago: not asked again until the back-off passes.
            return Ok(self.fall_back(user, "down", None));
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
                let fault = RedisError::from(Fault::Redis(e));
                Ok(self.fall_back(user, "error", Some(&fault)))
            }
        }
    }
}

impl RedisLimiter {
    /// The in-process limiter's decision while Redis cannot answer: counted, and told
    /// at most once a minute.
    fn fall_back(
        &self,
        user: UserId,
        reason: &'static str,
        fault: Option<&RedisError>,
    ) -> RateDecision {
        metrics::counter!("rate_limiter_fallbacks_total", "reason" => reason).increment(1);
        let now = Instant::now();
        let mut warned_at = self
            .warned_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if warned_at.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *warned_at = Some(now);
            match fault {
                Some(e) => {
                    tracing::warn!(url = %self.url, error = %e, "Redis cannot answer the rate limiter: each process limits on its own until it does")
                }
                None => {
                    tracing::warn!(url = %self.url, "Redis is down: each process limits on its own until it answers")
                }
            }
        }
        self.fallback.decide(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [edge] With Redis unreachable the limiter still limits — each process on its own,
    /// with the same quota — instead of letting every update through.
    #[tokio::test]
    async fn without_redis_each_process_still_limits() {
        let two = NonZeroU32::new(2).unwrap();
        let limiter =
            RedisLimiter::with_period("redis://127.0.0.1:1/", "t:", two, Duration::from_secs(60))
                .unwrap();
        let anna = UserId::new(42).unwrap();
        for _ in 0..2 {
            assert_eq!(limiter.check(anna).await.unwrap(), RateDecision::Allowed);
        }
        let third = limiter.check(anna).await.unwrap();
        assert!(
            matches!(third, RateDecision::Limited { retry_after } if retry_after > Duration::from_secs(20)),
            "{third:?}"
        );
        let other = UserId::new(7).unwrap();
        assert_eq!(limiter.check(other).await.unwrap(), RateDecision::Allowed);
    }
}
