//! The worker's step logic: what a worker holding a job's lease does next, one step at a
//! time — submit, poll once, download, capture, deliver. Each step is one or two leased
//! writes, so a worker killed between any two steps leaves a job the next worker resumes
//! from its stored state: a stored Kling task is polled, not created again; a create
//! whose answer was lost is looked up first; a Gemini call cut off by a crash counts as
//! one failed attempt; a captured result is delivered, exactly once recorded.
//!
//! The loop, timers, heartbeats and concurrency are the adapter's (`rei-adapters`
//! `worker`): this module never sleeps.

use std::sync::Arc;
use std::time::Duration;

use crate::job::{
    Applied, FailureReason, Job, JobError, JobEvent, JobGuard, JobService, JobSpec, JobState,
    VideoMode,
};
use crate::ports::{
    AdminAlert, AssetError, Assets, Clock, ImageGenerator, ImageInput, ImageRequest, Notice,
    Notifier, NotifyError, ProviderError, ProviderErrorKind, VideoGenerator, VideoInput,
    VideoRequest, VideoTaskStatus,
};
use crate::time::Timestamp;

mod deliver;
mod generate;

use generate::VideoJob;

/// Timings of the step logic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerConfig {
    /// How long a claim or heartbeat holds a job.
    pub lease_for: Duration,
    /// Wait between two polls of a running video task.
    pub poll_interval: Duration,
    /// First wait after a failed provider call (doubling per attempt, capped at
    /// `max_backoff`), unless the provider asks for longer.
    pub retry_backoff: Duration,
    /// Longest wait between two tries.
    pub max_backoff: Duration,
    /// An image job not done this long after its first claim fails and is refunded.
    pub image_deadline: Duration,
    /// How long a video task may run at the provider (`KLING_TASK_DEADLINE_SECS`).
    pub video_deadlines: VideoDeadlines,
    /// After a video's deadline, its result is still looked for this long (and
    /// delivered free when it comes).
    pub late_watch: Duration,
    /// Wait between two looks at a watched task.
    pub watch_poll: Duration,
    /// Tries to tell the user before the delivery is recorded as impossible.
    pub max_delivery_attempts: u32,
    /// How long a result's download link works after the job finished
    /// (`ASSET_LINK_TTL`).
    pub result_link_ttl: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            lease_for: Duration::from_secs(60),
            poll_interval: Duration::from_secs(10),
            retry_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30 * 60),
            image_deadline: Duration::from_secs(10 * 60),
            video_deadlines: VideoDeadlines::default(),
            late_watch: Duration::from_secs(24 * 3600),
            watch_poll: Duration::from_secs(60),
            max_delivery_attempts: 20,
            result_link_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// How long a video task may run at the provider before the job is refunded, by model
/// and length: `five_secs` (or the model's own) for a 5 s video, twice that for 10 s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoDeadlines {
    /// For a 5 s video of any model not listed.
    pub five_secs: Duration,
    /// Per model (the provider's name), for a 5 s video.
    pub per_model: Vec<(String, Duration)>,
}

impl Default for VideoDeadlines {
    fn default() -> Self {
        Self {
            five_secs: Duration::from_secs(3600),
            per_model: Vec::new(),
        }
    }
}

impl VideoDeadlines {
    /// The deadline of a video of `model` and `duration`.
    #[must_use]
    pub fn of(&self, model: &str, duration: crate::pricing::VideoDuration) -> Duration {
        let base = self
            .per_model
            .iter()
            .find(|(m, _)| m == model)
            .map_or(self.five_secs, |(_, d)| *d);
        match duration {
            crate::pricing::VideoDuration::Five => base,
            crate::pricing::VideoDuration::Ten => base.saturating_mul(2),
        }
    }
}

/// The ports the step logic works over. A missing generator means the feature is not
/// configured: its jobs fail and are refunded.
#[derive(Clone)]
pub struct RunnerPorts {
    /// Leased writes.
    pub jobs: Arc<JobService>,
    /// Nano Banana Pro.
    pub images: Option<Arc<dyn ImageGenerator>>,
    /// Kling.
    pub videos: Option<Arc<dyn VideoGenerator>>,
    /// Inputs and results.
    pub assets: Arc<dyn Assets>,
    /// Progress, results, failures; admin alerts.
    pub notifier: Arc<dyn Notifier>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

crate::opaque_debug!(RunnerPorts);

/// What the worker does after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run the next step at once.
    Continue,
    /// Keep the lease (heartbeating) and run the next step after this wait.
    Wait(Duration),
    /// The job was handed back (lease released) until its `run_after`.
    Released,
    /// Nothing is left to do.
    Finished,
}

