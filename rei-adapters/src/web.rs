//! The HTTP server (axum) on `HTTP_ADDR`: `GET /healthz` (the process runs) and
//! `GET /readyz` (the database, and Redis when configured, answer). Webhooks and metrics
//! join it with the payments issue. One tracing span per request; 5xx bodies say only
//! what is unavailable.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backends::Backends;

/// Longest time a readiness check may take.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The routes.
pub fn router(backends: Backends) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(backends)
}

async fn readyz(State(backends): State<Backends>) -> (StatusCode, String) {
    let span = tracing::info_span!("http", route = "/readyz");
    async move {
        match tokio::time::timeout(READY_TIMEOUT, backends.ready()).await {
            Ok(Ok(())) => (StatusCode::OK, "ready".to_owned()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, error.chain = ?e, "not ready");
                (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Err(_) => {
                tracing::warn!("readiness check timed out");
                (StatusCode::SERVICE_UNAVAILABLE, "timed out".to_owned())
            }
        }
    }
    .instrument(span)
    .await
}

/// Serves the routes on `listener` until `shutdown`.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: TcpListener,
    backends: Backends,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP server listening");
    }
    axum::serve(listener, router(backends))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
