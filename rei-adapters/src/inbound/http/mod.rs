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
//! - `/admin`, `/admin/login`, `/admin/logout` (`ADMIN_WEB=1` only): the web admin.
//! - `GET /sandbox/checkout/{id}`, `POST …/pay`, `POST …/cancel` (`SANDBOX=1` only): the
//!   sandbox's checkout page.
//!
//! One tracing span per request; every failure is mapped to a status in one place
//! ([`WebError`]); bodies are limited and requests time out.

mod admin;
mod assets;
mod ips;
mod metrics_route;
mod sandbox;
mod telegram;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
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

pub use admin::AdminPages;
pub use ips::{DEFAULT_METRICS_IPS, DEFAULT_YOOKASSA_IPS, IpList, IpListError};
pub use metrics_route::{Metrics, MetricsError};
pub use sandbox::SandboxPages;

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
/// The largest Kling callback read (a task's status and result links).
const KLING_BODY_LIMIT: usize = 64 * 1024;

/// Reads a request's body once its sender is authorised, up to `limit` bytes: a larger
/// declared length is refused before anything is read.
async fn read_body(
    request: axum::extract::Request,
    limit: usize,
) -> Result<axum::body::Bytes, WebError> {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(WebError::TooLarge);
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| match declared {
            // Within its declared length: the client stopped sending.
            Some(_) => WebError::BadRequest("the body was cut off"),
            None => WebError::TooLarge,
        })
}
/// `text` safe inside HTML text and double-quoted attributes (the server-rendered
/// pages: the sandbox's checkout, the web admin).
pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How often one kind of warning a stranger can cause is written.
const STRANGER_WARNING_EVERY: Duration = Duration::from_secs(60);

/// When each kind of stranger-caused warning was last written.
static STRANGER_WARNINGS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<&'static str, tokio::time::Instant>>,
> = std::sync::LazyLock::new(Default::default);

/// Whether a warning of `kind` that anyone on the internet can cause (a refused or
/// unreadable webhook) may be written now: at most one a minute per kind, so strangers
/// cannot flood the log. The metrics count every one.
pub(crate) fn stranger_warning(kind: &'static str) -> bool {
    let now = tokio::time::Instant::now();
    let mut last = STRANGER_WARNINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match last.get(kind) {
        Some(at) if now.duration_since(*at) < STRANGER_WARNING_EVERY => false,
        _ => {
            last.insert(kind, now);
            true
        }
    }
}

/// What the Kling callback route needs.
#[derive(Clone)]
pub struct KlingHooks {
    /// Looks the job up.
    pub jobs: Arc<JobService>,
    /// Wakes this process's waiting workers.
    pub wakeups: Wakeups,
    /// Checks each callback URL's token before its body is read.
    pub key: crate::outbound::kling::CallbackKey,
}

rei_core::opaque_debug!(KlingHooks);

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
    /// Kling callbacks (when Kling is configured).
    pub kling: Option<KlingHooks>,
    /// `/metrics`.
    pub metrics: Option<Metrics>,
    /// Who may read `/metrics` (`METRICS_ALLOWED_IPS`).
    pub metrics_ips: IpList,
    /// Statistics for the `/metrics` gauges.
    pub admin: Option<AdminService>,
    /// Files behind signed links (`PUBLIC_URL` set).
    pub assets: Option<AssetStore>,
    /// The sandbox's checkout page (`SANDBOX=1`).
    pub sandbox: Option<SandboxPages>,
    /// The web admin (`ADMIN_WEB=1`).
    pub admin_web: Option<AdminPages>,
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
            sandbox: None,
            admin_web: None,
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
            if stranger_warning("off-allow-list") {
                tracing::warn!(client = ?from, what, "request from an address off the allow-list refused (told at most once a minute)");
            }
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
    /// The body is larger than the route takes.
    #[error("payload too large")]
    TooLarge,
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
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.to_string()).into_response()
    }
}

