//! Shared plumbing of the provider clients: the `reqwest` client builder (rustls, connect
//! and read timeouts), the retry policy (bounded exponential backoff with jitter, driven by
//! [`backon`], honouring the provider's retry-after), and one helper that runs a request
//! inside a tracing span and counts it in metrics.
//!
//! Metrics (all counters carry a `provider` label: `kling`, `gemini`, `yookassa`):
//!
//! - `provider_requests_total{provider, outcome}`: every HTTP exchange; `outcome` is `ok`,
//!   `reauth` (Kling refused the token's time window and the call is repeated with a new
//!   token) or the error kind (`transient`, `rate_limited`, …).
//! - `provider_errors_total{provider, kind}`: every failed exchange, by error kind (a
//!   `reauth` exchange is not an error).
//! - `provider_reauth_total{provider}`: every exchange answered "sign again".
//! - `provider_retries_total{provider}`: every retry the policy decided.
//! - `provider_request_duration_seconds{provider}`: a histogram of exchange latency.
//!
//! Spans are named `provider_request` with the fields `provider`, `method`, `path` (never a
//! query string, a key or a full URL), `status` and `latency_ms`.

use std::fmt;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::{Bytes, BytesMut};
use rei_core::ports::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tracing::Instrument;

/// Timeouts of one provider's HTTP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Longest wait for a TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Longest wait between two reads of a response.
    pub read_timeout: Duration,
    /// Longest time for a whole exchange, body included.
    pub request_timeout: Duration,
}

impl HttpConfig {
    /// Timeouts with the given total request timeout, 10 s to connect, and reads bounded
    /// by the total.
    #[must_use]
    pub const fn with_request_timeout(request_timeout: Duration) -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: request_timeout,
            request_timeout,
        }
    }
}

impl Default for HttpConfig {
    /// 10 s to connect, 60 s per exchange.
    fn default() -> Self {
        Self::with_request_timeout(Duration::from_secs(60))
    }
}

/// The HTTP client could not be built (TLS backend or configuration failure).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the {provider} HTTP client: {message}")]
pub struct ClientBuildError {
    provider: &'static str,
    message: String,
}

impl ClientBuildError {
    pub(crate) fn new(provider: &'static str, message: impl Into<String>) -> Self {
        Self {
            provider,
            message: message.into(),
        }
    }
}

/// Builds a `reqwest` client over rustls with the configured timeouts.
pub(crate) fn build_client(
    provider: &'static str,
    config: &HttpConfig,
) -> Result<reqwest::Client, ClientBuildError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .timeout(config.request_timeout)
        .user_agent(concat!("rei/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientBuildError::new(provider, e.without_url().to_string()))
}

/// Redirects a download follows at most.
const MAX_DOWNLOAD_REDIRECTS: usize = 5;

/// A client for downloading a provider's result files: as [`build_client`], but a
/// redirect is followed only to the same origin (scheme, host and port) as the URL the
/// provider gave, at most five times — a result link cannot send us elsewhere.
pub(crate) fn build_download_client(
    provider: &'static str,
    config: &HttpConfig,
) -> Result<reqwest::Client, ClientBuildError> {
    let same_origin = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(reqwest::Url::origin);
        if attempt.previous().len() > MAX_DOWNLOAD_REDIRECTS {
            attempt.error("too many redirects")
        } else if first.is_some_and(|origin| origin == attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.error("a redirect to another origin")
        }
    });
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .user_agent(concat!("rei/", env!("CARGO_PKG_VERSION")))
        .redirect(same_origin)
        .build()
        .map_err(|e| ClientBuildError::new(provider, e.without_url().to_string()))
}

