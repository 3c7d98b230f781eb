//! The job queue: which job a worker takes next. The job store is the source of truth
//! (a job row with `run_after` set is queued, its lease says who owns it); a queue only
//! finds ready jobs faster or across processes.

use async_trait::async_trait;

use super::{BoxError, StoreError};
use crate::ids::JobId;
use crate::job::{Job, JobLease};
use crate::time::Timestamp;

/// What a queue can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue backend failed.
    #[error("queue unavailable")]
    Unavailable(#[source] BoxError),
}

/// Hands ready jobs to workers, at least once.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Says a committed job is ready. The database queue has nothing to do (the job row
    /// is the queue entry); a broker adds it to its stream. Repeating is harmless. It
    /// cannot fail the caller: the job is already queued in the store, and a broker that
    /// missed it (it was down) finds it again with its sweep, logging the outage itself.
    async fn enqueue(&self, job: JobId);

    /// Claims a ready job for `worker` with `lease` (written to the store in the same
    /// step), or `None` when nothing is ready.
    ///
    /// # Errors
    /// `Store` or `Unavailable` on backend failure.
    async fn claim(
        &self,
        worker: &str,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, QueueError>;

    /// The worker is done with `job` for now: it is finished, or handed back until its
    /// `run_after`.
    ///
    /// # Errors
    /// `Unavailable` on backend failure.
    async fn done(&self, job: &Job) -> Result<(), QueueError>;

    /// Jobs with work left.
    ///
    /// # Errors
    /// `Store` or `Unavailable` on backend failure.
    async fn depth(&self) -> Result<u64, QueueError>;

    /// A provider says `job`'s task changed: its worker, in whichever process holds it,
    /// asks the provider at once instead of at its next poll. The database queue
    /// records the wake on the job (its worker sees it at its next heartbeat); a broker
    /// also tells every process at once.
    ///
    /// # Errors
    /// `Store` when the wake cannot be recorded.
    async fn wake(&self, job: JobId, at: Timestamp) -> Result<(), QueueError>;
}
