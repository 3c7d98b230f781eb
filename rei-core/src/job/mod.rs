//! Generation jobs and their state machine.
//!
//! `pending → processing → completed | failed`, and `pending | processing → cancelled`.
//! Each transition is a pure function that rejects illegal moves and says which ledger
//! effect (capture or release of the job's reservation) must be written with it.

pub mod service;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, JobId, ProviderTaskId, ReservationId, UserId};
use crate::ledger::{Settlement, text_codes};
use crate::money::Money;
use crate::pricing::{Product, Quote, VideoDuration};
use crate::time::Timestamp;

pub use service::{Applied, JobError, JobLimits, JobService};

/// What kind of generation a job is (the seed's `jobs.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Text → image.
    ImageGeneration,
    /// Photo + text → image.
    ImageEdit,
    /// Any video mode.
    VideoGeneration,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Queued; money reserved.
    Pending,
    /// A worker is on it.
    Processing,
    /// Done; reservation captured.
    Completed,
    /// Failed; reservation released.
    Failed,
    /// Cancelled; reservation released.
    Cancelled,
}

text_codes!(JobKind { ImageGeneration => "image_generation", ImageEdit => "image_edit", VideoGeneration => "video_generation" });
text_codes!(JobState {
    Pending => "pending",
    Processing => "processing",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl JobState {
    /// Pending or processing: counts against `MAX_ACTIVE_JOBS_PER_USER`.
    #[must_use]
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Processing)
    }

    /// Completed, failed or cancelled: the reservation is settled.
    #[must_use]
    pub const fn is_final(self) -> bool {
        !self.is_active()
    }

    /// Every state, for reports.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];
}

/// Progress shown to the user: 0 / 10 / 50 / 100 %.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Progress {
    /// 0 %: created.
    Queued,
    /// 10 %: a worker started.
    Started,
    /// 50 %: the provider is generating.
    Generating,
    /// 100 %: done.
    Done,
}

impl Progress {
    /// Percent.
    #[must_use]
    pub const fn percent(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Started => 10,
            Self::Generating => 50,
            Self::Done => 100,
        }
    }
}

impl TryFrom<u8> for Progress {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        match v {
            0 => Ok(Self::Queued),
            10 => Ok(Self::Started),
            50 => Ok(Self::Generating),
            100 => Ok(Self::Done),
            other => Err(format!("progress must be 0, 10, 50 or 100, not {other}")),
        }
    }
}

impl From<Progress> for u8 {
    fn from(p: Progress) -> Self {
        p.percent()
    }
}

/// The three video modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoMode {
    /// Prompt only.
    TextToVideo,
    /// A photo and a prompt.
    ImageToVideo,
    /// A source video and a prompt (Kling omni-video; the source is fetched by URL).
    VideoToVideo,
}

/// A user's prompt: 1 to 2500 characters after trimming (Kling's limit).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prompt(String);

/// Why a prompt is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// Nothing but spaces.
    #[error("the prompt is empty")]
    Empty,
    /// Over the limit.
    #[error("the prompt has {len} characters; at most {max} are allowed")]
    TooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Prompt {
    /// Longest prompt, in characters.
    pub const MAX_CHARS: usize = 2500;

    /// A prompt from user text.
    ///
    /// # Errors
    /// Empty or longer than [`Self::MAX_CHARS`].
    pub fn parse(text: &str) -> Result<Self, PromptError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(PromptError::Empty);
        }
        let len = t.chars().count();
        if len > Self::MAX_CHARS {
            return Err(PromptError::TooLong {
                len,
                max: Self::MAX_CHARS,
            });
        }
        Ok(Self(t.to_owned()))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Prompt {
    type Error = PromptError;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        Self::parse(&v)
    }
}

impl From<Prompt> for String {
    fn from(p: Prompt) -> Self {
        p.0
    }
}

/// A stored input or output file: a key under the asset store (e.g. a relative path in
/// `ASSET_DIR`). Never a URL with credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AssetRef(String);