/// How provider calls are retried: only transient failures and rate limits, a bounded
/// number of times, with exponential backoff and jitter. A rate limit that names its
/// wait (a `Retry-After` header, Gemini's `RetryInfo.retryDelay`) is waited out exactly,
/// unless the wait is longer than [`RetryPolicy::max_retry_after`]: then the error is
/// returned at once for the caller to reschedule. A rate limit that names no wait waits
/// at least [`RetryPolicy::rate_limit_floor`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The first backoff delay.
    pub min_delay: Duration,
    /// The largest backoff delay.
    pub max_delay: Duration,
    /// The longest provider-requested wait that is honoured in place.
    pub max_retry_after: Duration,
    /// The shortest wait after a rate limit that names no wait of its own (Kling asks for
    /// at least 1 s on code 1303; zero by default).
    pub rate_limit_floor: Duration,
    /// Randomise the backoff delays (on by default; tests may turn it off).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 3 attempts, 0.5 s → 8 s backoff with jitter, provider waits up to 60 s honoured, no
    /// rate-limit floor beyond the backoff.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            rate_limit_floor: Duration::ZERO,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    #[must_use]
    pub fn no_retry() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before the next attempt after `error`, given the delay the backoff
    /// schedule proposes (`None` once the attempt budget is spent). `None` means: do not
    /// retry.
    ///
    /// A rate limit carrying the provider's wait uses that wait (when within
    /// [`Self::max_retry_after`]); a rate limit without one uses the backoff delay, but at
    /// least [`Self::rate_limit_floor`]; other retryable errors use the backoff delay.
    #[must_use]
    pub fn delay_for(&self, error: &ProviderError, backoff: Option<Duration>) -> Option<Duration> {
        if !error.is_retryable() {
            return None;
        }
        let backoff = backoff?;
        match error {
            ProviderError::RateLimited {
                retry_after: Some(wait),
            } => (*wait <= self.max_retry_after).then_some(*wait),
            ProviderError::RateLimited { retry_after: None } => {
                Some(backoff.max(self.rate_limit_floor))
            }
            _ => Some(backoff),
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay))
            .with_max_times(
                usize::try_from(self.max_attempts.saturating_sub(1)).unwrap_or(usize::MAX),
            );
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }

    /// Runs `operation` under this policy; retries are logged and counted in
    /// `provider_retries_total{provider}`.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        provider: &'static str,
        operation: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        operation
            .retry(self.backoff())
            .when(ProviderError::is_retryable)
            .adjust(|error, backoff| self.delay_for(error, backoff))
            .notify(|error, delay| {
                metrics::counter!("provider_retries_total", "provider" => provider).increment(1);
                tracing::warn!(
                    provider,
                    error.kind = error.kind().as_str(),
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "retrying provider call"
                );
            })
            .await
    }
}

/// A provider's answer, read in full (up to a size limit).
#[derive(Clone)]
pub(crate) struct Exchange {
    /// HTTP status.
    pub status: StatusCode,
    /// The `Retry-After` header, when present and parseable as seconds.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: Bytes,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("status", &self.status)
            .field("retry_after", &self.retry_after)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// How one finished exchange is counted in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A usable answer.
    Ok,
    /// A failure of this class.
    Failed(ProviderErrorKind),
    /// The provider refused the credentials' time window and the call is repeated with
    /// fresh ones (Kling 1003/1004): not an error unless the repeat fails too.
    Reauth,
}

impl Outcome {
    /// The outcome of a plain result.
    pub(crate) fn of<T>(result: &Result<T, ProviderError>) -> Self {
        result
            .as_ref()
            .err()
            .map_or(Self::Ok, |e| Self::Failed(e.kind()))
    }
}

/// An error that knows how it is counted.
pub(crate) trait Classified: From<ProviderError> {
    /// The outcome counted in metrics.
    fn outcome(&self) -> Outcome;
}

impl Classified for ProviderError {
    fn outcome(&self) -> Outcome {
        Outcome::Failed(self.kind())
    }
}

/// Whether sending a request again can do (and bill) the work twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Repeating is safe: the call only reads, carries an idempotency key (YooKassa), or
    /// is looked up before it is repeated (Kling's `external_task_id`). A failure while
    /// reading the answer is `Transient`.
    Safe,
    /// Every request that left the client may have been billed (Gemini: no idempotency
    /// key). Only a failure to open the connection (refused, unreachable, connect
    /// timeout: nothing was sent) is `Transient`. Once the request was sent, a timeout
    /// or a broken connection, before or after the answer began, is `Unknown`, so it is
    /// never retried: the provider may still be working on it, and billing it.
    Billed,
}

/// Names one exchange for the span and the metrics.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    /// `kling`, `gemini`, `yookassa`.
    pub provider: &'static str,
    /// `GET`, `POST`.
    pub method: &'static str,
    /// The path without query or host; never contains a secret.
    pub path: &'a str,
    /// The largest body read; more is an `Unknown` error.
    pub body_limit: usize,
    /// Whether a broken answer may be retried.
    pub replay: Replay,
}

/// Sends `request`, reads the answer and lets `interpret` turn it into a result, inside a
/// `provider_request` span, counting the outcome. Transport failures (connection,
/// timeout, an answer that breaks off) become [`ProviderError::Transient`] without any
/// URL in the text, unless the call is [`Replay::Billed`]: then only a connection that
/// never opened is `Transient`, and everything after the request was sent is
/// [`ProviderError::Unknown`].
pub(crate) async fn exchange<T, E>(
    call: Call<'_>,
    request: reqwest::RequestBuilder,
    interpret: impl FnOnce(Exchange) -> Result<T, E>,
) -> Result<T, E>
where
    E: Classified,
{
    let span = tracing::info_span!(
        "provider_request",
        provider = call.provider,
        method = call.method,
        path = call.path,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        let answer = read_answer(call, request).await;
        let result = match answer {
            Ok(exchange) => {
                tracing::Span::current().record("status", exchange.status.as_u16());
                interpret(exchange)
            }
            Err(error) => Err(E::from(error)),
        };
        let latency = started.elapsed();
        tracing::Span::current().record(
            "latency_ms",
            u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        );
        let outcome = result
            .as_ref()
            .err()
            .map_or(Outcome::Ok, Classified::outcome);
        record_outcome(call.provider, outcome, latency);
        result
    }
    .instrument(span)
    .await
}

