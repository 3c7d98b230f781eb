//! [`RedisQueue`]: the job queue over a Redis Stream with one consumer group, the
//! database staying the source of truth.
//!
//! ## Keys
//!
//! - `{prefix}jobs`: a stream of entries `job = <job id>`, read by the consumer group
//!   `workers` (one consumer per worker name). Holds ready (or believed ready) jobs.
//! - `{prefix}delayed`: a sorted set of job ids scored by `run_after` (Unix ms): jobs
//!   handed back until later. Each claim first moves the due ones into the stream (one
//!   Lua script, so a job is never in neither).
//!
//! ## Claim
//!
//! 1. Due delayed jobs are promoted into the stream.
//! 2. Stuck entries (delivered to a consumer that never acknowledged them for `min_idle`,
//!    i.e. a dead worker) are taken over with `XAUTOCLAIM`, following its cursor so a long
//!    pending list is scanned across claims.
//! 3. New entries are read with `XREADGROUP … COUNT 1`. One claimer per process at a
//!    time blocks up to `block` on a connection of its own (a blocked connection would
//!    stall every other command sent on it); concurrent claimers read without blocking.
//!
//! Each entry is only a hint: the job is claimed with `StoreQueue::claim_job` (the
//! database lease, one transaction). On success the entry stays pending under this
//! worker until [`JobQueue::done`] acknowledges it (`XACK` + `XDEL`); if the worker dies,
//! step 2 hands it to another worker once `min_idle` has passed — set `min_idle` to the
//! worker's lease length, the database then also lets the new claim through. When the
//! database refuses, the job is read to see why:
//!
//! - nothing left to do (or the job is gone): the entry is acknowledged and deleted;
//! - **not ready yet** (`run_after` in the future): the entry is acknowledged and deleted
//!   and the job goes to `{prefix}delayed` at its `run_after`, in one `MULTI`. It comes
//!   back on time, neither waiting for `min_idle` (which is as long as a lease) nor for
//!   the next sweep, and no entry sits pending meanwhile;
//! - leased by another live worker: likewise acknowledged, deleted and delayed until the
//!   lease ends. If that worker dies, the job is looked at again the moment its lease
//!   expires (the entry's idle time counts from delivery, not from the last heartbeat,
//!   so `min_idle` alone could come too early or too late); if the worker is alive it
//!   extended the lease, and the job is delayed again (one look per lease length while
//!   a long job runs);
//! - claimable after all (its lease expired between the two reads): claimed once more;
//!   if that fails too the entry is left pending for a later takeover.
//!
//! ## Done and hand-back
//!
//! [`JobQueue::done`] acknowledges and deletes the job's entry (remembered in process at
//! claim). **A job handed back** (`run_after` set, lease released: waiting for a
//! provider, retry backoff, shutdown) is put into `{prefix}delayed` at its `run_after`
//! in the same `MULTI`, so it is delivered again at that time — important for video
//! polling every few seconds, which a 30 s sweep would slow down. "Due" is judged with
//! the `at` of the claims (the workers' clock, the one `run_after` came from).
//!
//! Delayed-set writes use `ZADD LT`: when two hints for one job meet, the earlier time
//! wins (a hint too early costs one look and is delayed again; one too late would hold
//! the job back).
//!
//! ## Outages
//!
//! Any Redis failure makes the queue fall back to the database queue
//! ([`StoreQueue`]'s claim: the job that has been ready longest), logging a warning once
//! per outage (whichever call meets it first: an enqueue, a claim, a sweep) and an info
//! line when Redis answers again; calls in between log at debug. While down, Redis is
//! tried at most every `probe_every`. A dropped connection is retried once at once (a
//! quick restart costs no fallback). `enqueue` and `done` never fail: the job row is
//! already committed, and [`RedisQueue::sweep`] repairs what Redis missed. The first
//! claim of a queue (and the first after an outage) runs a sweep itself; the worker
//! loop should also run one periodically ([`RedisQueue::run_sweeper`]). A group that
//! disappeared (Redis restarted without persistence: `NOGROUP`) is recreated and swept
//! again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::AsyncCommands;
use ::redis::aio::ConnectionManager;
use ::redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadOptions,
    StreamReadReply,
};
use async_trait::async_trait;
use rei_core::ids::JobId;
use rei_core::job::{Job, JobLease, StoreQueue};
use rei_core::ports::{JobQueue, JobStore, QueueError};
use rei_core::time::Timestamp;

