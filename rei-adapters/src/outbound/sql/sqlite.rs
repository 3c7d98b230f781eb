//! Opening SQLite: WAL, `synchronous=FULL`, foreign keys, a busy timeout, and writes
//! through `BEGIN IMMEDIATE` (see `dialect.rs`) so concurrent writers queue instead of
//! failing or overdrawing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Executor};

use super::dialect::Dialect;
use super::store::SqlStore;
use super::{SqlError, WriteMode};

/// How long a writer waits for the write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Set on every new connection (they are per connection; WAL stays with the file).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                       PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqlStore {
    /// Opens (creating if absent) a SQLite file and applies migrations.
    ///
    /// # Errors
    /// [`SqlError`] when the file cannot be opened or migrated.
    pub async fn open_sqlite_path(path: &str) -> Result<Self, SqlError> {
        Self::open_sqlite_path_with(path, WriteMode::Batched).await
    }

    /// [`SqlStore::open_sqlite_path`] with a chosen [`WriteMode`].
    ///
    /// # Errors
    /// As [`SqlStore::open_sqlite_path`].
    pub async fn open_sqlite_path_with(path: &str, mode: WriteMode) -> Result<Self, SqlError> {
        Self::open_sqlite(SqliteConnectOptions::new().filename(path), mode).await
    }

    /// Opens a `sqlite://` URL and applies migrations.
    ///
    /// # Errors
    /// [`SqlError`] when the URL is malformed or the file cannot be opened or migrated.
    pub async fn open_sqlite_url(url: &str) -> Result<Self, SqlError> {
        Self::open_sqlite_url_with(url, WriteMode::Batched).await
    }

    /// [`SqlStore::open_sqlite_url`] with a chosen [`WriteMode`].
    ///
    /// # Errors
    /// As [`SqlStore::open_sqlite_url`].
    pub async fn open_sqlite_url_with(url: &str, mode: WriteMode) -> Result<Self, SqlError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| SqlError::BadUrl(e.to_string()))?;
        Self::open_sqlite(options, mode).await
    }

    async fn open_sqlite(options: SqliteConnectOptions, mode: WriteMode) -> Result<Self, SqlError> {
        sqlx::any::install_default_drivers();
        let url = options.create_if_missing(true).to_url_lossy();
        let any = AnyConnectOptions::from_url(&url).map_err(|e| SqlError::BadUrl(e.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(BUSY_TIMEOUT)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection.execute(PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect_with(any)
            .await
            .map_err(|e| SqlError::Connect(Box::new(e)))?;
        Self::migrated(pool, Dialect::Sqlite, &MIGRATOR, mode).await
    }
}
