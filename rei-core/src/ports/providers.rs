//! Paid outside services: image and video generators, the payment gateway, and the one
//! error model they all map to.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::{IdempotencyKey, JobId, PaymentId, ProviderTaskId, UserId};
use crate::job::{AssetRef, FailureReason, VideoMode};
use crate::ledger::text_codes;
use crate::money::Money;
use crate::payment::PaymentEvent;
use crate::pricing::VideoDuration;
use crate::time::Timestamp;

/// The one error model of every provider adapter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Our request was wrong (bad parameters, unknown model): never retried.
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// The provider's words.
        message: String,
    },
    /// The provider does not know the object asked for (HTTP 404): never retried.
    #[error("not found: {message}")]
    NotFound {
        /// The provider's words.
        message: String,
    },
    /// Credentials or configuration are wrong: admins are alerted, never retried.
    #[error("authentication or configuration failure: {message}")]
    Auth {
        /// The provider's words (never the credentials).
        message: String,
    },
    /// The account has no money or quota left: admins are alerted, never retried.
    #[error("provider out of funds or quota: {message}")]
    OutOfFunds {
        /// The provider's words.
        message: String,
    },
    /// Too many requests: retried after `retry_after` (or a backoff when unknown).
    #[error("rate limited")]
    RateLimited {
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The content was refused by the provider's policy: refund, tell the user, no retry.
    #[error("content refused: {reason}")]
    Refused {
        /// A reason that can be shown to the user.
        reason: String,
    },
    /// 5xx, timeout or connection failure: retried with backoff.
    #[error("transient provider failure: {message}")]
    Transient {
        /// What happened.
        message: String,
    },
    /// Anything else (malformed answers, unexpected statuses).
    #[error("unexpected provider answer: {message}")]
    Unknown {
        /// What happened.
        message: String,
    },
}

/// The class of a [`ProviderError`], for metrics labels and alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderErrorKind {
    /// See [`ProviderError::InvalidRequest`].
    InvalidRequest,
    /// See [`ProviderError::NotFound`].
    NotFound,
    /// See [`ProviderError::Auth`].
    Auth,
    /// See [`ProviderError::OutOfFunds`].
    OutOfFunds,
    /// See [`ProviderError::RateLimited`].
    RateLimited,
    /// See [`ProviderError::Refused`].
    Refused,
    /// See [`ProviderError::Transient`].
    Transient,
    /// See [`ProviderError::Unknown`].
    Unknown,
}

text_codes!(ProviderErrorKind {
    InvalidRequest => "invalid_request",
    NotFound => "not_found",
    Auth => "auth",
    OutOfFunds => "out_of_funds",
    RateLimited => "rate_limited",
    Refused => "refused",
    Transient => "transient",
    Unknown => "unknown",
});

impl ProviderError {
    /// Its class.
    #[must_use]
    pub const fn kind(&self) -> ProviderErrorKind {
        match self {
            Self::InvalidRequest { .. } => ProviderErrorKind::InvalidRequest,
            Self::NotFound { .. } => ProviderErrorKind::NotFound,
            Self::Auth { .. } => ProviderErrorKind::Auth,
            Self::OutOfFunds { .. } => ProviderErrorKind::OutOfFunds,
            Self::RateLimited { .. } => ProviderErrorKind::RateLimited,
            Self::Refused { .. } => ProviderErrorKind::Refused,
            Self::Transient { .. } => ProviderErrorKind::Transient,
            Self::Unknown { .. } => ProviderErrorKind::Unknown,
        }
    }

    /// Only transient failures and rate limits are retried (always with the same
    /// idempotency key).
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::RateLimited { .. })
    }

    /// Auth and out-of-funds failures are surfaced to admins.
    #[must_use]
    pub const fn alerts_admins(&self) -> bool {
        matches!(self, Self::Auth { .. } | Self::OutOfFunds { .. })
    }

    /// The reason a job fails with when this error is final.
    #[must_use]
    pub fn failure_reason(&self) -> FailureReason {
        match self {
            Self::Refused { reason } => FailureReason::ContentRefused {
                detail: reason.clone(),
            },
            Self::Auth { .. } | Self::OutOfFunds { .. } => FailureReason::ServiceUnavailable {
                detail: self.kind().as_str().to_owned(),
            },
            Self::InvalidRequest { message } | Self::NotFound { message } => {
                FailureReason::BadInput {
                    detail: message.clone(),
                }
            }
            Self::RateLimited { .. } | Self::Transient { .. } | Self::Unknown { .. } => {
                FailureReason::ProviderFailed {
                    detail: self.to_string(),
                }
            }
        }
    }
}