impl AssetRef {
    /// Wraps a key.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AssetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to generate: everything a worker needs, stored as the job's params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobSpec {
    /// Text → image.
    ImageGeneration {
        /// What to draw.
        prompt: Prompt,
    },
    /// Photo + text → image.
    ImageEdit {
        /// How to change it.
        prompt: Prompt,
        /// The photo.
        image: AssetRef,
    },
    /// A video.
    Video {
        /// Text, image or video input.
        mode: VideoMode,
        /// Provider model name.
        model: String,
        /// Length (for video→video: the priced length of the source).
        duration: VideoDuration,
        /// What to make.
        prompt: Prompt,
        /// The photo or source video (none for text→video).
        input: Option<AssetRef>,
    },
}

impl JobSpec {
    /// The seed's job type.
    #[must_use]
    pub const fn kind(&self) -> JobKind {
        match self {
            Self::ImageGeneration { .. } => JobKind::ImageGeneration,
            Self::ImageEdit { .. } => JobKind::ImageEdit,
            Self::Video { .. } => JobKind::VideoGeneration,
        }
    }

    /// The product it sells.
    #[must_use]
    pub fn product(&self) -> Product {
        match self {
            Self::ImageGeneration { .. } => Product::ImageGeneration,
            Self::ImageEdit { .. } => Product::ImageEdit,
            Self::Video {
                model, duration, ..
            } => Product::Video {
                model: model.clone(),
                duration: *duration,
            },
        }
    }

    /// The prompt.
    #[must_use]
    pub const fn prompt(&self) -> &Prompt {
        match self {
            Self::ImageGeneration { prompt }
            | Self::ImageEdit { prompt, .. }
            | Self::Video { prompt, .. } => prompt,
        }
    }
}

/// Why a job failed, in terms a user can be told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailureReason {
    /// The provider refused the content; `detail` is its (presentable) reason.
    ContentRefused {
        /// The provider's words.
        detail: String,
    },
    /// The provider failed or timed out after our retries.
    ProviderFailed {
        /// What happened, for logs and the admin.
        detail: String,
    },
    /// The provider is out of funds or misconfigured (admins are alerted).
    ServiceUnavailable {
        /// What happened.
        detail: String,
    },
    /// The input could not be used (too large, wrong format, gone).
    BadInput {
        /// What is wrong.
        detail: String,
    },
    /// Ran out of attempts (e.g. crashed workers).
    TooManyAttempts {
        /// Attempts made.
        attempts: u32,
    },
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ContentRefused { detail } => write!(f, "content refused: {detail}"),
            Self::ProviderFailed { detail } => write!(f, "provider failed: {detail}"),
            Self::ServiceUnavailable { detail } => write!(f, "service unavailable: {detail}"),
            Self::BadInput { detail } => write!(f, "bad input: {detail}"),
            Self::TooManyAttempts { attempts } => write!(f, "gave up after {attempts} attempts"),
        }
    }
}

/// Who cancelled a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    /// The user.
    User,
    /// An admin or the CLI (the audit actor).
    Admin(String),
}

