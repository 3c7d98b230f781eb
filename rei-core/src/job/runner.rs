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

/// Timings of the step logic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// The same for a video job.
    pub video_deadline: Duration,
    /// Tries to tell the user before the delivery is recorded as impossible.
    pub max_delivery_attempts: u32,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            lease_for: Duration::from_secs(60),
            poll_interval: Duration::from_secs(10),
            retry_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30 * 60),
            image_deadline: Duration::from_secs(10 * 60),
            video_deadline: Duration::from_secs(15 * 60),
            max_delivery_attempts: 20,
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

impl std::fmt::Debug for RunnerPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunnerPorts")
    }
}

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
    /// A billed call cut off by a crash is being counted as a failed attempt (and may
    /// be made again): the provider may bill twice.
    CallRepeated {
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
            JobState::Completed | JobState::Failed | JobState::Cancelled => self.deliver().await,
            JobState::Pending => Err(JobError::LeaseLost(self.job.id)),
            JobState::Processing => {
                if let Some(by) = self.job.cancel_requested.clone() {
                    self.write(JobEvent::Cancelled { by }).await?;
                    return Ok(Next::Continue);
                }
                if let Some(reason) = self.out_of_time(limits.max_deliveries) {
                    return self.fail(reason).await;
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
                    } => {
                        self.video(VideoJob {
                            mode,
                            model,
                            duration,
                            prompt: prompt.as_str().to_owned(),
                            input,
                        })
                        .await
                    }
                }
            }
        }
    }

    /// The deadline or the crash cap, if either is reached.
    fn out_of_time(&self, max_deliveries: u32) -> Option<FailureReason> {
        let config = &self.runner.config;
        let deadline = match self.job.spec {
            JobSpec::Video { .. } => config.video_deadline,
            JobSpec::ImageGeneration { .. } | JobSpec::ImageEdit { .. } => config.image_deadline,
        };
        let started = self.job.started_at.unwrap_or(self.job.created_at);
        if self.runner.now() >= started.plus(deadline) {
            return Some(FailureReason::DeadlineExceeded {
                after_secs: deadline.as_secs(),
            });
        }
        (self.job.deliveries > max_deliveries).then_some(FailureReason::TooManyAttempts {
            attempts: self.job.deliveries.saturating_sub(1),
        })
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

    /// A provider error: final ones fail the job (alerting admins when the provider is
    /// misconfigured or out of funds); retryable ones, and answers lost after the call
    /// was sent, count as a failed attempt until the attempts run out.
    async fn provider_failed(
        &mut self,
        provider: &'static str,
        error: ProviderError,
    ) -> Result<Next, JobError> {
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
        let worth_retrying = matches!(
            error,
            ProviderError::Transient { .. }
                | ProviderError::RateLimited { .. }
                | ProviderError::Unknown { .. }
        );
        let max = self.runner.ports.jobs.limits().max_attempts;
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
        let asked = match error {
            ProviderError::RateLimited { retry_after } => retry_after,
            _ => None,
        };
        let wait = self.runner.backoff(self.job.attempts, asked);
        let retry_at = self.runner.now().plus(wait);
        self.write(JobEvent::AttemptFailed { retry_at }).await?;
        Ok(Next::Released)
    }

    /// A billed call that was started and never answered (its worker died): one failed
    /// attempt, after which the job is tried again at once, or failed when the attempts
    /// are used up. `None` when no call was lost.
    async fn count_lost_call(&mut self, provider: &'static str) -> Result<Option<Next>, JobError> {
        if self.job.provider_calls <= self.job.attempts {
            return Ok(None);
        }
        self.notes.push(StepNote::CallRepeated { provider });
        let max = self.runner.ports.jobs.limits().max_attempts;
        if self.job.attempts.saturating_add(1) >= max {
            let attempts = self.job.attempts.saturating_add(1);
            return self
                .fail(FailureReason::TooManyAttempts { attempts })
                .await
                .map(Some);
        }
        let retry_at = self.runner.now();
        self.write(JobEvent::AttemptFailed { retry_at }).await?;
        Ok(Some(Next::Released))
    }

    async fn image(&mut self) -> Result<Next, JobError> {
        if let Some(next) = self.count_lost_call("gemini").await? {
            return Ok(next);
        }
        let Some(images) = self.runner.ports.images.clone() else {
            return self
                .fail(FailureReason::ServiceUnavailable {
                    detail: "image generation is not configured".into(),
                })
                .await;
        };
        let mut inputs = Vec::new();
        if let JobSpec::ImageEdit { image, .. } = self.job.spec.clone() {
            match self.input_image(&image).await? {
                Ok(input) => inputs.push(input),
                Err(next) => return Ok(next),
            }
        }
        let request = ImageRequest {
            job_id: self.job.id,
            prompt: self.job.spec.prompt().as_str().to_owned(),
            images: inputs,
        };
        self.write(JobEvent::CallStarted).await?;
        match images.generate(&request).await {
            Ok(image) => {
                let ext = match image.mime_type.as_str() {
                    "image/jpeg" => "jpg",
                    "image/webp" => "webp",
                    _ => "png",
                };
                let key = format!("results/{}.{ext}", self.job.id);
                match self.runner.ports.assets.write(&key, &image.bytes).await {
                    Ok(result) => self.succeed(result).await,
                    // The render is paid for but could not be kept: try again later
                    // rather than charge for nothing.
                    Err(e) => {
                        self.provider_failed(
                            "gemini",
                            ProviderError::Transient {
                                message: format!("cannot store the result: {e}"),
                            },
                        )
                        .await
                    }
                }
            }
            Err(e) => self.provider_failed("gemini", e).await,
        }
    }

    /// A stored input photo, or what the step does instead: a file that is gone fails
    /// the job (refunded), an asset store outage is one failed attempt, tried again later.
    async fn input_image(
        &mut self,
        asset: &crate::job::AssetRef,
    ) -> Result<Result<ImageInput, Next>, JobError> {
        match self.runner.ports.assets.read(asset).await {
            Ok(bytes) => Ok(Ok(ImageInput {
                mime_type: sniff_image(&bytes).to_owned(),
                bytes,
            })),
            Err(e @ AssetError::NotFound(_)) => self
                .fail(FailureReason::BadInput {
                    detail: e.to_string(),
                })
                .await
                .map(Err),
            Err(e @ AssetError::Unavailable(_)) => {
                let transient = ProviderError::Transient {
                    message: format!("cannot read the input: {e}"),
                };
                self.provider_failed("assets", transient).await.map(Err)
            }
        }
    }

    async fn succeed(&mut self, result: crate::job::AssetRef) -> Result<Next, JobError> {
        let actual_cost = self.job.quote.amount;
        self.write(JobEvent::Succeeded {
            result,
            actual_cost,
        })
        .await?;
        Ok(Next::Continue)
    }

    async fn video(&mut self, v: VideoJob) -> Result<Next, JobError> {
        let Some(videos) = self.runner.ports.videos.clone() else {
            return self
                .fail(FailureReason::ServiceUnavailable {
                    detail: "video generation is not configured".into(),
                })
                .await;
        };
        if let Some(task) = self.job.provider_task_id.clone() {
            return match videos.status(v.mode, &task).await {
                Ok(VideoTaskStatus::Submitted | VideoTaskStatus::Processing) => {
                    if self.write(JobEvent::Generating).await?.changed {
                        self.progress().await?;
                    }
                    Ok(Next::Wait(self.runner.config.poll_interval))
                }
                Ok(VideoTaskStatus::Succeeded { url, .. }) => {
                    match videos.download(&url, self.job.id).await {
                        Ok(asset) => self.succeed(asset.asset).await,
                        Err(e) => self.provider_failed("kling", e).await,
                    }
                }
                Ok(VideoTaskStatus::Failed { message }) => {
                    self.fail(FailureReason::ProviderFailed { detail: message })
                        .await
                }
                Err(e) => self.provider_failed("kling", e).await,
            };
        }
        if self.job.provider_calls > 0 {
            // A create was sent before and its task id never stored: find the task
            // instead of paying for another one.
            match videos.find_by_job(v.mode, self.job.id).await {
                Ok(Some(task)) => {
                    self.write(JobEvent::ProviderTaskCreated { task_id: task })
                        .await?;
                    self.progress().await?;
                    return Ok(Next::Continue);
                }
                Ok(None) => {}
                Err(e) => return self.provider_failed("kling", e).await,
            }
        }
        let input = match (&v.mode, &v.input) {
            (VideoMode::TextToVideo, _) => VideoInput::None,
            (VideoMode::ImageToVideo, Some(image)) => match self.input_image(image).await? {
                Ok(input) => VideoInput::Image(input),
                Err(next) => return Ok(next),
            },
            (VideoMode::VideoToVideo, Some(source)) => {
                match self.runner.ports.assets.public_url(source) {
                    Some(url) => VideoInput::VideoUrl(url),
                    None => {
                        return self
                            .fail(FailureReason::ServiceUnavailable {
                                detail: "video to video needs PUBLIC_URL".into(),
                            })
                            .await;
                    }
                }
            }
            (VideoMode::ImageToVideo | VideoMode::VideoToVideo, None) => {
                return self
                    .fail(FailureReason::BadInput {
                        detail: "the input file is missing".into(),
                    })
                    .await;
            }
        };
        let request = VideoRequest {
            job_id: self.job.id,
            mode: v.mode,
            model: v.model,
            duration: v.duration,
            prompt: v.prompt,
            input,
            callback_url: None,
        };
        self.write(JobEvent::CallStarted).await?;
        match videos.submit(&request).await {
            Ok(task) => {
                self.write(JobEvent::ProviderTaskCreated { task_id: task })
                    .await?;
                self.progress().await?;
                Ok(Next::Continue)
            }
            Err(e) => self.provider_failed("kling", e).await,
        }
    }

    /// Best effort: the status message shows the stored progress. A status message the
    /// notifier starts is stored with the job, so later notices edit it.
    async fn progress(&mut self) -> Result<(), JobError> {
        let notice = Notice::JobProgress {
            job_id: self.job.id,
            progress: self.job.progress,
            status_message: self.job.status_message.clone(),
        };
        match self
            .runner
            .ports
            .notifier
            .notify(self.job.user_id, notice)
            .await
        {
            Ok(Some(message)) if self.job.status_message.as_ref() != Some(&message) => {
                self.write(JobEvent::StatusMessage { message }).await?;
            }
            Ok(_) => {}
            Err(e) => self.notes.push(StepNote::NotSent {
                what: "progress",
                error: e.to_string(),
            }),
        }
        Ok(())
    }

    /// Tells the user how the job ended, and records it: delivered, unreachable (blocked
    /// the bot), or to be tried again with backoff.
    async fn deliver(&mut self) -> Result<Next, JobError> {
        if self.job.delivery != crate::job::Delivery::Pending {
            return Ok(Next::Finished);
        }
        let job = &self.job;
        let notice = match job.state {
            JobState::Completed => match (&job.result, job.cost_actual) {
                (Some(result), Some(charged)) => Notice::JobCompleted {
                    job_id: job.id,
                    kind: job.spec.kind(),
                    result: result.clone(),
                    charged,
                    status_message: job.status_message.clone(),
                },
                _ => {
                    return Err(JobError::Store(crate::ports::StoreError::Corrupt(format!(
                        "completed job {} has no result or cost",
                        job.id
                    ))));
                }
            },
            JobState::Failed => Notice::JobFailed {
                job_id: job.id,
                reason: job
                    .failure
                    .clone()
                    .unwrap_or(FailureReason::ProviderFailed {
                        detail: String::new(),
                    }),
                refunded: job.quote.amount,
                status_message: job.status_message.clone(),
            },
            JobState::Cancelled | JobState::Pending | JobState::Processing => {
                Notice::JobCancelled {
                    job_id: job.id,
                    refunded: job.quote.amount,
                    status_message: job.status_message.clone(),
                }
            }
        };
        match self.runner.ports.notifier.notify(job.user_id, notice).await {
            Ok(_) => {
                self.write(JobEvent::Delivered).await?;
                Ok(Next::Finished)
            }
            Err(NotifyError::Unreachable(_)) => {
                self.write(JobEvent::Undeliverable).await?;
                Ok(Next::Finished)
            }
            Err(e @ NotifyError::Unavailable(_)) => {
                self.notes.push(StepNote::DeliveryFailed {
                    error: e.to_string(),
                });
                let config = &self.runner.config;
                if self.job.delivery_attempts.saturating_add(1) >= config.max_delivery_attempts {
                    self.write(JobEvent::Undeliverable).await?;
                    return Ok(Next::Finished);
                }
                let wait = self.runner.backoff(self.job.delivery_attempts, None);
                let retry_at = self.runner.now().plus(wait);
                self.write(JobEvent::DeliveryFailed { retry_at }).await?;
                Ok(Next::Released)
            }
        }
    }
}

struct VideoJob {
    mode: VideoMode,
    model: String,
    duration: crate::pricing::VideoDuration,
    prompt: String,
    input: Option<crate::job::AssetRef>,
}

/// The image type by its magic bytes (inputs come from Telegram as JPEG, but a
/// document may be PNG or WebP).
fn sniff_image(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        "image/png"
    } else if bytes.len() > 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "image/jpeg"
    }
}
