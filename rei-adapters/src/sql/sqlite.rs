//! SQLite: WAL, `synchronous=FULL`, foreign keys, a busy timeout, and writes through
//! `BEGIN IMMEDIATE` so concurrent writers queue instead of failing or overdrawing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::SqlError;

/// How long a writer waits for the write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Every store port over one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Woken when a commit put a notice into the outbox (this process's dispatcher
    /// sends it at once instead of at its next round).
    outbox_signal: std::sync::Arc<tokio::sync::Notify>,
    pool: SqlitePool,
}

impl SqliteStore {
    /// Woken when a commit of this store put a notice into the outbox.
    #[must_use]
    pub fn outbox_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox_signal.clone()
    }

    /// Opens (creating if absent) a SQLite file and applies migrations.
    ///
    /// # Errors
    /// [`SqlError`] when the file cannot be opened or migrated.
    pub async fn open_path(path: &str) -> Result<Self, SqlError> {
        Self::open(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens a `sqlite://` URL and applies migrations.
    ///
    /// # Errors
    /// [`SqlError`] when the URL is malformed or the file cannot be opened or migrated.
    pub async fn open_url(url: &str) -> Result<Self, SqlError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| SqlError::BadUrl(e.to_string()))?;
        Self::open(options).await
    }

    async fn open(options: SqliteConnectOptions) -> Result<Self, SqlError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| SqlError::Connect(Box::new(e)))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| SqlError::Migrate(Box::new(e)))?;
        Ok(Self {
            pool,
            outbox_signal: std::sync::Arc::default(),
        })
    }
}

super::store::sql_store!(
    store = SqliteStore,
    db = sqlx::Sqlite,
    begin_write = "BEGIN IMMEDIATE",
    lock = "",
    skip_locked = "",
    snapshot = "",
    order_col = "rowid",
);
