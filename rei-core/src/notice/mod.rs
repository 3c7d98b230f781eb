//! Sending the outbox: the money notices ("credited", "refunded", a manual adjustment)
//! that stores write in the same transaction as the money change are sent here, each
//! until it reaches the user, is refused for good (the user blocked the bot) or failed
//! too often. A crash between a commit and its send loses nothing: the notice is still
//! in the outbox when a dispatcher next looks.
//!
//! Sending is at least once: a dispatcher that dies after the send and before recording
//! it sends that one notice again (a messenger has no idempotency key to prevent it).
//!
//! What every notice says (its locale key and arguments) is in `text.rs`
//! ([`Notice::text`](crate::ports::Notice::text)).

mod text;

pub use text::NOTICE_KEYS;

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Clock, Notifier, NotifyError, OutboxStore, StoreError, UserStore};

/// How the dispatcher works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchConfig {
    /// Notices taken per round.
    pub batch: u32,
    /// How long a taken notice is held from other dispatchers while it is sent.
    pub hold_for: Duration,
    /// The first wait after a failed send (doubling, capped at `max_backoff`).
    pub first_backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
    /// Tries before a notice is given up.
    pub max_attempts: u32,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            batch: 50,
            hold_for: Duration::from_secs(180),
            first_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30 * 60),
            max_attempts: 20,
        }
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Notices sent.
    pub sent: u32,
    /// Notices that failed for now (tried again later).
    pub retried: u32,
    /// Notices given up (unreachable user, or too many failures).
    pub given_up: u32,
    /// Why sends failed: (outbox id, error), for the caller's log.
    pub failures: Vec<(i64, String)>,
}

/// Sends what the outbox holds.
pub struct NoticeDispatcher {
    outbox: Arc<dyn OutboxStore>,
    users: Arc<dyn UserStore>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
}

impl std::fmt::Debug for NoticeDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeDispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NoticeDispatcher {
    /// A dispatcher over the outbox and the notifier; a user who blocked the bot is
    /// recorded in `users`.
    #[must_use]
    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        users: Arc<dyn UserStore>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        config: DispatchConfig,
    ) -> Self {
        Self {
            outbox,
            users,
            notifier,
            clock,
            config,
        }
    }

    /// Notices taken per round.
    #[must_use]
    pub fn batch(&self) -> u32 {
        self.config.batch
    }

    /// One round: takes the notices due now and sends each.
    ///
    /// # Errors
    /// [`StoreError`] when the outbox cannot be read or written (the notices taken are
    /// held for `hold_for`, then due again).
    pub async fn dispatch_due(&self) -> Result<DispatchReport, StoreError> {
        let now = self.clock.now();
        let due = self
            .outbox
            .claim_notices(now, self.config.hold_for, self.config.batch)
            .await?;
        let mut report = DispatchReport::default();
        for entry in due {
            match self.notifier.notify(entry.user_id, entry.notice).await {
                Ok(_) => {
                    self.outbox.notice_sent(entry.id, self.clock.now()).await?;
                    report.sent += 1;
                }
                Err(NotifyError::Unreachable(_)) => {
                    crate::user::record_unreachable(&*self.users, entry.user_id, self.clock.now())
                        .await?;
                    self.outbox
                        .notice_given_up(entry.id, self.clock.now())
                        .await?;
                    report.given_up += 1;
                }
                Err(e @ NotifyError::Unavailable(_)) => {
                    report.failures.push((entry.id, e.to_string()));
                    let attempts = entry.attempts.saturating_add(1);
                    if attempts >= self.config.max_attempts {
                        self.outbox
                            .notice_given_up(entry.id, self.clock.now())
                            .await?;
                        report.given_up += 1;
                    } else {
                        let wait = self
                            .config
                            .first_backoff
                            .saturating_mul(1_u32 << (attempts - 1).min(16))
                            .min(self.config.max_backoff);
                        let retry_at = self.clock.now().plus(wait);
                        self.outbox
                            .notice_failed(entry.id, attempts, retry_at)
                            .await?;
                        report.retried += 1;
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests;

/// Test helper: sends everything the outbox holds now (one dispatcher, default config).
#[cfg(test)]
pub(crate) async fn flush(
    store: Arc<crate::memory::MemoryStore>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
) -> DispatchReport {
    NoticeDispatcher::new(
        store.clone(),
        store,
        notifier,
        clock,
        DispatchConfig::default(),
    )
    .dispatch_due()
    .await
    .expect("the memory outbox never fails")
}