/// Something the worker should count or log: core does no I/O of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepNote {
    /// A provider call failed.
    ProviderError {
        /// `gemini` or `kling`.
        provider: &'static str,
        /// How.
        kind: ProviderErrorKind,
        /// The error text (no secrets).
        message: String,
    },
    /// A billed call was sent and its answer never came (cut off, or a worker died
    /// mid-call): not sent again; the job is refunded and the admins told.
    CallLost {
        /// `gemini` or `kling`.
        provider: &'static str,
    },
    /// A result came after its job was refunded: delivered free.
    LateResult {
        /// `gemini` or `kling`.
        provider: &'static str,
    },
    /// A best-effort message (progress, admin alert) could not be sent.
    NotSent {
        /// What.
        what: &'static str,
        /// Why.
        error: String,
    },
    /// Telling the user how the job ended failed; it will be tried again.
    DeliveryFailed {
        /// Why.
        error: String,
    },
}

/// The outcome of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    /// The job as stored after the step.
    pub job: Job,
    /// What to do next.
    pub next: Next,
    /// What to count or log.
    pub notes: Vec<StepNote>,
}

/// Runs the steps of leased jobs.
#[derive(Debug)]
pub struct JobRunner {
    ports: RunnerPorts,
    config: RunnerConfig,
}

/// One step's working state.
struct Step<'a> {
    runner: &'a JobRunner,
    job: Job,
    guard: JobGuard,
    notes: Vec<StepNote>,
}

impl JobRunner {
    /// A runner over its ports.
    #[must_use]
    pub const fn new(ports: RunnerPorts, config: RunnerConfig) -> Self {
        Self { ports, config }
    }

