//! The worker loop: claim a job with a lease, keep the lease alive while core's step
//! logic ([`JobRunner`]) runs, follow what each step says (continue, wait, hand back,
//! done), and stop cleanly on shutdown. `WORKER_CONCURRENCY` slots per process; several
//! processes on one database (and Redis) share the work, the job's lease deciding who
//! owns a job.
//!
//! Shutdown: no slot claims after the token is cancelled; a slot that is between steps
//! hands its job back at once (claimable again by any worker), and one inside a step
//! lets the step finish (its money write commits or not, atomically) for up to the grace
//! period, then drops it: the lease expires and the next worker resumes the job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rei_core::ids::JobId;
use rei_core::job::{
    Job, JobError, JobEvent, JobGuard, JobRunner, JobService, Next, StepNote, StepOutcome,
};
use rei_core::ports::Clock;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a worker process runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// This process's name (logs, broker consumer name).
    pub name: String,
    /// Jobs at once (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Wait between two claims when the queue is empty.
    pub idle_poll: Duration,
    /// How long a step may finish after shutdown was asked for.
    pub grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: "worker".into(),
            concurrency: 4,
            idle_poll: Duration::from_millis(250),
            grace: Duration::from_secs(20),
        }
    }
}

/// Wakes a job's worker out of its wait between two polls of the provider (a provider
/// callback said the task changed): the next poll re-reads the task at once. Only jobs
/// worked on in this process can be woken; elsewhere the next regular poll sees it.
#[derive(Clone, Debug, Default)]
pub struct Wakeups {
    waiting: Arc<std::sync::Mutex<std::collections::HashMap<JobId, Arc<tokio::sync::Notify>>>>,
}

impl Wakeups {
    /// Wakes the job's worker if one in this process waits on it; says whether one did.
    pub fn wake(&self, job: JobId) -> bool {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.get(&job).is_some_and(|n| {
            n.notify_one();
            true
        })
    }

    fn register(&self, job: JobId) -> Arc<tokio::sync::Notify> {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.entry(job).or_default().clone()
    }

    fn forget(&self, job: JobId) {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&job);
    }
}

/// A pool of worker slots.
#[derive(Clone)]
pub struct Worker {
    jobs: Arc<JobService>,
    runner: Arc<JobRunner>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    wakeups: Wakeups,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a slot stopped working on a job.
enum Stop {
    Done,
    LeaseLost,
    Failed(JobError),
}

impl Worker {
    /// Slots over the job service and the step logic.
    #[must_use]
    pub fn new(
        jobs: Arc<JobService>,
        runner: Arc<JobRunner>,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            jobs,
            runner,
            clock,
            config,
            wakeups: Wakeups::default(),
        }
    }

    /// The handle that wakes this process's jobs out of their waits.
    #[must_use]
    pub fn wakeups(&self) -> Wakeups {
        self.wakeups.clone()
    }

