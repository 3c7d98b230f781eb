//! Redis: the job queue over Redis Streams ([`RedisQueue`]) and the per-user rate limiter
//! shared by every process ([`RedisLimiter`]).
//!
//! ## Design
//!
//! - **Redis is a helper, never the source of truth.** A job row in the database is the
//!   queue entry; a claim always leases the row through `JobStore::claim_job` in one
//!   database transaction. A stream entry is only a hint ("look at job X"), so a
//!   duplicate, stale or lost entry can delay a job but never run it twice or lose it.
//! - **Outages degrade, they do not stop work.** When Redis cannot be reached the queue
//!   claims from the database ([`StoreQueue`](rei_core::job::StoreQueue)) and logs the
//!   outage once; a periodic [`RedisQueue::sweep`] (and one right after Redis is back)
//!   re-adds every job the stream is missing. The limiter falls back to an in-process
//!   limiter with the same quota (counted, warned about at most once a minute).
//! - **Connections are lazy.** Construction never fails because Redis is unreachable
//!   (only for a bad URL): a Redis that is down at start-up is the same as one that goes
//!   down later. One `redis::aio::ConnectionManager` per role reconnects by itself;
//!   while Redis is known to be down, calls skip it for `probe_every` instead of waiting
//!   for a connect timeout on every call.
//! - **Keys carry a per-instance prefix** (`{prefix}jobs`, `{prefix}delayed`,
//!   `{prefix}rl:{user}`) so several deployments, and every test, share one server. For
//!   Redis Cluster put a hash tag in the prefix (`{rei}:`): the queue's scripts touch two
//!   keys.
//! - Passwords in URLs are never logged: logs and `Debug` show
//!   [`redact`](crate::outbound::sql::redact)ed URLs.

pub mod limiter;
pub mod queue;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use rei_core::ports::{BoxError, LimiterError, QueueError, StoreError};

pub use limiter::RedisLimiter;
pub use queue::{RedisQueue, RedisQueueConfig, listen_for_wakes};

/// What the Redis adapters fail with.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL is not a Redis URL (the message shows it with the password redacted).
    #[error("invalid Redis URL {url}")]
    BadUrl {
        /// The URL, password redacted.
        url: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Redis could not be reached, timed out or refused a command.
    #[error("redis unavailable")]
    Unavailable(#[source] BoxError),
    /// Not tried: Redis was found unreachable moments ago and the next probe is not due.
    #[error("redis is down (waiting before the next attempt)")]
    Down,
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RedisError> for QueueError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Store(s) => Self::Store(s),
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

impl From<RedisError> for LimiterError {
    fn from(e: RedisError) -> Self {
        Self(Box::new(e))
    }
}

/// A failure inside this module: kept concrete so callers can look at Redis error codes
/// (`NOGROUP`), turned into [`RedisError`] at the public boundary.
#[derive(Debug)]
enum Fault {
    Redis(::redis::RedisError),
    Store(StoreError),
}

impl From<::redis::RedisError> for Fault {
    fn from(e: ::redis::RedisError) -> Self {
        Self::Redis(e)
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<QueueError> for Fault {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Store(s) => Self::Store(s),
            QueueError::Unavailable(b) => Self::Store(StoreError::Unavailable(b)),
        }
    }
}

impl From<Fault> for RedisError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Redis(e) => Self::Unavailable(Box::new(e)),
            Fault::Store(e) => Self::Store(e),
        }
    }
}

/// One lazily opened, self-reconnecting connection to Redis.
struct Link {
    client: ::redis::Client,
    config: ConnectionManagerConfig,
    manager: tokio::sync::Mutex<Option<ConnectionManager>>,
}

impl Link {
    /// Parses `url`; connects on first use. `connect_timeout` bounds one connection
    /// attempt, `response_timeout` one command (it must exceed any `BLOCK` time).
    fn new(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let client = ::redis::Client::open(url).map_err(|e| RedisError::BadUrl {
            url: crate::outbound::sql::redact(url),
            source: Box::new(e),
        })?;
        // One attempt per (re)connection: the queue's own probing decides when to try
        // again, so a call never waits through a long reconnect backoff.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(connect_timeout)
            .set_response_timeout(response_timeout);
        Ok(Self {
            client,
            config,
            manager: tokio::sync::Mutex::new(None),
        })
    }

    /// The connection, opened on first use.
    async fn get(&self) -> Result<ConnectionManager, ::redis::RedisError> {
        let mut slot = self.manager.lock().await;
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let m =
            ConnectionManager::new_with_config(self.client.clone(), self.config.clone()).await?;
        *slot = Some(m.clone());
        Ok(m)
    }
}

/// Whether Redis is believed up, and when to probe it again while it is down.
struct Health {
    probe_every: Duration,
    state: Mutex<HealthState>,
}

#[derive(Clone, Copy)]
struct HealthState {
    down: bool,
    next_probe: Option<Instant>,
}

impl Health {
    fn new(probe_every: Duration) -> Self {
        Self {
            probe_every,
            state: Mutex::new(HealthState {
                down: false,
                next_probe: None,
            }),
        }
    }

    fn read(&self) -> HealthState {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when a call should go to Redis: it is up, or a probe is due.
    fn may_try(&self) -> bool {
        let s = self.read();
        !s.down || s.next_probe.is_none_or(|at| Instant::now() >= at)
    }

    /// Records a failure; true when this starts an outage (log it then, once).
    fn failed(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let started = !s.down;
        s.down = true;
        s.next_probe = Some(Instant::now() + self.probe_every);
        started
    }

    /// Records a success; true when this ends an outage.
    fn succeeded(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let ended = s.down;
        s.down = false;
        s.next_probe = None;
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_starts_once_and_ends_once() {
        let h = Health::new(Duration::from_secs(3600));
        assert!(h.may_try());
        assert!(h.failed(), "the first failure starts the outage");
        assert!(!h.failed(), "later failures are the same outage");
        assert!(
            !h.may_try(),
            "no call goes to Redis before the probe is due"
        );
        assert!(h.succeeded(), "the first success ends it");
        assert!(!h.succeeded());
        assert!(h.may_try());
    }

    #[test]
    fn a_probe_is_due_after_probe_every() {
        let h = Health::new(Duration::ZERO);
        h.failed();
        assert!(h.may_try());
    }

    #[test]
    fn a_bad_url_is_refused_without_showing_the_password() {
        let Err(e) = Link::new(
            "http://user:hunter2@example.invalid/",
            Duration::from_secs(1),
            Duration::from_secs(1),
        ) else {
            panic!("an http URL is not a Redis URL");
        };
        let text = e.to_string();
        assert!(text.contains("***") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn store_errors_stay_store_errors_in_the_queue_port() {
        let e = QueueError::from(RedisError::Store(StoreError::Invalid("x".into())));
        assert!(matches!(e, QueueError::Store(StoreError::Invalid(_))));
        let e = QueueError::from(RedisError::Down);
        assert!(matches!(e, QueueError::Unavailable(_)));
    }
}
