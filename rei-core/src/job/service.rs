//! The job lifecycle: quote → create with its reservation → start → progress →
//! complete / fail / cancel, each step idempotent and safe to repeat after a crash.

use std::sync::{Arc, PoisonError, RwLock};

use crate::ids::{IdempotencyKey, JobId, ProviderTaskId, UserId};
use crate::job::{
    AssetRef, CancelledBy, FailureReason, Job, JobEvent, JobFilter, JobSpec, JobState, NewJob,
    TransitionError,
};
use crate::money::Money;
use crate::ports::{
    Clock, IdGenerator, JobQueue, JobStore, Notice, Notifier, QueueError, StoreError, UserStore,
};
use crate::pricing::{PriceList, Quote};

/// Limits on jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Pending + processing jobs per user (`MAX_ACTIVE_JOBS_PER_USER`).
    pub max_active_per_user: u32,
    /// Worker starts before a job fails for good (crashed workers count).
    pub max_attempts: u32,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            max_active_per_user: 3,
            max_attempts: 3,
        }
    }
}

/// What job operations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such user.
    #[error("user {0} is not registered")]
    UnknownUser(UserId),
    /// The user is banned.
    #[error("user {0} is banned")]
    Banned(UserId),
    /// No such job.
    #[error("job {0} not found")]
    UnknownJob(JobId),
    /// The balance does not cover the quote (nothing was reserved).
    #[error("insufficient funds: the price is {needed}, the balance is {available}")]
    InsufficientFunds {
        /// The price.
        needed: Money,
        /// The balance.
        available: Money,
    },
    /// Too many pending + processing jobs.
    #[error("at most {limit} jobs may run at once")]
    TooManyActiveJobs {
        /// The limit.
        limit: u32,
    },
    /// The quote is for another product than the spec.
    #[error("the quote does not match the requested generation")]
    QuoteMismatch,
    /// The confirmation key was already used for a different job.
    #[error("this confirmation was already used for a different job")]
    DuplicateKey,
    /// The event is not allowed in the job's state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The job was created (money held) but could not be queued; recovery re-queues it.
    #[error("job {job_id} was created but not queued")]
    NotQueued {
        /// The job.
        job_id: JobId,
        /// Why.
        #[source]
        source: QueueError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InsufficientFunds { needed, available } => {
                Self::InsufficientFunds { needed, available }
            }
            StoreError::ActiveJobLimit { limit } => Self::TooManyActiveJobs { limit },
            StoreError::IdempotencyConflict { .. } => Self::DuplicateKey,
            other => Self::Store(other),
        }
    }
}

/// The result of applying an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The job now.
    pub job: Job,
    /// False when the event was a repeat and nothing changed.
    pub changed: bool,
}

/// How many times a transition is retried when another writer changed the job meanwhile.
const CONFLICT_RETRIES: u32 = 3;

/// Runs jobs through their lifecycle.
pub struct JobService {
    users: Arc<dyn UserStore>,
    jobs: Arc<dyn JobStore>,
    queue: Arc<dyn JobQueue>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    prices: RwLock<Arc<PriceList>>,
    limits: JobLimits,
}

impl std::fmt::Debug for JobService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl JobService {
    /// A service over its ports.
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn new(
        users: Arc<dyn UserStore>,
        jobs: Arc<dyn JobStore>,
        queue: Arc<dyn JobQueue>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        prices: PriceList,
        limits: JobLimits,
    ) -> Self {
        Self {
            users,
            jobs,
            queue,
            notifier,
            clock,
            ids,
            prices: RwLock::new(Arc::new(prices)),
            limits,
        }
    }

