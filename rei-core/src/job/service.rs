//! The job lifecycle seen from the front ends: quote → create with its reservation and
//! queue entry (one transaction) → cancel; and the leased writes workers make through
//! [`JobService::write`]. Every change is an event the store applies to its own row.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::ids::{IdempotencyKey, JobId, UserId};
use crate::job::{
    Applied, CancelledBy, Job, JobEvent, JobFilter, JobGuard, JobLease, JobSpec, JobState,
    JobWrite, NewJob, TransitionError,
};
use crate::money::Money;
use crate::ports::{
    Clock, IdGenerator, JobQueue, JobStore, Missing, QueueError, StoreError, UserStore,
};
use crate::pricing::{PriceList, Quote};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord};

/// Limits on jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Pending + processing jobs per user (`MAX_ACTIVE_JOBS_PER_USER`).
    pub max_active_per_user: u32,
    /// Provider failures before a job fails for good (crashed workers do not count).
    pub max_attempts: u32,
    /// Claims before a job that keeps crashing its workers fails for good.
    pub max_deliveries: u32,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            max_active_per_user: 3,
            max_attempts: 3,
            max_deliveries: 10,
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
    /// Only failed jobs can be retried.
    #[error("job {id} is {state}: only failed jobs can be retried")]
    NotRetryable {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
    },
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
    /// The price shown to the user is not today's price (or not for this generation):
    /// nothing was reserved; show `current` and ask again.
    #[error("the price changed: it is now {}", current.amount)]
    PriceChanged {
        /// Today's quote for the same generation.
        current: Quote,
    },
    /// The confirmation key was already used for a different job.
    #[error("this confirmation was already used for a different job")]
    DuplicateKey,
    /// The event is not allowed in the job's state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The worker's lease is gone: it must stop touching the job.
    #[error("the lease on job {0} was lost")]
    LeaseLost(JobId),
    /// The user cancelled after the provider call went out: the job goes on, and is
    /// delivered and charged as usual.
    #[error("job {0} is already being made")]
    AlreadyBeingMade(JobId),
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
            StoreError::Transition(t) => Self::Transition(t),
            StoreError::LeaseLost { job_id } => Self::LeaseLost(job_id),
            StoreError::AlreadyBeingMade { job_id } => Self::AlreadyBeingMade(job_id),
            StoreError::NotFound(Missing::Job(job)) => Self::UnknownJob(job),
            other => Self::Store(other),
        }
    }
}

/// What [`JobService::retry`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retried {
    /// The new job (as it is now).
    pub job: Job,
    /// False when the job had been retried before: that retry is returned, and nothing
    /// new was held or queued.
    pub new: bool,
}

/// The ports a [`JobService`] works over.
#[derive(Clone)]
pub struct JobPorts {
    /// Users (who may order).
    pub users: Arc<dyn UserStore>,
    /// Jobs and their reservations.
    pub jobs: Arc<dyn JobStore>,
    /// Where workers find ready jobs.
    pub queue: Arc<dyn JobQueue>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Ids and lease tokens.
    pub ids: Arc<dyn IdGenerator>,
}

crate::opaque_debug!(JobPorts);

/// Runs jobs through their lifecycle.
pub struct JobService {
    ports: JobPorts,
    prices: RwLock<Arc<PriceList>>,
    /// Lists replaced by live price changes, with when: a draft quoted while one was in
    /// force keeps its price until it expires.
    replaced: RwLock<Vec<(Timestamp, Arc<PriceList>)>>,
    limits: JobLimits,
}

/// Replaced price lists kept for drafts quoted before a change.
const REPLACED_KEPT: usize = 32;

