//! In-memory adapters of every store and the queue, plus a manual clock, sequential ids
//! and a recording notifier.
//!
//! They are not toys: each store method takes one lock, checks everything, then writes,
//! so it is atomic and correct under any concurrency — the same contract the SQL stores
//! meet, checked by the same conformance suite. State lives only in memory.

mod queue;
mod store;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use uuid::Uuid;

use crate::ids::{JobId, PaymentId, ReservationId, UserId};
use crate::ports::{AdminAlert, Clock, IdGenerator, Notice, Notifier, NotifyError};
use crate::time::Timestamp;

pub use queue::MemoryQueue;
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
}

/// A notifier that keeps every notice and alert, for tests and examples.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    notices: Mutex<Vec<(UserId, Notice)>>,
    alerts: Mutex<Vec<AdminAlert>>,
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
    async fn notify(&self, user: UserId, notice: Notice) -> Result<(), NotifyError> {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((user, notice));
        Ok(())
    }

    async fn alert_admins(&self, alert: AdminAlert) -> Result<(), NotifyError> {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(alert);
        Ok(())
    }
}
