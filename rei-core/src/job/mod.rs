//! Generation jobs and their state machine.
//!
//! `pending → processing → completed | failed`, and `pending | processing → cancelled`.
//! Each transition is a pure function that rejects illegal moves and says which ledger
//! effect (capture or release of the job's reservation) must be written with it.

mod machine;
pub mod queue;
pub mod runner;
pub mod service;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, JobId, ProviderTaskId, ReservationId, UserId};
use crate::ledger::{Settlement, text_codes};
use crate::money::Money;
use crate::pricing::{Product, Quote, VideoDuration};
use crate::time::Timestamp;

pub use machine::{Applied, ApplyError, JobGuard, JobWrite, LATE_WATCH};
pub use queue::StoreQueue;
pub use runner::{
    JobRunner, Next, RunnerConfig, RunnerPorts, StepNote, StepOutcome, VideoDeadlines,
};
pub use service::{JobError, JobLimits, JobPorts, JobService, Retried};

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
    /// Ran out of attempts (provider failures, or deliveries of a job that keeps
    /// crashing its workers).
    TooManyAttempts {
        /// Attempts made.
        attempts: u32,
    },
    /// The job ran past its deadline.
    DeadlineExceeded {
        /// The deadline, in seconds from the first claim.
        after_secs: u64,
    },
    /// The result is larger than the messenger takes and no download link can be made
    /// (no `PUBLIC_URL`): nothing could be delivered, so nothing is charged.
    ResultTooLarge {
        /// Its size, in whole megabytes (rounded up).
        megabytes: u64,
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
            Self::DeadlineExceeded { after_secs } => write!(f, "not done within {after_secs} s"),
            Self::ResultTooLarge { megabytes } => {
                write!(f, "the result ({megabytes} MB) is too large to deliver")
            }
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

/// Proves that a worker owns a job: written with the claim, required on every worker
/// write. A write with a stale token is refused ([`ApplyError::LeaseLost`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// Wraps a token (unique per claim: a UUID from the id generator).
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A worker's lease on a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLease {
    /// The owner's token.
    pub token: LeaseToken,
    /// When another worker may claim the job unless the lease is extended.
    pub until: Timestamp,
}

/// Whether the user has been told how a finished job ended. A finished job stays in the
/// queue until this is settled: a paid result is never left undelivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The job is not finished yet.
    NotYet,
    /// Finished; the result or the failure notice is still to be sent.
    Pending,
    /// Sent.
    Delivered,
    /// The user cannot be reached (blocked the bot): recorded, the job stays as it ended.
    Unreachable,
    /// Nothing to send: the user cancelled it in the dialogue, which told them.
    Skipped,
}

text_codes!(Delivery {
    NotYet => "not_yet",
    Pending => "pending",
    Delivered => "delivered",
    Unreachable => "unreachable",
    Skipped => "skipped",
});

/// A generation job, as stored. Read-only outside the stores: every change goes through
/// [`Job::apply`], which the store runs on its own stored row.
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
    /// Provider failures so far (crashed workers do not count).
    pub attempts: u32,
    /// Times a worker claimed it (the queue's deliveries).
    pub deliveries: u32,
    /// Billed provider calls started (a create, or a Gemini request): more calls than
    /// recorded outcomes means a worker died mid-call.
    pub provider_calls: u32,
    /// The provider's task id, stored before polling.
    pub provider_task_id: Option<ProviderTaskId>,
    /// The result file.
    pub result: Option<AssetRef>,
    /// Why it failed.
    pub failure: Option<FailureReason>,
    /// A cancel asked for while a worker runs it; the worker settles it at its next step.
    pub cancel_requested: Option<CancelledBy>,
    /// The worker that owns it, if any.
    pub lease: Option<JobLease>,
    /// When a worker should next pick it up; `None` once nothing is left to do.
    pub run_after: Option<Timestamp>,
    /// The front end's status message of this job (edited with the progress).
    pub status_message: Option<crate::ports::MessageRef>,
    /// Where the provider serves the result (a Kling video URL, valid for a while): a
    /// worker on another host, whose asset store lacks the file, fetches it again there.
    pub result_url: Option<String>,
    /// The job was refunded while the provider may still produce the result (a deadline
    /// passed, or an admin cancelled it after the call went out): until then a worker
    /// keeps asking, and a result that arrives is delivered free.
    pub watch_until: Option<Timestamp>,
    /// The next delivery resends a result the user could not be given before (they had
    /// blocked the bot): it says so.
    pub redelivery: bool,
    /// When a provider last said the task changed (a callback): the worker waiting on it
    /// asks at once.
    pub woken_at: Option<Timestamp>,
    /// Whether the user was told how it ended.
    pub delivery: Delivery,
    /// Failed attempts to tell the user.
    pub delivery_attempts: u32,
    /// When the user was told.
    pub delivered_at: Option<Timestamp>,
    /// Bumped by every stored change.
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

