//! [`InProcessLimiter`]: `RATE_LIMIT_PER_MINUTE` per user inside one process, with
//! `governor` (GCRA, the same algorithm as the Redis limiter).
//!
//! It is the limiter of a single bot process (no `REDIS_URL`). Each process counts on
//! its own, so several processes behind one bot would each allow the full budget: use
//! `RedisLimiter` there. The quota is `n` per minute with bursts of `n`; a limited
//! update gets `retry_after` = the time until the next one conforms (`60 s / n` after a
//! burst). The state of users not seen for a minute is dropped every
//! [`PRUNE_EVERY`] checks, so memory follows active users, not all users ever seen.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Governor};
use rei_core::ids::UserId;
use rei_core::ports::{LimiterError, RateDecision, RateLimiter};

/// Checks between two clean-ups of idle users' state.
pub const PRUNE_EVERY: u64 = 4096;

type Keyed<C> =
    Governor<UserId, DashMapStateStore<UserId>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Per-user rate limiting in this process; see the [module docs](self).
pub struct InProcessLimiter<C = MonotonicClock>
where
    C: Clock,
{
    limiter: Keyed<C>,
    clock: C,
    checks: AtomicU64,
}

impl<C> std::fmt::Debug for InProcessLimiter<C>
where
    C: Clock,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessLimiter")
            .field("users", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl InProcessLimiter {
    /// `per_minute` updates per user per minute, bursts of up to `per_minute`.
    #[must_use]
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        Self::with_clock(per_minute, MonotonicClock)
    }

    /// `max` updates per user per `period`, bursts of up to `max` (the Redis limiter's
    /// fallback, with the Redis limiter's own quota).
    #[must_use]
    pub fn with_period(max: NonZeroU32, period: Duration) -> Self {
        let quota = Quota::with_period(period / max.get())
            .unwrap_or_else(|| Quota::per_minute(max))
            .allow_burst(max);
        Self::with_quota(quota, MonotonicClock)
    }
}

impl<C> InProcessLimiter<C>
where
    C: Clock + Clone,
{
    /// The same limits, timed by `clock` (tests pass `governor::clock::FakeRelativeClock`).
    #[must_use]
    pub fn with_clock(per_minute: NonZeroU32, clock: C) -> Self {
        Self::with_quota(Quota::per_minute(per_minute).allow_burst(per_minute), clock)
    }

    fn with_quota(quota: Quota, clock: C) -> Self {
        Self {
            limiter: Governor::dashmap_with_clock(quota, clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one update of `user` now.
    pub fn decide(&self, user: UserId) -> RateDecision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&user) {
            Ok(()) => RateDecision::Allowed,
            Err(not_until) => RateDecision::Limited {
                // Never zero: "limited, retry now" would be a contradiction.
                retry_after: not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_millis(1)),
            },
        }
    }
}

#[async_trait]
impl<C> RateLimiter for InProcessLimiter<C>
where
    C: Clock + Clone + Send + Sync,
    C::Instant: Send + Sync,
{
    /// Never fails: there is no backend to lose.
    async fn check(&self, user: UserId) -> Result<RateDecision, LimiterError> {
        Ok(self.decide(user))
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn user(id: i64) -> UserId {
        UserId::new(id).unwrap()
    }

    fn limiter(n: u32) -> (InProcessLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let l = InProcessLimiter::with_clock(NonZeroU32::new(n).unwrap(), clock.clone());
        (l, clock)
    }

    #[test]
    fn n_updates_pass_then_the_next_waits_a_minute_over_n() {
        let (l, _) = limiter(3);
        for _ in 0..3 {
            assert_eq!(l.decide(user(1)), RateDecision::Allowed);
        }
        assert_eq!(
            l.decide(user(1)),
            RateDecision::Limited {
                retry_after: Duration::from_secs(20)
            }
        );
    }

    #[test]
    fn after_retry_after_one_more_update_passes() {
        let (l, clock) = limiter(2);
        l.decide(user(1));
        l.decide(user(1));
        let RateDecision::Limited { retry_after } = l.decide(user(1)) else {
            panic!("the third update within a minute is limited");
        };
        clock.advance(retry_after - Duration::from_millis(1));
        assert!(matches!(l.decide(user(1)), RateDecision::Limited { .. }));
        clock.advance(Duration::from_millis(1));
        assert_eq!(l.decide(user(1)), RateDecision::Allowed);
        assert!(matches!(l.decide(user(1)), RateDecision::Limited { .. }));
    }

    #[test]
    fn users_have_separate_budgets() {
        let (l, _) = limiter(1);
        assert_eq!(l.decide(user(1)), RateDecision::Allowed);
        assert!(matches!(l.decide(user(1)), RateDecision::Limited { .. }));
        assert_eq!(l.decide(user(2)), RateDecision::Allowed);
    }

    #[test]
    fn idle_users_are_forgotten() {
        let (l, clock) = limiter(5);
        l.decide(user(1));
        clock.advance(Duration::from_secs(61));
        for _ in 0..PRUNE_EVERY {
            l.decide(user(2));
            clock.advance(Duration::from_secs(12));
        }
        assert_eq!(l.limiter.len(), 1, "only the active user is kept");
    }

    #[tokio::test]
    async fn the_port_never_fails() {
        let l = InProcessLimiter::per_minute(NonZeroU32::new(1).unwrap());
        assert_eq!(l.check(user(7)).await.unwrap(), RateDecision::Allowed);
        let Ok(RateDecision::Limited { retry_after }) = l.check(user(7)).await else {
            panic!("the second update is limited");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60));
    }
}
