//! SQL stores: SQLite (the embedded default) and PostgreSQL (scale-out), behind every
//! store port of `rei-core`, with embedded migrations per backend.
//!
//! [`connect`] picks the backend from `DATABASE_URL` (`sqlite://…` or `postgres://…`)
//! or `DATABASE_PATH`, applies migrations and returns the ports.

mod broadcasts;
mod dialect;
mod dialogues;
mod jobs;
mod ledger;
mod outbox;
mod payments;
mod postgres;
mod prices;
mod promos;
mod referrals;
pub(crate) mod rows;
mod sqlite;
mod store;
mod users;
mod web;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rei_core::ledger::{EntryKind, MAX_BALANCE};
use rei_core::ports::{
    BoxError, DialogueStore, JobStore, LedgerStore, Missing, PaymentStore, StoreError, UserStore,
};
use sqlx::error::ErrorKind;

pub use store::SqlStore;
pub use writer::WriteStats;

/// How a store commits its writes (see `writer.rs` for the measurements behind the
/// defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// One transaction per write, concurrent writers on pooled connections.
    Direct,
    /// Group commit: one writer task commits whatever is waiting, at once.
    Batched,
}

impl WriteMode {
    /// The default for a database kind: group commit on SQLite, a pool of writers on
    /// PostgreSQL.
    #[must_use]
    pub const fn default_for(target: &DatabaseTarget) -> Self {
        match target {
            DatabaseTarget::SqlitePath(_) | DatabaseTarget::SqliteUrl(_) => Self::Batched,
            DatabaseTarget::Postgres(_) => Self::Direct,
        }
    }
}

/// Why a database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The URL names no supported backend or is malformed.
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot open the database")]
    Connect(#[source] BoxError),
    /// Migrations failed.
    #[error("database migrations failed")]
    Migrate(#[source] BoxError),
}

/// Which database, from configuration.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A SQLite file (created if absent).
    SqlitePath(String),
    /// A `sqlite://` URL.
    SqliteUrl(String),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseTarget {
    /// Redacts passwords in URLs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SqlitePath(p) => write!(f, "SqlitePath({p:?})"),
            Self::SqliteUrl(u) => write!(f, "SqliteUrl({u:?})"),
            Self::Postgres(u) => write!(f, "Postgres({:?})", redact(u)),
        }
    }
}

pub use crate::outbound::secret_url::redact;

impl DatabaseTarget {
    /// `DATABASE_URL` wins over `DATABASE_PATH`.
    ///
    /// # Errors
    /// [`SqlError::BadUrl`] for a URL of another scheme.
    pub fn from_config(url: Option<&str>, path: &str) -> Result<Self, SqlError> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(Self::SqlitePath(path.to_owned())),
            Some(u) if u.starts_with("sqlite:") => Ok(Self::SqliteUrl(u.to_owned())),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Self::Postgres(u.to_owned()))
            }
            Some(u) => Err(SqlError::BadUrl(format!(
                "{} (expected sqlite://… or postgres://…)",
                redact(u)
            ))),
        }
    }
}

/// The store ports over one database.
#[derive(Clone)]
pub struct Stores {
    /// Users, bans, audit log, stats.
    pub users: Arc<dyn UserStore>,
    /// Ledger and reservations.
    pub ledger: Arc<dyn LedgerStore>,
    /// Jobs.
    pub jobs: Arc<dyn JobStore>,
    /// Payments.
    pub payments: Arc<dyn PaymentStore>,
    /// Bot dialogue state.
    pub dialogues: Arc<dyn DialogueStore>,
    /// Named leases (one payment poller per deployment).
    pub leases: Arc<dyn rei_core::ports::LeaseStore>,
    /// The outbox of money notices (written with their change, sent by a dispatcher).
    pub outbox: Arc<dyn rei_core::ports::OutboxStore>,
    /// Promo codes.
    pub promos: Arc<dyn rei_core::promo::PromoStore>,
    /// Referral codes, bindings and rewards.
    pub referrals: Arc<dyn rei_core::referral::ReferralStore>,
    /// Live prices.
    pub prices: Arc<dyn rei_core::prices::PriceStore>,
    /// Broadcasts and their recipients.
    pub broadcasts: Arc<dyn rei_core::broadcast::BroadcastStore>,
    /// Web admin sign-in links and sessions.
    pub web: Arc<dyn rei_core::web::WebStore>,
    /// Woken when a commit in this process put a notice into the outbox.
    pub outbox_signal: Arc<tokio::sync::Notify>,
    /// Answers whether the database is reachable (for `/readyz`).
    pub health: Arc<dyn Health>,
    /// The store itself (for what no port covers, such as [`SqlStore::write_stats`]).
    pub sql: Arc<SqlStore>,
}

