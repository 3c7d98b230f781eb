//! The store implementation shared by SQLite and PostgreSQL.
//!
//! The SQL is the same for both, run through sqlx's `Any` driver; what differs is in
//! `dialect.rs`. One file per port (`users.rs`, `ledger.rs`, `jobs.rs`, `payments.rs`,
//! `dialogues.rs`, `outbox.rs`), each a thin `impl Port for SqlStore` over one attempt
//! per write; this file holds what they share (the store, transactions, entries, holds,
//! settlements).
//!
//! Lock order, to rule out deadlocks on PostgreSQL: job or payment row, then reservation
//! row, then user row. Nothing locks a user row and then an existing reservation.

pub(crate) use async_trait::async_trait;
pub(crate) use rei_core::ids::{IdempotencyKey, JobId, PaymentId, ReservationId, UserId};
pub(crate) use rei_core::job::{Job, JobFilter, JobTransition, NewJob};
pub(crate) use rei_core::ledger::{
    Balance, LedgerEntry, NewEntry, NewReservation, Posted, Reservation, Settlement,
    SettlementError, SettlementPlan, VerifyReport,
};
pub(crate) use rei_core::money::Money;
pub(crate) use rei_core::payment::{
    Due, DueFilter, DuePayments, NewPayment, Payment, PaymentEffect, PaymentFilter,
    PaymentProvider, PaymentState, PaymentTransition,
};
pub(crate) use rei_core::ports::{
    DialogueRecord, DialogueStore, JobStore, LeaseStore, LedgerStore, Missing, Notice, OutboxEntry,
    OutboxStore, PaymentStore, StoreError, UserStore,
};
pub(crate) use rei_core::time::Timestamp;
pub(crate) use rei_core::user::{AuditRecord, Language, Stats, User, UserProfile};

pub(crate) use crate::outbound::sql::dialect::{Dialect, dialect_sql};
pub(crate) use crate::outbound::sql::rows::{self, *};
pub(crate) use crate::outbound::sql::{TxError, entry_refused, retrying, unknown_user};

/// Every store port over one database, SQLite or PostgreSQL (see [`Dialect`] for what
/// differs). Open one with [`SqlStore::open_sqlite_path`], [`SqlStore::open_sqlite_url`]
/// or [`SqlStore::connect_postgres`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) pool: sqlx::AnyPool,
    pub(crate) dialect: Dialect,
    /// Woken when a commit put a notice into the outbox (this process's dispatcher
    /// sends it at once instead of at its next round).
    pub(crate) outbox_signal: std::sync::Arc<tokio::sync::Notify>,
    /// Where writes go: group commit on SQLite (see `writer.rs`).
    pub(crate) writer: std::sync::Arc<super::writer::Writer>,
}

pub(crate) type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

pub(crate) const DEFAULT_LIMIT: i64 = 100;

/// What an entry insert did.
pub(crate) enum Inserted {
    /// Posted now.
    New(LedgerEntry),
    /// The key was already used for this same entry: nothing posted.
    Replay(LedgerEntry),
}

pub(crate) fn limit(n: u32) -> i64 {
    if n == 0 { DEFAULT_LIMIT } else { i64::from(n) }
}

