//! The HTTP server (axum) on `HTTP_ADDR`, an inbound adapter: it translates requests to
//! core calls and their results to status codes, nothing more.
//!
//! - `GET /healthz`: the process runs. `GET /readyz`: the database (and Redis when
//!   configured) answer.
//! - `POST /webhooks/yookassa`: the source address is checked against the allow-list
//!   (a forwarded address only from a trusted proxy); the body is a hint, the payment
//!   (or refund) is re-read from YooKassa and applied by `PaymentService`.
//! - `POST /webhooks/telegram` (webhook mode): the secret header is checked, the update
//!   goes to the same dispatcher as with polling.
//! - `POST /webhooks/kling`: a task callback only wakes the job's worker, which re-reads
//!   the task.
//! - `GET /metrics`: Prometheus text.
//! - `GET /assets/…`: a file behind a signed, expiring link (video→video sources).
//!
//! One tracing span per request; every failure is mapped to a status in one place
//! ([`WebError`]); bodies are limited and requests time out.

mod assets;
mod ips;
mod metrics_route;
mod telegram;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rei_core::job::JobService;
use rei_core::payment::PaymentService;
use rei_core::user::AdminService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use ips::{DEFAULT_METRICS_IPS, DEFAULT_YOOKASSA_IPS, IpList, IpListError};
pub use metrics_route::{Metrics, MetricsError};

use crate::app::backends::Backends;
use crate::inbound::telegram::TelegramWebhook;
use crate::inbound::worker::Wakeups;
use crate::outbound::files::AssetStore;

/// Longest time a readiness check may take.
const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest time any request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// `POST /webhooks/yookassa` body limit (the contract's 64 KiB).
const YOOKASSA_BODY_LIMIT: usize = 64 * 1024;
/// Other webhook bodies (Telegram updates, Kling callbacks).
const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

/// What the server serves with; parts left `None` answer 404.
#[derive(Clone)]
pub struct WebState {
    /// Database and Redis, for `/readyz`.
    pub backends: Backends,
    /// YooKassa webhooks (when YooKassa is configured).
    pub payments: Option<Arc<PaymentService>>,
    /// Who may call the YooKassa webhook (`YOOKASSA_WEBHOOK_ALLOWED_IPS`).
    pub yookassa_ips: IpList,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: IpList,
    /// Telegram webhook mode.
    pub telegram: Option<TelegramWebhook>,
    /// Kling callbacks: the job service and this process's waiting workers.
    pub kling: Option<(Arc<JobService>, Wakeups)>,
    /// `/metrics`.
    pub metrics: Option<Metrics>,
    /// Who may read `/metrics` (`METRICS_ALLOWED_IPS`).
    pub metrics_ips: IpList,
    /// Statistics for the `/metrics` gauges.
    pub admin: Option<AdminService>,
    /// Files behind signed links (`PUBLIC_URL` set).
    pub assets: Option<AssetStore>,
}

impl WebState {
    /// Health and readiness only: every other route answers 404 until its part is set.
    #[must_use]
    pub fn new(backends: Backends) -> Self {
        Self {
            backends,
            payments: None,
            yookassa_ips: IpList::default(),
            trusted_proxies: IpList::default(),
            telegram: None,
            kling: None,
            metrics: None,
            metrics_ips: IpList::default(),
            admin: None,
            assets: None,
        }
    }
}

impl WebState {
    /// Lets a request through when its client address (the peer, or the forwarded one
    /// from a trusted proxy) is on `allowed`; `what` names the route in the refusal log.
    fn admit(
        &self,
        allowed: &IpList,
        peer: SocketAddr,
        headers: &axum::http::HeaderMap,
        what: &'static str,
    ) -> Result<(), WebError> {
        let from = ips::client_ip(peer.ip(), headers, &self.trusted_proxies);
        if from.is_some_and(|ip| allowed.contains(ip)) {
            Ok(())
        } else {
            tracing::warn!(client = ?from, what, "request from an address off the allow-list refused");
            Err(WebError::Forbidden)
        }
    }
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("payments", &self.payments.is_some())
            .field("telegram", &self.telegram.is_some())
            .field("kling", &self.kling.is_some())
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

/// Every way a request can fail, mapped to a status in one place. Bodies say only what
/// is wrong, never internals.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The caller is not on the allow-list.
    #[error("forbidden")]
    Forbidden,
    /// The secret header is missing or wrong.
    #[error("unauthorized")]
    Unauthorized,
    /// The body cannot be read.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// This route is not enabled in this configuration.
    #[error("not found")]
    NotFound,
    /// A dependency (the database, the provider's API) cannot answer now: retry later.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.to_string()).into_response()
    }
}

/// The routes.
pub fn router(state: WebState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_route::metrics))
        .route("/assets/{*key}", get(assets::asset))
        .route(
            "/webhooks/yookassa",
            post(webhooks::yookassa).layer(DefaultBodyLimit::max(YOOKASSA_BODY_LIMIT)),
        )
        .route(
            "/webhooks/telegram",
            post(telegram::webhook).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
        .route(
            "/webhooks/kling",
            post(webhooks::kling).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // One span per request: method and path only (never the query: signed links).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::extract::Request| {
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        path = %request.uri().path(),
                    )
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        )
        .with_state(state)
}

async fn readyz(State(state): State<Arc<WebState>>) -> Result<&'static str, WebError> {
    match tokio::time::timeout(READY_TIMEOUT, state.backends.ready()).await {
        Ok(Ok(())) => Ok("ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, error.chain = ?e, "not ready");
            Err(WebError::Unavailable(e.what()))
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            Err(WebError::Unavailable("timed out"))
        }
    }
}

/// Serves the routes on `listener` until `shutdown`, then lets requests in flight finish.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: TcpListener,
    state: WebState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP server listening");
    }
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
