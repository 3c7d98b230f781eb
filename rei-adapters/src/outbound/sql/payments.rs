//! `PaymentStore` over SQL: top-ups, credits, refund holds.

use super::store::*;

impl SqlStore {
    async fn create_payment_once(&self, p: &NewPayment) -> Result<Payment, TxError> {
        let p = p.clone();
        self.write(move |tx| Box::pin(async move { Self::create_payment_in(tx, &p).await }))
            .await
    }

    async fn create_payment_in(tx: &mut Tx<'static>, p: &NewPayment) -> Result<Payment, TxError> {
        if let Some(first) = Self::payment_in(tx, p.id, false).await? {
            let same = first.user_id == p.user_id
                && first.amount == p.amount
                && first.provider == p.provider
                && first.provider_units == p.provider_units;
            return if same {
                Ok(first)
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: p.id.to_string(),
                }
                .into())
            };
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
        .execute(&mut **tx)
        .await
        .map_err(|e| unknown_user(e, p.user_id))?;
        Ok(created)
    }

    /// `Conflict` when another payment holds `p`'s provider id.
    async fn provider_id_is_free(tx: &mut Tx<'_>, p: &Payment) -> Result<(), TxError> {
        let Some(provider_id) = &p.provider_payment_id else {
            return Ok(());
        };
        let other: Option<(String,)> =
            sqlx::query_as("SELECT id FROM payments WHERE provider_payment_id = $1 AND id <> $2")
                .bind(provider_id)
                .bind(p.id.to_string())
                .fetch_optional(&mut **tx)
                .await?;
        match other {
            Some(_) => Err(StoreError::Conflict {
                what: "provider payment id",
                id: provider_id.clone(),
            }
            .into()),
            None => Ok(()),
        }
    }

    async fn save_payment_transition_once(
        &self,
        t: &PaymentTransition,
    ) -> Result<Payment, TxError> {
        let t = t.clone();
        let (saved, queued) = self
            .write(move |tx| {
                Box::pin(async move { Self::save_payment_transition_in(tx, &t).await })
            })
            .await?;
        if queued {
            self.outbox_signal.notify_one();
        }
        Ok(saved)
    }

    async fn save_payment_transition_in(
        tx: &mut Tx<'static>,
        t: &PaymentTransition,
    ) -> Result<(Payment, bool), TxError> {
        let p = t.after();
        // Effects are checked against the stored row, never the caller's copy: a
        // transition made from anything but the stored row is refused.
        let stored = Self::payment_in(tx, p.id, true)
            .await?
            .ok_or_else(|| StoreError::NotFound(Missing::Payment(p.id)))?;
        if stored.without_bookkeeping() != t.before().without_bookkeeping() {
            return Err(StoreError::Conflict {
                what: "payment",
                id: p.id.to_string(),
            }
            .into());
        }
        Self::provider_id_is_free(tx, p).await?;
        let at = p.updated_at;
        // The refund hold is placed before the row names it.
        if let Some(PaymentEffect::HoldRefund(hold)) = t.effect() {
            let fits = hold.user_id == stored.user_id
                && hold.job_id.is_none()
                && p.refund.as_ref().map(|r| (r.hold, r.amount)) == Some((hold.id, hold.amount));
            if !fits {
                return Err(StoreError::Conflict {
                    what: "refund hold",
                    id: hold.id.to_string(),
                }
                .into());
            }
            let placed = Self::reserve_in(tx, hold).await?;
            // A repeat of this very start (same hold) is fine; another hold under
            // the key is not this refund's.
            if placed.id != hold.id || placed.state != rei_core::ledger::ReservationState::Held {
                return Err(StoreError::Conflict {
                    what: "refund hold",
                    id: hold.id.to_string(),
                }
                .into());
            }
        }
        let done = sqlx::query(
            "UPDATE payments SET provider_payment_id = $1, status = $2, confirmation_url = $3, refund_reservation_id = $4, \
             cancel_reason = $5, version = $6, paid_at = $7, updated_at = $8, refund_id = $11, refund_amount = $12, refunded_amount = $13 \
             WHERE id = $9 AND version = $10",
        )
        .bind(&p.provider_payment_id)
        .bind(p.state.as_str())
        .bind(&p.confirmation_url)
        .bind(p.refund_hold().map(|r| r.to_string()))
        .bind(&p.cancel_reason)
        .bind(i64::from(p.version))
        .bind(p.paid_at.map(Timestamp::millis))
        .bind(p.updated_at.millis())
        .bind(p.id.to_string())
        .bind(i64::from(t.before().version))
        .bind(p.refund.as_ref().and_then(|r| r.provider_refund_id.clone()))
        .bind(p.refund.as_ref().map(|r| r.amount.kopecks()))
        .bind(p.refunded.kopecks())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            // The row was read (and locked) above at this version.
            return Err(StoreError::Conflict {
                what: "payment",
                id: p.id.to_string(),
            }
            .into());
        }
        let mut queued = false;
        match t.effect() {
            None | Some(PaymentEffect::HoldRefund(_)) => {}
            Some(PaymentEffect::Credit) => {
                // Built from the stored row (user, amount, id), not the caller's copy.
                if let Inserted::New(_) = Self::insert_entry(tx, &stored.credit_entry(at)).await? {
                    let balance = Self::current_balance(tx, stored.user_id).await?;
                    let notice = Notice::PaymentCredited {
                        payment_id: stored.id,
                        amount: stored.amount,
                        balance,
                    };
                    Self::insert_notice(tx, stored.user_id, &notice, at).await?;
                    queued = true;
                    if let Some(referral) = t.referral() {
                        Self::referral_in(tx, referral, &stored, at).await?;
                    }
                }
            }
            Some(PaymentEffect::CaptureRefundHold(r) | PaymentEffect::ReleaseRefundHold(r)) => {
                // Only the payment's own refund hold, as stored.
                if stored.refund_hold() != Some(*r) {
                    return Err(StoreError::Settlement(SettlementError::BelongsElsewhere {
                        id: *r,
                        owner: "no refund of this payment".into(),
                    })
                    .into());
                }
                let hold = Self::reservation_in(tx, *r, true)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(Missing::Reservation(*r)))?;
                let how = if matches!(t.effect(), Some(PaymentEffect::ReleaseRefundHold(_))) {
                    Settlement::Release
                } else {
                    Settlement::Capture {
                        actual: hold.amount,
                    }
                };
                Self::settle_in(tx, *r, how, at).await?;
                if matches!(how, Settlement::Capture { .. }) {
                    let balance = Self::current_balance(tx, stored.user_id).await?;
                    let amount = p
                        .refunded
                        .checked_sub(stored.refunded)
                        .unwrap_or(Money::ZERO);
                    let notice = Notice::PaymentRefunded {
                        payment_id: stored.id,
                        amount,
                        balance,
                    };
                    Self::insert_notice(tx, stored.user_id, &notice, at).await?;
                    queued = true;
                    if let Some(referral) = t.referral() {
                        Self::referral_in(tx, referral, &stored, at).await?;
                    }
                }
            }
        }
        // The poller's bookkeeping is the stored one, not the caller's copy.
        let saved = Payment {
            checks: stored.checks,
            next_check_at: stored.next_check_at,
            ..p.clone()
        };
        Ok((saved, queued))
    }
}