/// A generation job, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its id (also Kling's `external_task_id`).
    pub id: JobId,
    /// Who ordered it.
    pub user_id: UserId,
    /// What to generate.
    pub spec: JobSpec,
    /// Where it is.
    pub state: JobState,
    /// What the user was shown.
    pub progress: Progress,
    /// The price frozen at creation (the seed's `cost_estimate`).
    pub quote: Quote,
    /// What was finally charged (the seed's `cost_actual`).
    pub cost_actual: Option<Money>,
    /// The money held for it.
    pub reservation_id: ReservationId,
    /// The key that created it (confirming twice makes one job).
    pub idempotency_key: IdempotencyKey,
    /// Worker starts so far.
    pub attempts: u32,
    /// The provider's task id, stored before polling.
    pub provider_task_id: Option<ProviderTaskId>,
    /// The result file.
    pub result: Option<AssetRef>,
    /// Why it failed.
    pub failure: Option<FailureReason>,
    /// Bumped by every stored change; stores compare it to refuse lost updates.
    pub version: u32,
    /// When created.
    pub created_at: Timestamp,
    /// When a worker first started it.
    pub started_at: Option<Timestamp>,
    /// When it reached a final state.
    pub finished_at: Option<Timestamp>,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Something that happens to a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEvent {
    /// A worker picked it up or resumed it after a crash (attempts + 1, progress ≥ 10 %).
    Started,
    /// The provider accepted a task (stored before polling, progress 50 %).
    ProviderTaskCreated {
        /// The provider's id.
        task_id: ProviderTaskId,
    },
    /// The provider is generating (progress 50 %).
    Generating,
    /// The provider produced the result.
    Succeeded {
        /// Where the result is stored.
        result: AssetRef,
        /// What to charge (≤ the quote).
        actual_cost: Money,
    },
    /// The provider failed or refused.
    Failed {
        /// Why.
        reason: FailureReason,
    },
    /// The user or an admin cancelled it.
    Cancelled {
        /// Who.
        by: CancelledBy,
    },
    /// The worker lost its lease (crash): back to pending for another attempt.
    Requeued,
}

impl JobEvent {
    /// A short name for logs and errors.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::ProviderTaskCreated { .. } => "provider_task_created",
            Self::Generating => "generating",
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
            Self::Requeued => "requeued",
        }
    }
}

/// An event that is not allowed in the job's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id}: `{event}` is not allowed when {from}")]
pub struct TransitionError {
    /// The job.
    pub job_id: JobId,
    /// Its state.
    pub from: JobState,
    /// The event's name.
    pub event: &'static str,
}

/// The result of applying an event: the job to store and the ledger effect to write with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobTransition {
    /// The job before (stores compare its `version`).
    pub before: Job,
    /// The job after.
    pub after: Job,
    /// The settlement of the job's reservation to write in the same transaction.
    pub settlement: Option<Settlement>,
}

impl JobTransition {
    /// False when the event was a repeat: nothing to write.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

impl Job {
    /// Applies an event: a pure function. Re-applying the event that produced the current
    /// state (a duplicate callback, a retried worker) is `Ok` with no change and no effect.
    ///
    /// # Errors
    /// [`TransitionError`] for an event that is illegal in the current state.
    pub fn apply(&self, event: JobEvent, now: Timestamp) -> Result<JobTransition, TransitionError> {
        use JobState::{Cancelled, Completed, Failed, Pending, Processing};
        let illegal = || TransitionError {
            job_id: self.id,
            from: self.state,
            event: event.name(),
        };
        let mut next = self.clone();
        let mut settlement = None;
        match (&event, self.state) {
            // Processing too: a worker resuming a job whose previous worker died.
            (JobEvent::Started, Pending | Processing) => {
                next.state = Processing;
                next.attempts = self.attempts.saturating_add(1);
                next.progress = next.progress.max(Progress::Started);
                next.started_at = Some(self.started_at.unwrap_or(now));
            }
            (JobEvent::ProviderTaskCreated { task_id }, Processing) => match &self.provider_task_id
            {
                Some(existing) if existing == task_id => {}
                Some(_) => return Err(illegal()),
                None => {
                    next.provider_task_id = Some(task_id.clone());
                    next.progress = next.progress.max(Progress::Generating);
                }
            },
            (JobEvent::Generating, Processing) => {
                next.progress = next.progress.max(Progress::Generating)
            }
            (
                JobEvent::Succeeded {
                    result,
                    actual_cost,
                },
                Processing,
            ) => {
                if *actual_cost > self.quote.amount {
                    return Err(illegal());
                }
                next.state = Completed;
                next.progress = Progress::Done;
                next.result = Some(result.clone());
                next.cost_actual = Some(*actual_cost);
                next.finished_at = Some(now);
                settlement = Some(Settlement::Capture {
                    actual: *actual_cost,
                });
            }
            (
                JobEvent::Succeeded {
                    result,
                    actual_cost,
                },
                Completed,
            ) if self.result.as_ref() == Some(result) && self.cost_actual == Some(*actual_cost) => {
                return Ok(self.unchanged());
            }
            (JobEvent::Failed { reason }, Processing) => {
                next.state = Failed;
                next.failure = Some(reason.clone());
                next.finished_at = Some(now);
                settlement = Some(Settlement::Release);
            }
            (JobEvent::Failed { .. }, Failed) | (JobEvent::Cancelled { .. }, Cancelled) => {
                return Ok(self.unchanged());
            }
            (JobEvent::Cancelled { .. }, Pending | Processing) => {
                next.state = Cancelled;
                next.finished_at = Some(now);
                settlement = Some(Settlement::Release);
            }
            (JobEvent::Requeued, Processing) => {
                next.state = Pending;
                next.progress = Progress::Queued;
            }
            (JobEvent::Started, Completed | Failed | Cancelled)
            | (
                JobEvent::ProviderTaskCreated { .. } | JobEvent::Generating,
                Pending | Completed | Failed | Cancelled,
            )
            | (JobEvent::Succeeded { .. }, Pending | Completed | Failed | Cancelled)
            | (JobEvent::Failed { .. }, Pending | Completed | Cancelled)
            | (JobEvent::Cancelled { .. }, Completed | Failed)
            | (JobEvent::Requeued, Pending | Completed | Failed | Cancelled) => {
                return Err(illegal());
            }
        }
        if next != *self {
            next.version = self.version.wrapping_add(1);
            next.updated_at = now;
        }
        Ok(JobTransition {
            before: self.clone(),
            after: next,
            settlement,
        })
    }

