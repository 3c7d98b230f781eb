//! `UserStore` in memory.

use super::*;

#[async_trait]
impl UserStore for MemoryStore {
    async fn register(
        &self,
        profile: UserProfile,
        at: Timestamp,
    ) -> Result<(User, bool), StoreError> {
        let mut s = self.lock();
        if let Some(u) = s.users.get_mut(&profile.id) {
            u.username = profile.username;
            u.first_name = profile.first_name;
            return Ok((u.clone(), false));
        }
        let user = User {
            id: profile.id,
            username: profile.username,
            first_name: profile.first_name,
            language: profile.language,
            is_banned: false,
            ban_notified: false,
            unreachable_since: None,
            receipt_email: None,
            balance: Money::ZERO,
            created_at: at,
        };
        s.users.insert(user.id, user.clone());
        Ok((user, true))
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn set_banned(
        &self,
        id: UserId,
        banned: bool,
        audit: AuditRecord,
    ) -> Result<User, StoreError> {
        let mut s = self.lock();
        let u = s
            .users
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(Missing::User(id)))?;
        if u.is_banned != banned {
            u.ban_notified = false;
        }
        u.is_banned = banned;
        let user = u.clone();
        s.audit.push(audit);
        Ok(user)
    }

    async fn mark_ban_notified(&self, id: UserId) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let u = s
            .users
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(Missing::User(id)))?;
        let first = u.is_banned && !u.ban_notified;
        if first {
            u.ban_notified = true;
        }
        Ok(first)
    }

    async fn set_language(&self, id: UserId, language: Language) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.users
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(Missing::User(id)))?
            .language = language;
        Ok(())
    }

    async fn audit_log(&self, limit_n: u32) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .lock()
            .audit
            .iter()
            .rev()
            .take(limit(limit_n))
            .cloned()
            .collect())
    }

    async fn set_unreachable(
        &self,
        id: UserId,
        since: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.users
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(Missing::User(id)))?
            .unreachable_since = since;
        Ok(())
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<(), StoreError> {
        self.lock().audit.push(record);
        Ok(())
    }

    async fn set_receipt_email(&self, id: UserId, email: &Email) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.users
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(Missing::User(id)))?
            .receipt_email = Some(email.clone());
        Ok(())
    }

    async fn stats(&self, since: Timestamp) -> Result<Stats, StoreError> {
        let s = self.lock();
        let active: std::collections::BTreeSet<UserId> = s
            .dialogue_times
            .iter()
            .filter(|(_, at)| **at >= since)
            .map(|(u, _)| *u)
            .chain(
                s.jobs
                    .values()
                    .filter(|j| j.created_at >= since)
                    .map(|j| j.user_id),
            )
            .collect();
        let balances: i64 = s.users.values().map(|u| u.balance.kopecks()).sum();
        let jobs_by_state = JobState::ALL
            .iter()
            .map(|st| {
                (
                    *st,
                    s.jobs.values().filter(|j| j.state == *st).count() as u64,
                )
            })
            .collect();
        let payments_by_state = crate::payment::PaymentState::ALL
            .iter()
            .map(|st| {
                let of: Vec<&Payment> = s.payments.values().filter(|p| p.state == *st).collect();
                let sum: i64 = of.iter().map(|p| p.amount.kopecks()).sum();
                (
                    *st,
                    of.len() as u64,
                    Money::from_kopecks(sum).unwrap_or(Money::ZERO),
                )
            })
            .collect();
        Ok(Stats {
            users: s.users.len() as u64,
            banned_users: s.users.values().filter(|u| u.is_banned).count() as u64,
            balances_total: Money::from_kopecks(balances).unwrap_or(Money::ZERO),
            held_total: s.held_total(None),
            jobs_by_state,
            payments_by_state,
            active_since: active.len() as u64,
            failed_since: s
                .jobs
                .values()
                .filter(|j| {
                    j.state == JobState::Failed && j.finished_at.is_some_and(|at| at >= since)
                })
                .count() as u64,
            unreachable_users: s
                .users
                .values()
                .filter(|u| u.unreachable_since.is_some())
                .count() as u64,
            bonuses_total: Money::from_kopecks(
                s.entries
                    .iter()
                    .filter(|e| {
                        e.ref_type == crate::ledger::RefType::Bonus
                            && e.kind == crate::ledger::EntryKind::Credit
                    })
                    .map(|e| e.amount.kopecks())
                    .sum(),
            )
            .unwrap_or(Money::ZERO),
        })
    }
}
