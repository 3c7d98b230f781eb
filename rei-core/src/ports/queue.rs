//! The job queue: at-least-once delivery with leases.

use std::time::Duration;

use async_trait::async_trait;

use super::BoxError;
use crate::ids::JobId;
use crate::time::Timestamp;

/// A claimed job: the worker owns it until `expires_at` unless it extends the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job_id: JobId,
    /// Proves ownership; a stale token cannot ack or extend.
    pub token: String,
    /// When another worker may claim the job.
    pub expires_at: Timestamp,
    /// How many times the job has been delivered, this one included.
    pub deliveries: u32,
}

/// What a queue can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The lease expired or was taken over; the worker must stop touching the job.
    #[error("the lease on job {job_id} was lost")]
    LeaseLost {
        /// The job.
        job_id: JobId,
    },
    /// The queue backend failed.
    #[error("queue unavailable")]
    Unavailable(#[source] BoxError),
}

/// A durable queue of job ids.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Adds a job. Enqueuing a job that is already queued or leased does nothing.
    ///
    /// # Errors
    /// `Unavailable` on backend failure.
    async fn enqueue(&self, job: JobId) -> Result<(), QueueError>;

    /// Claims the oldest ready job for `lease_for`, or `None` when there is none. A job
    /// whose lease expired is ready again (with `deliveries` + 1).
    ///
    /// # Errors
    /// `Unavailable` on backend failure.
    async fn claim(&self, worker: &str, lease_for: Duration) -> Result<Option<Lease>, QueueError>;

    /// Extends a lease (heartbeat).
    ///
    /// # Errors
    /// MUST return `LeaseLost` when the token is no longer the job's current lease.
    async fn extend(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, QueueError>;

    /// Removes a finished job.
    ///
    /// # Errors
    /// MUST return `LeaseLost` when the token is no longer the job's current lease.
    async fn ack(&self, lease: &Lease) -> Result<(), QueueError>;

    /// Gives a job back, ready again after `delay`.
    ///
    /// # Errors
    /// MUST return `LeaseLost` when the token is no longer the job's current lease.
    async fn retry(&self, lease: &Lease, delay: Duration) -> Result<(), QueueError>;

    /// Jobs queued or leased.
    ///
    /// # Errors
    /// `Unavailable` on backend failure.
    async fn depth(&self) -> Result<u64, QueueError>;
}