    fn unchanged(&self) -> JobTransition {
        JobTransition {
            before: self.clone(),
            after: self.clone(),
            settlement: None,
        }
    }
}

/// A job to create together with its reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// Its id.
    pub id: JobId,
    /// Who orders it.
    pub user_id: UserId,
    /// What to generate.
    pub spec: JobSpec,
    /// The price the user confirmed.
    pub quote: Quote,
    /// The reservation to create with it.
    pub reservation_id: ReservationId,
    /// Confirming twice with this key makes one job and one hold.
    pub idempotency_key: IdempotencyKey,
    /// When.
    pub created_at: Timestamp,
}

impl NewJob {
    /// The job as created: pending, 0 %, version 0.
    #[must_use]
    pub fn pending(&self) -> Job {
        Job {
            id: self.id,
            user_id: self.user_id,
            spec: self.spec.clone(),
            state: JobState::Pending,
            progress: Progress::Queued,
            quote: self.quote.clone(),
            cost_actual: None,
            reservation_id: self.reservation_id,
            idempotency_key: self.idempotency_key.clone(),
            attempts: 0,
            provider_task_id: None,
            result: None,
            failure: None,
            version: 0,
            created_at: self.created_at,
            started_at: None,
            finished_at: None,
            updated_at: self.created_at,
        }
    }

    /// The reservation that pays for it.
    #[must_use]
    pub fn reservation(&self) -> crate::ledger::NewReservation {
        crate::ledger::NewReservation {
            id: self.reservation_id,
            user_id: self.user_id,
            amount: self.quote.amount,
            job_id: Some(self.id),
            description: format!("{}", self.quote.product),
            idempotency_key: IdempotencyKey::derived("job", &self.id, "reserve"),
            created_at: self.created_at,
        }
    }

    /// True when `job` is what this request would have created (a replay of the key).
    #[must_use]
    pub fn matches(&self, job: &Job) -> bool {
        job.user_id == self.user_id && job.spec == self.spec && job.quote == self.quote
    }
}

/// Which jobs to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this user.
    pub user_id: Option<UserId>,
    /// At most this many, newest first (0 = store default of 100).
    pub limit: u32,
}

#[cfg(test)]
mod tests;