/// The routes.
pub fn router(state: WebState) -> Router {
    let kling = state.kling.is_some();
    let sandbox = state.sandbox.is_some();
    let admin_web = state.admin_web.is_some();
    let state = Arc::new(state);
    let mut router = Router::new();
    // The sandbox's checkout page exists only in the sandbox.
    if sandbox {
        router = router
            .route("/sandbox/checkout/{id}", get(sandbox::checkout))
            .route("/sandbox/checkout/{id}/pay", post(sandbox::pay))
            .route("/sandbox/checkout/{id}/cancel", post(sandbox::cancel));
    }
    // The web admin exists only with ADMIN_WEB=1.
    if admin_web {
        router = router
            .route("/admin", get(admin::overview))
            .route("/admin/login", get(admin::login_page).post(admin::login))
            .route("/admin/logout", post(admin::logout));
    }
    // The Kling callback (unauthenticated by Kling's design) exists only when Kling does.
    if kling {
        router = router.route("/webhooks/kling", post(webhooks::kling));
    }
    router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", {
            let cache = Arc::new(ReadyCache::default());
            get(move |State(state): State<Arc<WebState>>| async move {
                readyz(&state, &cache).await
            })
        })
        .route("/metrics", get(metrics_route::metrics))
        .route("/assets/{*key}", get(assets::asset))
        // Bodies are read by the handlers, after the sender is authorised, each within
        // its route's limit.
        .route("/webhooks/yookassa", post(webhooks::yookassa))
        .route("/webhooks/telegram", post(telegram::webhook))
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

/// How long a readiness answer is reused: `/readyz` asks the backends at most once a
/// second, however often it is called (a flood never reaches the database pool).
const READY_FOR: Duration = Duration::from_secs(1);

/// The last readiness answer and when it was found.
type ReadyCache = tokio::sync::Mutex<Option<(tokio::time::Instant, Result<(), &'static str>)>>;

async fn readyz(state: &WebState, cache: &ReadyCache) -> Result<&'static str, WebError> {
    // Callers queue on the lock: while one check runs, the others wait for its answer.
    let mut last = cache.lock().await;
    let fresh = last
        .as_ref()
        .filter(|(at, _)| at.elapsed() < READY_FOR)
        .map(|(_, answer)| *answer);
    let answer = match fresh {
        Some(answer) => answer,
        None => {
            let answer = match tokio::time::timeout(READY_TIMEOUT, state.backends.ready()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, error.chain = ?e, "not ready");
                    Err(e.what())
                }
                Err(_) => {
                    tracing::warn!("readiness check timed out");
                    Err("timed out")
                }
            };
            *last = Some((tokio::time::Instant::now(), answer));
            answer
        }
    };
    answer.map(|()| "ready").map_err(WebError::Unavailable)
}

/// How the server guards its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once (`HTTP_MAX_CONNECTIONS`); more wait in the backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers — also how long an idle
    /// keep-alive connection is kept waiting for its next request.
    pub header_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves the routes on `listener` until `shutdown`, then lets requests in flight finish
/// (up to [`REQUEST_TIMEOUT`]). A slow or idle client is cut off after
/// `header_timeout`; at most `max_connections` are served at once.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    state: WebState,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_connections = limits.max_connections, "HTTP server listening");
    }
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1 only (a proxy in front speaks HTTP/2 to clients): no protocol sniffing
    // waits before the header timeout starts.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        // A free slot first: at the cap, new clients wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            () = shutdown.cancelled() => break,
        };
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = app.clone().map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let connection = builder.serve_connection(
            TokioIo::new(socket),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(REQUEST_TIMEOUT) => {
            tracing::warn!("connections still open after the shutdown grace: closed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [edge] A stranger cannot flood the log: one warning of a kind a minute.
    #[test]
    fn stranger_warnings_are_written_once_a_minute_per_kind() {
        assert!(stranger_warning("test-kind-a"));
        assert!(
            !stranger_warning("test-kind-a"),
            "the second within a minute is not"
        );
        assert!(stranger_warning("test-kind-b"), "another kind is");
    }
}