/// An input image for generation or editing.
#[derive(Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// Raw bytes (JPEG, PNG, WEBP, HEIC, HEIF).
    pub bytes: Vec<u8>,
    /// e.g. `image/jpeg`.
    pub mime_type: String,
}

impl fmt::Debug for ImageInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageInput")
            .field("bytes", &self.bytes.len())
            .field("mime_type", &self.mime_type)
            .finish()
    }
}

/// An image to generate (no input) or edit (with input images).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRequest {
    /// The job (for logs).
    pub job_id: JobId,
    /// What to draw or how to change the input.
    pub prompt: String,
    /// Photos to edit; empty for text → image.
    pub images: Vec<ImageInput>,
    /// The shape (`imageConfig.aspectRatio`); `None`: the model picks.
    pub aspect: Option<crate::pricing::AspectRatio>,
    /// The size (`imageConfig.imageSize`).
    pub resolution: crate::pricing::Resolution,
}

/// A generated image.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedImage {
    /// Raw bytes.
    pub bytes: Vec<u8>,
    /// As the provider reports it (do not assume PNG).
    pub mime_type: String,
    /// The model's non-thought text, if any.
    pub caption: Option<String>,
}

impl fmt::Debug for GeneratedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedImage")
            .field("bytes", &self.bytes.len())
            .field("mime_type", &self.mime_type)
            .field("caption", &self.caption)
            .finish()
    }
}

/// Text → image and photo + text → image (Nano Banana Pro).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ImageGenerator: Send + Sync {
    /// Generates one image. Every call is a new billed generation: adapters retry only
    /// transient failures and rate limits, a bounded number of times.
    ///
    /// # Errors
    /// A [`ProviderError`]; an answer with no final image MUST be `Refused` with the reason.
    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError>;
}

/// The input of a video.
#[derive(Clone, PartialEq, Eq)]
pub enum VideoInput {
    /// Text → video.
    None,
    /// Image → video: the photo.
    Image(ImageInput),
    /// Video → video: a URL the provider can fetch the source from.
    VideoUrl(String),
}

impl fmt::Debug for VideoInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Image(i) => f.debug_tuple("Image").field(i).finish(),
            // The URL is unguessable by design: do not log it.
            Self::VideoUrl(_) => f.write_str("VideoUrl(<redacted>)"),
        }
    }
}

/// A video to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoRequest {
    /// The job; sent as `external_task_id` so the task can be found after a crash.
    pub job_id: JobId,
    /// Text, image or video input (decides the endpoint).
    pub mode: VideoMode,
    /// The provider's model name (for video → video the omni model).
    pub model: String,
    /// Length (ignored by the provider for video → video).
    pub duration: VideoDuration,
    /// What to make.
    pub prompt: String,
    /// The input.
    pub input: VideoInput,
    /// Where the provider may post status changes (a hint; polling stays).
    pub callback_url: Option<String>,
    /// The shape of a text → video (`aspect_ratio`); `None`: the provider's default.
    pub aspect: Option<crate::pricing::AspectRatio>,
}

/// A provider task's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoTaskStatus {
    /// Queued at the provider.
    Submitted,
    /// Being generated.
    Processing,
    /// Done; the result is at `url` (download it at once: it expires).
    Succeeded {
        /// Result URL.
        url: String,
        /// Reported length in milliseconds, if any.
        duration_ms: Option<u32>,
    },
    /// Failed; `message` is the provider's reason.
    Failed {
        /// The provider's words.
        message: String,
    },
}

/// A file downloaded into the asset store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadedAsset {
    /// Where it is stored.
    pub asset: AssetRef,
    /// Its size.
    pub bytes: u64,
}

