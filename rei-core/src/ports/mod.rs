//! Ports: the async traits every adapter implements.
//!
//! Each store method is one atomic, idempotent domain step; the adapter owns the
//! transaction. Writes that must commit together (a job and its reservation, a payment
//! and its credit) are single methods. All ports are object safe and held as
//! `Arc<dyn Port>`, so backends are picked at run time.

mod assets;
mod clock;
mod media;
mod notify;
mod providers;
mod queue;
mod store;

pub use assets::{AssetError, Assets};
pub use clock::{Clock, IdGenerator};
pub use media::{MediaError, MediaFetcher};
pub use notify::{
    AdminAlert, LimiterError, MessageRef, Notice, Notifier, NotifyError, RateDecision, RateLimiter,
};
pub use providers::{
    CreatePayment, DownloadedAsset, GatewayMethod, GatewayPayment, GatewayRefund, GatewayStatus,
    GeneratedImage, ImageGenerator, ImageInput, ImageRequest, PaymentGateway, PaymentListQuery,
    PaymentPage, ProviderError, ProviderErrorKind, RefundRequest, RefundStatus, StarTransaction,
    StarTransactionKind, StarsGateway, VideoGenerator, VideoInput, VideoRequest, VideoTaskStatus,
};
pub use queue::{JobQueue, QueueError};
pub use store::{
    ClaimTarget, DialogueRecord, DialogueStore, JobStore, LeaseStore, LedgerStore, Missing,
    OutboxEntry, OutboxStore, PaymentStore, StoreError, UserStore,
};

/// A boxed error from an adapter, kept as the source of a port error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[cfg(test)]
pub use assets::MockAssets;
#[cfg(test)]
pub use clock::{MockClock, MockIdGenerator};
#[cfg(test)]
pub use media::MockMediaFetcher;
#[cfg(test)]
pub use notify::{MockNotifier, MockRateLimiter};
#[cfg(test)]
pub use providers::{MockImageGenerator, MockPaymentGateway, MockStarsGateway, MockVideoGenerator};
#[cfg(test)]
pub use queue::MockJobQueue;
#[cfg(test)]
pub use store::{
    MockDialogueStore, MockJobStore, MockLeaseStore, MockLedgerStore, MockOutboxStore,
    MockPaymentStore, MockUserStore,
};
