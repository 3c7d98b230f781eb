//! Why the application could not be built or stopped running.

use rei_core::ports::{BoxError, StoreError};

use super::backends::BackendsError;
use super::settings::SettingsError;
use crate::inbound::http::MetricsError;
use crate::inbound::telegram::FrontendError;
use crate::outbound::locale::LocaleError;

/// Every way [`super::App`] fails, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The settings do not hold together.
    #[error("invalid configuration: {0}")]
    Settings(#[from] SettingsError),
    /// A setting parsed but its part could not be built.
    #[error("{name}: {source}")]
    Setting {
        /// The variable(s).
        name: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The database or Redis.
    #[error("opening the database and queue")]
    Backends(#[from] BackendsError),
    /// The live prices could not be seeded or read.
    #[error("loading the live prices")]
    Prices(#[source] rei_core::prices::PriceError),
    /// A database with sandbox payments (play money) opened outside the sandbox.
    #[error(
        "SANDBOX=0 on a database that holds sandbox payments (play money in its balances): run it with SANDBOX=1, or start production on a new database"
    )]
    PlayMoneyDatabase,
    /// The ledger could not be read for its start-up check.
    #[error("verifying the ledger")]
    Ledger(#[source] StoreError),
    /// The bot's texts do not parse (a build defect).
    #[error("the bot's texts")]
    Locales(#[from] LocaleError),
    /// A part that needs `BOT_TOKEN` was asked for without it.
    #[error("BOT_TOKEN must be set")]
    NoBot,
    /// The HTTP server cannot listen.
    #[error("HTTP_ADDR {addr}: cannot listen")]
    Listen {
        /// `HTTP_ADDR`.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed while running.
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    /// The Prometheus recorder.
    #[error("installing the metrics recorder")]
    Metrics(#[from] MetricsError),
    /// The Telegram front end stopped (a second poller on the token, a rejected token).
    #[error("the Telegram front end stopped")]
    Front(#[from] FrontendError),
    /// A task of the process panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),
}

impl AppError {
    /// A setting whose part could not be built.
    pub(crate) fn setting(
        name: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Setting {
            name,
            source: Box::new(source),
        }
    }
}