    /// Its timings.
    #[must_use]
    pub const fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Runs the next step of a job the caller holds the lease of (as returned by the
    /// claim or the previous step).
    ///
    /// # Errors
    /// [`JobError::LeaseLost`]: the worker must drop the job. Other errors (store
    /// outage): the worker keeps the lease and tries again later, or lets it expire.
    pub async fn step(&self, job: Job) -> Result<StepOutcome, JobError> {
        let Some(lease) = job.lease else {
            return Err(JobError::LeaseLost(job.id));
        };
        // Start from the stored row: a cancel may have been asked for meanwhile.
        let job = self.ports.jobs.job(job.id).await?;
        if !job.is_leased_by(&lease.token, self.now()) {
            return Err(JobError::LeaseLost(job.id));
        }
        let mut step = Step {
            runner: self,
            job,
            guard: JobGuard::Lease(lease.token),
            notes: Vec::new(),
        };
        let next = step.run().await?;
        Ok(StepOutcome {
            job: step.job,
            next,
            notes: step.notes,
        })
    }

    fn now(&self) -> Timestamp {
        self.ports.clock.now()
    }

    fn backoff(&self, failures: u32, asked: Option<Duration>) -> Duration {
        let base = self
            .config
            .retry_backoff
            .saturating_mul(1_u32 << failures.min(16));
        base.max(asked.unwrap_or_default())
            .min(self.config.max_backoff)
    }
}

impl Step<'_> {
    async fn run(&mut self) -> Result<Next, JobError> {
        let limits = self.runner.ports.jobs.limits();
        match self.job.state {
            JobState::Completed => self.deliver().await,
            JobState::Failed | JobState::Cancelled => {
                if self.job.delivery == crate::job::Delivery::Pending {
                    self.deliver().await
                } else if self.job.watch_until.is_some() {
                    self.watch().await
                } else {
                    Ok(Next::Finished)
                }
            }
            JobState::Pending => Err(JobError::LeaseLost(self.job.id)),
            JobState::Processing => {
                if let Some(by) = self.job.cancel_requested.clone() {
                    // A cancel an older version stored as a request: settled now (a
                    // user's, once the call went out, no longer stops the job).
                    match self.write(JobEvent::Cancelled { by }).await {
                        Ok(_) => return Ok(Next::Continue),
                        Err(JobError::AlreadyBeingMade(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                if let Some(next) = self.out_of_time(limits.max_deliveries).await? {
                    return Ok(next);
                }
                if self.job.progress < crate::job::Progress::Generating
                    && self.job.deliveries == 1
                    && self.job.provider_calls == 0
                {
                    self.progress().await?;
                }
                match self.job.spec.clone() {
                    JobSpec::ImageGeneration { .. } | JobSpec::ImageEdit { .. } => {
                        self.image().await
                    }
                    JobSpec::Video {
                        mode,
                        model,
                        duration,
                        prompt,
                        input,
                        aspect,
                    } => {
                        self.video(VideoJob {
                            mode,
                            model,
                            duration,
                            prompt: prompt.as_str().to_owned(),
                            input,
                            aspect,
                        })
                        .await
                    }
                }
            }
        }
    }

    /// The deadline or the crash cap, if either is reached: what the step does instead.
    /// A video whose task runs at the provider is never ended by crashes or poll errors,
    /// only by its deadline — and then still watched for a result that comes late.
    async fn out_of_time(&mut self, max_deliveries: u32) -> Result<Option<Next>, JobError> {
        let config = &self.runner.config;
        let started = self.job.started_at.unwrap_or(self.job.created_at);
        let now = self.runner.now();
        if let JobSpec::Video {
            model, duration, ..
        } = &self.job.spec
        {
            let deadline = config.video_deadlines.of(model, *duration);
            if now >= started.plus(deadline) {
                let after_secs = deadline.as_secs();
                if self.job.provider_task_id.is_some() || self.job.provider_calls > 0 {
                    let watch_until = now.plus(config.late_watch);
                    self.write(JobEvent::DeadlinePassed {
                        after_secs,
                        watch_until,
                    })
                    .await?;
                    return Ok(Some(Next::Continue));
                }
                return self
                    .fail(FailureReason::DeadlineExceeded { after_secs })
                    .await
                    .map(Some);
            }
            if self.job.provider_task_id.is_some() {
                return Ok(None);
            }
        } else if now >= started.plus(config.image_deadline) {
            return self
                .fail(FailureReason::DeadlineExceeded {
                    after_secs: config.image_deadline.as_secs(),
                })
                .await
                .map(Some);
        }
        if self.job.deliveries > max_deliveries {
            let attempts = self.job.deliveries.saturating_sub(1);
            return self
                .fail(FailureReason::TooManyAttempts { attempts })
                .await
                .map(Some);
        }
        Ok(None)
    }

    async fn write(&mut self, event: JobEvent) -> Result<Applied, JobError> {
        let applied = self
            .runner
            .ports
            .jobs
            .write(self.job.id, event, self.guard.clone())
            .await?;
        self.job = applied.job.clone();
        Ok(applied)
    }

    async fn fail(&mut self, reason: FailureReason) -> Result<Next, JobError> {
        self.write(JobEvent::Failed { reason }).await?;
        Ok(Next::Continue)
    }

    /// Notes a provider's error for the step's log, and tells the admins when it needs
    /// them (the provider is misconfigured or out of funds).
    pub(super) async fn note_provider_error(
        &mut self,
        provider: &'static str,
        error: &ProviderError,
    ) {
        self.notes.push(StepNote::ProviderError {
            provider,
            kind: error.kind(),
            message: error.to_string(),
        });
        if error.alerts_admins() {
            let alert = AdminAlert {
                provider: provider.to_owned(),
                kind: error.kind(),
                message: error.to_string(),
                subject: None,
            };
            if let Err(e) = self.runner.ports.notifier.alert_admins(alert).await {
                self.notes.push(StepNote::NotSent {
                    what: "admin alert",
                    error: e.to_string(),
                });
            }
        }
    }

    /// A provider error: final ones fail the job (alerting admins when the provider is
    /// misconfigured or out of funds); retryable ones, and answers lost after the call
    /// was sent, count as a failed attempt until the attempts run out.
    async fn provider_failed(
        &mut self,
        provider: &'static str,
        error: ProviderError,
    ) -> Result<Next, JobError> {
        self.note_provider_error(provider, &error).await;
        // A Gemini call whose answer was lost may have been billed: never sent again
        // automatically (a Kling create is looked up by our job id before any second
        // one, so it may be tried again).
        let billed_unknown = provider == "gemini" && matches!(error, ProviderError::Unknown { .. });
        let worth_retrying = !billed_unknown
            && matches!(
                error,
                ProviderError::Transient { .. }
                    | ProviderError::RateLimited { .. }
                    | ProviderError::Unknown { .. }
            );
        let max = self.runner.ports.jobs.limits().max_attempts;
        if billed_unknown {
            return self.call_lost(provider, &error.to_string()).await;
        }
        if !worth_retrying {
            return self.fail(error.failure_reason()).await;
        }
        if self.job.attempts.saturating_add(1) >= max {
            return self
                .fail(FailureReason::ProviderFailed {
                    detail: format!("{error} (after {max} attempts)"),
                })
                .await;
        }
        self.try_again_later(&error).await
    }

    /// A failed attempt: the job is released and tried again after a growing wait (or
    /// the wait the provider asked for with a 429).
    pub(super) async fn try_again_later(
        &mut self,
        error: &ProviderError,
    ) -> Result<Next, JobError> {
        let asked = match error {
            ProviderError::RateLimited { retry_after } => *retry_after,
            _ => None,
        };
        let wait = self.runner.backoff(self.job.attempts, asked);
        let retry_at = self.runner.now().plus(wait);
        self.write(JobEvent::AttemptFailed { retry_at }).await?;
        Ok(Next::Released)
    }

    /// A billed call that went out and whose answer never came: it is never sent again
    /// (the provider may have made and billed it). The job ends refunded, and the admins
    /// are told, so a person can look at what the provider charged.
    async fn call_lost(&mut self, provider: &'static str, what: &str) -> Result<Next, JobError> {
        self.notes.push(StepNote::CallLost { provider });
        let alert = AdminAlert {
            provider: provider.to_owned(),
            kind: crate::ports::ProviderErrorKind::Unknown,
            message: format!(
                "job {}: the answer to a billed call was lost ({what}); not sent again, the user is refunded",
                self.job.id
            ),
            subject: Some(format!("job {}", self.job.id)),
        };
        if let Err(e) = self.runner.ports.notifier.alert_admins(alert).await {
            self.notes.push(StepNote::NotSent {
                what: "admin alert",
                error: e.to_string(),
            });
        }
        self.fail(FailureReason::ProviderFailed {
            detail: format!("the answer to a billed call was lost: {what}"),
        })
        .await
    }
}