/// Text → video, image → video and video → video (Kling).
///
/// The caller stores the task id returned by [`Self::submit`] before it polls, and after
/// a crash calls [`Self::find_by_job`] before submitting again: the provider is never
/// paid twice.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait VideoGenerator: Send + Sync {
    /// Creates a provider task for the job.
    ///
    /// # Errors
    /// A [`ProviderError`].
    async fn submit(&self, request: &VideoRequest) -> Result<ProviderTaskId, ProviderError>;

    /// The task created earlier for this job (by `external_task_id`), if any.
    ///
    /// # Errors
    /// A [`ProviderError`].
    async fn find_by_job(
        &self,
        mode: VideoMode,
        job: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError>;

    /// The task's state.
    ///
    /// # Errors
    /// A [`ProviderError`].
    async fn status(
        &self,
        mode: VideoMode,
        task: &ProviderTaskId,
    ) -> Result<VideoTaskStatus, ProviderError>;

    /// Downloads a result (streamed, size-capped, with a timeout) into the asset store.
    ///
    /// # Errors
    /// A [`ProviderError`]; over the size cap is `Unknown`.
    async fn download(&self, url: &str, job: JobId) -> Result<DownloadedAsset, ProviderError>;
}

/// A payment to create at the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePayment {
    /// Our id: the idempotency key of the creation and `metadata.payment_id`.
    pub payment_id: PaymentId,
    /// Who pays (`metadata.tg_user_id`).
    pub user_id: UserId,
    /// How much.
    pub amount: Money,
    /// Shown to the payer (≤ 128 characters).
    pub description: String,
    /// Where the payer returns.
    pub return_url: String,
    /// For a 54-FZ receipt, when receipts are on.
    pub receipt_email: Option<String>,
}

/// The gateway's view of a payment status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GatewayStatus {
    /// Not paid yet.
    #[default]
    Pending,
    /// Paid and held (two-stage payments); counts as pending.
    WaitingForCapture,
    /// Paid.
    Succeeded,
    /// Cancelled, with the provider's reason.
    Canceled {
        /// `cancellation_details.reason`.
        reason: Option<String>,
    },
}

/// How a payment was paid (`payment_method`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayMethod {
    /// `bank_card`, `sbp`, `yoo_money`, … (an open set).
    pub kind: String,
    /// What the payer sees, e.g. "Bank card *4444" (never a full card number).
    pub title: Option<String>,
}

/// A payment as the gateway reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayPayment {
    /// The gateway's id.
    pub provider_payment_id: String,
    /// Its status.
    pub status: GatewayStatus,
    /// Its amount.
    pub amount: Money,
    /// Where to pay, while pending.
    pub confirmation_url: Option<String>,
    /// Our id, from metadata.
    pub payment_id: Option<PaymentId>,
    /// The payer, from metadata.
    pub user_id: Option<UserId>,
    /// When the gateway created it.
    pub created_at: Option<Timestamp>,
    /// A test-shop payment.
    pub test: bool,
    /// The money was taken (`paid`).
    pub paid: bool,
    /// When it was captured (succeeded).
    pub captured_at: Option<Timestamp>,
    /// What the shop receives after the gateway's fee (`income_amount`).
    pub income_amount: Option<Money>,
    /// How it was paid.
    pub payment_method: Option<GatewayMethod>,
    /// Whether it can still be refunded.
    pub refundable: bool,
    /// How much has been refunded so far (`refunded_amount`).
    pub refunded_amount: Option<Money>,
    /// Who cancelled it (`cancellation_details.party`: an open set).
    pub cancellation_party: Option<String>,
    /// The 54-FZ receipt's state (`receipt_registration`: pending, succeeded, canceled).
    pub receipt_registration: Option<String>,
}

impl GatewayPayment {
    /// The payment event this status means.
    #[must_use]
    pub fn event(&self) -> PaymentEvent {
        match &self.status {
            GatewayStatus::Pending | GatewayStatus::WaitingForCapture => {
                PaymentEvent::ProviderPending
            }
            GatewayStatus::Succeeded => PaymentEvent::ProviderSucceeded {
                provider_payment_id: self.provider_payment_id.clone(),
                amount: self.amount,
            },
            GatewayStatus::Canceled { reason } => PaymentEvent::ProviderCancelled {
                reason: reason.clone(),
            },
        }
    }
}

/// A refund to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// Our payment.
    pub payment_id: PaymentId,
    /// The refund's idempotency key: the same for every retry of one refund attempt, new
    /// for a new attempt (so a refused refund is not replayed for 24 hours).
    pub idempotency_key: IdempotencyKey,
    /// The gateway's payment id.
    pub provider_payment_id: String,
    /// How much.
    pub amount: Money,
    /// Why.
    pub description: String,
    /// For a refund receipt.
    pub receipt_email: Option<String>,
}

