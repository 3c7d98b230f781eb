//! The live-price refresher: every process reads the prices in the database again every
//! `PRICES_REFRESH_SECS`, so a price set anywhere is in force everywhere within that.

use std::time::Duration;

use rei_core::prices::PriceService;
use tokio_util::sync::CancellationToken;

/// Refreshes `prices` every `every` until `shutdown`. A failed read keeps the prices in
/// force and is tried again at the next round.
pub async fn refresh_prices(prices: PriceService, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match prices.refresh().await {
            Ok(true) => tracing::info!("live prices changed"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the live prices failed; keeping the ones in force")
            }
        }
    }
}