impl std::fmt::Debug for JobService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl JobService {
    /// A service over its ports.
    #[must_use]
    pub fn new(ports: JobPorts, prices: PriceList, limits: JobLimits) -> Self {
        Self {
            ports,
            prices: RwLock::new(Arc::new(prices)),
            replaced: RwLock::new(Vec::new()),
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

    /// Replaces the price list (live prices). Jobs already created keep their price; a
    /// draft quoted before keeps its price ([`Self::create_quoted`]). Says whether the
    /// list changed.
    pub fn set_prices(&self, prices: PriceList) -> bool {
        let mut current = self.prices.write().unwrap_or_else(PoisonError::into_inner);
        if **current == prices {
            return false;
        }
        let old = std::mem::replace(&mut *current, Arc::new(prices));
        let mut replaced = self
            .replaced
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        replaced.push((self.ports.clock.now(), old));
        let extra = replaced.len().saturating_sub(REPLACED_KEPT);
        replaced.drain(..extra);
        true
    }

    /// Whether `shown` is what a price list in force at or after `quoted_at` asks.
    fn was_quoted(&self, shown: &Quote, quoted_at: Timestamp) -> bool {
        let replaced = self.replaced.read().unwrap_or_else(PoisonError::into_inner);
        replaced
            .iter()
            .filter(|(until, _)| *until >= quoted_at)
            .any(|(_, list)| list.quote(shown.product.clone()) == *shown)
    }

    /// The limits in force.
    #[must_use]
    pub const fn limits(&self) -> JobLimits {
        self.limits
    }

    /// The price of a generation now, to show on the draft.
    #[must_use]
    pub fn quote(&self, spec: &JobSpec) -> Quote {
        self.prices().quote(spec.product())
    }

    /// Creates a job at today's price with its reservation and queue entry (one
    /// transaction), then tells the queue. `shown` is the price the user confirmed: when
    /// it is not today's price nothing is reserved ([`JobError::PriceChanged`]).
    /// Confirming twice with the same key makes one job and holds the money once.
    ///
    /// # Errors
    /// [`JobError::UnknownUser`], [`JobError::Banned`], [`JobError::PriceChanged`],
    /// [`JobError::InsufficientFunds`], [`JobError::TooManyActiveJobs`],
    /// [`JobError::DuplicateKey`], [`JobError::Store`].
    pub async fn create(
        &self,
        user: UserId,
        spec: JobSpec,
        shown: &Quote,
        key: IdempotencyKey,
    ) -> Result<Job, JobError> {
        self.create_quoted(user, spec, shown, None, key).await
    }

    /// [`Self::create`] of a draft quoted at `quoted_at`: `shown` is honoured when it is
    /// today's price or the price of a list in force at or after `quoted_at` (a live
    /// price change after the quote does not touch it; the caller lets drafts expire).
    ///
    /// # Errors
    /// As [`Self::create`].
    pub async fn create_quoted(
        &self,
        user: UserId,
        spec: JobSpec,
        shown: &Quote,
        quoted_at: Option<Timestamp>,
        key: IdempotencyKey,
    ) -> Result<Job, JobError> {
        let Some(profile) = self.ports.users.user(user).await.map_err(JobError::Store)? else {
            return Err(JobError::UnknownUser(user));
        };
        if profile.is_banned {
            return Err(JobError::Banned(user));
        }
        if key.is_reserved() {
            return Err(JobError::DuplicateKey);
        }
        let today = self.quote(&spec);
        let honoured = shown.product == spec.product()
            && quoted_at.is_some_and(|at| self.was_quoted(shown, at));
        if today != *shown && !honoured {
            return Err(JobError::PriceChanged { current: today });
        }
        let current = shown.clone();
        let new = NewJob::new(
            self.ports.ids.job_id(),
            user,
            spec,
            current,
            self.ports.ids.reservation_id(),
            key,
            self.ports.clock.now(),
        );
        let job = self
            .ports
            .jobs
            .create_job(new, self.limits.max_active_per_user)
            .await?;
        if job.run_after.is_some() {
            self.ports.queue.enqueue(job.id).await;
        }
        Ok(job)
    }

    /// A job by id.
    ///
    /// # Errors
    /// [`JobError::UnknownJob`].
    pub async fn job(&self, id: JobId) -> Result<Job, JobError> {
        self.ports
            .jobs
            .job(id)
            .await?
            .ok_or(JobError::UnknownJob(id))
    }

    /// A provider's callback named a task of a job (`external_task_id`): whether it is a
    /// running job of ours with that very task, worth waking its worker to re-read the
    /// task now. Callbacks are unauthenticated hints: nothing else is done with them.
    ///
    /// # Errors
    /// [`JobError::Store`] when the store cannot answer.
    pub async fn task_callback(&self, job: JobId, task: &str) -> Result<bool, JobError> {
        let Some(found) = self.ports.jobs.job(job).await? else {
            return Ok(false);
        };
        let ours = found.state == JobState::Processing
            && found
                .provider_task_id
                .as_ref()
                .is_some_and(|t| t.as_str() == task);
        if ours {
            // Its worker may be in another process: the wake goes through the queue.
            self.ports.queue.wake(job, self.ports.clock.now()).await?;
        }
        Ok(ours)
    }

    /// Applies one event to a job (the store checks it against its own row, and the
    /// lease when `guard` carries one). A repeat is `Ok` with `changed = false`.
    ///
    /// # Errors
    /// [`JobError::UnknownJob`], [`JobError::LeaseLost`], [`JobError::Transition`],
    /// [`JobError::Store`].
    pub async fn write(
        &self,
        id: JobId,
        event: JobEvent,
        guard: JobGuard,
    ) -> Result<Applied, JobError> {
        let write = JobWrite {
            job_id: id,
            event,
            guard,
            audit: None,
            at: self.ports.clock.now(),
        };
        Ok(self.ports.jobs.write_job(&write).await?)
    }

    /// Claims the next ready job for `worker`, leased for `lease_for`.
    ///
    /// # Errors
    /// [`JobError::Queue`] on backend failure.
    pub async fn claim(&self, worker: &str, lease_for: Duration) -> Result<Option<Job>, JobError> {
        let now = self.ports.clock.now();
        let lease = JobLease::new(self.ports.ids.lease_token(), now.plus(lease_for));
        Ok(self.ports.queue.claim(worker, &lease, now).await?)
    }

    /// Tells the queue a worker is done with `job` for now.
    ///
    /// # Errors
    /// [`JobError::Queue`] on backend failure.
    pub async fn done(&self, job: &Job) -> Result<(), JobError> {
        Ok(self.ports.queue.done(job).await?)
    }

    /// Extends a worker's lease (heartbeat).
    ///
    /// # Errors
    /// [`JobError::LeaseLost`] when the lease is no longer the job's.
    pub async fn extend(&self, job: &Job, lease_for: Duration) -> Result<Applied, JobError> {
        let lease = job.lease.as_ref().ok_or(JobError::LeaseLost(job.id))?;
        let until = self.ports.clock.now().plus(lease_for);
        self.write(
            job.id,
            JobEvent::LeaseExtended { until },
            JobGuard::Lease(lease.token.clone()),
        )
        .await
    }

    /// Records the front end's status message of a job (the reply to its confirmation),
    /// so the worker edits it with the progress instead of sending new messages.
    ///
    /// # Errors
    /// [`JobError::UnknownJob`], [`JobError::Store`].
    pub async fn set_status_message(
        &self,
        id: JobId,
        message: crate::ports::MessageRef,
    ) -> Result<Applied, JobError> {
        self.write(id, JobEvent::StatusMessage { message }, JobGuard::Unleased)
            .await
    }

    /// Cancels a job on behalf of `actor`, audited in the same transaction. A pending
    /// job is released at once; a running one is marked, and its worker settles the
    /// cancel (release) at its next step, exactly once.
    ///
    /// # Errors
    /// [`JobError::UnknownJob`]; [`JobError::Transition`] for a finished job.
    pub async fn cancel(&self, id: JobId, actor: Actor, reason: &str) -> Result<Applied, JobError> {
        let job = self.job(id).await?;
        let by = match &actor {
            Actor::User(user) if *user == job.user_id => CancelledBy::User,
            Actor::User(_) => return Err(JobError::UnknownJob(id)),
            other => CancelledBy::Admin(other.to_string()),
        };
        let at = self.ports.clock.now();
        let write = JobWrite {
            job_id: id,
            event: JobEvent::Cancelled { by },
            guard: JobGuard::Unleased,
            audit: Some(AuditRecord {
                actor,
                action: AuditAction::JobCancel,
                target_user: Some(job.user_id),
                amount: Some(job.quote.amount),
                reason: format!("job {id}: {reason}"),
                created_at: at,
            }),
            at,
        };
        Ok(self.ports.jobs.write_job(&write).await?)
    }

    /// Queues a failed job again as a new job: the same inputs, at the price quoted then,
    /// with a fresh hold on the user's balance. Retrying the same job again returns the
    /// same new job. Audited.
    ///
    /// # Errors
    /// [`JobError::UnknownJob`], [`JobError::NotRetryable`] unless failed,
    /// [`JobError::InsufficientFunds`] when the balance is short,
    /// [`JobError::Banned`], [`JobError::TooManyActiveJobs`].
    pub async fn retry(&self, id: JobId, actor: Actor, reason: &str) -> Result<Retried, JobError> {
        let old = self.job(id).await?;
        if old.state != JobState::Failed {
            return Err(JobError::NotRetryable {
                id,
                state: old.state,
            });
        }
        match self.ports.users.user(old.user_id).await? {
            Some(u) if u.is_banned => return Err(JobError::Banned(old.user_id)),
            Some(_) => {}
            None => return Err(JobError::UnknownUser(old.user_id)),
        }
        let at = self.ports.clock.now();
        let new_id = self.ports.ids.job_id();
        let new = NewJob::new(
            new_id,
            old.user_id,
            old.spec.clone(),
            old.quote.clone(),
            self.ports.ids.reservation_id(),
            IdempotencyKey::derived("job", &id, "retry"),
            at,
        );
        let job = self
            .ports
            .jobs
            .create_job(new, self.limits.max_active_per_user)
            .await?;
        let new = job.id == new_id;
        if new {
            self.ports
                .users
                .append_audit(AuditRecord {
                    actor,
                    action: AuditAction::JobRetry,
                    target_user: Some(job.user_id),
                    amount: Some(job.quote.amount),
                    reason: format!("job {id} retried as {}: {reason}", job.id),
                    created_at: at,
                })
                .await?;
        }
        if job.run_after.is_some() {
            self.ports.queue.enqueue(job.id).await;
        }
        Ok(Retried { job, new })
    }

    /// Records that `user` cannot be reached now (a result could not be given to them):
    /// their next message brings every paid, undelivered result again.
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn mark_unreachable(&self, user: UserId) -> Result<(), JobError> {
        crate::user::record_unreachable(&*self.ports.users, user, self.ports.clock.now())
            .await
            .map_err(Into::into)
    }

    /// Sends again, once, every result `user` could not be given (they had blocked the
    /// bot and now write again): each is queued for delivery with a short note. Returns
    /// how many.
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn redeliver_to(&self, user: UserId) -> Result<usize, JobError> {
        let jobs = self
            .ports
            .jobs
            .jobs(JobFilter {
                user_id: Some(user),
                limit: 200,
                ..JobFilter::default()
            })
            .await?;
        let mut queued = 0;
        for job in jobs
            .iter()
            .filter(|j| j.delivery == crate::job::Delivery::Unreachable && j.result.is_some())
        {
            let applied = self
                .write(job.id, JobEvent::Redeliver, JobGuard::Unleased)
                .await?;
            if applied.changed {
                self.ports.queue.enqueue(job.id).await;
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// "Send again": queues `user`'s delivered result of `id` for one more delivery (with
    /// a note that it is sent again; a result not on the worker's disk is fetched from
    /// the provider again). `Ok(false)` when there is nothing to send: the job is not
    /// theirs, or the job machine finds no delivered result to send (not completed, or
    /// its result already on its way).
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn send_again(&self, user: UserId, id: JobId) -> Result<bool, JobError> {
        let job = match self.ports.jobs.job(id).await? {
            Some(job) if job.user_id == user => job,
            _ => return Ok(false),
        };
        let applied = self
            .write(job.id, JobEvent::SendAgain, JobGuard::Unleased)
            .await?;
        if applied.changed {
            self.ports.queue.enqueue(job.id).await;
        }
        Ok(applied.changed)
    }

    /// A user's newest jobs of the v2.0 bot (imported history).
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn legacy_history(
        &self,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<crate::legacy::LegacyJob>, JobError> {
        Ok(self.ports.jobs.legacy_jobs(user, limit).await?)
    }

    /// A user's newest jobs, skipping the `offset` newest (pages of history).
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn history(
        &self,
        user: UserId,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Job>, JobError> {
        Ok(self
            .ports
            .jobs
            .jobs(JobFilter {
                state: None,
                user_id: Some(user),
                limit: limit.clamp(1, 1000),
                offset,
            })
            .await?)
    }

    /// Jobs matching a filter.
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn list(&self, filter: JobFilter) -> Result<Vec<Job>, JobError> {
        Ok(self.ports.jobs.jobs(filter).await?)
    }

    /// Jobs with work left (queued, leased, or a result still to deliver).
    ///
    /// # Errors
    /// [`JobError::Queue`] on backend failure.
    pub async fn queue_depth(&self) -> Result<u64, JobError> {
        Ok(self.ports.queue.depth().await?)
    }

    /// The inputs and results of jobs with work left (queued, running, or a result still
    /// to deliver), at most `limit` jobs: what an asset cleanup must keep.
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn assets_in_use(&self, limit: u32) -> Result<Vec<crate::job::AssetRef>, JobError> {
        let mut assets = Vec::new();
        for id in self.ports.jobs.queued_jobs(limit).await? {
            let Some(job) = self.ports.jobs.job(id).await? else {
                continue;
            };
            match &job.spec {
                JobSpec::ImageEdit { image, .. } => assets.push(image.clone()),
                JobSpec::Video {
                    input: Some(input), ..
                } => assets.push(input.clone()),
                JobSpec::ImageGeneration { .. } | JobSpec::Video { input: None, .. } => {}
            }
            assets.extend(job.result);
        }
        Ok(assets)
    }

    /// Tells the queue again about every job with work left (a fresh or restarted
    /// broker). Harmless to repeat. Returns how many.
    ///
    /// # Errors
    /// [`JobError::Store`] on storage failure.
    pub async fn resync_queue(&self, limit: u32) -> Result<usize, JobError> {
        let ids = self.ports.jobs.queued_jobs(limit).await?;
        for id in &ids {
            self.ports.queue.enqueue(*id).await;
        }
        Ok(ids.len())
    }
}
