//! The outbox dispatcher's loop: sends the money notices that stores wrote with their
//! change (core's [`NoticeDispatcher`]), at once when a commit in this process wakes it
//! and otherwise every `every` (notices written by other processes, retries). Every
//! bot process runs one; they share the outbox without sending a notice twice (a taken
//! notice is held from the others while it is sent).

use std::sync::Arc;
use std::time::Duration;

use rei_core::notice::{DispatchReport, NoticeDispatcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Sends notices until shutdown, then makes one last round (what was committed just
/// before the shutdown goes out now rather than at the next start).
pub async fn send_notices(
    dispatcher: Arc<NoticeDispatcher>,
    signal: Arc<Notify>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        drain(&dispatcher).await;
        tokio::select! {
            () = signal.notified() => {}
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => break,
        }
    }
    drain(&dispatcher).await;
}

/// Rounds until one takes less than a full batch (or fails).
pub async fn drain(dispatcher: &NoticeDispatcher) -> DispatchReport {
    let mut total = DispatchReport::default();
    loop {
        let round = dispatcher
            .dispatch_due()
            .instrument(tracing::info_span!("outbox_dispatch"))
            .await;
        match round {
            Ok(report) => {
                log(&report);
                let full = report.sent + report.retried + report.given_up >= dispatcher.batch();
                total.sent += report.sent;
                total.retried += report.retried;
                total.given_up += report.given_up;
                total.failures.extend(report.failures);
                if !full {
                    return total;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the outbox cannot be read; trying again later");
                return total;
            }
        }
    }
}

fn log(report: &DispatchReport) {
    for (outbox_id, error) in &report.failures {
        tracing::warn!(outbox_id, %error, "a notice could not be sent; trying again later");
    }
    if report.sent > 0 {
        metrics::counter!("notices_sent_total").increment(u64::from(report.sent));
    }
    if report.retried > 0 {
        metrics::counter!("notice_send_failures_total").increment(u64::from(report.retried));
    }
    if report.given_up > 0 {
        metrics::counter!("notices_given_up_total").increment(u64::from(report.given_up));
        tracing::warn!(
            given_up = report.given_up,
            "notices given up (user blocked the bot, or too many failures)"
        );
    }
    if report.sent + report.given_up > 0 {
        tracing::info!(
            sent = report.sent,
            retried = report.retried,
            given_up = report.given_up,
            "outbox round"
        );
    }
}
