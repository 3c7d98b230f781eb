//! The store implementation shared by SQLite and PostgreSQL.
//!
//! The SQL is the same for both (sqlx binds `$N` placeholders on SQLite too); the macro
//! stamps it for each pool type with the two real differences as parameters: how a write
//! transaction begins (SQLite: `BEGIN IMMEDIATE`, taking the write lock up front so
//! concurrent writers queue on the busy timeout instead of failing) and the row-lock
//! suffix (PostgreSQL: `FOR UPDATE`, serialising writers per user row).
//!
//! Lock order, to rule out deadlocks on PostgreSQL: job or payment row, then reservation
//! row, then user row. Nothing locks a user row and then an existing reservation.

macro_rules! sql_store {
    (
        store = $store:ident,
        db = $db:ty,
        begin_write = $begin:literal,
        lock = $lock:literal,
        snapshot = $snapshot:literal,
        order_col = $order:literal $(,)?
    ) => {
        use async_trait::async_trait;
        use rei_core::ids::{JobId, PaymentId, ReservationId, UserId};
        use rei_core::job::{Job, JobFilter, JobTransition, NewJob};
        use rei_core::ledger::{
            Balance, LedgerEntry, NewEntry, NewReservation, Posted, Reservation, Settlement, SettlementPlan, VerifyReport,
        };
        use rei_core::money::Money;
        use rei_core::payment::{NewPayment, Payment, PaymentEffect, PaymentFilter, PaymentProvider, PaymentTransition};
        use rei_core::ports::{DialogueStore, JobStore, LedgerStore, PaymentStore, StoreError, UserStore};
        use rei_core::time::Timestamp;
        use rei_core::user::{AuditRecord, Language, Stats, User, UserProfile};

        use crate::sql::rows::{self, *};
        use crate::sql::{TxError, entry_refused, retrying, unknown_user};

        type Tx<'a> = sqlx::Transaction<'a, $db>;

        const DEFAULT_LIMIT: i64 = 100;

        /// What an entry insert did.
        enum Inserted {
            /// Posted now.
            New(LedgerEntry),
            /// The key was already used for this same entry: nothing posted.
            Replay(LedgerEntry),
        }

        /// Which unique column finds a job.
        #[derive(Clone, Copy)]
        enum JobBy {
            Id,
            Key,
        }

        fn limit(n: u32) -> i64 {
            if n == 0 { DEFAULT_LIMIT } else { i64::from(n) }
        }

        fn money(what: &str, k: i64) -> Result<Money, StoreError> {
            Money::from_kopecks(k).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        }

        impl $store {
            /// Closes the pool (waits for connections to be returned).
            pub async fn close(&self) {
                self.pool.close().await;
            }

            async fn write(&self) -> Result<Tx<'_>, TxError> {
                Ok(self.pool.begin_with($begin).await?)
            }

            async fn lock_user(tx: &mut Tx<'_>, user: UserId) -> Result<Money, TxError> {
                let row: Option<(i64,)> = sqlx::query_as(concat!("SELECT balance FROM users WHERE tg_id = $1", $lock))
                    .bind(user.get())
                    .fetch_optional(&mut **tx)
                    .await?;
                let (k,) = row.ok_or_else(|| StoreError::NotFound { what: "user", id: user.to_string() })?;
                Ok(money("balance", k)?)
            }

            async fn entry_by_key(tx: &mut Tx<'_>, key: &str) -> Result<Option<LedgerEntry>, TxError> {
                let sql = concat!("SELECT ", entry_cols!(), " FROM ledger WHERE idempotency_key = $1");
                let row: Option<EntryRow> = sqlx::query_as(sql).bind(key).fetch_optional(&mut **tx).await?;
                Ok(row.map(LedgerEntry::try_from).transpose()?)
            }

            /// Inserts an entry in one statement: a trigger moves the cached balance in
            /// the same statement, and `CHECK (balance >= 0)` refuses an overdraft (on
            /// PostgreSQL the trigger's update takes the user's row lock and applies to
            /// the committed balance, so concurrent debits never overdraw). A replay of
            /// the key inserts nothing and is detected by the missing `RETURNING` row.
            async fn insert_entry(tx: &mut Tx<'_>, e: &NewEntry) -> Result<Inserted, TxError> {
                if e.amount.is_zero() {
                    return Err(StoreError::Invalid("ledger amounts must be positive".into()).into());
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
                            .ok_or_else(|| StoreError::Corrupt(format!("entry {} conflicts but is missing", e.idempotency_key)))?;
                        if e.matches(&first) {
                            Ok(Inserted::Replay(first))
                        } else {
                            Err(StoreError::IdempotencyConflict { key: e.idempotency_key.to_string() }.into())
                        }
                    }
                }
            }

            async fn current_balance(tx: &mut Tx<'_>, user: UserId) -> Result<Money, TxError> {
                let row: Option<(i64,)> =
                    sqlx::query_as("SELECT balance FROM users WHERE tg_id = $1").bind(user.get()).fetch_optional(&mut **tx).await?;
                let (k,) = row.ok_or_else(|| StoreError::NotFound { what: "user", id: user.to_string() })?;
                Ok(money("balance", k)?)
            }

            async fn insert_audit(tx: &mut Tx<'_>, a: &AuditRecord) -> Result<(), TxError> {
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

            async fn reservation_in(tx: &mut Tx<'_>, id: ReservationId, for_update: bool) -> Result<Option<Reservation>, TxError> {
                let sql = if for_update {
                    concat!("SELECT ", reservation_cols!(), " FROM reservations WHERE id = $1", $lock)
                } else {
                    concat!("SELECT ", reservation_cols!(), " FROM reservations WHERE id = $1")
                };
                let row: Option<ReservationRow> = sqlx::query_as(sql).bind(id.to_string()).fetch_optional(&mut **tx).await?;
                Ok(row.map(Reservation::try_from).transpose()?)
            }

            async fn reservation_by_key(tx: &mut Tx<'_>, key: &str) -> Result<Option<Reservation>, TxError> {
                let sql = concat!("SELECT ", reservation_cols!(), " FROM reservations WHERE idempotency_key = $1");
                let row: Option<ReservationRow> = sqlx::query_as(sql).bind(key).fetch_optional(&mut **tx).await?;
                Ok(row.map(Reservation::try_from).transpose()?)
            }

            /// Places a hold: the reservation row first (a replay of its key inserts
            /// nothing and returns the first hold), then its debit entry, which refuses
            /// to overdraw. Three statements on the common path.
            async fn reserve_in(tx: &mut Tx<'_>, r: &NewReservation) -> Result<Reservation, TxError> {
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
                        .ok_or_else(|| StoreError::Corrupt(format!("reservation {} conflicts but is missing", r.idempotency_key)))?;
                    return if r.matches(&first) {
                        Ok(first)
                    } else {
                        Err(StoreError::IdempotencyConflict { key: r.idempotency_key.to_string() }.into())
                    };
                }
                if let Inserted::Replay(_) = Self::insert_entry(tx, &r.hold_entry()).await? {
                    // The key names an entry but no reservation: another operation owns it.
                    return Err(StoreError::IdempotencyConflict { key: r.idempotency_key.to_string() }.into());
                }
                Ok(held)
            }

            /// Writes a settlement plan: the reservation (only if still held), the
            /// one-per-reservation settlement row, and the refund entry.
            async fn apply_settlement(tx: &mut Tx<'_>, plan: &SettlementPlan) -> Result<(), TxError> {
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
                    return Err(StoreError::Conflict { what: "reservation", id: r.id.to_string() }.into());
                }
                // The `reservation_settles_once` trigger records the settlement row.
                if let Some(refund) = &plan.refund {
                    Self::insert_entry(tx, refund).await?;
                }
                Ok(())
            }

            async fn settle_in(tx: &mut Tx<'_>, id: ReservationId, how: Settlement, at: Timestamp) -> Result<Reservation, TxError> {
                let r = Self::reservation_in(tx, id, true)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "reservation", id: id.to_string() })?;
                let plan = r.settle(how, at).map_err(StoreError::from)?;
                Self::apply_settlement(tx, &plan).await?;
                Ok(plan.reservation)
            }

            async fn job_in(tx: &mut Tx<'_>, by: JobBy, bind: &str) -> Result<Option<Job>, TxError> {
                let sql = match by {
                    JobBy::Id => concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1"),
                    JobBy::Key => concat!("SELECT ", job_cols!(), " FROM jobs WHERE idempotency_key = $1"),
                };
                let row: Option<JobRow> = sqlx::query_as(sql).bind(bind).fetch_optional(&mut **tx).await?;
                Ok(row.map(Job::try_from).transpose()?)
            }

            async fn payment_in(tx: &mut Tx<'_>, id: PaymentId) -> Result<Option<Payment>, TxError> {
                let sql = concat!("SELECT ", payment_cols!(), " FROM payments WHERE id = $1");
                let row: Option<PaymentRow> = sqlx::query_as(sql).bind(id.to_string()).fetch_optional(&mut **tx).await?;
                Ok(row.map(Payment::try_from).transpose()?)
            }

            async fn user_in(tx: &mut Tx<'_>, id: UserId) -> Result<Option<User>, TxError> {
                let sql = concat!("SELECT ", user_cols!(), " FROM users WHERE tg_id = $1", $lock);
                let row: Option<UserRow> = sqlx::query_as(sql).bind(id.get()).fetch_optional(&mut **tx).await?;
                Ok(row.map(User::try_from).transpose()?)
            }

            /// Fills in the balance an overdraft refusal reports: the refused
            /// transaction is gone (on PostgreSQL it is aborted), so it is read afresh.
            async fn with_available<T>(&self, user: UserId, r: Result<T, StoreError>) -> Result<T, StoreError> {
                match r {
                    Err(StoreError::InsufficientFunds { needed, .. }) => {
                        let row: Option<(i64,)> = sqlx::query_as("SELECT balance FROM users WHERE tg_id = $1")
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

            // ---- one attempt of each write; `retrying` repeats it on transient conflicts ----

            async fn register_once(&self, p: &UserProfile, at: Timestamp) -> Result<(User, bool), TxError> {
                let mut tx = self.write().await?;
                let created = match Self::user_in(&mut tx, p.id).await? {
                    Some(_) => {
                        sqlx::query("UPDATE users SET username = $1, first_name = $2 WHERE tg_id = $3")
                            .bind(&p.username)
                            .bind(&p.first_name)
                            .bind(p.id.get())
                            .execute(&mut *tx)
                            .await?;
                        false
                    }
                    None => {
                        sqlx::query("INSERT INTO users (tg_id, username, first_name, language, created_at) VALUES ($1, $2, $3, $4, $5)")
                            .bind(p.id.get())
                            .bind(&p.username)
                            .bind(&p.first_name)
                            .bind(p.language.as_str())
                            .bind(at.millis())
                            .execute(&mut *tx)
                            .await?;
                        true
                    }
                };
                let user = Self::user_in(&mut tx, p.id).await?.ok_or_else(|| StoreError::Corrupt("user vanished".into()))?;
                tx.commit().await?;
                Ok((user, created))
            }

            async fn set_banned_once(&self, id: UserId, banned: bool, audit: &AuditRecord) -> Result<User, TxError> {
                let mut tx = self.write().await?;
                let user = Self::user_in(&mut tx, id).await?.ok_or_else(|| StoreError::NotFound { what: "user", id: id.to_string() })?;
                let notified = user.is_banned == banned && user.ban_notified;
                sqlx::query("UPDATE users SET is_banned = $1, ban_notified = $2 WHERE tg_id = $3")
                    .bind(banned)
                    .bind(notified)
                    .bind(id.get())
                    .execute(&mut *tx)
                    .await?;
                Self::insert_audit(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(User { is_banned: banned, ban_notified: notified, ..user })
            }

            async fn post_once(&self, e: &NewEntry, audit: Option<&AuditRecord>) -> Result<Posted, TxError> {
                let mut tx = self.write().await?;
                let (entry, replayed) = match Self::insert_entry(&mut tx, e).await? {
                    Inserted::New(entry) => (entry, false),
                    Inserted::Replay(first) => (first, true),
                };
                let balance = Self::current_balance(&mut tx, entry.user_id).await?;
                let posted = Posted { entry, balance, replayed };
                if let (false, Some(a)) = (posted.replayed, audit) {
                    Self::insert_audit(&mut tx, a).await?;
                }
                tx.commit().await?;
                Ok(posted)
            }

            async fn reserve_once(&self, r: &NewReservation) -> Result<Reservation, TxError> {
                let mut tx = self.write().await?;
                let held = Self::reserve_in(&mut tx, r).await?;
                tx.commit().await?;
                Ok(held)
            }

            async fn settle_once(&self, id: ReservationId, how: Settlement, at: Timestamp) -> Result<Reservation, TxError> {
                let mut tx = self.write().await?;
                let r = Self::settle_in(&mut tx, id, how, at).await?;
                tx.commit().await?;
                Ok(r)
            }

            async fn create_job_once(&self, job: &NewJob, max_active: u32) -> Result<Job, TxError> {
                let mut tx = self.write().await?;
                // Serialises job creation per user on PostgreSQL, so the active-job count
                // below cannot be raced past the cap.
                Self::lock_user(&mut tx, job.user_id).await?;
                if let Some(first) = Self::job_in(&mut tx, JobBy::Key, job.idempotency_key.as_str()).await? {
                    return if job.matches(&first) {
                        Ok(first)
                    } else {
                        Err(StoreError::IdempotencyConflict { key: job.idempotency_key.to_string() }.into())
                    };
                }
                let (active,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND status IN ('pending', 'processing')")
                    .bind(job.user_id.get())
                    .fetch_one(&mut *tx)
                    .await?;
                if active >= i64::from(max_active) {
                    return Err(StoreError::ActiveJobLimit { limit: max_active }.into());
                }
                // A hold under this job's key that is not this job's reservation means the
                // job id was reused: refuse rather than pair a new job with an old hold.
                let hold = Self::reserve_in(&mut tx, &job.reservation()).await?;
                if hold.id != job.reservation_id {
                    return Err(StoreError::Invalid(format!("job id {} already exists", job.id)).into());
                }
                let created = job.pending();
                sqlx::query(
                    "INSERT INTO jobs (id, user_id, type, status, progress, params, quote, cost_estimate, reservation_id, idempotency_key, \
                     attempts, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, $11, $11)",
                )
                .bind(created.id.to_string())
                .bind(created.user_id.get())
                .bind(created.spec.kind().as_str())
                .bind(created.state.as_str())
                .bind(i64::from(created.progress.percent()))
                .bind(rows::to_json(&created.spec)?)
                .bind(rows::to_json(&created.quote)?)
                .bind(created.quote.amount.kopecks())
                .bind(created.reservation_id.to_string())
                .bind(created.idempotency_key.as_str())
                .bind(created.created_at.millis())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn save_transition_once(&self, t: &JobTransition) -> Result<Job, TxError> {
                let mut tx = self.write().await?;
                let j = &t.after;
                let done = sqlx::query(
                    "UPDATE jobs SET status = $1, progress = $2, cost_actual = $3, attempts = $4, provider_task_id = $5, result_url = $6, \
                     error_message = $7, version = $8, started_at = $9, completed_at = $10, updated_at = $11 WHERE id = $12 AND version = $13",
                )
                .bind(j.state.as_str())
                .bind(i64::from(j.progress.percent()))
                .bind(j.cost_actual.map(Money::kopecks))
                .bind(i64::from(j.attempts))
                .bind(j.provider_task_id.as_ref().map(|p| p.as_str().to_owned()))
                .bind(j.result.as_ref().map(|r| r.as_str().to_owned()))
                .bind(j.failure.as_ref().map(rows::to_json).transpose()?)
                .bind(i64::from(j.version))
                .bind(j.started_at.map(Timestamp::millis))
                .bind(j.finished_at.map(Timestamp::millis))
                .bind(j.updated_at.millis())
                .bind(j.id.to_string())
                .bind(i64::from(t.before.version))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    let exists = Self::job_in(&mut tx, JobBy::Id, &j.id.to_string()).await?.is_some();
                    let id = j.id.to_string();
                    return Err(if exists { StoreError::Conflict { what: "job", id } } else { StoreError::NotFound { what: "job", id } }.into());
                }
                if let Some(how) = t.settlement {
                    Self::settle_in(&mut tx, j.reservation_id, how, j.updated_at).await?;
                }
                tx.commit().await?;
                Ok(j.clone())
            }

            async fn create_payment_once(&self, p: &NewPayment) -> Result<Payment, TxError> {
                let mut tx = self.write().await?;
                if let Some(first) = Self::payment_in(&mut tx, p.id).await? {
                    let same = first.user_id == p.user_id
                        && first.amount == p.amount
                        && first.provider == p.provider
                        && first.provider_units == p.provider_units;
                    return if same { Ok(first) } else { Err(StoreError::IdempotencyConflict { key: p.id.to_string() }.into()) };
                }
                if p.amount.is_zero() {
                    return Err(StoreError::Invalid("payment amounts must be positive".into()).into());
                }
                let created = p.pending();
                sqlx::query(
                    "INSERT INTO payments (id, provider, user_id, amount, status, version, created_at, updated_at, provider_units) \
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $7)",
                )
                .bind(created.id.to_string())
                .bind(created.provider.as_str())
                .bind(created.user_id.get())
                .bind(created.amount.kopecks())
                .bind(created.state.as_str())
                .bind(created.created_at.millis())
                .bind(created.provider_units.map(i64::from))
                .execute(&mut *tx)
                .await
                .map_err(|e| unknown_user(e, p.user_id))?;
                tx.commit().await?;
                Ok(created)
            }

            async fn save_payment_transition_once(&self, t: &PaymentTransition) -> Result<Payment, TxError> {
                let mut tx = self.write().await?;
                let p = &t.after;
                if let Some(provider_id) = &p.provider_payment_id {
                    let other: Option<(String,)> = sqlx::query_as("SELECT id FROM payments WHERE provider_payment_id = $1 AND id <> $2")
                        .bind(provider_id)
                        .bind(p.id.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if other.is_some() {
                        return Err(StoreError::Conflict { what: "provider payment id", id: provider_id.clone() }.into());
                    }
                }
                let done = sqlx::query(
                    "UPDATE payments SET provider_payment_id = $1, status = $2, confirmation_url = $3, refund_reservation_id = $4, \
                     cancel_reason = $5, version = $6, paid_at = $7, updated_at = $8 WHERE id = $9 AND version = $10",
                )
                .bind(&p.provider_payment_id)
                .bind(p.state.as_str())
                .bind(&p.confirmation_url)
                .bind(p.refund_reservation_id.map(|r| r.to_string()))
                .bind(&p.cancel_reason)
                .bind(i64::from(p.version))
                .bind(p.paid_at.map(Timestamp::millis))
                .bind(p.updated_at.millis())
                .bind(p.id.to_string())
                .bind(i64::from(t.before.version))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    let exists = Self::payment_in(&mut tx, p.id).await?.is_some();
                    let id = p.id.to_string();
                    return Err(if exists { StoreError::Conflict { what: "payment", id } } else { StoreError::NotFound { what: "payment", id } }.into());
                }
                let at = p.updated_at;
                match t.effect {
                    None => {}
                    Some(PaymentEffect::Credit) => {
                        // Built from the stored row, not the caller's copy.
                        let stored = Self::payment_in(&mut tx, p.id)
                            .await?
                            .ok_or_else(|| StoreError::NotFound { what: "payment", id: p.id.to_string() })?;
                        Self::insert_entry(&mut tx, &stored.credit_entry(at)).await?;
                    }
                    Some(PaymentEffect::AttachRefundHold(r)) => {
                        let fits = Self::reservation_in(&mut tx, r, true).await?.is_some_and(|h| t.before.refund_hold_fits(&h));
                        if !fits {
                            return Err(StoreError::Conflict { what: "refund hold", id: r.to_string() }.into());
                        }
                    }
                    Some(PaymentEffect::CaptureRefundHold(r)) => {
                        let hold = Self::reservation_in(&mut tx, r, true)
                            .await?
                            .ok_or_else(|| StoreError::NotFound { what: "reservation", id: r.to_string() })?;
                        Self::settle_in(&mut tx, r, Settlement::Capture { actual: hold.amount }, at).await?;
                    }
                    Some(PaymentEffect::ReleaseRefundHold(r)) => {
                        Self::settle_in(&mut tx, r, Settlement::Release, at).await?;
                    }
                }
                tx.commit().await?;
                Ok(p.clone())
            }

            async fn verify_once(&self) -> Result<VerifyReport, TxError> {
                let mut tx = self.pool.begin().await?;
                if !$snapshot.is_empty() {
                    sqlx::query($snapshot).execute(&mut *tx).await?;
                }
                let (entries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger").fetch_one(&mut *tx).await?;
                let users: Vec<UserTotalsRow> = sqlx::query_as(
                    "SELECT u.tg_id, u.balance, CAST(COALESCE(SUM(CASE WHEN l.type = 'debit' THEN -l.amount ELSE l.amount END), 0) AS BIGINT) AS total \
                     FROM users u LEFT JOIN ledger l ON l.user_id = u.tg_id GROUP BY u.tg_id, u.balance",
                )
                .fetch_all(&mut *tx)
                .await?;
                let reservations: Vec<ReservationTotalsRow> = sqlx::query_as(
                    "SELECT r.id, r.user_id, r.amount, r.state, r.captured, r.job_id, r.description, r.idempotency_key, r.created_at, r.settled_at, \
                     CAST(COALESCE(SUM(CASE WHEN l.type = 'debit' THEN 1 ELSE 0 END), 0) AS BIGINT) AS debit_count, \
                     CAST(COALESCE(SUM(CASE WHEN l.type = 'debit' THEN l.amount ELSE 0 END), 0) AS BIGINT) AS debit_sum, \
                     CAST(COALESCE(SUM(CASE WHEN l.type = 'refund' THEN 1 ELSE 0 END), 0) AS BIGINT) AS refund_count, \
                     CAST(COALESCE(SUM(CASE WHEN l.type = 'refund' THEN l.amount ELSE 0 END), 0) AS BIGINT) AS refund_sum \
                     FROM reservations r LEFT JOIN ledger l ON l.ref_type = 'reservation' AND l.ref_id = r.id GROUP BY r.id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let jobs: Vec<JobTotalsRow> = sqlx::query_as(
                    "SELECT j.id, j.status, j.reservation_id, r.state AS reservation_state FROM jobs j LEFT JOIN reservations r ON r.id = j.reservation_id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let payments: Vec<PaymentTotalsRow> = sqlx::query_as(
                    "SELECT p.id, p.status, p.amount, COUNT(l.id) AS credit_count, CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) AS credit_sum, \
                     p.refund_reservation_id FROM payments p LEFT JOIN ledger l ON l.ref_type = 'payment' AND l.ref_id = p.id AND l.type = 'credit' \
                     GROUP BY p.id, p.status, p.amount, p.refund_reservation_id",
                )
                .fetch_all(&mut *tx)
                .await?;
                tx.rollback().await?;
                let totals = rows::totals(entries, users, reservations, jobs, payments)?;
                Ok(rei_core::ledger::verify::check(&totals))
            }
        }

        #[async_trait]
        impl crate::sql::Health for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
                Ok(())
            }
        }

        #[async_trait]
        impl UserStore for $store {
            async fn register(&self, profile: UserProfile, at: Timestamp) -> Result<(User, bool), StoreError> {
                retrying(|| self.register_once(&profile, at)).await
            }

            async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
                let sql = concat!("SELECT ", user_cols!(), " FROM users WHERE tg_id = $1");
                let row: Option<UserRow> = sqlx::query_as(sql).bind(id.get()).fetch_optional(&self.pool).await.map_err(TxError::from)?;
                row.map(User::try_from).transpose()
            }

            async fn set_banned(&self, id: UserId, banned: bool, audit: AuditRecord) -> Result<User, StoreError> {
                retrying(|| self.set_banned_once(id, banned, &audit)).await
            }

            async fn mark_ban_notified(&self, id: UserId) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE users SET ban_notified = TRUE WHERE tg_id = $1 AND is_banned = TRUE AND ban_notified = FALSE")
                    .bind(id.get())
                    .execute(&self.pool)
                    .await
                    .map_err(TxError::from)?;
                if done.rows_affected() == 1 {
                    return Ok(true);
                }
                match self.user(id).await? {
                    Some(_) => Ok(false),
                    None => Err(StoreError::NotFound { what: "user", id: id.to_string() }),
                }
            }

            async fn set_language(&self, id: UserId, language: Language) -> Result<(), StoreError> {
                let done = sqlx::query("UPDATE users SET language = $1 WHERE tg_id = $2")
                    .bind(language.as_str())
                    .bind(id.get())
                    .execute(&self.pool)
                    .await
                    .map_err(TxError::from)?;
                if done.rows_affected() == 1 { Ok(()) } else { Err(StoreError::NotFound { what: "user", id: id.to_string() }) }
            }

            async fn audit_log(&self, n: u32) -> Result<Vec<AuditRecord>, StoreError> {
                let sql = concat!("SELECT ", audit_cols!(), " FROM audit_log ORDER BY id DESC LIMIT $1");
                let rows: Vec<AuditRow> = sqlx::query_as(sql).bind(limit(n)).fetch_all(&self.pool).await.map_err(TxError::from)?;
                rows.into_iter().map(AuditRecord::try_from).collect()
            }

            async fn stats(&self) -> Result<Stats, StoreError> {
                let pool = &self.pool;
                let (users, banned, balances): (i64, i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN is_banned THEN 1 ELSE 0 END), 0) AS BIGINT), CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM users",
                )
                .fetch_one(pool)
                .await
                .map_err(TxError::from)?;
                let (held,): (i64,) = sqlx::query_as("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM reservations WHERE state = 'held'")
                    .fetch_one(pool)
                    .await
                    .map_err(TxError::from)?;
                let jobs: Vec<(String, i64)> =
                    sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetch_all(pool).await.map_err(TxError::from)?;
                let payments: Vec<(String, i64, i64)> =
                    sqlx::query_as("SELECT status, COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments GROUP BY status")
                        .fetch_all(pool)
                        .await
                        .map_err(TxError::from)?;
                let count = |n: i64| u64::try_from(n).map_err(|e| StoreError::Corrupt(format!("count: {e}")));
                let jobs_by_state = rei_core::job::JobState::ALL
                    .iter()
                    .map(|s| Ok((*s, count(jobs.iter().find(|(st, _)| st == s.as_str()).map_or(0, |(_, n)| *n))?)))
                    .collect::<Result<_, StoreError>>()?;
                let payments_by_state = rei_core::payment::PaymentState::ALL
                    .iter()
                    .map(|s| {
                        let (n, sum) = payments.iter().find(|(st, _, _)| st == s.as_str()).map_or((0, 0), |(_, n, sum)| (*n, *sum));
                        Ok((*s, count(n)?, money("payments total", sum)?))
                    })
                    .collect::<Result<_, StoreError>>()?;
                Ok(Stats {
                    users: count(users)?,
                    banned_users: count(banned)?,
                    balances_total: money("balances total", balances)?,
                    held_total: money("held total", held)?,
                    jobs_by_state,
                    payments_by_state,
                })
            }
        }

        #[async_trait]
        impl LedgerStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!($store), user_id = entry.user_id.get(), kind = entry.kind.as_str(), amount_kopecks = entry.amount.kopecks(), key = entry.idempotency_key.as_str()))]
            async fn post(&self, entry: NewEntry, audit: Option<AuditRecord>) -> Result<Posted, StoreError> {
                self.with_available(entry.user_id, retrying(|| self.post_once(&entry, audit.as_ref())).await).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!($store), user_id = reservation.user_id.get(), reservation_id = %reservation.id, amount_kopecks = reservation.amount.kopecks()))]
            async fn reserve(&self, reservation: NewReservation) -> Result<Reservation, StoreError> {
                self.with_available(reservation.user_id, retrying(|| self.reserve_once(&reservation)).await).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!($store), reservation_id = %id, settlement = ?how))]
            async fn settle(&self, id: ReservationId, how: Settlement, at: Timestamp) -> Result<Reservation, StoreError> {
                retrying(|| self.settle_once(id, how, at)).await
            }

            async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
                let sql = concat!("SELECT ", reservation_cols!(), " FROM reservations WHERE id = $1");
                let row: Option<ReservationRow> =
                    sqlx::query_as(sql).bind(id.to_string()).fetch_optional(&self.pool).await.map_err(TxError::from)?;
                row.map(Reservation::try_from).transpose()
            }

            async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT u.balance, CAST(COALESCE((SELECT SUM(r.amount) FROM reservations r WHERE r.user_id = u.tg_id AND r.state = 'held'), 0) AS BIGINT) \
                     FROM users u WHERE u.tg_id = $1",
                )
                .bind(user.get())
                .fetch_optional(&self.pool)
                .await
                .map_err(TxError::from)?;
                let (available, held) = row.ok_or_else(|| StoreError::NotFound { what: "user", id: user.to_string() })?;
                Ok(Balance { available: money("balance", available)?, held: money("held", held)? })
            }

            async fn entries(&self, user: UserId, n: u32) -> Result<Vec<LedgerEntry>, StoreError> {
                let sql = concat!("SELECT ", entry_cols!(), " FROM ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2");
                let rows: Vec<EntryRow> =
                    sqlx::query_as(sql).bind(user.get()).bind(limit(n)).fetch_all(&self.pool).await.map_err(TxError::from)?;
                rows.into_iter().map(LedgerEntry::try_from).collect()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!($store)))]
            async fn verify(&self) -> Result<VerifyReport, StoreError> {
                retrying(|| self.verify_once()).await
            }
        }

        #[async_trait]
        impl JobStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!($store), user_id = job.user_id.get(), job_id = %job.id, amount_kopecks = job.quote.amount.kopecks()))]
            async fn create_job(&self, job: NewJob, max_active: u32) -> Result<Job, StoreError> {
                self.with_available(job.user_id, retrying(|| self.create_job_once(&job, max_active)).await).await
            }

            async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
                let sql = concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1");
                let row: Option<JobRow> = sqlx::query_as(sql).bind(id.to_string()).fetch_optional(&self.pool).await.map_err(TxError::from)?;
                row.map(Job::try_from).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!($store), job_id = %transition.after.id, from = transition.before.state.as_str(), to = transition.after.state.as_str()))]
            async fn save_transition(&self, transition: &JobTransition) -> Result<Job, StoreError> {
                retrying(|| self.save_transition_once(transition)).await
            }

            async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
                let sql = concat!(
                    "SELECT ", job_cols!(), " FROM jobs WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR user_id = $2) ORDER BY ", $order, " DESC LIMIT $3"
                );
                let rows: Vec<JobRow> = sqlx::query_as(sql)
                    .bind(filter.state.map(|s| s.as_str()))
                    .bind(filter.user_id.map(UserId::get))
                    .bind(limit(filter.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(TxError::from)?;
                rows.into_iter().map(Job::try_from).collect()
            }
        }

        #[async_trait]
        impl PaymentStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!($store), user_id = payment.user_id.get(), payment_id = %payment.id, amount_kopecks = payment.amount.kopecks()))]
            async fn create_payment(&self, payment: NewPayment) -> Result<Payment, StoreError> {
                retrying(|| self.create_payment_once(&payment)).await
            }

            async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
                let sql = concat!("SELECT ", payment_cols!(), " FROM payments WHERE id = $1");
                let row: Option<PaymentRow> =
                    sqlx::query_as(sql).bind(id.to_string()).fetch_optional(&self.pool).await.map_err(TxError::from)?;
                row.map(Payment::try_from).transpose()
            }

            async fn payment_by_provider_id(&self, provider: PaymentProvider, provider_payment_id: &str) -> Result<Option<Payment>, StoreError> {
                let sql = concat!("SELECT ", payment_cols!(), " FROM payments WHERE provider = $1 AND provider_payment_id = $2");
                let row: Option<PaymentRow> = sqlx::query_as(sql)
                    .bind(provider.as_str())
                    .bind(provider_payment_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(TxError::from)?;
                row.map(Payment::try_from).transpose()
            }

            #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!($store), payment_id = %transition.after.id, from = transition.before.state.as_str(), to = transition.after.state.as_str()))]
            async fn save_payment_transition(&self, transition: &PaymentTransition) -> Result<Payment, StoreError> {
                retrying(|| self.save_payment_transition_once(transition)).await
            }

            async fn payments(&self, filter: PaymentFilter) -> Result<Vec<Payment>, StoreError> {
                let sql = concat!(
                    "SELECT ", payment_cols!(), " FROM payments WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR user_id = $2) ",
                    "AND ($3 IS NULL OR created_at >= $3) ORDER BY ", $order, " DESC LIMIT $4"
                );
                let rows: Vec<PaymentRow> = sqlx::query_as(sql)
                    .bind(filter.state.map(|s| s.as_str()))
                    .bind(filter.user_id.map(UserId::get))
                    .bind(filter.since.map(Timestamp::millis))
                    .bind(limit(filter.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(TxError::from)?;
                rows.into_iter().map(Payment::try_from).collect()
            }
        }

        #[async_trait]
        impl DialogueStore for $store {
            async fn load_dialogue(&self, user: UserId) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> = sqlx::query_as("SELECT state FROM dialogues WHERE user_id = $1")
                    .bind(user.get())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(TxError::from)?;
                Ok(row.map(|(s,)| s))
            }

            async fn save_dialogue(&self, user: UserId, state: &str, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO dialogues (user_id, state, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(user.get())
                .bind(state)
                .bind(at.millis())
                .execute(&self.pool)
                .await
                .map_err(TxError::from)?;
                Ok(())
            }

            async fn clear_dialogue(&self, user: UserId) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM dialogues WHERE user_id = $1").bind(user.get()).execute(&self.pool).await.map_err(TxError::from)?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_store;
