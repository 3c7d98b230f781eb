//! PostgreSQL: read-committed transactions with `SELECT … FOR UPDATE` on the rows a
//! write depends on (the user's balance, a reservation), conditional updates on
//! versions, and retries on unique races, serialisation failures and deadlocks.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::SqlError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Every store port over one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Woken when a commit put a notice into the outbox (this process's dispatcher
    /// sends it at once instead of at its next round).
    outbox_signal: std::sync::Arc<tokio::sync::Notify>,
    pool: PgPool,
}

impl PostgresStore {
    /// Woken when a commit of this store put a notice into the outbox.
    #[must_use]
    pub fn outbox_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox_signal.clone()
    }

    /// Connects and applies migrations.
    ///
    /// # Errors
    /// [`SqlError`] when the URL is malformed, the server cannot be reached, or
    /// migrations fail.
    pub async fn connect(url: &str) -> Result<Self, SqlError> {
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
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
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
    store = PostgresStore,
    db = sqlx::Postgres,
    begin_write = "BEGIN",
    lock = " FOR UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    snapshot = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    order_col = "seq",
);