/// Counts one finished exchange.
pub(crate) fn record_outcome(provider: &'static str, outcome: Outcome, latency: Duration) {
    let label = match outcome {
        Outcome::Ok => "ok",
        Outcome::Failed(kind) => kind.as_str(),
        Outcome::Reauth => "reauth",
    };
    metrics::counter!("provider_requests_total", "provider" => provider, "outcome" => label)
        .increment(1);
    metrics::histogram!("provider_request_duration_seconds", "provider" => provider)
        .record(latency.as_secs_f64());
    match outcome {
        Outcome::Ok => tracing::debug!(outcome = label, "provider request succeeded"),
        Outcome::Failed(kind) => {
            metrics::counter!("provider_errors_total", "provider" => provider, "kind" => kind.as_str())
                .increment(1);
            tracing::debug!(outcome = label, "provider request failed");
        }
        Outcome::Reauth => {
            metrics::counter!("provider_reauth_total", "provider" => provider).increment(1);
            tracing::debug!(outcome = label, "provider asked for new credentials");
        }
    }
}

async fn read_answer(
    call: Call<'_>,
    request: reqwest::RequestBuilder,
) -> Result<Exchange, ProviderError> {
    let started = Instant::now();
    let mut response = request.send().await.map_err(|error| match call.replay {
        // `is_connect`: the connector failed (refused, DNS, TLS, connect timeout), so no
        // byte of the request left; a builder error is ours, before sending too.
        Replay::Billed if !error.is_connect() && !error.is_builder() => {
            failed_billed_call(call.provider, error, started.elapsed())
        }
        Replay::Safe | Replay::Billed => transport_error(error),
    })?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    if response
        .content_length()
        .is_some_and(|n| n > call.body_limit as u64)
    {
        return Err(ProviderError::Unknown {
            message: format!("answer larger than {} bytes", call.body_limit),
        });
    }
    let mut body = BytesMut::new();
    let broken = |error: reqwest::Error| match call.replay {
        Replay::Safe => transport_error(error),
        Replay::Billed => failed_billed_call(call.provider, error, started.elapsed()),
    };
    while let Some(chunk) = response.chunk().await.map_err(broken)? {
        if body.len() + chunk.len() > call.body_limit {
            return Err(ProviderError::Unknown {
                message: format!("answer larger than {} bytes", call.body_limit),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Exchange {
        status,
        retry_after,
        body: body.freeze(),
    })
}

/// Maps a transport failure to a transient error, with the URL stripped from its text.
pub(crate) fn transport_error(error: reqwest::Error) -> ProviderError {
    let error = error.without_url();
    if error.is_builder() {
        return ProviderError::InvalidRequest {
            message: format!("cannot build the request: {}", chain(&error)),
        };
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    ProviderError::Transient {
        message: format!("{what}: {}", chain(&error)),
    }
}

/// A billed call that failed after its request was sent (no answer in time, or a
/// connection or answer that broke off): the provider has the request and may have
/// billed it, so this is `Unknown`, never retried, and counts as one failed attempt.
fn failed_billed_call(
    provider: &'static str,
    error: reqwest::Error,
    waited: Duration,
) -> ProviderError {
    let error = error.without_url();
    let name = display_name(provider);
    let message = if error.is_timeout() {
        format!(
            "{name} did not answer within {}; the call may have been billed, so it is not \
             repeated",
            seconds(waited)
        )
    } else {
        format!(
            "the connection to {name} broke after the request was sent; the call may have \
             been billed, so it is not repeated: {}",
            chain(&error)
        )
    };
    ProviderError::Unknown { message }
}

/// `gemini` → `Gemini`, for messages.
fn display_name(provider: &str) -> String {
    let mut chars = provider.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A wait as people read it: `180 s`, `0.3 s`.
fn seconds(waited: Duration) -> String {
    if waited >= Duration::from_secs(10) {
        format!("{} s", waited.as_secs())
    } else {
        format!("{:.1} s", waited.as_secs_f64())
    }
}

/// The error and its sources, joined with `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A `Retry-After` header given in (possibly fractional) seconds. The HTTP-date form is
/// not used by these providers and is ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_seconds(text)
}

/// Parses `"22"`, `"1.203"` as a duration in seconds (no floats; up to nanoseconds).
pub(crate) fn parse_seconds(text: &str) -> Option<Duration> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        let place = 10u32.pow(8 - u32::try_from(i).ok()?);
        nanos += u32::from(digit - b'0') * place;
    }
    Some(Duration::new(secs, nanos))
}

/// Joins a base URL (with or without a trailing slash, possibly with a path such as
/// `/v3`) and an absolute API path.
pub(crate) fn endpoint(base: &url::Url, path: &str) -> String {
    format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The first `max` characters of a provider's text, for error messages.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