    /// Runs every slot until `shutdown` is cancelled and the slots have let go.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(worker = %self.config.name, concurrency = self.config.concurrency, "workers started");
        let mut slots = tokio::task::JoinSet::new();
        for slot in 0..self.config.concurrency.max(1) {
            let worker = self.clone();
            let shutdown = shutdown.clone();
            slots.spawn(async move { worker.slot(slot, shutdown).await });
        }
        while let Some(joined) = slots.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "a worker slot panicked");
            }
        }
        tracing::info!(worker = %self.config.name, "workers stopped");
    }

    async fn slot(&self, slot: usize, shutdown: CancellationToken) {
        let name = format!("{}-{slot}", self.config.name);
        let lease_for = self.runner.config().lease_for;
        while !shutdown.is_cancelled() {
            match self.jobs.claim(&name, lease_for).await {
                Ok(Some(job)) => {
                    let span = tracing::info_span!(
                        "job",
                        job_id = %job.id,
                        user_id = job.user_id.get(),
                        kind = job.spec.kind().as_str(),
                        deliveries = job.deliveries,
                        worker = %name,
                    );
                    self.work(job, &shutdown).instrument(span).await;
                }
                Ok(None) => {
                    tokio::select! {
                        () = tokio::time::sleep(self.config.idle_poll) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, error.chain = ?e, "claiming a job failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.idle_poll * 4) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Runs one claimed job's steps until the worker lets go of it.
    async fn work(&self, mut job: Job, shutdown: &CancellationToken) {
        let started = Instant::now();
        let stop = loop {
            let outcome = self.step_with_heartbeat(job.clone(), shutdown).await;
            let out = match outcome {
                Ok(out) => out,
                Err(JobError::LeaseLost(_)) => break Stop::LeaseLost,
                Err(e) => break Stop::Failed(e),
            };
            record(&out);
            job = out.job;
            match out.next {
                Next::Continue if shutdown.is_cancelled() => break self.hand_back(&job).await,
                Next::Continue => {}
                Next::Wait(wait) => {
                    let woken = self.wakeups.register(job.id);
                    let waited = tokio::select! {
                        r = self.heartbeat(&job, Some(wait)) => r,
                        () = shutdown.cancelled() => Ok(()),
                        () = woken.notified() => {
                            tracing::debug!("woken by a provider callback");
                            Ok(())
                        }
                    };
                    self.wakeups.forget(job.id);
                    if let Err(stop) = waited {
                        break stop;
                    }
                    if shutdown.is_cancelled() {
                        break self.hand_back(&job).await;
                    }
                }
                Next::Released | Next::Finished => {
                    if let Err(e) = self.jobs.done(&job).await {
                        tracing::warn!(error = %e, "telling the queue the job is done failed");
                    }
                    break Stop::Done;
                }
            }
        };
        match stop {
            Stop::Done => {
                if job.state.is_final() && job.run_after.is_none() {
                    metrics::counter!("jobs_finished_total", "kind" => job.spec.kind().as_str(), "status" => job.state.as_str())
                        .increment(1);
                    metrics::histogram!("job_duration_seconds", "kind" => job.spec.kind().as_str())
                        .record(started.elapsed().as_secs_f64());
                    tracing::info!(
                        status = job.state.as_str(),
                        delivery = job.delivery.as_str(),
                        "job finished"
                    );
                }
            }
            Stop::LeaseLost => {
                tracing::warn!("lost the lease on the job; another worker has it now");
            }
            Stop::Failed(e) => {
                // The lease expires and the next claim resumes the job from its stored state.
                tracing::error!(error = %e, error.chain = ?e, "job step failed; it will be resumed after its lease");
            }
        }
    }

    /// Runs one step while extending the lease in the background. A step still running
    /// when shutdown's grace period ends is dropped (its lease then expires).
    async fn step_with_heartbeat(
        &self,
        job: Job,
        shutdown: &CancellationToken,
    ) -> Result<StepOutcome, JobError> {
        let step = self.runner.step(job.clone());
        tokio::pin!(step);
        let grace = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.config.grace).await;
        };
        tokio::select! {
            out = &mut step => out,
            beat = self.heartbeat(&job, None) => match beat {
                Err(Stop::LeaseLost) => Err(JobError::LeaseLost(job.id)),
                Err(Stop::Failed(e)) => Err(e),
                Err(Stop::Done) | Ok(()) => step.await,
            },
            () = grace => {
                tracing::warn!("shutdown grace period over: leaving the step to the next worker");
                Err(JobError::LeaseLost(job.id))
            }
        }
    }

    /// Extends the job's lease every third of its length, for `wait` (or forever).
    async fn heartbeat(&self, job: &Job, wait: Option<Duration>) -> Result<(), Stop> {
        let lease_for = self.runner.config().lease_for;
        let every = (lease_for / 3).max(Duration::from_millis(50));
        let end = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            let next = tokio::time::Instant::now() + every;
            match end {
                Some(end) if end <= next => {
                    tokio::time::sleep_until(end).await;
                    return Ok(());
                }
                _ => tokio::time::sleep_until(next).await,
            }
            match self.jobs.extend(job, lease_for).await {
                // A provider said the task changed (a callback, maybe received by
                // another process): the wait ends, the worker asks at once.
                Ok(extended) if wait.is_some() && extended.job.woken_at != job.woken_at => {
                    tracing::debug!("woken by a provider callback");
                    return Ok(());
                }
                Ok(_) => {}
                Err(JobError::LeaseLost(_)) => return Err(Stop::LeaseLost),
                // A store hiccup: the lease still has two thirds to run; try again.
                Err(e) => tracing::warn!(error = %e, "extending the lease failed"),
            }
        }
    }

    /// Gives a job back to the queue at once (shutdown between steps).
    async fn hand_back(&self, job: &Job) -> Stop {
        let Some(lease) = &job.lease else {
            return Stop::Done;
        };
        let now = self.clock.now();
        let released = self
            .jobs
            .write(
                job.id,
                JobEvent::Released { run_after: now },
                JobGuard::Lease(lease.token.clone()),
            )
            .await;
        match released {
            Ok(applied) => {
                tracing::info!("handed the job back for shutdown");
                if let Err(e) = self.jobs.done(&applied.job).await {
                    tracing::warn!(error = %e, "telling the queue the job was handed back failed");
                }
                Stop::Done
            }
            Err(JobError::LeaseLost(_)) => Stop::LeaseLost,
            Err(e) => Stop::Failed(e),
        }
    }
}

/// Counts and logs what a step noted.
fn record(out: &StepOutcome) {
    for note in &out.notes {
        match note {
            StepNote::ProviderError {
                provider,
                kind,
                message,
            } => {
                tracing::warn!(provider, kind = kind.as_str(), error = %message, attempts = out.job.attempts, "provider call failed");
            }
            StepNote::CallLost { provider } => {
                metrics::counter!("provider_calls_lost_total", "provider" => *provider)
                    .increment(1);
                tracing::error!(
                    provider,
                    "the answer to a billed call was lost; not sent again, the user is refunded"
                );
            }
            StepNote::LateResult { provider } => {
                metrics::counter!("late_results_total", "provider" => *provider).increment(1);
                tracing::info!(
                    provider,
                    "a result came after its job was refunded: delivered free"
                );
            }
            StepNote::NotSent { what, error } => {
                tracing::info!(what, error = %error, "best-effort message not sent");
            }
            StepNote::DeliveryFailed { error } => {
                metrics::counter!("job_delivery_failures_total").increment(1);
                tracing::warn!(error = %error, attempts = out.job.delivery_attempts, "delivering the result failed; it will be retried");
            }
        }
    }
}

/// Deletes assets older than `retention` every day (the first sweep a minute after the
/// start), keeping the inputs and results of jobs with work left, until `shutdown`.
pub async fn sweep_assets_daily(
    jobs: Arc<JobService>,
    assets: crate::outbound::files::AssetStore,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        wait = Duration::from_secs(24 * 3600);
        let keep = match jobs.assets_in_use(u32::MAX).await {
            Ok(keep) => keep.into_iter().map(|a| a.as_str().to_owned()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "asset sweep skipped: cannot list the assets in use");
                continue;
            }
        };
        let cutoff = std::time::SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(std::time::UNIX_EPOCH);
        match assets.sweep(cutoff, &keep).await {
            Ok(report) => tracing::info!(
                deleted = report.deleted,
                bytes = report.bytes,
                kept = report.kept,
                "asset sweep done"
            ),
            Err(e) => tracing::warn!(error = %e, "asset sweep failed"),
        }
    }
}
