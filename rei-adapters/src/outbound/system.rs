//! The real clock, random ids, and a notifier that writes notices to the log (used where
//! no messenger is wired, e.g. by `rei-cli`).

use async_trait::async_trait;
use rei_core::ids::{JobId, PaymentId, ReservationId, UserId};
use rei_core::ports::{AdminAlert, Clock, IdGenerator, Notice, Notifier, NotifyError};
use rei_core::time::Timestamp;
use uuid::Uuid;

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Timestamp::from_millis(ms)
    }
}

/// Random (v4) UUIDs: unique across processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn job_id(&self) -> JobId {
        JobId::from_uuid(Uuid::new_v4())
    }
    fn payment_id(&self) -> PaymentId {
        PaymentId::from_uuid(Uuid::new_v4())
    }
    fn reservation_id(&self) -> ReservationId {
        ReservationId::from_uuid(Uuid::new_v4())
    }
    fn lease_token(&self) -> rei_core::job::LeaseToken {
        rei_core::job::LeaseToken::new(Uuid::new_v4().to_string())
    }
    fn secret_token(&self) -> String {
        use rand::Rng;
        // 43 characters of 62: about 256 bits, from the OS-seeded generator.
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(43)
            .map(char::from)
            .collect()
    }
}

/// Writes notices and alerts to the log instead of delivering them.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(
        &self,
        user: UserId,
        notice: Notice,
    ) -> Result<Option<rei_core::ports::MessageRef>, NotifyError> {
        tracing::info!(
            user_id = user.get(),
            ?notice,
            "notice not delivered: no messenger in this process"
        );
        Ok(None)
    }

    async fn alert_admins(&self, alert: AdminAlert) -> Result<(), NotifyError> {
        tracing::warn!(provider = %alert.provider, kind = %alert.kind, message = %alert.message, "admin alert");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_after_2020_and_ids_differ() {
        assert!(SystemClock.now().millis() > 1_577_836_800_000);
        assert_ne!(RandomIds.job_id(), RandomIds.job_id());
    }
}
