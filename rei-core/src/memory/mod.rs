//! In-memory adapters of every store and the queue, plus a manual clock, sequential ids
//! and a recording notifier.
//!
//! They are not toys: each store method takes one lock, checks everything, then writes,
//! so it is atomic and correct under any concurrency — the same contract the SQL stores
//! meet, checked by the same conformance suite. State lives only in memory.

mod store;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use uuid::Uuid;

use crate::ids::{JobId, PaymentId, ReservationId, UserId};
use crate::ports::{AdminAlert, Clock, IdGenerator, Notice, Notifier, NotifyError};
use crate::time::Timestamp;

pub use store::MemoryStore;

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `at`.
    #[must_use]
    pub fn new(at: Timestamp) -> Self {
        Self(AtomicI64::new(at.millis()))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Ids `00000000-0000-0000-0000-000000000001`, `…02`, …: deterministic, for tests and
/// examples. Unique within one process only.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl SequentialIds {
    fn next(&self) -> Uuid {
        Uuid::from_u128(u128::from(self.0.fetch_add(1, Ordering::SeqCst)) + 1)
    }
}

impl IdGenerator for SequentialIds {
    fn job_id(&self) -> JobId {
        JobId::from_uuid(self.next())
    }
    fn payment_id(&self) -> PaymentId {
        PaymentId::from_uuid(self.next())
    }
    fn reservation_id(&self) -> ReservationId {
        ReservationId::from_uuid(self.next())
    }
    fn lease_token(&self) -> crate::job::LeaseToken {
        crate::job::LeaseToken::new(self.next().to_string())
    }
    fn secret_token(&self) -> String {
        // Predictable on purpose: for tests only.
        format!("secret-{}", self.next().simple())
    }
}

/// A notifier that keeps every notice and alert, for tests and examples.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    notices: Mutex<Vec<(UserId, Notice)>>,
    alerts: Mutex<Vec<AdminAlert>>,
    failures: Mutex<std::collections::VecDeque<Failure>>,
}

/// A failure a [`RecordingNotifier`] answers instead of sending (scripted by tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Telegram is down: try again later.
    Unavailable,
    /// The user blocked the bot.
    Unreachable,
}

impl RecordingNotifier {
    /// Every notice so far, in order.
    #[must_use]
    pub fn notices(&self) -> Vec<(UserId, Notice)> {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next notices fail like this, in order, and are not recorded.
    pub fn fail_next(&self, failures: impl IntoIterator<Item = Failure>) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(failures);
    }

    /// Every admin alert so far, in order.
    #[must_use]
    pub fn alerts(&self) -> Vec<AdminAlert> {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(
        &self,
        user: UserId,
        notice: Notice,
    ) -> Result<Option<crate::ports::MessageRef>, NotifyError> {
        let failure = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        match failure {
            Some(Failure::Unavailable) => {
                return Err(NotifyError::Unavailable("scripted outage".into()));
            }
            Some(Failure::Unreachable) => return Err(NotifyError::Unreachable(user)),
            None => {}
        }
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((user, notice.clone()));
        // A job's queued notice (or a first progress notice without one) starts its
        // status message: `status-<job id>`.
        Ok(match notice {
            Notice::JobQueued { job_id, .. } => {
                Some(crate::ports::MessageRef::new(format!("status-{job_id}")))
            }
            Notice::JobProgress {
                job_id,
                status_message: None,
                ..
            } => Some(crate::ports::MessageRef::new(format!("status-{job_id}"))),
            _ => None,
        })
    }

    async fn alert_admins(&self, alert: AdminAlert) -> Result<(), NotifyError> {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(alert);
        Ok(())
    }
}

/// Assets in memory, with optional public URLs (`https://assets.test/<key>`).
#[derive(Debug, Default)]
pub struct MemoryAssets {
    files: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    public: bool,
}

impl MemoryAssets {
    /// An empty store whose assets have public URLs.
    #[must_use]
    pub fn with_public_urls() -> Self {
        Self {
            public: true,
            ..Self::default()
        }
    }

    /// Keys stored, sorted.
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }
}

#[async_trait]
impl crate::ports::Assets for MemoryAssets {
    async fn read(
        &self,
        asset: &crate::job::AssetRef,
    ) -> Result<Vec<u8>, crate::ports::AssetError> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(asset.as_str())
            .cloned()
            .ok_or_else(|| crate::ports::AssetError::NotFound(asset.clone()))
    }

    async fn write(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<crate::job::AssetRef, crate::ports::AssetError> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), bytes.to_vec());
        Ok(crate::job::AssetRef::new(key))
    }

    fn public_url(&self, asset: &crate::job::AssetRef) -> Option<String> {
        self.public
            .then(|| format!("https://assets.test/{}", asset.as_str()))
    }

    fn download_link(
        &self,
        asset: &crate::job::AssetRef,
        expires: crate::time::Timestamp,
    ) -> Option<String> {
        self.public.then(|| {
            format!(
                "https://assets.test/{}?exp={}",
                asset.as_str(),
                expires.millis() / 1000
            )
        })
    }

    async fn exists(&self, asset: &crate::job::AssetRef) -> Result<bool, crate::ports::AssetError> {
        Ok(self
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(asset.as_str()))
    }

    async fn remove(&self, asset: &crate::job::AssetRef) -> Result<(), crate::ports::AssetError> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(asset.as_str());
        Ok(())
    }
}

/// A 1×1 PNG: what [`InstantImages`] draws.
pub const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// An image generator that draws at once ([`PIXEL_PNG`]): stands in for Nano Banana Pro
/// in examples and demos.
#[derive(Debug, Default)]
pub struct InstantImages;

#[async_trait]
impl crate::ports::ImageGenerator for InstantImages {
    async fn generate(
        &self,
        _: &crate::ports::ImageRequest,
    ) -> Result<crate::ports::GeneratedImage, crate::ports::ProviderError> {
        Ok(crate::ports::GeneratedImage {
            bytes: PIXEL_PNG.to_vec(),
            mime_type: "image/png".into(),
            caption: None,
        })
    }
}
