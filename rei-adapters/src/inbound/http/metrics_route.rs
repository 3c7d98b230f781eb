//! `GET /metrics`: the Prometheus text of every counter and histogram the process
//! recorded (updates, jobs, provider errors, payments, webhooks) plus gauges read from
//! the database at scrape time (queue depth, jobs and payments by status, ledger totals).

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rei_core::user::StatsReport;

use super::{WebError, WebState};

/// Longest time the scrape-time statistics may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(3);

/// The process-wide Prometheus recorder.
#[derive(Clone)]
pub struct Metrics(PrometheusHandle);

rei_core::opaque_debug!(Metrics);

/// The recorder could not be installed (another one is).
#[derive(Debug, thiserror::Error)]
#[error("the metrics recorder cannot be installed")]
pub struct MetricsError(#[source] metrics_exporter_prometheus::BuildError);

impl Metrics {
    /// Installs the Prometheus recorder for the whole process (once, at start).
    ///
    /// # Errors
    /// [`MetricsError`] when a recorder is already installed.
    pub fn install() -> Result<Self, MetricsError> {
        let seconds = [
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
        ];
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &seconds,
            )
            .and_then(PrometheusBuilder::install_recorder)
            .map(Self)
            .map_err(MetricsError)
    }

    /// The text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        self.0.render()
    }
}

pub(super) async fn metrics(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, WebError> {
    let Some(metrics) = &state.metrics else {
        return Err(WebError::NotFound);
    };
    state.admit(&state.metrics_ips, peer, &headers, "metrics")?;
    if let Some(admin) = &state.admin {
        match tokio::time::timeout(STATS_TIMEOUT, admin.stats()).await {
            Ok(Ok(report)) => record_stats(&report),
            Ok(Err(e)) => tracing::warn!(error = %e, "statistics for /metrics unavailable"),
            Err(_) => tracing::warn!("statistics for /metrics timed out"),
        }
    }
    let outbox = state.backends.stores.outbox.clone();
    match tokio::time::timeout(STATS_TIMEOUT, outbox.outbox_depth()).await {
        #[allow(clippy::cast_precision_loss)]
        Ok(Ok(depth)) => metrics::gauge!("outbox_depth").set(depth as f64),
        Ok(Err(e)) => tracing::warn!(error = %e, "the outbox depth for /metrics is unavailable"),
        Err(_) => tracing::warn!("the outbox depth for /metrics timed out"),
    }
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    ))
}

#[allow(clippy::cast_precision_loss)] // gauges are f64; counts and kopecks stay far below 2^53
fn record_stats(report: &StatsReport) {
    let s = &report.stats;
    metrics::gauge!("queue_depth").set(report.queue_depth as f64);
    metrics::gauge!("users").set(s.users as f64);
    metrics::gauge!("users_banned").set(s.banned_users as f64);
    metrics::gauge!("users_unreachable").set(s.unreachable_users as f64);
    metrics::gauge!("users_active_24h").set(s.active_since as f64);
    metrics::gauge!("jobs_failed_24h").set(s.failed_since as f64);
    metrics::gauge!("ledger_balances_kopecks").set(s.balances_total.kopecks() as f64);
    metrics::gauge!("ledger_held_kopecks").set(s.held_total.kopecks() as f64);
    for (state, count) in &s.jobs_by_state {
        metrics::gauge!("jobs", "status" => state.as_str()).set(*count as f64);
    }
    for (state, count, amount) in &s.payments_by_state {
        metrics::gauge!("payments", "status" => state.as_str()).set(*count as f64);
        metrics::gauge!("payments_amount_kopecks", "status" => state.as_str())
            .set(amount.kopecks() as f64);
    }
}
