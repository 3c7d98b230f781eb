//! The broadcast sender: one process of a deployment (a lease, as the payment poller
//! has) sends the running broadcasts, one recipient at a time at `TELEGRAM_SEND_RATE`;
//! a pause or a cancel stops it at the next recipient; after a restart (or when the
//! holder dies, once its lease runs out) it goes on where it stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rei_core::broadcast::{BroadcastSender, BroadcastService, BroadcastState};
use rei_core::ports::{Clock, LeaseStore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::outbound::system::SystemClock;
use crate::outbound::telegram::SendRate;

const LEASE: &str = "broadcasts";
/// How often the running broadcasts are looked for.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long the lease lasts without renewal (a killed holder's broadcasts go on after).
const LEASE_FOR: Duration = Duration::from_secs(10);
/// How often the lease is renewed while sending.
const RENEW_EVERY: Duration = Duration::from_secs(3);

/// Sends running broadcasts until `shutdown`.
pub async fn send_broadcasts(
    broadcasts: BroadcastService,
    sender: Arc<dyn BroadcastSender>,
    leases: Arc<dyn LeaseStore>,
    holder: String,
    rate: SendRate,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = shutdown.cancelled() => break,
        }
        if !hold(leases.as_ref(), &holder).await {
            continue;
        }
        let running = match broadcasts.running().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "the running broadcasts cannot be read");
                continue;
            }
        };
        for id in running {
            let span = tracing::info_span!("broadcast", broadcast_id = id);
            send_one(
                &broadcasts,
                sender.as_ref(),
                leases.as_ref(),
                &holder,
                &rate,
                id,
                &shutdown,
            )
            .instrument(span)
            .await;
            if shutdown.is_cancelled() {
                break;
            }
        }
    }
    if let Err(e) = leases.release_lease(LEASE, &holder).await {
        tracing::warn!(error = %e, "giving up the broadcast lease failed");
    }
}

async fn hold(leases: &dyn LeaseStore, holder: &str) -> bool {
    let now = SystemClock.now();
    match leases
        .hold_lease(LEASE, holder, now.plus(LEASE_FOR), now)
        .await
    {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "the broadcast lease cannot be read");
            false
        }
    }
}

/// Sends broadcast `id` until it has no one left, stops running, the lease is lost, or
/// `shutdown`.
async fn send_one(
    broadcasts: &BroadcastService,
    sender: &dyn BroadcastSender,
    leases: &dyn LeaseStore,
    holder: &str,
    rate: &SendRate,
    id: i64,
    shutdown: &CancellationToken,
) {
    let broadcast = match broadcasts.status(id).await {
        Ok(b) if b.state == BroadcastState::Running => b,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "a broadcast cannot be read");
            return;
        }
    };
    tracing::info!(pending = broadcast.pending(), "sending a broadcast");
    let mut renewed = Instant::now();
    let mut sent = 0_u32;
    while !shutdown.is_cancelled() {
        if renewed.elapsed() >= RENEW_EVERY {
            if !hold(leases, holder).await {
                return;
            }
            renewed = Instant::now();
        }
        tokio::select! {
            () = rate.wait() => {}
            () = shutdown.cancelled() => return,
        }
        match broadcasts.deliver_next(&broadcast, sender).await {
            Ok(Some(_)) => sent += 1,
            Ok(None) => {
                tracing::info!(sent, "broadcast sent, paused or cancelled");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a broadcast step failed; going on at the next round");
                return;
            }
        }
    }
}
