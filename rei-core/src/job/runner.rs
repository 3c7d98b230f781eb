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
        let asked = match error {
            ProviderError::RateLimited { retry_after } => retry_after,
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

    async fn image(&mut self) -> Result<Next, JobError> {
        // A call went out before and never came back (its worker died): not sent again.
        if self.job.provider_calls > self.job.attempts {
            return self
                .call_lost("gemini", "the worker that sent it stopped")
                .await;
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
                    Ok(result) => self.succeed(result, None, "gemini").await,
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

    async fn succeed(
        &mut self,
        result: crate::job::AssetRef,
        result_url: Option<String>,
        provider: &'static str,
    ) -> Result<Next, JobError> {
        let late = self.job.state.is_final();
        let actual_cost = self.job.quote.amount;
        self.write(JobEvent::Succeeded {
            result,
            actual_cost,
            result_url,
        })
        .await?;
        if late {
            self.notes.push(StepNote::LateResult { provider });
        }
        Ok(Next::Continue)
    }

    /// A downloaded video: captured, unless the messenger cannot take a file that large
    /// and no download link can be made — then nothing could be delivered, so the job is
    /// refunded instead of charged.
    async fn video_ready(
        &mut self,
        asset: crate::ports::DownloadedAsset,
        url: String,
    ) -> Result<Next, JobError> {
        let limit = self.runner.ports.notifier.upload_limit();
        let deliverable = limit.is_none_or(|limit| asset.bytes <= limit)
            || self
                .runner
                .ports
                .assets
                .download_link(&asset.asset, self.runner.now())
                .is_some();
        if !deliverable && !self.job.state.is_final() {
            let megabytes = asset.bytes.div_ceil(1024 * 1024);
            return self.fail(FailureReason::ResultTooLarge { megabytes }).await;
        }
        self.succeed(asset.asset, Some(url), "kling").await
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
                        Ok(asset) => self.video_ready(asset, url).await,
                        Err(e) => self.poll_failed(e).await,
                    }
                }
                Ok(VideoTaskStatus::Failed { message }) => {
                    self.fail(FailureReason::ProviderFailed { detail: message })
                        .await
                }
                Err(e) => self.poll_failed(e).await,
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

    /// Asking about a running task (or fetching its result) failed: counted and asked
    /// again later with a growing wait. It never ends the job — the task may still be
    /// running at the provider; only the deadline does.
    async fn poll_failed(&mut self, error: ProviderError) -> Result<Next, JobError> {
        self.notes.push(StepNote::ProviderError {
            provider: "kling",
            kind: error.kind(),
            message: error.to_string(),
        });
        if error.alerts_admins() {
            let alert = AdminAlert {
                provider: "kling".to_owned(),
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
        let asked = match error {
            ProviderError::RateLimited { retry_after } => retry_after,
            _ => None,
        };
        let wait = self.runner.backoff(self.job.attempts, asked);
        let retry_at = self.runner.now().plus(wait);
        self.write(JobEvent::AttemptFailed { retry_at }).await?;
        Ok(Next::Released)
    }

    /// A job refunded while its provider worked: ask once more whether the result came.
    async fn watch(&mut self) -> Result<Next, JobError> {
        let now = self.runner.now();
        if self.job.watch_until.is_none_or(|until| now >= until) {
            self.write(JobEvent::WatchEnded).await?;
            return Ok(Next::Finished);
        }
        let (JobSpec::Video { mode, .. }, Some(videos)) =
            (&self.job.spec, self.runner.ports.videos.clone())
        else {
            // An image call's answer comes only to the worker that sent it.
            self.write(JobEvent::WatchEnded).await?;
            return Ok(Next::Finished);
        };
        let mode = *mode;
        let Some(task) = self.job.provider_task_id.clone() else {
            return match videos.find_by_job(mode, self.job.id).await {
                Ok(Some(task)) => {
                    self.write(JobEvent::ProviderTaskCreated { task_id: task })
                        .await?;
                    Ok(Next::Continue)
                }
                Ok(None) => {
                    self.write(JobEvent::WatchEnded).await?;
                    Ok(Next::Finished)
                }
                Err(_) => self.watch_again(self.runner.config.watch_poll).await,
            };
        };
        match videos.status(mode, &task).await {
            Ok(VideoTaskStatus::Succeeded { url, .. }) => {
                match videos.download(&url, self.job.id).await {
                    Ok(asset) => self.video_ready(asset, url).await,
                    Err(_) => self.watch_again(self.runner.config.watch_poll).await,
                }
            }
            Ok(VideoTaskStatus::Failed { .. }) => {
                self.write(JobEvent::WatchEnded).await?;
                Ok(Next::Finished)
            }
            Ok(VideoTaskStatus::Submitted | VideoTaskStatus::Processing) | Err(_) => {
                self.watch_again(self.runner.config.watch_poll).await
            }
        }
    }

    async fn watch_again(&mut self, wait: Duration) -> Result<Next, JobError> {
        let run_after = self.runner.now().plus(wait);
        self.write(JobEvent::Released { run_after }).await?;
        Ok(Next::Released)
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
    /// the bot), or to be tried again with backoff. A result that is not on this host (a
    /// worker elsewhere stored it) is fetched again from the provider first.
    async fn deliver(&mut self) -> Result<Next, JobError> {
        if self.job.delivery != crate::job::Delivery::Pending {
            return Ok(Next::Finished);
        }
        if let Some(next) = self.fetch_result_here().await? {
            return Ok(next);
        }
        let job = &self.job;
        let link = |result: &crate::job::AssetRef| {
            let finished = job.finished_at.unwrap_or(job.updated_at);
            self.runner
                .ports
                .assets
                .download_link(result, finished.plus(self.runner.config.result_link_ttl))
        };
        let notice = match (job.state, &job.result) {
            (JobState::Completed, Some(result)) => match job.cost_actual {
                Some(charged) => Notice::JobCompleted {
                    job_id: job.id,
                    kind: job.spec.kind(),
                    result: result.clone(),
                    charged,
                    download_link: link(result),
                    resent: job.redelivery,
                    status_message: job.status_message.clone(),
                },
                None => {
                    return Err(JobError::Store(crate::ports::StoreError::Corrupt(format!(
                        "completed job {} has no cost",
                        job.id
                    ))));
                }
            },
            (JobState::Completed, None) => {
                return Err(JobError::Store(crate::ports::StoreError::Corrupt(format!(
                    "completed job {} has no result",
                    job.id
                ))));
            }
            (JobState::Failed | JobState::Cancelled, Some(result)) => Notice::JobLateResult {
                job_id: job.id,
                kind: job.spec.kind(),
                result: result.clone(),
                refunded: job.quote.amount,
                download_link: link(result),
                status_message: job.status_message.clone(),
            },
            (JobState::Failed, None) => Notice::JobFailed {
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
            (JobState::Cancelled | JobState::Pending | JobState::Processing, None) => {
                Notice::JobCancelled {
                    job_id: job.id,
                    refunded: job.quote.amount,
                    status_message: job.status_message.clone(),
                }
            }
            (JobState::Pending | JobState::Processing, Some(_)) => {
                return Err(JobError::LeaseLost(job.id));
            }
        };
        match self.runner.ports.notifier.notify(job.user_id, notice).await {
            Ok(_) => {
                self.write(JobEvent::Delivered).await?;
                Ok(self.after_delivery())
            }
            Err(NotifyError::Unreachable(_)) => {
                self.write(JobEvent::Undeliverable).await?;
                Ok(self.after_delivery())
            }
            Err(e @ NotifyError::Unavailable(_)) => {
                self.notes.push(StepNote::DeliveryFailed {
                    error: e.to_string(),
                });
                self.delivery_failed().await
            }
        }
    }

    /// After the user was told: watch on for a late result, or done.
    fn after_delivery(&self) -> Next {
        if self.job.watch_until.is_some() {
            Next::Continue
        } else {
            Next::Finished
        }
    }

    /// Telling the user failed for now: tried again with backoff, up to the limit; then
    /// recorded as undeliverable, and the user marked unreachable so that their next
    /// message brings every paid result again.
    async fn delivery_failed(&mut self) -> Result<Next, JobError> {
        let config = &self.runner.config;
        if self.job.delivery_attempts.saturating_add(1) >= config.max_delivery_attempts {
            self.write(JobEvent::Undeliverable).await?;
            self.runner
                .ports
                .jobs
                .mark_unreachable(self.job.user_id)
                .await?;
            return Ok(self.after_delivery());
        }
        let wait = self.runner.backoff(self.job.delivery_attempts, None);
        let retry_at = self.runner.now().plus(wait);
        self.write(JobEvent::DeliveryFailed { retry_at }).await?;
        Ok(Next::Released)
    }

    /// Makes sure the result to deliver is in this host's asset store: fetched again from
    /// the provider's result URL when it is not. `Some` is what the step does instead
    /// (tried again later: the file is not here and cannot be fetched now).
    async fn fetch_result_here(&mut self) -> Result<Option<Next>, JobError> {
        let Some(result) = self.job.result.clone() else {
            return Ok(None);
        };
        match self.runner.ports.assets.exists(&result).await {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(e) => {
                self.notes.push(StepNote::DeliveryFailed {
                    error: e.to_string(),
                });
                return self.delivery_failed().await.map(Some);
            }
        }
        let fetched = match (&self.job.result_url, self.runner.ports.videos.clone()) {
            (Some(url), Some(videos)) => videos.download(url, self.job.id).await.ok(),
            _ => None,
        };
        match fetched {
            Some(asset) if asset.asset == result => Ok(None),
            _ => {
                self.notes.push(StepNote::DeliveryFailed {
                    error: format!(
                        "the result {result} is not on this host and cannot be fetched again"
                    ),
                });
                self.delivery_failed().await.map(Some)
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