rei_core::opaque_debug!(Stores);

/// A cheap reachability check.
#[async_trait::async_trait]
pub trait Health: Send + Sync {
    /// `Ok` when the database answers a trivial query.
    ///
    /// # Errors
    /// `Unavailable` otherwise.
    async fn ping(&self) -> Result<(), StoreError>;
}

fn stores(s: Arc<SqlStore>) -> Stores {
    Stores {
        users: s.clone(),
        ledger: s.clone(),
        jobs: s.clone(),
        payments: s.clone(),
        dialogues: s.clone(),
        leases: s.clone(),
        outbox: s.clone(),
        promos: s.clone(),
        referrals: s.clone(),
        prices: s.clone(),
        broadcasts: s.clone(),
        web: s.clone(),
        outbox_signal: s.outbox_signal(),
        health: s.clone(),
        sql: s,
    }
}

/// Opens the database, applies migrations, and returns the ports.
///
/// # Errors
/// [`SqlError`] when the database cannot be opened or migrated.
pub async fn connect(target: &DatabaseTarget) -> Result<Stores, SqlError> {
    connect_with(target, WriteMode::default_for(target)).await
}

/// [`connect`] with a chosen [`WriteMode`] (benchmarks and tests compare them).
///
/// # Errors
/// [`SqlError`] when the database cannot be opened or migrated.
pub async fn connect_with(target: &DatabaseTarget, mode: WriteMode) -> Result<Stores, SqlError> {
    let store = match target {
        DatabaseTarget::SqlitePath(path) => SqlStore::open_sqlite_path_with(path, mode).await?,
        DatabaseTarget::SqliteUrl(url) => SqlStore::open_sqlite_url_with(url, mode).await?,
        DatabaseTarget::Postgres(url) => SqlStore::connect_postgres_with(url, mode).await?,
    };
    Ok(stores(Arc::new(store)))
}

/// An attempt's failure: a domain refusal (final) or a database error (maybe transient).
#[derive(Debug)]
pub(crate) enum TxError {
    Store(StoreError),
    Sql(sqlx::Error),
    /// The commit of a batch this write was part of failed (see `writer.rs`).
    Commit(Arc<sqlx::Error>),
}

impl TxError {
    /// The database's error, if it was one (of this write's transaction or of the
    /// batch commit that carried it).
    fn sql(&self) -> Option<&sqlx::Error> {
        match self {
            Self::Store(_) => None,
            Self::Sql(e) => Some(e),
            Self::Commit(e) => Some(e),
        }
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Store(s) => s,
            TxError::Sql(e) => classify(e),
            TxError::Commit(e) => StoreError::Unavailable(Box::new(e)),
        }
    }
}

/// A foreign-key violation on a row that references `users` means the user is unknown.
pub(crate) fn unknown_user(e: sqlx::Error, user: rei_core::ids::UserId) -> TxError {
    match &e {
        sqlx::Error::Database(db) if matches!(db.kind(), ErrorKind::ForeignKeyViolation) => {
            TxError::Store(StoreError::NotFound(Missing::User(user)))
        }
        _ => TxError::Sql(e),
    }
}

