//! [`connect`]: the one place both binaries pick their backends — the database (SQLite
//! or PostgreSQL) with its stores, the job queue (the database itself, or Redis Streams
//! when `REDIS_URL` is set) and the rate limiter (in-process, or Redis when set).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use rei_core::job::StoreQueue;
use rei_core::ports::{JobQueue, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::outbound::limiter::InProcessLimiter;
use crate::outbound::secret_url::SecretUrl;
use crate::outbound::sql::{DatabaseTarget, SqlError, Stores, WriteMode};

/// Keys of every Redis structure REI owns start with this.
pub const REDIS_KEY_PREFIX: &str = "rei:";

/// What to connect to.
#[derive(Clone, Debug)]
pub struct BackendsConfig {
    /// `DATABASE_URL` / `DATABASE_PATH`.
    pub database: DatabaseTarget,
    /// `REDIS_URL`.
    pub redis_url: Option<SecretUrl>,
    /// `RATE_LIMIT_PER_MINUTE`.
    pub rate_limit_per_minute: u32,
    /// The workers' lease: a broker entry idle this long is taken over.
    pub lease_for: Duration,
    /// How the database commits writes; `None` for the database kind's default
    /// ([`WriteMode::default_for`]).
    pub write_mode: Option<WriteMode>,
}

/// Why the backends could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendsError {
    /// The database.
    #[error(transparent)]
    Database(#[from] SqlError),
    /// `REDIS_URL` is malformed.
    #[cfg(feature = "redis")]
    #[error("REDIS_URL")]
    Redis(#[from] crate::outbound::redis::RedisError),
    /// `REDIS_URL` is set but this build has no Redis support.
    #[error("REDIS_URL is set but this build has no Redis support (cargo feature `redis`)")]
    NoRedisSupport,
    /// `RATE_LIMIT_PER_MINUTE` is zero.
    #[error("RATE_LIMIT_PER_MINUTE must be at least 1")]
    ZeroRateLimit,
}

/// The stores, the queue and the limiter, chosen from configuration.
#[derive(Clone)]
pub struct Backends {
    /// Every store port over the database.
    pub stores: Stores,
    /// Where workers find ready jobs.
    pub queue: Arc<dyn JobQueue>,
    /// `RATE_LIMIT_PER_MINUTE` per user.
    pub limiter: Arc<dyn RateLimiter>,
    #[cfg(feature = "redis")]
    redis_queue: Option<Arc<crate::outbound::redis::RedisQueue>>,
    #[cfg(feature = "redis")]
    redis_url: Option<SecretUrl>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

/// Opens the database (applying migrations) and, with `REDIS_URL`, Redis. A Redis that
/// is down at start is not fatal: the queue runs on the database until it is back.
///
/// # Errors
/// [`BackendsError`] when the database cannot be opened or a setting is invalid.
pub async fn connect(config: &BackendsConfig) -> Result<Backends, BackendsError> {
    let mode = config
        .write_mode
        .unwrap_or_else(|| WriteMode::default_for(&config.database));
    let stores = crate::outbound::sql::connect_with(&config.database, mode).await?;
    let per_minute =
        NonZeroU32::new(config.rate_limit_per_minute).ok_or(BackendsError::ZeroRateLimit)?;
    let database_queue: Arc<dyn JobQueue> = Arc::new(StoreQueue::new(stores.jobs.clone()));
    match &config.redis_url {
        None => Ok(Backends {
            queue: database_queue,
            limiter: Arc::new(InProcessLimiter::per_minute(per_minute)),
            stores,
            #[cfg(feature = "redis")]
            redis_queue: None,
            #[cfg(feature = "redis")]
            redis_url: None,
        }),
        #[cfg(feature = "redis")]
        Some(url) => {
            let queue = Arc::new(
                crate::outbound::redis::RedisQueue::connect(
                    url.expose(),
                    REDIS_KEY_PREFIX,
                    stores.jobs.clone(),
                    crate::outbound::redis::RedisQueueConfig {
                        min_idle: config.lease_for,
                        ..crate::outbound::redis::RedisQueueConfig::default()
                    },
                )
                .await?,
            );
            let limiter = crate::outbound::redis::RedisLimiter::new(
                url.expose(),
                REDIS_KEY_PREFIX,
                per_minute,
            )?;
            Ok(Backends {
                queue: queue.clone(),
                limiter: Arc::new(limiter),
                stores,
                redis_queue: Some(queue),
                redis_url: Some(url.clone()),
            })
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err(BackendsError::NoRedisSupport),
    }
}

/// How often the broker is resynchronised with the database.
#[cfg(feature = "redis")]
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Jobs looked at per sweep.
#[cfg(feature = "redis")]
const SWEEP_LIMIT: u32 = 10_000;

/// Which backend is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The database does not answer.
    #[error("database unavailable")]
    Database(#[source] rei_core::ports::StoreError),
    /// Redis does not answer.
    #[cfg(feature = "redis")]
    #[error("redis unavailable")]
    Redis(#[source] crate::outbound::redis::RedisError),
}

impl NotReady {
    /// What is unavailable, in a word (for a response body).
    #[must_use]
    pub const fn what(&self) -> &'static str {
        match self {
            Self::Database(_) => "database",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
        }
    }
}

impl Backends {
    /// `Ok` when the database (and Redis, when configured) answer (`/readyz`).
    ///
    /// # Errors
    /// [`NotReady`] naming the first backend that does not answer.
    pub async fn ready(&self) -> Result<(), NotReady> {
        self.stores
            .health
            .ping()
            .await
            .map_err(NotReady::Database)?;
        #[cfg(feature = "redis")]
        if let Some(queue) = &self.redis_queue {
            queue.ping().await.map_err(NotReady::Redis)?;
        }
        Ok(())
    }

    /// Hands every wake published by any process (a provider callback received there)
    /// to `wake`, until `shutdown`: with Redis, at once. Without Redis a wake reaches a
    /// worker in another process through the job row, at its next heartbeat; this then
    /// returns at once.
    pub fn spawn_wake_listener(
        &self,
        wake: impl Fn(rei_core::ids::JobId) + Send + 'static,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        #[cfg(feature = "redis")]
        if let Some(url) = self.redis_url.clone() {
            return tokio::spawn(async move {
                crate::outbound::redis::listen_for_wakes(
                    url.expose(),
                    REDIS_KEY_PREFIX,
                    wake,
                    shutdown,
                )
                .await;
            });
        }
        drop((wake, shutdown));
        tokio::spawn(async {})
    }

    /// Background upkeep until `shutdown`: with Redis, the sweep that re-adds committed
    /// jobs the stream is missing. Returns at once without Redis.
    pub fn spawn_maintenance(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        #[cfg(feature = "redis")]
        if let Some(queue) = self.redis_queue.clone() {
            return tokio::spawn(async move {
                tokio::select! {
                    () = queue.run_sweeper(SWEEP_EVERY, SWEEP_LIMIT) => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
        drop(shutdown);
        tokio::spawn(async {})
    }
}