/// A refund's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    /// Not decided yet.
    Pending,
    /// Money returned.
    Succeeded,
    /// Refused, with the reason.
    Canceled {
        /// Why.
        reason: Option<String>,
    },
}

/// A refund as the gateway reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRefund {
    /// The gateway's refund id.
    pub refund_id: String,
    /// Its status.
    pub status: RefundStatus,
    /// The gateway's id of the refunded payment.
    pub provider_payment_id: Option<String>,
    /// How much.
    pub amount: Option<Money>,
}

/// Which gateway payments to list: a creation-time window, a page at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentListQuery {
    /// Created at or after.
    pub since: Timestamp,
    /// Created before, if bounded.
    pub until: Option<Timestamp>,
    /// The page to read (`None`: the first).
    pub cursor: Option<String>,
    /// Page size, 1–100.
    pub limit: u32,
}

/// One page of the gateway's payment list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentPage {
    /// Payments, newest first.
    pub items: Vec<GatewayPayment>,
    /// Pass to get the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// One of the bot's Telegram Stars transactions (`getStarTransactions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StarTransaction {
    /// The charge id: a payment's `telegram_payment_charge_id`, also on its refund.
    pub charge_id: String,
    /// Stars moved.
    pub stars: u32,
    /// When.
    pub at: crate::time::Timestamp,
    /// Which way, and with whom.
    pub kind: StarTransactionKind,
}

/// Which way a Stars transaction went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StarTransactionKind {
    /// A user paid an invoice.
    Payment {
        /// The payer, if a user.
        user: Option<UserId>,
        /// Our payment the invoice names (`None`: not one of our invoices); the
        /// adapter reads it from the messenger's invoice payload.
        payment: Option<crate::ids::PaymentId>,
    },
    /// Stars went back to a user (a refund of the payment with the same charge id).
    Refund {
        /// To whom.
        user: Option<UserId>,
    },
    /// Anything else (withdrawals, ads, gifts): not a top-up.
    Other,
}

/// Telegram Stars: refunds (`refundStarPayment`) and the bot's transactions.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait StarsGateway: Send + Sync {
    /// Returns the Stars of a charge to its payer. A charge that is already refunded is
    /// `Ok` (the goal is reached), so a repeat after a lost answer is safe.
    ///
    /// # Errors
    /// `InvalidRequest` when Telegram refuses (an unknown charge, another payer), a
    /// retryable error when it cannot answer.
    async fn refund_stars(&self, user: UserId, charge_id: &str) -> Result<(), ProviderError>;

    /// The bot's transactions, oldest first: `limit` (1–100) of them after skipping
    /// `offset`.
    ///
    /// # Errors
    /// A [`ProviderError`] when Telegram cannot answer.
    async fn transactions(
        &self,
        offset: u32,
        limit: u8,
    ) -> Result<Vec<StarTransaction>, ProviderError>;
}

/// Card payments (YooKassa).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Creates a payment; retries reuse the idempotency key derived from `payment_id`.
    ///
    /// # Errors
    /// A [`ProviderError`].
    async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<GatewayPayment, ProviderError>;

    /// Re-reads a payment by the gateway's id (webhooks are only hints).
    ///
    /// # Errors
    /// A [`ProviderError`]; `NotFound` for an unknown payment.
    async fn get_payment(&self, provider_payment_id: &str)
    -> Result<GatewayPayment, ProviderError>;

    /// Refunds a payment.
    ///
    /// # Errors
    /// A [`ProviderError`].
    async fn refund(&self, request: &RefundRequest) -> Result<GatewayRefund, ProviderError>;

    /// Re-reads a refund by the gateway's id.
    ///
    /// # Errors
    /// A [`ProviderError`]; `NotFound` for an unknown refund.
    async fn get_refund(&self, refund_id: &str) -> Result<GatewayRefund, ProviderError>;

    /// Lists payments created in a window, newest first, a page at a time.
    ///
    /// # Errors
    /// A [`ProviderError`].
    async fn list_payments(&self, query: &PaymentListQuery) -> Result<PaymentPage, ProviderError>;
}