use super::{Fault, Health, Link, RedisError};

mod claim;
mod sweep;
mod wake;
pub use wake::listen_for_wakes;

/// The consumer group every worker reads with.
const GROUP: &str = "workers";
/// The stream entry's field holding the job id.
const FIELD: &str = "job";

/// Moves due delayed jobs into the stream. KEYS: stream, delayed. ARGV: now (ms), max.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', 'job', id)
  redis.call('ZREM', KEYS[2], id)
end
return #due
";

/// Tuning of a [`RedisQueue`].
#[derive(Clone, Debug)]
pub struct RedisQueueConfig {
    /// How long one claim waits for a new entry (`XREADGROUP BLOCK`); zero: no wait.
    pub block: Duration,
    /// How long an entry stays unacknowledged before another worker takes it over
    /// (`XAUTOCLAIM` min-idle). Use the worker's lease length.
    pub min_idle: Duration,
    /// While Redis is down, how often it is tried again.
    pub probe_every: Duration,
    /// Bound of one connection attempt and of one command (plus `block` for reads).
    pub timeout: Duration,
    /// Entries looked at per claim, for taken-over and for new entries each.
    pub batch: usize,
    /// Jobs looked at by the sweep a claim runs after start-up and after an outage.
    pub sweep_limit: u32,
}

impl Default for RedisQueueConfig {
    fn default() -> Self {
        Self {
            block: Duration::from_millis(200),
            min_idle: Duration::from_secs(60),
            probe_every: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            batch: 8,
            sweep_limit: 10_000,
        }
    }
}

/// The job queue over a Redis Stream; see the [module docs](self).
pub struct RedisQueue {
    jobs: Arc<dyn JobStore>,
    db: StoreQueue,
    /// Every command but blocking reads.
    cmd: Link,
    /// Blocking reads only.
    reader: Link,
    /// Held by the one claimer allowed to block on `reader`.
    reader_busy: tokio::sync::Mutex<()>,
    health: Health,
    stream: String,
    delayed: String,
    /// Where wakes are published (`{prefix}wake`).
    wake_channel: String,
    config: RedisQueueConfig,
    /// The stream entry of each job claimed here and not yet done.
    entries: Mutex<HashMap<JobId, String>>,
    /// Where the next `XAUTOCLAIM` scan starts.
    autoclaim_cursor: Mutex<String>,
    /// A sweep is due (start-up, after an outage, after the group was recreated).
    needs_sweep: AtomicBool,
    promote: ::redis::Script,
    /// For logs: the URL with its password redacted.
    url: String,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("url", &self.url)
            .field("stream", &self.stream)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// A queue on the Redis at `url` (`redis://…`), keys prefixed with `key_prefix`,
    /// over the job store `jobs` (its [`StoreQueue`] is the fallback). Creates the
    /// consumer group if missing; a Redis that cannot be reached now is not an error (the
    /// queue starts on the database and logs the outage).
    ///
    /// # Errors
    /// [`RedisError::BadUrl`] when `url` is not a Redis URL.
    pub async fn connect(
        url: &str,
        key_prefix: &str,
        jobs: Arc<dyn JobStore>,
        config: RedisQueueConfig,
    ) -> Result<Self, RedisError> {
        let cmd = Link::new(url, config.timeout, config.timeout)?;
        let reader = Link::new(url, config.timeout, config.timeout + config.block)?;
        let queue = Self {
            db: StoreQueue::new(jobs.clone()),
            jobs,
            cmd,
            reader,
            reader_busy: tokio::sync::Mutex::new(()),
            health: Health::new(config.probe_every),
            stream: format!("{key_prefix}jobs"),
            delayed: format!("{key_prefix}delayed"),
            wake_channel: format!("{key_prefix}wake"),
            config,
            entries: Mutex::new(HashMap::new()),
            autoclaim_cursor: Mutex::new("0-0".to_owned()),
            needs_sweep: AtomicBool::new(true),
            promote: ::redis::Script::new(PROMOTE),
            url: crate::outbound::sql::redact(url),
        };
        match queue.ensure_group().await {
            Ok(()) => queue.note_success(),
            Err(e) => queue.note_failure(&e),
        }
        Ok(queue)
    }

