//! Telling users and admins, and limiting how often users may ask.

use std::time::Duration;

use async_trait::async_trait;

use super::{BoxError, ProviderErrorKind};
use crate::ids::{JobId, PaymentId, UserId};
use crate::job::{AssetRef, FailureReason, JobKind, Progress};
use crate::money::Money;

/// A message a front end sent and can edit later (the status message of a job): opaque
/// to core, stored with the job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MessageRef(String);

impl MessageRef {
    /// Wraps a front end's message reference (for Telegram, the message id).
    #[must_use]
    pub fn new(reference: impl Into<String>) -> Self {
        Self(reference.into())
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Something a user is told. The notifier renders it in the user's language. Money
/// notices (credited, refunded, adjusted) are kept in the outbox, written with the money
/// change, until they are sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// A job was confirmed and queued: this starts its status message, which the
    /// notifier edits with the progress and the outcome (its one writer). The notifier
    /// returns the message, stored with the job.
    JobQueued {
        /// The job.
        job_id: JobId,
        /// What is held for it.
        price: Money,
    },
    /// A job moved on.
    JobProgress {
        /// The job.
        job_id: JobId,
        /// Now at.
        progress: Progress,
        /// The job's status message, to edit instead of sending a new one.
        status_message: Option<MessageRef>,
    },
    /// A job finished: deliver the result.
    JobCompleted {
        /// The job.
        job_id: JobId,
        /// Image or video.
        kind: JobKind,
        /// The result file.
        result: AssetRef,
        /// What was charged.
        charged: Money,
        /// A download link for a file larger than the messenger takes, when the
        /// deployment can serve one.
        download_link: Option<String>,
        /// It is sent again (the user could not be given it before): say so.
        resent: bool,
        /// The job's status message, to mark done.
        status_message: Option<MessageRef>,
    },
    /// A result that came after the job was refunded (a deadline passed, an admin
    /// cancelled it): delivered free.
    JobLateResult {
        /// The job.
        job_id: JobId,
        /// Image or video.
        kind: JobKind,
        /// The result file.
        result: AssetRef,
        /// What had been refunded (it stays refunded).
        refunded: Money,
        /// A download link for a file larger than the messenger takes, if any.
        download_link: Option<String>,
        /// The job's status message.
        status_message: Option<MessageRef>,
    },
    /// A job failed; the money is back.
    JobFailed {
        /// The job.
        job_id: JobId,
        /// Why.
        reason: FailureReason,
        /// What was refunded.
        refunded: Money,
        /// The job's status message, to mark failed.
        status_message: Option<MessageRef>,
    },
    /// A job was cancelled; the money is back.
    JobCancelled {
        /// The job.
        job_id: JobId,
        /// What was refunded.
        refunded: Money,
        /// The job's status message, to mark cancelled.
        status_message: Option<MessageRef>,
    },
    /// A top-up was credited.
    PaymentCredited {
        /// The payment.
        payment_id: PaymentId,
        /// How much.
        amount: Money,
        /// Balance after.
        balance: Money,
    },
    /// A top-up was refunded to the card (and taken from the balance).
    PaymentRefunded {
        /// The payment.
        payment_id: PaymentId,
        /// How much.
        amount: Money,
        /// Balance after.
        balance: Money,
    },
    /// An admin credited the balance.
    BalanceCredited {
        /// How much.
        amount: Money,
        /// Balance after.
        balance: Money,
    },
    /// A referee's top-up earned this referrer a reward.
    ReferralRewarded {
        /// How much.
        amount: Money,
        /// Balance after.
        balance: Money,
    },
    /// An admin debited the balance.
    BalanceDebited {
        /// How much.
        amount: Money,
        /// Balance after.
        balance: Money,
    },
}

/// Something admins must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminAlert {
    /// `kling`, `nano_banana`, `yookassa`, …
    pub provider: String,
    /// What went wrong.
    pub kind: ProviderErrorKind,
    /// Details (never secrets).
    pub message: String,
    /// What this alert is about, when it is about one thing (a payment, a charge): such
    /// alerts each need a person and are never throttled; provider-wide ones are.
    pub subject: Option<String>,
}

/// Why a notice was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The user blocked the bot or is gone.
    #[error("user {0} is unreachable")]
    Unreachable(UserId),
    /// The messenger failed.
    #[error("notifier unavailable")]
    Unavailable(#[source] BoxError),
}

/// Delivers notices to users and alerts to admins.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Tells a user. Money state is already committed when this is called; a job's
    /// final notice is retried by its worker until it is delivered or the user is
    /// unreachable. Returns the message sent when it is one to edit later (a job's new
    /// status message), `None` otherwise.
    ///
    /// # Errors
    /// `Unreachable` when the user blocked the bot, `Unavailable` otherwise.
    async fn notify(&self, user: UserId, notice: Notice)
    -> Result<Option<MessageRef>, NotifyError>;

    /// Tells every admin.
    ///
    /// # Errors
    /// `Unavailable` when no admin could be told.
    async fn alert_admins(&self, alert: AdminAlert) -> Result<(), NotifyError>;

    /// The largest result file the messenger takes as an upload (Telegram's cloud Bot
    /// API: 50 MB); `None` when there is no limit. A larger result needs a download link.
    fn upload_limit(&self) -> Option<u64> {
        None
    }
}

/// Whether an update may be handled now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead.
    Allowed,
    /// Too many updates; try again after this long.
    Limited {
        /// How long to wait.
        retry_after: Duration,
    },
}

/// Why the limiter could not decide.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable")]
pub struct LimiterError(#[source] pub BoxError);

/// Per-user rate limiting (`RATE_LIMIT_PER_MINUTE`).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one update of `user` and says whether it may be handled.
    ///
    /// # Errors
    /// `LimiterError` when the backend fails (callers then allow, and log).
    async fn check(&self, user: UserId) -> Result<RateDecision, LimiterError>;
}
