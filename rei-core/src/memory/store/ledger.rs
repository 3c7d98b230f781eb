//! `LedgerStore` in memory.

use super::*;

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn post(
        &self,
        entry: NewEntry,
        audit: Option<AuditRecord>,
    ) -> Result<Posted, StoreError> {
        let mut s = self.lock();
        let posted = s.post(entry)?;
        if let (false, Some(a)) = (posted.replayed, audit) {
            s.audit.push(a);
        }
        Ok(posted)
    }

    async fn post_adjustment(
        &self,
        entry: NewEntry,
        audit: AuditRecord,
    ) -> Result<Posted, StoreError> {
        let mut s = self.lock();
        let (user, kind, amount, at) = (entry.user_id, entry.kind, entry.amount, entry.created_at);
        let posted = s.post(entry)?;
        if !posted.replayed {
            s.audit.push(audit);
            let notice = if kind == EntryKind::Debit {
                crate::ports::Notice::BalanceDebited {
                    amount,
                    balance: posted.balance,
                }
            } else {
                crate::ports::Notice::BalanceCredited {
                    amount,
                    balance: posted.balance,
                }
            };
            s.queue_notice(user, notice, at);
        }
        Ok(posted)
    }

    async fn reserve(&self, reservation: NewReservation) -> Result<Reservation, StoreError> {
        let mut s = self.lock();
        match s.plan_reserve(&reservation)? {
            ReservePlan::Replay(first) => Ok(first),
            ReservePlan::New { balance } => Ok(s.commit_reserve(&reservation, balance)),
        }
    }

    async fn settle(
        &self,
        id: ReservationId,
        how: Settlement,
        at: Timestamp,
    ) -> Result<Reservation, StoreError> {
        let mut s = self.lock();
        // A job's hold and a payment's refund hold are settled only with them.
        let owner = match s.reservations.get(&id) {
            Some(r) if r.job_id.is_some() => r.job_id.map(|j| format!("job {j}")),
            Some(_) => s
                .payments
                .values()
                .find(|p| p.refund_hold() == Some(id))
                .map(|p| format!("payment {}", p.id)),
            None => None,
        };
        if let Some(owner) = owner {
            return Err(StoreError::Settlement(SettlementError::BelongsElsewhere {
                id,
                owner,
            }));
        }
        let plan = s.plan_settle(id, how, at)?;
        Ok(s.commit_settle(plan))
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Ok(self.lock().reservations.get(&id).cloned())
    }

    async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
        let s = self.lock();
        let available = s.user(user)?.balance;
        Ok(Balance {
            available,
            held: s.held_total(Some(user)),
        })
    }

    async fn entry_by_key(&self, key: &IdempotencyKey) -> Result<Option<LedgerEntry>, StoreError> {
        let s = self.lock();
        Ok(s.entry_by_key
            .get(key.as_str())
            .and_then(|i| s.entries.get(*i))
            .cloned())
    }

    async fn entries(&self, user: UserId, limit_n: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let s = self.lock();
        Ok(s.entries
            .iter()
            .rev()
            .filter(|e| e.user_id == user)
            .take(limit(limit_n))
            .cloned()
            .collect())
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        Ok(verify::check(&self.lock().totals()))
    }
}
