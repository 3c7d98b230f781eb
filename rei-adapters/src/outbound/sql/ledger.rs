//! `LedgerStore` over SQL: entries, holds, settlements, verification.

use super::store::*;

impl SqlStore {
    /// Posts `e` with its audit line; `tell` also writes the user's notice of this
    /// manual adjustment into the outbox. A replay writes neither.
    async fn post_once(
        &self,
        e: &NewEntry,
        audit: Option<&AuditRecord>,
        tell: bool,
    ) -> Result<Posted, TxError> {
        let (e, audit) = (e.clone(), audit.cloned());
        let posted = self
            .write(move |tx| {
                Box::pin(async move { Self::post_in(tx, &e, audit.as_ref(), tell).await })
            })
            .await?;
        if tell && !posted.replayed {
            self.outbox_signal.notify_one();
        }
        Ok(posted)
    }

    pub(super) async fn post_in(
        tx: &mut Tx<'static>,
        e: &NewEntry,
        audit: Option<&AuditRecord>,
        tell: bool,
    ) -> Result<Posted, TxError> {
        let (entry, replayed) = match Self::insert_entry(tx, e).await? {
            Inserted::New(entry) => (entry, false),
            Inserted::Replay(first) => (first, true),
        };
        let balance = Self::current_balance(tx, entry.user_id).await?;
        let posted = Posted {
            entry,
            balance,
            replayed,
        };
        if posted.replayed {
            return Ok(posted);
        }
        if let Some(a) = audit {
            Self::insert_audit(tx, a).await?;
        }
        if tell {
            let notice = if e.kind == rei_core::ledger::EntryKind::Debit {
                Notice::BalanceDebited {
                    amount: e.amount,
                    balance,
                }
            } else {
                Notice::BalanceCredited {
                    amount: e.amount,
                    balance,
                }
            };
            Self::insert_notice(tx, e.user_id, &notice, e.created_at).await?;
        }
        Ok(posted)
    }

    async fn reserve_once(&self, r: &NewReservation) -> Result<Reservation, TxError> {
        let r = r.clone();
        self.write(move |tx| Box::pin(async move { Self::reserve_in(tx, &r).await }))
            .await
    }

    async fn settle_once(
        &self,
        id: ReservationId,
        how: Settlement,
        at: Timestamp,
    ) -> Result<Reservation, TxError> {
        self.write(move |tx| Box::pin(async move { Self::settle_free_in(tx, id, how, at).await }))
            .await
    }

    /// Settles a hold that belongs to no job or payment (those are settled only with
    /// them).
    async fn settle_free_in(
        tx: &mut Tx<'static>,
        id: ReservationId,
        how: Settlement,
        at: Timestamp,
    ) -> Result<Reservation, TxError> {
        let held = Self::reservation_in(tx, id, true).await?;
        let owner = match held.as_ref().and_then(|r| r.job_id) {
            Some(job) => Some(format!("job {job}")),
            None => sqlx::query_as::<_, (String,)>(
                "SELECT id FROM payments WHERE refund_reservation_id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .map(|(payment,)| format!("payment {payment}")),
        };
        if let Some(owner) = owner {
            return Err(
                StoreError::Settlement(SettlementError::BelongsElsewhere { id, owner }).into(),
            );
        }
        Self::settle_in(tx, id, how, at).await
    }

    async fn verify_once(&self) -> Result<VerifyReport, TxError> {
        let mut tx = self.pool.begin().await?;
        if let Some(snapshot) = self.dialect.snapshot() {
            sqlx::query(snapshot).execute(&mut *tx).await?;
        }
        let (entries,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ledger")
            .fetch_one(&mut *tx)
            .await?;
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
            "SELECT j.id, j.status, j.reservation_id, r.state AS reservation_state, j.cost_actual, r.captured \
             FROM jobs j LEFT JOIN reservations r ON r.id = j.reservation_id",
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
impl LedgerStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), user_id = entry.user_id.get(), kind = entry.kind.as_str(), amount_kopecks = entry.amount.kopecks(), key = entry.idempotency_key.as_str()))]
    async fn post(
        &self,
        entry: NewEntry,
        audit: Option<AuditRecord>,
    ) -> Result<Posted, StoreError> {
        self.with_available(
            entry.user_id,
            retrying(|| self.post_once(&entry, audit.as_ref(), false)).await,
        )
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), user_id = entry.user_id.get(), kind = entry.kind.as_str(), amount_kopecks = entry.amount.kopecks(), key = entry.idempotency_key.as_str()))]
    async fn post_adjustment(
        &self,
        entry: NewEntry,
        audit: AuditRecord,
    ) -> Result<Posted, StoreError> {
        self.with_available(
            entry.user_id,
            retrying(|| self.post_once(&entry, Some(&audit), true)).await,
        )
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), user_id = reservation.user_id.get(), reservation_id = %reservation.id, amount_kopecks = reservation.amount.kopecks()))]
    async fn reserve(&self, reservation: NewReservation) -> Result<Reservation, StoreError> {
        self.with_available(
            reservation.user_id,
            retrying(|| self.reserve_once(&reservation)).await,
        )
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), reservation_id = %id, settlement = ?how))]
    async fn settle(
        &self,
        id: ReservationId,
        how: Settlement,
        at: Timestamp,
    ) -> Result<Reservation, StoreError> {
        retrying(|| self.settle_once(id, how, at)).await
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        let sql = concat!(
            "SELECT ",
            reservation_cols!(),
            " FROM reservations WHERE id = $1"
        );
        self.find::<ReservationRow, _>(sqlx::query_as(sql).bind(id.to_string()))
            .await
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
        let (available, held) = row.ok_or_else(|| StoreError::NotFound(Missing::User(user)))?;
        Ok(Balance {
            available: money("balance", available)?,
            held: money("held", held)?,
        })
    }

    async fn entry_by_key(&self, key: &IdempotencyKey) -> Result<Option<LedgerEntry>, StoreError> {
        let sql = concat!(
            "SELECT ",
            entry_cols!(),
            " FROM ledger WHERE idempotency_key = $1"
        );
        let row: Option<EntryRow> = sqlx::query_as(sql)
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(TxError::from)?;
        row.map(LedgerEntry::try_from).transpose()
    }

    async fn entries(&self, user: UserId, n: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let sql = concat!(
            "SELECT ",
            entry_cols!(),
            " FROM ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<EntryRow> = sqlx::query_as(sql)
            .bind(user.get())
            .bind(limit(n))
            .fetch_all(&self.pool)
            .await
            .map_err(TxError::from)?;
        rows.into_iter().map(LedgerEntry::try_from).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore)))]
    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        retrying(|| self.verify_once()).await
    }
}