#[async_trait]
impl PaymentStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), user_id = payment.user_id.get(), payment_id = %payment.id, amount_kopecks = payment.amount.kopecks()))]
    async fn create_payment(&self, payment: NewPayment) -> Result<Payment, StoreError> {
        retrying(|| self.create_payment_once(&payment)).await
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        let sql = concat!("SELECT ", payment_cols!(), " FROM payments WHERE id = $1");
        self.find::<PaymentRow, _>(sqlx::query_as(sql).bind(id.to_string()))
            .await
    }

    async fn payment_by_provider_id(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
    ) -> Result<Option<Payment>, StoreError> {
        let sql = concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE provider = $1 AND provider_payment_id = $2"
        );
        let row: Option<PaymentRow> = sqlx::query_as(sql)
            .bind(provider.as_str())
            .bind(provider_payment_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(TxError::from)?;
        row.map(Payment::try_from).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), payment_id = %transition.after().id, from = transition.before().state.as_str(), to = transition.after().state.as_str()))]
    async fn save_payment_transition(
        &self,
        transition: &PaymentTransition,
    ) -> Result<Payment, StoreError> {
        let user = transition.after().user_id;
        self.with_available(
            user,
            retrying(|| self.save_payment_transition_once(transition)).await,
        )
        .await
    }

    async fn payments(&self, filter: PaymentFilter) -> Result<Vec<Payment>, StoreError> {
        let sql = dialect_sql!(
            self.dialect,
            [
                "SELECT ",
                payment_cols!(),
                " FROM payments WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR user_id = $2) ",
                "AND ($3 IS NULL OR created_at >= $3) AND ($5 IS NULL OR provider = $5) ORDER BY "
            ],
            order_col,
            [" DESC LIMIT $4"]
        );
        let rows: Vec<PaymentRow> = sqlx::query_as(sql)
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.user_id.map(UserId::get))
            .bind(filter.since.map(Timestamp::millis))
            .bind(limit(filter.limit))
            .bind(filter.provider.map(|p| p.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(TxError::from)?;
        rows.into_iter().map(Payment::try_from).collect()
    }

    async fn import_payment(&self, p: &Payment) -> Result<bool, StoreError> {
        retrying(|| {
            let p = p.clone();
            self.write(move |tx| Box::pin(async move { Self::import_payment_in(tx, &p).await }))
        })
        .await
    }

    async fn due_payments(&self, filter: DueFilter) -> Result<DuePayments, StoreError> {
        let (status, provider, refunding) = match filter.due {
            Due::Pending(provider) => (PaymentState::Pending, Some(provider.as_str()), false),
            Due::Refunding => (PaymentState::Paid, None, true),
        };
        let sql = concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE status = $1 AND ($2 IS NULL OR provider = $2) ",
            "AND ($3 = 0 OR refund_reservation_id IS NOT NULL) AND (next_check_at IS NULL OR next_check_at <= $4) ",
            "AND ($5 IS NULL OR created_at >= $5) ORDER BY created_at ASC, id ASC LIMIT $6"
        );
        let rows: Vec<PaymentRow> = sqlx::query_as(sql)
            .bind(status.as_str())
            .bind(provider)
            .bind(i64::from(refunding))
            .bind(filter.at.millis())
            .bind(filter.created_since.map(Timestamp::millis))
            .bind(limit(filter.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(TxError::from)?;
        // One unreadable row never stops the poller: it is named and skipped.
        let mut due = DuePayments::default();
        for row in rows {
            let id = row.id().to_owned();
            match Payment::try_from(row) {
                Ok(p) => due.payments.push(p),
                Err(e) => due.unreadable.push((id, e.to_string())),
            }
        }
        Ok(due)
    }

    async fn schedule_check(
        &self,
        id: PaymentId,
        checks: u32,
        next_check_at: Timestamp,
    ) -> Result<(), StoreError> {
        let done = self
            .execute(
                sqlx::query("UPDATE payments SET checks = $1, next_check_at = $2 WHERE id = $3")
                    .bind(i64::from(checks))
                    .bind(next_check_at.millis())
                    .bind(id.to_string()),
            )
            .await?;
        super::changed_one(&done, Missing::Payment(id))
    }
}

impl SqlStore {
    async fn import_payment_in(tx: &mut Tx<'static>, p: &Payment) -> Result<bool, TxError> {
        if Self::payment_in(tx, p.id, false).await?.is_some() {
            return Ok(false);
        }
        Self::provider_id_is_free(tx, p).await?;
        sqlx::query(
                "INSERT INTO payments (id, provider, provider_payment_id, user_id, amount, provider_units, status, confirmation_url, \
                 cancel_reason, version, created_at, paid_at, updated_at, refunded_amount) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(p.id.to_string())
            .bind(p.provider.as_str())
            .bind(&p.provider_payment_id)
            .bind(p.user_id.get())
            .bind(p.amount.kopecks())
            .bind(p.provider_units.map(i64::from))
            .bind(p.state.as_str())
            .bind(&p.confirmation_url)
            .bind(&p.cancel_reason)
            .bind(i64::from(p.version))
            .bind(p.created_at.millis())
            .bind(p.paid_at.map(Timestamp::millis))
            .bind(p.updated_at.millis())
            .bind(p.refunded.kopecks())
            .execute(&mut **tx)
            .await
            .map_err(|e| unknown_user(e, p.user_id))?;
        Ok(true)
    }
}
