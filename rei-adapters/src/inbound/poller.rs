//! The payment poller's loop: one round of core's `PaymentService::poll` every
//! `PAYMENT_POLL_INTERVAL_SECS` until shutdown (lost webhooks, abandoned payments,
//! unfinished refunds), in one process of the deployment — the one that holds the
//! poller's lease in the database, renewed every round; another process takes over when
//! it runs out (a holder that died).

use std::sync::Arc;
use std::time::Duration;

use rei_core::payment::PaymentService;
use rei_core::ports::{Clock, LeaseStore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::outbound::system::SystemClock;

/// The name of the payment poller's lease.
const POLLER_LEASE: &str = "payment-poller";

/// Polls until shutdown, as `holder` (this process's name), when it holds the lease.
pub async fn poll_payments(
    payments: Arc<PaymentService>,
    leases: Arc<dyn LeaseStore>,
    holder: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let lease_for = every.saturating_mul(3);
    let mut held = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => break,
        }
        let now = SystemClock.now();
        match leases
            .hold_lease(POLLER_LEASE, &holder, now.plus(lease_for), now)
            .await
        {
            Ok(true) => {
                if !held {
                    tracing::info!(holder = %holder, "this process runs the payment poller");
                }
                held = true;
                poll_once(&payments)
                    .instrument(tracing::info_span!("payment_poll"))
                    .await;
            }
            Ok(false) => {
                if held {
                    tracing::info!("another process runs the payment poller now");
                }
                held = false;
            }
            Err(e) => tracing::warn!(error = %e, "the payment poller's lease cannot be read"),
        }
    }
    if held {
        if let Err(e) = leases.release_lease(POLLER_LEASE, &holder).await {
            tracing::warn!(error = %e, "giving up the payment poller's lease failed");
        }
    }
}

async fn poll_once(payments: &PaymentService) {
    match payments.poll().await {
        Ok(report) => {
            for (payment_id, error) in &report.failures {
                tracing::warn!(%payment_id, %error, "a payment check failed; asked again later");
            }
            for (stored_id, error) in &report.unreadable {
                tracing::error!(%stored_id, %error, "a payment row cannot be read; skipped");
            }
            if report.checked + report.expired > 0 {
                tracing::info!(
                    checked = report.checked,
                    credited = report.credited,
                    cancelled = report.cancelled,
                    expired = report.expired,
                    refunds_done = report.refunds_done,
                    refunds_refused = report.refunds_refused,
                    errors = report.errors,
                    "payment poll"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, error.chain = ?e, "payment poll failed; retrying"),
    }
}