pub(crate) fn money(what: &str, k: i64) -> Result<Money, StoreError> {
    Money::from_kopecks(k).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl SqlStore {
    /// Woken when a commit of this store put a notice into the outbox.
    #[must_use]
    pub fn outbox_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox_signal.clone()
    }

    /// How many transactions the store has committed and how many writes they
    /// carried (group commit shares one commit between concurrent writes).
    #[must_use]
    pub fn write_stats(&self) -> super::writer::WriteStats {
        self.writer.stats()
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `work` as one atomic write (in a batch on SQLite) and answers once it is
    /// committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, TxError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(
                &'t mut Tx<'static>,
            ) -> futures::future::BoxFuture<'t, Result<T, TxError>>
            + Send
            + 'static,
    {
        self.writer.write(work).await
    }

    /// Runs one statement (its values bound) as a write of its own; what it changed.
    pub(crate) async fn execute(
        &self,
        statement: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<sqlx::any::AnyQueryResult, TxError> {
        self.write(move |tx| Box::pin(async move { Ok(statement.execute(&mut **tx).await?) }))
            .await
    }

    pub(crate) async fn lock_user(tx: &mut Tx<'_>, user: UserId) -> Result<Money, TxError> {
        let row: Option<(i64,)> = sqlx::query_as(dialect_sql!(
            Dialect::of(tx),
            ["SELECT balance FROM users WHERE tg_id = $1"],
            lock
        ))
        .bind(user.get())
        .fetch_optional(&mut **tx)
        .await?;
        let (k,) = row.ok_or_else(|| StoreError::NotFound(Missing::User(user)))?;
        Ok(money("balance", k)?)
    }

    pub(crate) async fn entry_by_key(
        tx: &mut Tx<'_>,
        key: &str,
    ) -> Result<Option<LedgerEntry>, TxError> {
        let sql = concat!(
            "SELECT ",
            entry_cols!(),
            " FROM ledger WHERE idempotency_key = $1"
        );
        let row: Option<EntryRow> = sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(LedgerEntry::try_from).transpose()?)
    }

    /// Inserts an entry in one statement: a trigger moves the cached balance in
    /// the same statement, and `CHECK (balance >= 0)` refuses an overdraft (on
    /// PostgreSQL the trigger's update takes the user's row lock and applies to
    /// the committed balance, so concurrent debits never overdraw). A replay of
    /// the key inserts nothing and is detected by the missing `RETURNING` row.
    pub(crate) async fn insert_entry(tx: &mut Tx<'_>, e: &NewEntry) -> Result<Inserted, TxError> {
        if e.amount.is_zero() || e.amount > rei_core::ledger::MAX_BALANCE {
            return Err(StoreError::Invalid(format!(
                "ledger amounts must be between 0.01 ₽ and {}",
                rei_core::ledger::MAX_BALANCE
            ))
            .into());
        }
        let inserted: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(e.user_id.get())
        .bind(e.kind.as_str())
        .bind(e.amount.kopecks())
        .bind(e.ref_type.as_str())
        .bind(&e.ref_id)
        .bind(&e.description)
        .bind(e.idempotency_key.as_str())
        .bind(e.created_at.millis())
        .fetch_optional(&mut **tx)
        .await
        .map_err(|err| entry_refused(err, e))?;
        match inserted {
            Some((id,)) => Ok(Inserted::New(LedgerEntry {
                id,
                user_id: e.user_id,
                kind: e.kind,
                amount: e.amount,
                ref_type: e.ref_type,
                ref_id: e.ref_id.clone(),
                description: e.description.clone(),
                idempotency_key: e.idempotency_key.clone(),
                created_at: e.created_at,
            })),
            None => {
                let first = Self::entry_by_key(tx, e.idempotency_key.as_str())
                    .await?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "entry {} conflicts but is missing",
                            e.idempotency_key
                        ))
                    })?;
                if e.matches(&first) {
                    Ok(Inserted::Replay(first))
                } else {
                    Err(StoreError::IdempotencyConflict {
                        key: e.idempotency_key.to_string(),
                    }
                    .into())
                }
            }
        }
    }

    pub(crate) async fn current_balance(tx: &mut Tx<'_>, user: UserId) -> Result<Money, TxError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT balance FROM users WHERE tg_id = $1")
            .bind(user.get())
            .fetch_optional(&mut **tx)
            .await?;
        let (k,) = row.ok_or_else(|| StoreError::NotFound(Missing::User(user)))?;
        Ok(money("balance", k)?)
    }

    /// Puts a notice into the outbox, in the caller's transaction (with the money
    /// change it tells of). Due at once.
    pub(crate) async fn insert_notice(
        tx: &mut Tx<'_>,
        user: UserId,
        notice: &Notice,
        at: Timestamp,
    ) -> Result<(), TxError> {
        let text = serde_json::to_string(notice)
            .map_err(|e| StoreError::Invalid(format!("notice: {e}")))?;
        sqlx::query("INSERT INTO outbox (user_id, notice, created_at, next_at, attempts) VALUES ($1, $2, $3, $3, 0)")
            .bind(user.get())
            .bind(text)
            .bind(at.millis())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn insert_audit(tx: &mut Tx<'_>, a: &AuditRecord) -> Result<(), TxError> {
        sqlx::query("INSERT INTO audit_log (actor, action, target_user, amount, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(a.actor.to_string())
            .bind(a.action.as_str())
            .bind(a.target_user.map(UserId::get))
            .bind(a.amount.map(Money::kopecks))
            .bind(&a.reason)
            .bind(a.created_at.millis())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn reservation_in(
        tx: &mut Tx<'_>,
        id: ReservationId,
        for_update: bool,
    ) -> Result<Option<Reservation>, TxError> {
        let sql = if for_update {
            dialect_sql!(
                Dialect::of(tx),
                [
                    "SELECT ",
                    reservation_cols!(),
                    " FROM reservations WHERE id = $1"
                ],
                lock
            )
        } else {
            concat!(
                "SELECT ",
                reservation_cols!(),
                " FROM reservations WHERE id = $1"
            )
        };
        let row: Option<ReservationRow> = sqlx::query_as(sql)
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(Reservation::try_from).transpose()?)
    }

    pub(crate) async fn reservation_by_key(
        tx: &mut Tx<'_>,
        key: &str,
    ) -> Result<Option<Reservation>, TxError> {
        let sql = concat!(
            "SELECT ",
            reservation_cols!(),
            " FROM reservations WHERE idempotency_key = $1"
        );
        let row: Option<ReservationRow> = sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(Reservation::try_from).transpose()?)
    }

    /// Places a hold: the reservation row first (a replay of its key inserts
    /// nothing and returns the first hold), then its debit entry, which refuses
    /// to overdraw. Three statements on the common path.
    pub(crate) async fn reserve_in(
        tx: &mut Tx<'_>,
        r: &NewReservation,
    ) -> Result<Reservation, TxError> {
        let held = r.held();
        let inserted = sqlx::query(
            "INSERT INTO reservations (id, user_id, amount, state, captured, job_id, description, idempotency_key, created_at, settled_at) \
             VALUES ($1, $2, $3, 'held', NULL, $4, $5, $6, $7, NULL) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(held.id.to_string())
        .bind(held.user_id.get())
        .bind(held.amount.kopecks())
        .bind(held.job_id.map(|j| j.to_string()))
        .bind(&held.description)
        .bind(held.idempotency_key.as_str())
        .bind(held.created_at.millis())
        .execute(&mut **tx)
        .await
        .map_err(|err| unknown_user(err, r.user_id))?;
        if inserted.rows_affected() == 0 {
            let first = Self::reservation_by_key(tx, r.idempotency_key.as_str())
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "reservation {} conflicts but is missing",
                        r.idempotency_key
                    ))
                })?;
            return if r.matches(&first) {
                Ok(first)
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: r.idempotency_key.to_string(),
                }
                .into())
            };
        }
        if let Inserted::Replay(_) = Self::insert_entry(tx, &r.hold_entry()).await? {
            // The key names an entry but no reservation: another operation owns it.
            return Err(StoreError::IdempotencyConflict {
                key: r.idempotency_key.to_string(),
            }
            .into());
        }
        Ok(held)
    }

    /// Writes a settlement plan: the reservation (only if still held), the
    /// one-per-reservation settlement row, and the refund entry.
    pub(crate) async fn apply_settlement(
        tx: &mut Tx<'_>,
        plan: &SettlementPlan,
    ) -> Result<(), TxError> {
        if !plan.changed {
            return Ok(());
        }
        let r = &plan.reservation;
        let done = sqlx::query("UPDATE reservations SET state = $1, captured = $2, settled_at = $3 WHERE id = $4 AND state = 'held'")
            .bind(r.state.as_str())
            .bind(r.captured.map(Money::kopecks))
            .bind(r.settled_at.map(Timestamp::millis))
            .bind(r.id.to_string())
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict {
                what: "reservation",
                id: r.id.to_string(),
            }
            .into());
        }
        // The `reservation_settles_once` trigger records the settlement row.
        if let Some(refund) = &plan.refund {
            Self::insert_entry(tx, refund).await?;
        }
        Ok(())
    }

    pub(crate) async fn settle_in(
        tx: &mut Tx<'_>,
        id: ReservationId,
        how: Settlement,
        at: Timestamp,
    ) -> Result<Reservation, TxError> {
        let r = Self::reservation_in(tx, id, true)
            .await?
            .ok_or_else(|| StoreError::NotFound(Missing::Reservation(id)))?;
        let plan = r.settle(how, at).map_err(StoreError::from)?;
        Self::apply_settlement(tx, &plan).await?;
        Ok(plan.reservation)
    }

    pub(crate) async fn payment_in(
        tx: &mut Tx<'_>,
        id: PaymentId,
        for_update: bool,
    ) -> Result<Option<Payment>, TxError> {
        let sql = if for_update {
            dialect_sql!(
                Dialect::of(tx),
                ["SELECT ", payment_cols!(), " FROM payments WHERE id = $1"],
                lock
            )
        } else {
            concat!("SELECT ", payment_cols!(), " FROM payments WHERE id = $1")
        };
        let row: Option<PaymentRow> = sqlx::query_as(sql)
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(Payment::try_from).transpose()?)
    }

    pub(crate) async fn user_in(tx: &mut Tx<'_>, id: UserId) -> Result<Option<User>, TxError> {
        let sql = dialect_sql!(
            Dialect::of(tx),
            ["SELECT ", user_cols!(), " FROM users WHERE tg_id = $1"],
            lock
        );
        let row: Option<UserRow> = sqlx::query_as(sql)
            .bind(id.get())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(User::try_from).transpose()?)
    }

    /// Fills in the balance an overdraft refusal reports: the refused
    /// transaction is gone (on PostgreSQL it is aborted), so it is read afresh.
    pub(crate) async fn with_available<T>(
        &self,
        user: UserId,
        r: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match r {
            Err(StoreError::InsufficientFunds { needed, .. }) => {
                let row: Option<(i64,)> =
                    sqlx::query_as("SELECT balance FROM users WHERE tg_id = $1")
                        .bind(user.get())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(TxError::from)?;
                let available = money("balance", row.map_or(0, |(b,)| b))?;
                Err(StoreError::InsufficientFunds { needed, available })
            }
            other => other,
        }
    }
}

#[async_trait]
impl crate::outbound::sql::Health for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(())
    }
}
