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

/// The consumer group every worker reads with.
const GROUP: &str = "workers";
/// The stream entry's field holding the job id.
const FIELD: &str = "job";
/// Stream entries read per `XRANGE` page during a sweep.
const SWEEP_PAGE: usize = 1000;

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

    /// Adds to the stream every job among the store's first `limit` queued jobs that is
    /// neither in the stream (pending or not) nor delayed; returns how many were added.
    /// Creates the group if missing. Adding one twice is harmless (claims go through the
    /// database lease).
    ///
    /// # Errors
    /// [`RedisError::Unavailable`] when Redis fails, [`RedisError::Store`] when the
    /// store does.
    #[tracing::instrument(name = "redis_queue.sweep", skip_all, fields(limit = limit))]
    pub async fn sweep(&self, limit: u32) -> Result<usize, RedisError> {
        match self.sweep_inner(limit).await {
            Ok(added) => {
                self.note_success();
                // Recovering from an outage asks for a sweep: this was it.
                self.needs_sweep.store(false, Ordering::Release);
                Ok(added)
            }
            Err(Fault::Redis(e)) => {
                self.note_failure(&e);
                Err(Fault::Redis(e).into())
            }
            Err(f) => Err(f.into()),
        }
    }

    /// Sweeps every `every` (the first at once), up to `limit` jobs each time, until the
    /// future is dropped: run it beside the workers, `select!`ed with shutdown. Failures
    /// are logged (an outage once) and retried at the next round.
    pub async fn run_sweeper(&self, every: Duration, limit: u32) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.sweep(limit).await {
                Ok(0) => {}
                Ok(added) => tracing::info!(added, "redis queue sweep re-added jobs"),
                // Logged once per outage by `sweep`.
                Err(RedisError::Unavailable(_) | RedisError::Down) => {}
                Err(e) => {
                    tracing::warn!(error = %e, error.chain = ?e, "redis queue sweep failed");
                }
            }
        }
    }

    async fn sweep_inner(&self, limit: u32) -> Result<usize, Fault> {
        self.ensure_group().await?;
        let ids = self.jobs.queued_jobs(limit).await?;
        let mut conn = self.cmd.get().await?;
        let present = self.present(&mut conn).await?;
        let missing: Vec<String> = ids
            .iter()
            .map(ToString::to_string)
            .filter(|id| !present.contains(id))
            .collect();
        if !missing.is_empty() {
            let mut pipe = ::redis::pipe();
            for id in &missing {
                pipe.xadd(&self.stream, "*", &[(FIELD, id)]).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        self.needs_sweep.store(false, Ordering::Release);
        Ok(missing.len())
    }

    /// Job ids in the stream (pending or not) or delayed.
    async fn present(&self, conn: &mut ConnectionManager) -> Result<HashSet<String>, Fault> {
        let mut present: HashSet<String> = conn
            .zrange::<_, Vec<String>>(&self.delayed, 0, -1)
            .await?
            .into_iter()
            .collect();
        let mut start = "-".to_owned();
        loop {
            let page: StreamRangeReply = conn
                .xrange_count(&self.stream, &start, "+", SWEEP_PAGE)
                .await?;
            let full = page.ids.len() == SWEEP_PAGE;
            for entry in &page.ids {
                if let Some(id) = entry.get::<String>(FIELD) {
                    present.insert(id);
                }
            }
            match page.ids.last() {
                Some(last) if full => start = format!("({}", last.id),
                _ => return Ok(present),
            }
        }
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

    /// One claim through the stream; `Fault::Redis` sends the caller to the database.
    async fn claim_from_stream(
        &self,
        worker: &str,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, Fault> {
        // One claimer sweeps; the others go on (a duplicate entry would be harmless, but
        // every worker of a process starting at once need not sweep the same jobs).
        if self.needs_sweep.swap(false, Ordering::AcqRel) {
            match self.sweep_inner(self.config.sweep_limit).await {
                Ok(0) => {}
                Ok(added) => tracing::info!(added, "redis queue sweep re-added jobs"),
                Err(f) => {
                    self.needs_sweep.store(true, Ordering::Release);
                    return Err(f);
                }
            }
        }
        let mut conn = self.cmd.get().await?;
        self.promote
            .key(&self.stream)
            .key(&self.delayed)
            .arg(at.millis())
            .arg(self.config.batch.max(1) * 16)
            .invoke_async::<i64>(&mut conn)
            .await?;
        for _ in 0..self.config.batch {
            match self.take_over(&mut conn, worker).await? {
                TakeOver::Entry(entry) => {
                    if let Some(job) = self.try_entry(&mut conn, entry, lease, at).await? {
                        return Ok(Some(job));
                    }
                }
                TakeOver::ScanOn => {}
                TakeOver::Done => break,
            }
        }
        for i in 0..self.config.batch {
            let Some(entry) = self.read_new(&mut conn, worker, i == 0).await? else {
                return Ok(None);
            };
            if let Some(job) = self.try_entry(&mut conn, entry, lease, at).await? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Takes over one entry idle for `min_idle` for `worker`, scanning the pending list
    /// from where the last scan stopped.
    async fn take_over(
        &self,
        conn: &mut ConnectionManager,
        worker: &str,
    ) -> Result<TakeOver, Fault> {
        let start = self
            .autoclaim_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let min_idle = u64::try_from(self.config.min_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: Result<StreamAutoClaimReply, _> = conn
            .xautoclaim_options(
                &self.stream,
                GROUP,
                worker,
                min_idle,
                &start,
                StreamAutoClaimOptions::default().count(1),
            )
            .await;
        let reply = match reply {
            Err(e) if e.code() == Some("NOGROUP") => {
                self.group_lost().await?;
                return Ok(TakeOver::Done);
            }
            other => other?,
        };
        let scanned_all = reply.next_stream_id == "0-0";
        *self
            .autoclaim_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reply.next_stream_id;
        Ok(match reply.claimed.into_iter().next() {
            Some(entry) => {
                tracing::debug!(entry = %entry.id, "took over a stream entry idle for min_idle");
                TakeOver::Entry(entry)
            }
            None if scanned_all => TakeOver::Done,
            None => TakeOver::ScanOn,
        })
    }

    /// One new entry for `worker`; blocks up to `block` when `may_block` and no other
    /// claimer of this process is blocking already.
    async fn read_new(
        &self,
        conn: &mut ConnectionManager,
        worker: &str,
        may_block: bool,
    ) -> Result<Option<StreamId>, Fault> {
        let base = StreamReadOptions::default().group(GROUP, worker).count(1);
        let block_ms = usize::try_from(self.config.block.as_millis()).unwrap_or(usize::MAX);
        let guard = if may_block && block_ms > 0 {
            self.reader_busy.try_lock().ok()
        } else {
            None
        };
        let reply: Result<Option<StreamReadReply>, _> = match guard {
            Some(_blocking) => {
                let mut reader = self.reader.get().await?;
                reader
                    .xread_options(&[&self.stream], &[">"], &base.block(block_ms))
                    .await
            }
            None => conn.xread_options(&[&self.stream], &[">"], &base).await,
        };
        let reply = match reply {
            Err(e) if e.code() == Some("NOGROUP") => {
                self.group_lost().await?;
                return Ok(None);
            }
            other => other?,
        };
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next()))
    }

    /// The group is gone (Redis restarted without persistence, or the key was deleted):
    /// recreate it and sweep at the next claim.
    async fn group_lost(&self) -> Result<(), Fault> {
        tracing::warn!(stream = %self.stream, "redis consumer group missing: recreating it");
        self.ensure_group().await?;
        self.needs_sweep.store(true, Ordering::Release);
        Ok(())
    }

    /// Claims the entry's job in the database, or settles the entry (module docs).
    async fn try_entry(
        &self,
        conn: &mut ConnectionManager,
        entry: StreamId,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, Fault> {
        let Some(id) = entry
            .get::<String>(FIELD)
            .and_then(|s| s.parse::<JobId>().ok())
        else {
            tracing::warn!(entry = %entry.id, "stream entry without a job id: deleted");
            self.ack_del(conn, &entry.id).await?;
            return Ok(None);
        };
        if let Some(job) = self.db.claim_job(id, lease, at).await? {
            self.remember(conn, id, entry.id).await;
            return Ok(Some(job));
        }
        let current = self.jobs.job(id).await?;
        let state = current
            .as_ref()
            .map(|j| (j.run_after, j.lease.as_ref().map(|l| l.until)));
        match disposition(state, at) {
            Disposition::Finished => {
                tracing::debug!(job_id = %id, "nothing left to do: entry deleted");
                self.ack_del(conn, &entry.id).await?;
            }
            Disposition::HeldElsewhere(until) => {
                tracing::debug!(job_id = %id, until = until.millis(), "leased by another worker: delayed until the lease ends");
                self.defer(conn, Some(&entry.id), id, until).await?;
            }
            Disposition::NotReady(run_after) => {
                tracing::debug!(job_id = %id, run_after = run_after.millis(), "not ready: delayed");
                self.defer(conn, Some(&entry.id), id, run_after).await?;
            }
            Disposition::Claimable => {
                if let Some(job) = self.db.claim_job(id, lease, at).await? {
                    self.remember(conn, id, entry.id).await;
                    return Ok(Some(job));
                }
                tracing::debug!(job_id = %id, "claim raced: entry left pending");
            }
        }
        Ok(None)
    }

    /// Records the entry of a job claimed here; an older entry of the same job is
    /// deleted (best effort: a leftover is taken over and dropped later).
    async fn remember(&self, conn: &mut ConnectionManager, id: JobId, entry: String) {
        let old = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, entry.clone());
        if let Some(old) = old.filter(|o| *o != entry) {
            if let Err(e) = self.ack_del(conn, &old).await {
                tracing::debug!(error = %e, "could not delete an older entry");
            }
        }
    }

    async fn ack_del(
        &self,
        conn: &mut ConnectionManager,
        entry: &str,
    ) -> Result<(), ::redis::RedisError> {
        // Atomic: an entry acknowledged but not deleted would look present to the sweep
        // while no consumer would ever read it again.
        ::redis::pipe()
            .atomic()
            .xack(&self.stream, GROUP, &[entry])
            .ignore()
            .xdel(&self.stream, &[entry])
            .ignore()
            .query_async::<()>(conn)
            .await
    }

    /// Puts `job` into the delayed set at `run_after`, and settles `entry`, atomically.
    async fn defer(
        &self,
        conn: &mut ConnectionManager,
        entry: Option<&str>,
        job: JobId,
        run_after: Timestamp,
    ) -> Result<(), ::redis::RedisError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&self.delayed)
            .arg("LT")
            .arg(run_after.millis())
            .arg(job.to_string())
            .ignore();
        if let Some(entry) = entry {
            pipe.xack(&self.stream, GROUP, &[entry])
                .ignore()
                .xdel(&self.stream, &[entry])
                .ignore();
        }
        pipe.query_async::<()>(conn).await
    }

    async fn finish(&self, job: &Job, entry: Option<&str>) -> Result<(), ::redis::RedisError> {
        let mut conn = self.cmd.get().await?;
        match (job.run_after, entry) {
            (Some(run_after), entry) => self.defer(&mut conn, entry, job.id, run_after).await,
            (None, Some(entry)) => self.ack_del(&mut conn, entry).await,
            (None, None) => Ok(()),
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

/// Listens for wakes published by any process (`{prefix}wake`) and hands each job id to
/// `wake` until `shutdown`; reconnects after a lost connection.
pub async fn listen_for_wakes(
    url: &str,
    key_prefix: &str,
    wake: impl Fn(JobId) + Send,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    let Ok(client) = ::redis::Client::open(url) else {
        return;
    };
    let channel = format!("{key_prefix}wake");
    while !shutdown.is_cancelled() {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(mut pubsub) => {
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let job = message
                                .get_payload::<String>()
                                .ok()
                                .and_then(|id| id.parse::<JobId>().ok());
                            if let Some(job) = job {
                                wake(job);
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot listen for wakes yet"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// One step of the take-over scan.
enum TakeOver {
    /// An entry now delivered to this worker.
    Entry(StreamId),
    /// None idle in this part of the pending list; the cursor moved on.
    ScanOn,
    /// The whole list was scanned (the cursor starts over next time).
    Done,
}

/// What to do with an entry whose job the database would not lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    /// No work left, or no such job: delete the entry.
    Finished,
    /// Ready only at this time: move it to the delayed set.
    NotReady(Timestamp),
    /// Another worker's lease is live until then: move it to the delayed set.
    HeldElsewhere(Timestamp),
    /// It is claimable now (the lease expired between two reads): try again.
    Claimable,
}

/// Decides from the job's `(run_after, lease until)` as stored, `None` when it is gone.
fn disposition(job: Option<(Option<Timestamp>, Option<Timestamp>)>, at: Timestamp) -> Disposition {
    match job {
        None | Some((None, _)) => Disposition::Finished,
        Some((Some(run_after), _)) if run_after > at => Disposition::NotReady(run_after),
        Some((Some(_), Some(until))) if until > at => Disposition::HeldElsewhere(until),
        Some((Some(_), _)) => Disposition::Claimable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn check(job: Option<(Option<i64>, Option<i64>)>, expected: Disposition) {
        let job = job.map(|(r, l)| (r.map(t), l.map(t)));
        assert_eq!(disposition(job, t(100)), expected, "{job:?}");
    }

    #[test]
    fn a_missing_job_is_finished() {
        check(None, Disposition::Finished);
    }

    #[test]
    fn a_job_without_run_after_is_finished() {
        check(Some((None, Some(500))), Disposition::Finished);
    }

    #[test]
    fn a_job_due_later_is_not_ready() {
        check(Some((Some(101), None)), Disposition::NotReady(t(101)));
    }

    #[test]
    fn a_live_lease_of_another_worker_holds_it() {
        check(
            Some((Some(50), Some(101))),
            Disposition::HeldElsewhere(t(101)),
        );
    }

    #[test]
    fn an_expired_lease_leaves_it_claimable() {
        check(Some((Some(100), Some(100))), Disposition::Claimable);
        check(Some((Some(0), None)), Disposition::Claimable);
    }
}