impl Job {
    /// True when a worker may claim it at `now`: work is left and no live lease.
    #[must_use]
    pub fn is_claimable(&self, now: Timestamp) -> bool {
        self.run_after.is_some_and(|at| at <= now)
            && self.lease.as_ref().is_none_or(|l| l.until <= now)
    }

    /// True when `token` is the job's live lease at `now`.
    #[must_use]
    pub fn is_leased_by(&self, token: &LeaseToken, now: Timestamp) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| &l.token == token && l.until > now)
    }
}

/// Something that happens to a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEvent {
    /// A worker claims it (unleased write; refused while another lease is live):
    /// pending → processing at 10 %, deliveries + 1.
    Claimed {
        /// The new lease.
        lease: JobLease,
    },
    /// Heartbeat: the lease now ends at `until`.
    LeaseExtended {
        /// The new end.
        until: Timestamp,
    },
    /// The worker hands the job back (shutdown, waiting): claimable again at `run_after`.
    Released {
        /// When.
        run_after: Timestamp,
    },
    /// A billed provider call is about to be sent (recorded first, so a worker that dies
    /// mid-call is noticed by the next one).
    CallStarted,
    /// The provider accepted a task (stored before polling, progress 50 %).
    ProviderTaskCreated {
        /// The provider's id.
        task_id: ProviderTaskId,
    },
    /// The provider is generating (progress 50 %).
    Generating,
    /// A provider call failed in a way worth another try: attempts + 1, handed back
    /// until `retry_at`.
    AttemptFailed {
        /// When to try again.
        retry_at: Timestamp,
    },
    /// The provider produced the result: captured. On a job refunded while the provider
    /// worked (watched), the result is kept and delivered free.
    Succeeded {
        /// Where the result is stored.
        result: AssetRef,
        /// What to charge (≤ the quote).
        actual_cost: Money,
        /// Where the provider serves it, if it does (fetched again there when the file is
        /// not on this host).
        #[serde(default)]
        result_url: Option<String>,
    },
    /// The job ran past its deadline while the provider works on it: failed and
    /// refunded, and watched until `watch_until` for a result that still comes.
    DeadlinePassed {
        /// The deadline, in seconds from the first claim.
        after_secs: u64,
        /// Until when a late result is still looked for.
        watch_until: Timestamp,
    },
    /// Nothing more is looked for (the watch ran out, or the provider failed after all).
    WatchEnded,
    /// The user can be reached again: a result they could not be given is sent again.
    Redeliver,
    /// A provider says the task changed (any writer): its worker asks at once.
    Woken,
    /// The provider failed or refused: released.
    Failed {
        /// Why.
        reason: FailureReason,
    },
    /// The user or an admin cancels it. Unleased on a pending job: released at once;
    /// unleased on a processing job: a request the worker settles; leased: the worker
    /// settles it (released).
    Cancelled {
        /// Who.
        by: CancelledBy,
    },
    /// The front end sent the job's status message (any writer: no money moves).
    StatusMessage {
        /// The message to edit from now on.
        message: crate::ports::MessageRef,
    },
    /// The user was told how the job ended.
    Delivered,
    /// Telling the user failed for now: try again at `retry_at`.
    DeliveryFailed {
        /// When.
        retry_at: Timestamp,
    },
    /// The user cannot be reached (blocked the bot): recorded, nothing more to do.
    Undeliverable,
}