    /// The current price list.
    #[must_use]
    pub fn prices(&self) -> Arc<PriceList> {
        self.prices
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the price list (live prices). Quotes already given keep their price.
    pub fn set_prices(&self, prices: PriceList) {
        *self.prices.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(prices);
    }

    /// The limits in force.
    #[must_use]
    pub const fn limits(&self) -> JobLimits {
        self.limits
    }

    /// The price of a generation now, to show on the draft and store with the job.
    #[must_use]
    pub fn quote(&self, spec: &JobSpec) -> Quote {
        self.prices().quote(spec.product())
    }

    /// Creates a job with its reservation (one transaction) and queues it. Confirming
    /// twice with the same key makes one job and holds the money once.
    ///
    /// # Errors
    /// [`JobError::UnknownUser`], [`JobError::Banned`], [`JobError::QuoteMismatch`],
    /// [`JobError::InsufficientFunds`], [`JobError::TooManyActiveJobs`],
    /// [`JobError::DuplicateKey`]; [`JobError::NotQueued`] when the job exists but the
    /// queue failed (recovery queues it later).
    pub async fn create(
        &self,
        user: UserId,
        spec: JobSpec,
        quote: Quote,
        key: IdempotencyKey,
    ) -> Result<Job, JobError> {
        let Some(profile) = self.users.user(user).await.map_err(JobError::Store)? else {
            return Err(JobError::UnknownUser(user));
        };
        if profile.is_banned {
            return Err(JobError::Banned(user));
        }
        if quote.product != spec.product() {
            return Err(JobError::QuoteMismatch);
        }
        if key.is_reserved() {
            return Err(JobError::DuplicateKey);
        }
        let new = NewJob {
            id: self.ids.job_id(),
            user_id: user,
            spec,
            quote,
            reservation_id: self.ids.reservation_id(),
            idempotency_key: key,
            created_at: self.clock.now(),
        };
        let job = self
            .jobs
            .create_job(new, self.limits.max_active_per_user)
            .await?;
        if job.state == JobState::Pending {
            self.queue
                .enqueue(job.id)
                .await
                .map_err(|source| JobError::NotQueued {
                    job_id: job.id,
                    source,
                })?;
        }
        Ok(job)
    }

    /// A job by id.
    ///
    /// # Errors
    /// [`JobError::UnknownJob`].
    pub async fn job(&self, id: JobId) -> Result<Job, JobError> {
        self.jobs.job(id).await?.ok_or(JobError::UnknownJob(id))
    }

    /// Applies an event and stores it with its ledger effect in one transaction. A repeat
    /// of the event that made the current state is `Ok` with `changed = false`.
    ///
    /// # Errors
    /// [`JobError::UnknownJob`], [`JobError::Transition`] for an illegal event.
    pub async fn apply(&self, id: JobId, event: JobEvent) -> Result<Applied, JobError> {
        let mut attempt = 0;
        loop {
            let job = self.job(id).await?;
            let transition = job.apply(event.clone(), self.clock.now())?;
            if !transition.changed() {
                return Ok(Applied {
                    job,
                    changed: false,
                });
            }
            match self.jobs.save_transition(&transition).await {
                Ok(job) => return Ok(Applied { job, changed: true }),
                Err(StoreError::Conflict { .. }) if attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A worker starts or resumes the job (attempts + 1, at least 10 %). A job that has
    /// used up its attempts (crashed workers count) is failed for good and refunded
    /// instead: the returned job is then `failed`, and the worker must stop.
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub async fn start(&self, id: JobId) -> Result<Applied, JobError> {
        let applied = match self.apply(id, JobEvent::Started).await {
            Ok(applied) => applied,
            // `Started` is refused only on a finished job: a delivery after a crash between
            // the final write and the queue ack. It changes nothing; the worker sees the
            // final state and acks.
            Err(JobError::Transition(refused)) => {
                let job = self.job(id).await?;
                if job.state.is_final() {
                    return Ok(Applied {
                        job,
                        changed: false,
                    });
                }
                return Err(JobError::Transition(refused));
            }
            Err(e) => return Err(e),
        };
        if applied.job.attempts > self.limits.max_attempts {
            let attempts = applied.job.attempts.saturating_sub(1);
            return self
                .fail(id, FailureReason::TooManyAttempts { attempts })
                .await;
        }
        self.tell(
            &applied.job,
            Notice::JobProgress {
                job_id: id,
                progress: applied.job.progress,
            },
        )
        .await;
        Ok(applied)
    }

    /// Records the provider's task id, before any polling: a restarted worker resumes
    /// polling this task instead of paying for another.
    ///
    /// # Errors
    /// As [`Self::apply`]; a different task id for the same job is illegal.
    pub async fn task_created(&self, id: JobId, task: ProviderTaskId) -> Result<Applied, JobError> {
        let applied = self
            .apply(id, JobEvent::ProviderTaskCreated { task_id: task })
            .await?;
        self.tell_progress(&applied).await;
        Ok(applied)
    }

    /// The provider is generating (50 %).
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub async fn generating(&self, id: JobId) -> Result<Applied, JobError> {
        let applied = self.apply(id, JobEvent::Generating).await?;
        self.tell_progress(&applied).await;
        Ok(applied)
    }

    /// The job succeeded: store the result and capture `actual_cost` (≤ the quote; the
    /// difference is refunded) in one transaction, then deliver.
    ///
    /// # Errors
    /// As [`Self::apply`]; a cost above the quote is illegal.
    pub async fn complete(
        &self,
        id: JobId,
        result: AssetRef,
        actual_cost: Money,
    ) -> Result<Applied, JobError> {
        let applied = self
            .apply(
                id,
                JobEvent::Succeeded {
                    result: result.clone(),
                    actual_cost,
                },
            )
            .await?;
        if applied.changed {
            let job = &applied.job;
            self.tell(
                job,
                Notice::JobCompleted {
                    job_id: id,
                    kind: job.spec.kind(),
                    result,
                    charged: actual_cost,
                },
            )
            .await;
        }
        Ok(applied)
    }

    /// The job failed: release the reservation in the same transaction, then tell the user
    /// why and that the money is back.
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub async fn fail(&self, id: JobId, reason: FailureReason) -> Result<Applied, JobError> {
        let applied = self
            .apply(
                id,
                JobEvent::Failed {
                    reason: reason.clone(),
                },
            )
            .await?;
        if applied.changed {
            let refunded = applied.job.quote.amount;
            self.tell(
                &applied.job,
                Notice::JobFailed {
                    job_id: id,
                    reason,
                    refunded,
                },
            )
            .await;
        }
        Ok(applied)
    }

    /// Cancels a pending or processing job and releases its reservation.
    ///
    /// # Errors
    /// As [`Self::apply`]; finished jobs cannot be cancelled.
    pub async fn cancel(&self, id: JobId, by: CancelledBy) -> Result<Applied, JobError> {
        let applied = self.apply(id, JobEvent::Cancelled { by }).await?;
        if applied.changed {
            let refunded = applied.job.quote.amount;
            self.tell(
                &applied.job,
                Notice::JobCancelled {
                    job_id: id,
                    refunded,
                },
            )
            .await;
        }
        Ok(applied)
    }

    /// Puts a processing job back to pending (its worker lost the lease).
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub async fn requeue(&self, id: JobId) -> Result<Applied, JobError> {
        let applied = self.apply(id, JobEvent::Requeued).await?;
        self.queue.enqueue(id).await?;
        Ok(applied)
    }

    /// A user's newest jobs.
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn history(&self, user: UserId, limit: u32) -> Result<Vec<Job>, JobError> {
        Ok(self
            .jobs
            .jobs(JobFilter {
                state: None,
                user_id: Some(user),
                limit: limit.clamp(1, 1000),
            })
            .await?)
    }

    /// Jobs matching a filter.
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn list(&self, filter: JobFilter) -> Result<Vec<Job>, JobError> {
        Ok(self.jobs.jobs(filter).await?)
    }

    /// Queues every active job again (after a queue outage or with a fresh Redis): pending
    /// ones, and processing ones whose queue entry may be gone with a crashed worker —
    /// otherwise their holds would never settle. Enqueuing is idempotent (a job already
    /// queued or leased is left alone), so this is safe at every start. Returns how many.
    ///
    /// # Errors
    /// [`JobError::Store`] or [`JobError::Queue`] on backend failure.
    pub async fn recover(&self) -> Result<usize, JobError> {
        let mut active = Vec::new();
        for state in [JobState::Pending, JobState::Processing] {
            let filter = JobFilter {
                state: Some(state),
                user_id: None,
                limit: u32::MAX,
            };
            active.extend(self.jobs.jobs(filter).await?);
        }
        for job in &active {
            self.queue.enqueue(job.id).await?;
        }
        Ok(active.len())
    }

    async fn tell_progress(&self, applied: &Applied) {
        if applied.changed {
            let job = &applied.job;
            self.tell(
                job,
                Notice::JobProgress {
                    job_id: job.id,
                    progress: job.progress,
                },
            )
            .await;
        }
    }

    async fn tell(&self, job: &Job, notice: Notice) {
        // Best effort: the state is committed; the notifier logs its own failures.
        let _ = self.notifier.notify(job.user_id, notice).await;
    }
}
