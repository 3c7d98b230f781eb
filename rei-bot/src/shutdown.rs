//! One shutdown token for the whole process: SIGINT or SIGTERM cancels it; the front
//! end, the HTTP server and the workers stop on it (workers finish or hand back the
//! current step).

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on SIGINT or SIGTERM.
pub(crate) async fn on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the current steps");
    shutdown.cancel();
}