impl JobEvent {
    /// A short name for logs and errors.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Claimed { .. } => "claimed",
            Self::LeaseExtended { .. } => "lease_extended",
            Self::Released { .. } => "released",
            Self::CallStarted => "call_started",
            Self::ProviderTaskCreated { .. } => "provider_task_created",
            Self::Generating => "generating",
            Self::AttemptFailed { .. } => "attempt_failed",
            Self::Succeeded { .. } => "succeeded",
            Self::DeadlinePassed { .. } => "deadline_passed",
            Self::WatchEnded => "watch_ended",
            Self::Redeliver => "redeliver",
            Self::Woken => "woken",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
            Self::StatusMessage { .. } => "status_message",
            Self::Delivered => "delivered",
            Self::DeliveryFailed { .. } => "delivery_failed",
            Self::Undeliverable => "undeliverable",
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

/// The result of applying an event: the job to store and the ledger effect to write with
/// it. Only [`Job::apply`] makes one, and stores run that on their own stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobTransition {
    before: Job,
    after: Job,
    settlement: Option<Settlement>,
}

impl JobTransition {
    pub(crate) const fn new(before: Job, after: Job, settlement: Option<Settlement>) -> Self {
        Self {
            before,
            after,
            settlement,
        }
    }

    /// False when the event was a repeat: nothing to write.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.before != self.after
    }

    /// The job before.
    #[must_use]
    pub const fn before(&self) -> &Job {
        &self.before
    }

    /// The job after.
    #[must_use]
    pub const fn after(&self) -> &Job {
        &self.after
    }

    /// The settlement of the job's own reservation, written in the same transaction.
    #[must_use]
    pub const fn settlement(&self) -> Option<Settlement> {
        self.settlement
    }

    /// The job after, by value.
    #[must_use]
    pub fn into_after(self) -> Job {
        self.after
    }
}

/// A job to create together with its reservation. Built by [`JobService`] only, with the
/// price from its price list: a caller cannot choose what is charged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    id: JobId,
    user_id: UserId,
    spec: JobSpec,
    quote: Quote,
    reservation_id: ReservationId,
    idempotency_key: IdempotencyKey,
    created_at: Timestamp,
}

impl NewJob {
    pub(crate) const fn new(
        id: JobId,
        user_id: UserId,
        spec: JobSpec,
        quote: Quote,
        reservation_id: ReservationId,
        idempotency_key: IdempotencyKey,
        created_at: Timestamp,
    ) -> Self {
        Self {
            id,
            user_id,
            spec,
            quote,
            reservation_id,
            idempotency_key,
            created_at,
        }
    }

    /// Its id.
    #[must_use]
    pub const fn id(&self) -> JobId {
        self.id
    }

    /// Who orders it.
    #[must_use]
    pub const fn user_id(&self) -> UserId {
        self.user_id
    }

    /// What to generate.
    #[must_use]
    pub const fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// The price (from the price list).
    #[must_use]
    pub const fn quote(&self) -> &Quote {
        &self.quote
    }

    /// The reservation created with it.
    #[must_use]
    pub const fn reservation_id(&self) -> ReservationId {
        self.reservation_id
    }

    /// Confirming twice with this key makes one job and one hold.
    #[must_use]
    pub const fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }

    /// When.
    #[must_use]
    pub const fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The job as created: pending, 0 %, version 0, ready for a worker at once.
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
            deliveries: 0,
            provider_calls: 0,
            provider_task_id: None,
            result: None,
            failure: None,
            cancel_requested: None,
            lease: None,
            run_after: Some(self.created_at),
            status_message: None,
            result_url: None,
            watch_until: None,
            redelivery: false,
            woken_at: None,
            delivery: Delivery::NotYet,
            delivery_attempts: 0,
            delivered_at: None,
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