/// Maps the refusals of an entry insert: a CHECK violation can only be the
/// `users.balance >= 0` check fired by the balance trigger (the entry's own columns are
/// valid by construction), i.e. an overdraft; a foreign-key violation is an unknown user.
/// The balance the refusal reports is filled in by the caller, outside the failed
/// transaction.
pub(crate) fn entry_refused(e: sqlx::Error, entry: &rei_core::ledger::NewEntry) -> TxError {
    match &e {
        // A debit can only break `balance >= 0`; a credit or refund only the upper bound.
        sqlx::Error::Database(db) if matches!(db.kind(), ErrorKind::CheckViolation) => {
            match entry.kind {
                EntryKind::Debit => TxError::Store(StoreError::InsufficientFunds {
                    needed: entry.amount,
                    available: rei_core::money::Money::ZERO,
                }),
                EntryKind::Credit | EntryKind::Refund => TxError::Store(StoreError::Invalid(
                    format!("a balance or entry cannot exceed {MAX_BALANCE}"),
                )),
            }
        }
        _ => unknown_user(e, entry.user_id),
    }
}

/// Conflicts another transaction may have caused: unique races on PostgreSQL,
/// serialisation failures and deadlocks, and SQLite's busy/locked answers.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(db.kind(), ErrorKind::UniqueViolation)
                || matches!(
                    db.code().as_deref(),
                    Some("40001" | "40P01" | "5" | "6" | "517" | "261" | "262")
                )
        }
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// Maps a final database error to the port's error: constraint violations are bugs in
/// the caller (or corruption), everything else means the store is unavailable.
fn classify(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.kind() {
            // Still a duplicate after every retry: not a race but a reused id (a caller
            // bug), as the memory store reports it.
            ErrorKind::UniqueViolation => {
                return StoreError::Invalid(format!(
                    "duplicate value for {}",
                    db.constraint().unwrap_or("a unique column")
                ));
            }
            ErrorKind::CheckViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation => {
                return StoreError::Invalid(db.message().to_owned());
            }
            _ => {}
        }
    }
    StoreError::Unavailable(Box::new(e))
}

impl SqlStore {
    /// The store over a pool just connected: migrated to the current schema first.
    async fn migrated(
        pool: sqlx::AnyPool,
        dialect: store::Dialect,
        migrator: &sqlx::migrate::Migrator,
        mode: WriteMode,
    ) -> Result<Self, SqlError> {
        migrator
            .run(&pool)
            .await
            .map_err(|e| SqlError::Migrate(Box::new(e)))?;
        let writer = match mode {
            WriteMode::Direct => writer::Writer::direct(pool.clone(), dialect.begin_write()),
            WriteMode::Batched => writer::Writer::batched(&pool, dialect.begin_write()),
        };
        Ok(Self {
            pool,
            dialect,
            outbox_signal: Arc::default(),
            writer: Arc::new(writer),
        })
    }

    /// The row a query finds (outside a transaction), as its domain type.
    async fn find<'q, R, T>(
        &self,
        query: sqlx::query::QueryAs<'q, sqlx::Any, R, sqlx::any::AnyArguments>,
    ) -> Result<Option<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(TxError::from)?;
        row.map(T::try_from).transpose()
    }

    /// `UPDATE users SET <one column> = $1 WHERE tg_id = $2`: `NotFound` for an unknown
    /// user.
    async fn update_user<V>(
        &self,
        sql: &'static str,
        value: V,
        id: rei_core::UserId,
    ) -> Result<(), StoreError>
    where
        V: 'static + Send + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let done = self
            .execute(sqlx::query(sql).bind(value).bind(id.get()))
            .await?;
        changed_one(&done, Missing::User(id))
    }
}

/// `Ok` when a statement changed its one row; `NotFound` when the row is not there.
pub(crate) fn changed_one(
    done: &sqlx::any::AnyQueryResult,
    missing: Missing,
) -> Result<(), StoreError> {
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound(missing))
    }
}

/// How many times one write is attempted when another transaction got in the way.
const ATTEMPTS: u32 = 6;

/// Runs one write attempt until it succeeds, is refused by the domain, or fails for a
/// reason other than a transient conflict. Every attempt is a whole transaction, so a
/// retry never sees half of an earlier one.
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TxError>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if n < ATTEMPTS && e.sql().is_some_and(is_transient) => {
                tracing::debug!(attempt = n, error = ?e, "transient database conflict, retrying");
                let jitter = u64::from(rand::random::<u8>() % 8);
                tokio::time::sleep(Duration::from_millis((1 << n) + jitter)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
