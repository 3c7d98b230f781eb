//! Opening PostgreSQL: read-committed transactions with `SELECT … FOR UPDATE` on the
//! rows a write depends on (the user's balance, a reservation; see `dialect.rs`),
//! conditional updates on versions, and retries on unique races, serialisation failures
//! and deadlocks.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::PgConnectOptions;

use super::dialect::Dialect;
use super::store::SqlStore;
use super::{SqlError, WriteMode};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl SqlStore {
    /// Connects to PostgreSQL and applies migrations.
    ///
    /// # Errors
    /// [`SqlError`] when the URL is malformed, the server cannot be reached, or
    /// migrations fail.
    pub async fn connect_postgres(url: &str) -> Result<Self, SqlError> {
        Self::connect_postgres_with(url, WriteMode::Direct).await
    }

    /// [`SqlStore::connect_postgres`] with a chosen [`WriteMode`].
    ///
    /// # Errors
    /// As [`SqlStore::connect_postgres`].
    pub async fn connect_postgres_with(url: &str, mode: WriteMode) -> Result<Self, SqlError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| SqlError::BadUrl(format!("{}: {e}", super::redact(url))))?;
        // One connection first, so that a server that refuses or does not answer is
        // reported at once rather than after the pool's acquire timeout.
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
        )
        .await
        .map_err(|_| SqlError::Connect("the server did not answer within 10 s".into()))?
        .map_err(|e| SqlError::Connect(Box::new(e)))?;
        sqlx::Connection::close(probe)
            .await
            .map_err(|e| SqlError::Connect(Box::new(e)))?;
        sqlx::any::install_default_drivers();
        let any = AnyConnectOptions::from_str(url)
            .map_err(|e| SqlError::BadUrl(format!("{}: {e}", super::redact(url))))?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(any)
            .await
            .map_err(|e| SqlError::Connect(Box::new(e)))?;
        Self::migrated(pool, Dialect::Postgres, &MIGRATOR, mode).await
    }
}
