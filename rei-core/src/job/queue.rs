//! [`StoreQueue`]: the job queue that is the job store itself. A claim picks the job
//! ready longest and leases it in the store's own transaction, so "created but not
//! queued" and "claimed twice" cannot happen. It is the default queue (SQLite,
//! PostgreSQL, memory) and the fallback of a broker queue.

use std::sync::Arc;

use async_trait::async_trait;

use crate::ids::JobId;
use crate::job::{Job, JobLease};
use crate::ports::{ClaimTarget, JobQueue, JobStore, QueueError};
use crate::time::Timestamp;

/// The job store as a queue.
#[derive(Clone)]
pub struct StoreQueue {
    jobs: Arc<dyn JobStore>,
}

crate::opaque_debug!(StoreQueue);

impl StoreQueue {
    /// A queue over `jobs`.
    #[must_use]
    pub fn new(jobs: Arc<dyn JobStore>) -> Self {
        Self { jobs }
    }

    /// Claims one given job (a broker's hint): `None` when another worker holds it or
    /// nothing is left to do.
    ///
    /// # Errors
    /// `Store` on storage failure.
    pub async fn claim_job(
        &self,
        job: JobId,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, QueueError> {
        Ok(self
            .jobs
            .claim_job(ClaimTarget::Job(job), lease, at)
            .await?)
    }
}

#[async_trait]
impl JobQueue for StoreQueue {
    async fn enqueue(&self, _job: JobId) {
        // The job row written with the job is its queue entry.
    }

    async fn claim(
        &self,
        _worker: &str,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, QueueError> {
        Ok(self.jobs.claim_job(ClaimTarget::Next, lease, at).await?)
    }

    async fn done(&self, _job: &Job) -> Result<(), QueueError> {
        // The job row says whether work is left (`run_after`).
        Ok(())
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.jobs.queue_depth().await?)
    }

    async fn wake(&self, job: JobId, at: Timestamp) -> Result<(), QueueError> {
        let write = crate::job::JobWrite {
            job_id: job,
            event: crate::job::JobEvent::Woken,
            guard: crate::job::JobGuard::Unleased,
            audit: None,
            at,
        };
        self.jobs.write_job(&write).await?;
        Ok(())
    }
}
