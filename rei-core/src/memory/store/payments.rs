//! `PaymentStore` in memory.

use super::*;

#[async_trait]
impl PaymentStore for MemoryStore {
    async fn import_payment(&self, payment: &Payment) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.user(payment.user_id)?;
        if s.payments.contains_key(&payment.id) {
            return Ok(false);
        }
        if let Some(provider_id) = &payment.provider_payment_id {
            if s.payment_by_provider.contains_key(provider_id) {
                return Err(StoreError::Conflict {
                    what: "provider payment id",
                    id: provider_id.clone(),
                });
            }
            s.payment_by_provider
                .insert(provider_id.clone(), payment.id);
        }
        s.payment_order.push(payment.id);
        s.payments.insert(payment.id, payment.clone());
        Ok(true)
    }

    async fn create_payment(&self, payment: NewPayment) -> Result<Payment, StoreError> {
        let mut s = self.lock();
        if let Some(first) = s.payments.get(&payment.id) {
            let same = first.user_id == payment.user_id
                && first.amount == payment.amount
                && first.provider == payment.provider
                && first.provider_units == payment.provider_units;
            return if same {
                Ok(first.clone())
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: payment.id.to_string(),
                })
            };
        }
        s.user(payment.user_id)?;
        if payment.amount.is_zero() {
            return Err(StoreError::Invalid(
                "payment amounts must be positive".into(),
            ));
        }
        let created = payment.pending();
        s.payment_order.push(payment.id);
        s.payments.insert(payment.id, created.clone());
        Ok(created)
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        Ok(self.lock().payments.get(&id).cloned())
    }

    async fn payment_by_provider_id(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
    ) -> Result<Option<Payment>, StoreError> {
        let s = self.lock();
        Ok(s.payment_by_provider
            .get(provider_payment_id)
            .and_then(|id| s.payments.get(id))
            .filter(|p| p.provider == provider)
            .cloned())
    }

    async fn save_payment_transition(&self, t: &PaymentTransition) -> Result<Payment, StoreError> {
        let mut s = self.lock();
        let (before, after) = (t.before(), t.after());
        let id = before.id;
        let stored = s
            .payments
            .get(&id)
            .ok_or_else(|| StoreError::NotFound(Missing::Payment(id)))?
            .clone();
        // Made by the state machine from the stored row, or refused: a transition built
        // from a doctored copy never moves money.
        if stored.without_bookkeeping() != before.without_bookkeeping() {
            return Err(StoreError::Conflict {
                what: "payment",
                id: id.to_string(),
            });
        }
        let provider_key = after.provider_payment_id.clone();
        if let Some(key) = &provider_key {
            if s.payment_by_provider
                .get(key)
                .is_some_and(|other| *other != id)
            {
                return Err(StoreError::Conflict {
                    what: "provider payment id",
                    id: key.clone(),
                });
            }
        }
        let at = after.updated_at;
        match t.effect() {
            None => {}
            Some(PaymentEffect::Credit) => {
                // Built from the stored payment, not the caller's copy.
                let entry = stored.credit_entry(at);
                if let PostPlan::New { balance } = s.plan_post(&entry)? {
                    let referral = s.plan_referral(t, &stored, true)?;
                    s.commit_post(entry, balance);
                    let notice = crate::ports::Notice::PaymentCredited {
                        payment_id: id,
                        amount: stored.amount,
                        balance,
                    };
                    s.queue_notice(stored.user_id, notice, at);
                    if let Some(referral) = referral {
                        s.commit_referral(referral, id, at);
                    }
                }
            }
            Some(PaymentEffect::HoldRefund(hold)) => {
                let fits = hold.user_id == stored.user_id
                    && hold.job_id.is_none()
                    && after.refund.as_ref().map(|r| (r.hold, r.amount))
                        == Some((hold.id, hold.amount));
                if !fits {
                    return Err(StoreError::Conflict {
                        what: "refund hold",
                        id: hold.id.to_string(),
                    });
                }
                match s.plan_reserve(hold)? {
                    ReservePlan::New { balance } => {
                        s.commit_reserve(hold, balance);
                    }
                    // A repeat of this very start (same hold) is fine; another hold under
                    // the key is not this refund's.
                    ReservePlan::Replay(first)
                        if first.id == hold.id && first.state == ReservationState::Held => {}
                    ReservePlan::Replay(_) => {
                        return Err(StoreError::Conflict {
                            what: "refund hold",
                            id: hold.id.to_string(),
                        });
                    }
                }
            }
            Some(PaymentEffect::CaptureRefundHold(r) | PaymentEffect::ReleaseRefundHold(r)) => {
                // Only the payment's own refund hold, as stored.
                if stored.refund_hold() != Some(*r) {
                    return Err(StoreError::Settlement(SettlementError::BelongsElsewhere {
                        id: *r,
                        owner: "no refund of this payment".into(),
                    }));
                }
                let how = match t.effect() {
                    Some(PaymentEffect::ReleaseRefundHold(_)) => Settlement::Release,
                    _ => {
                        let amount = s.reservations.get(r).map_or(Money::ZERO, |h| h.amount);
                        Settlement::Capture { actual: amount }
                    }
                };
                let referral = s.plan_referral(t, &stored, true)?;
                let plan = s.plan_settle(*r, how, at)?;
                s.commit_settle(plan);
                if let Some(referral) = referral {
                    s.commit_referral(referral, id, at);
                }
                if matches!(how, Settlement::Capture { .. }) {
                    let notice = crate::ports::Notice::PaymentRefunded {
                        payment_id: id,
                        amount: after
                            .refunded
                            .checked_sub(stored.refunded)
                            .unwrap_or(Money::ZERO),
                        balance: s.balance_of(stored.user_id),
                    };
                    s.queue_notice(stored.user_id, notice, at);
                }
            }
        }
        if let Some(key) = provider_key {
            s.payment_by_provider.insert(key, id);
        }
        // The poller's bookkeeping is not part of a transition.
        let saved = Payment {
            checks: stored.checks,
            next_check_at: stored.next_check_at,
            ..after.clone()
        };
        s.payments.insert(id, saved.clone());
        Ok(saved)
    }

    async fn payments(&self, filter: PaymentFilter) -> Result<Vec<Payment>, StoreError> {
        let s = self.lock();
        Ok(s.payment_order
            .iter()
            .rev()
            .filter_map(|id| s.payments.get(id))
            .filter(|p| {
                filter.state.is_none_or(|st| p.state == st)
                    && filter.user_id.is_none_or(|u| p.user_id == u)
                    && filter.since.is_none_or(|t| p.created_at >= t)
                    && filter.provider.is_none_or(|pr| p.provider == pr)
            })
            .take(limit(filter.limit))
            .cloned()
            .collect())
    }

    async fn due_payments(&self, filter: DueFilter) -> Result<DuePayments, StoreError> {
        let s = self.lock();
        let mut due: Vec<Payment> = s
            .payments
            .values()
            .filter(|p| filter.matches(p))
            .cloned()
            .collect();
        due.sort_by_key(|p| (p.created_at, p.id));
        due.truncate(limit(filter.limit));
        Ok(DuePayments {
            payments: due,
            unreadable: Vec::new(),
        })
    }

    async fn schedule_check(
        &self,
        id: PaymentId,
        checks: u32,
        next_check_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        let p = s
            .payments
            .get_mut(&id)
            .ok_or(StoreError::NotFound(Missing::Payment(id)))?;
        p.checks = checks;
        p.next_check_at = Some(next_check_at);
        Ok(())
    }
}
