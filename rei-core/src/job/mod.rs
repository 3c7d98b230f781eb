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

mod event;
mod spec;
pub use event::{JobEvent, JobTransition, TransitionError};
pub use service::{JobError, JobLimits, JobPorts, JobService, Retried};
pub use spec::{AssetRef, ImageLook, JobKind, JobSpec, Prompt, PromptError, VideoMode};

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
    /// Skip this many of the newest first (pages).
    pub offset: u32,
}

#[cfg(test)]
mod tests;
