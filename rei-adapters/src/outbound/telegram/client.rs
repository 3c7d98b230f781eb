//! The Bot API clients of a process, built once: one for sends and one for long
//! polling, each with timeouts made for its calls.
//!
//! teloxide's default client gives up on any request after 17 s, less than a long poll
//! holds (`getUpdates` with `timeout` 25 s waits that long when nobody writes): every
//! idle poll would be cut off by our own client and reported as a network failure. So
//! the polling client waits [`LONG_POLL`] plus a margin, and the sending client allows
//! an upload of the Bot API's largest file.

use std::time::Duration;

use teloxide::Bot;
use teloxide::prelude::Requester;
use teloxide::types::Me;
use teloxide::{ApiError, RequestError};

/// How long one `getUpdates` long poll waits for an update.
pub const LONG_POLL: Duration = Duration::from_secs(25);
/// Time to open a connection to the Bot API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A long poll's answer may come this long after its `timeout` (network, Telegram's
/// own slack) before the poller gives up on it.
const POLL_MARGIN: Duration = Duration::from_secs(10);
/// A send may take this long: an upload of up to 50 MB on a modest link.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the clients could not be built, or the bot could not start.
#[derive(Debug, thiserror::Error)]
pub enum BotStartError {
    /// The HTTP client could not be built (the TLS backend failed to load).
    #[error("building the Telegram HTTP client failed")]
    Client(#[source] reqwest::Error),
    /// No answer from the Bot API within the start-up retry window.
    #[error(
        "cannot reach Telegram at {url} (check TELEGRAM_API_URL, DNS and the network): {source}"
    )]
    Unreachable {
        /// `TELEGRAM_API_URL`.
        url: String,
        /// The last failure.
        #[source]
        source: RequestError,
    },
    /// Telegram answered that the token is not a bot's (401 Unauthorized / 404).
    #[error("Telegram rejected BOT_TOKEN (401 Unauthorized): check the token from @BotFather")]
    TokenRejected,
    /// Telegram answered `getMe` with another error.
    #[error("Telegram refused the bot at start: {0}")]
    Refused(#[source] RequestError),
}

/// The Bot API clients.
#[derive(Clone)]
pub struct BotClients {
    /// Sends, edits, downloads, `getMe`: everything but `getUpdates`.
    pub send: Bot,
    /// `getUpdates` long polls.
    pub poll: Bot,
    url: url::Url,
}

impl std::fmt::Debug for BotClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bots hold the token: never print them.
        f.debug_struct("BotClients")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl BotClients {
    /// Clients for `token` at `api_url` (`TELEGRAM_API_URL`).
    ///
    /// # Errors
    /// [`BotStartError::Client`] when an HTTP client cannot be built.
    pub fn new(token: &str, api_url: url::Url) -> Result<Self, BotStartError> {
        let client = |timeout: Duration| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(timeout)
                .tcp_nodelay(true)
                .build()
                .map_err(BotStartError::Client)
        };
        let send = Bot::with_client(token, client(SEND_TIMEOUT)?).set_api_url(api_url.clone());
        let poll =
            Bot::with_client(token, client(LONG_POLL + POLL_MARGIN)?).set_api_url(api_url.clone());
        Ok(Self {
            send,
            poll,
            url: api_url,
        })
    }

    /// Asks Telegram who the bot is, retrying with back-off for up to `retry_for` while
    /// the Bot API cannot be reached (a service started before the network is up, a
    /// short outage): a process under systemd should not die of that at once.
    ///
    /// # Errors
    /// [`BotStartError::TokenRejected`] at once when Telegram says the token is wrong;
    /// [`BotStartError::Unreachable`] when no answer came within `retry_for`;
    /// [`BotStartError::Refused`] for any other answer.
    pub async fn connect(&self, retry_for: Duration) -> Result<Me, BotStartError> {
        use backon::{ExponentialBuilder, Retryable};
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .without_max_times()
            .with_total_delay(Some(retry_for))
            .with_jitter();
        let url = self.url.as_str().trim_end_matches('/').to_owned();
        (|| async { self.send.get_me().await })
            .retry(backoff)
            .when(transient)
            .notify(|e, wait| {
                tracing::warn!(
                    url = %url,
                    error = %e,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "cannot reach Telegram yet; retrying"
                );
            })
            .await
            .map_err(|e| match e {
                RequestError::Api(ApiError::InvalidToken) => BotStartError::TokenRejected,
                e if transient(&e) => BotStartError::Unreachable {
                    url: url.clone(),
                    source: e,
                },
                e => BotStartError::Refused(e),
            })
    }
}

/// Failures worth another try: no connection, a timeout, Telegram's own trouble (5xx
/// answers are not JSON), flood control.
const fn transient(e: &RequestError) -> bool {
    matches!(
        e,
        RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::RetryAfter(_)
    )
}