    /// Asks Redis for a `PONG` (readiness checks).
    ///
    /// # Errors
    /// [`RedisError::Unavailable`] when Redis does not answer.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut connection = self
            .cmd
            .get()
            .await
            .map_err(|e| RedisError::Unavailable(Box::new(e)))?;
        ::redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(|_| ())
            .map_err(|e| RedisError::Unavailable(Box::new(e)))
    }

    /// The stream key (`{prefix}jobs`).
    #[must_use]
    pub fn stream_key(&self) -> &str {
        &self.stream
    }

    /// The delayed-jobs key (`{prefix}delayed`).
    #[must_use]
    pub fn delayed_key(&self) -> &str {
        &self.delayed
    }

    /// The consumer group (`workers`).
    #[must_use]
    pub const fn group(&self) -> &'static str {
        GROUP
    }

    /// `XGROUP CREATE … MKSTREAM` from the start of the stream; an existing group is fine.
    async fn ensure_group(&self) -> Result<(), ::redis::RedisError> {
        let mut conn = self.cmd.get().await?;
        match conn
            .xgroup_create_mkstream::<_, _, _, ()>(&self.stream, GROUP, "0")
            .await
        {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    fn note_failure(&self, e: &::redis::RedisError) {
        if self.health.failed() {
            tracing::warn!(
                redis = %self.url,
                error = %e,
                "redis is unreachable: jobs are claimed from the database until it is back"
            );
        } else {
            tracing::debug!(error = %e, "redis still unreachable");
        }
    }

    fn note_success(&self) {
        if self.health.succeeded() {
            tracing::info!(redis = %self.url, "redis is reachable again: back to the stream");
            self.needs_sweep.store(true, Ordering::Release);
        }
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    #[tracing::instrument(name = "redis_queue.enqueue", skip_all, fields(job_id = %job))]
    async fn enqueue(&self, job: JobId) {
        if !self.health.may_try() {
            tracing::debug!("redis is down: the sweep adds the job later");
            return;
        }
        let added = async {
            let mut conn = self.cmd.get().await?;
            conn.xadd::<_, _, _, _, ()>(&self.stream, "*", &[(FIELD, job.to_string())])
                .await
        }
        .await;
        match added {
            Ok(()) => self.note_success(),
            Err(e) => self.note_failure(&e),
        }
    }

    #[tracing::instrument(name = "redis_queue.claim", skip_all, fields(worker = %worker))]
    async fn claim(
        &self,
        worker: &str,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, QueueError> {
        if self.health.may_try() {
            let mut result = self.claim_from_stream(worker, lease, at).await;
            if let Err(Fault::Redis(e)) = &result {
                if e.is_connection_dropped() || e.is_io_error() {
                    // A dropped connection reconnects on the next command: a Redis that
                    // restarted in between (a blip) is back at the second try.
                    tracing::debug!(error = %e, "redis connection dropped: trying once more");
                    result = self.claim_from_stream(worker, lease, at).await;
                }
            }
            match result {
                Ok(found) => {
                    self.note_success();
                    return Ok(found);
                }
                Err(Fault::Redis(e)) => self.note_failure(&e),
                Err(Fault::Store(e)) => return Err(QueueError::Store(e)),
            }
        }
        self.db.claim(worker, lease, at).await
    }

    #[tracing::instrument(name = "redis_queue.done", skip_all, fields(job_id = %job.id))]
    async fn done(&self, job: &Job) -> Result<(), QueueError> {
        let entry = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&job.id);
        if entry.is_none() && job.run_after.is_none() {
            return Ok(());
        }
        if !self.health.may_try() {
            // A pending entry is taken over and dropped later; the sweep re-adds a job
            // handed back meanwhile.
            return Ok(());
        }
        match self.finish(job, entry.as_deref()).await {
            Ok(()) => self.note_success(),
            Err(e) => self.note_failure(&e),
        }
        Ok(())
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        self.db.depth().await
    }

    #[tracing::instrument(name = "redis_queue.wake", skip_all, fields(job_id = %job))]
    async fn wake(&self, job: JobId, at: Timestamp) -> Result<(), QueueError> {
        // Recorded on the job first (its worker's heartbeat sees it whatever happens to
        // Redis), then told to every process at once.
        self.db.wake(job, at).await?;
        if self.health.may_try() {
            let published = async {
                let mut connection = self.cmd.get().await?;
                ::redis::cmd("PUBLISH")
                    .arg(&self.wake_channel)
                    .arg(job.to_string())
                    .query_async::<i64>(&mut connection)
                    .await
            }
            .await;
            if let Err(e) = published {
                tracing::debug!(error = %e, "publishing a wake failed; the heartbeat sees it");
            }
        }
        Ok(())
    }
}
