//! `MemoryStore`: every store port over one mutex-guarded state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::ids::{IdempotencyKey, JobId, PaymentId, ReservationId, UserId};
use crate::job::{
    Applied, Job, JobEvent, JobFilter, JobGuard, JobLease, JobState, JobTransition, JobWrite,
    NewJob,
};
use crate::ledger::verify::{
    self, JobTotals, LedgerTotals, PaymentTotals, ReservationTotals, UserTotals,
};
use crate::ledger::{
    Balance, EntryKind, LedgerEntry, MAX_BALANCE, NewEntry, NewReservation, Posted, RefType,
    Reservation, ReservationState, Settlement, SettlementError, SettlementPlan, VerifyReport,
};
use crate::money::Money;
use crate::payment::{
    DueFilter, DuePayments, NewPayment, Payment, PaymentEffect, PaymentFilter, PaymentProvider,
    PaymentTransition,
};
use crate::ports::{
    ClaimTarget, DialogueRecord, DialogueStore, JobStore, LedgerStore, Missing, OutboxEntry,
    PaymentStore, StoreError, UserStore,
};
use crate::time::Timestamp;
use crate::user::{AuditRecord, Email, Language, Stats, User, UserProfile};

/// Every store port in memory. Cheap to create; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<UserId, User>,
    entries: Vec<LedgerEntry>,
    entry_by_key: HashMap<String, usize>,
    reservations: HashMap<ReservationId, Reservation>,
    reservation_by_key: HashMap<String, ReservationId>,
    jobs: HashMap<JobId, Job>,
    job_order: Vec<JobId>,
    job_by_key: HashMap<String, JobId>,
    payments: HashMap<PaymentId, Payment>,
    payment_order: Vec<PaymentId>,
    /// Provider payment ids are unique across providers (as in the SQL schema).
    payment_by_provider: HashMap<String, PaymentId>,
    audit: Vec<AuditRecord>,
    legacy_jobs: BTreeMap<i64, crate::legacy::LegacyJob>,
    /// Named leases: (holder, until).
    leases: HashMap<String, (String, Timestamp)>,
    /// The outbox, in writing order.
    outbox: Vec<OutboxRow>,
    dialogues: HashMap<UserId, DialogueRecord>,
    dialogue_times: HashMap<UserId, Timestamp>,
}

/// A notice in the outbox.
#[derive(Debug)]
struct OutboxRow {
    entry: OutboxEntry,
    /// When it may be taken; `None` once it left (sent or given up).
    next_at: Option<Timestamp>,
}

impl State {
    /// Puts a notice to `user` into the outbox (in the caller's "transaction").
    fn queue_notice(&mut self, user: UserId, notice: crate::ports::Notice, at: Timestamp) {
        let id = i64::try_from(self.outbox.len())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        self.outbox.push(OutboxRow {
            entry: OutboxEntry {
                id,
                user_id: user,
                notice,
                attempts: 0,
                created_at: at,
            },
            next_at: Some(at),
        });
    }

    fn balance_of(&self, user: UserId) -> Money {
        self.users.get(&user).map_or(Money::ZERO, |u| u.balance)
    }
}

/// A hold that passed every check: the first one (a replay) or the balance after it.
enum ReservePlan {
    Replay(Reservation),
    New { balance: Money },
}

/// A settlement that passed every check, with the balance after its refund entry
/// (`None` when there is nothing to post).
struct SettlePlan {
    plan: SettlementPlan,
    refund_balance: Option<Money>,
}

/// A post that passed every check and can no longer fail.
enum PostPlan {
    Replay(Posted),
    New { balance: Money },
}

const DEFAULT_LIMIT: u32 = 100;

fn limit(n: u32) -> usize {
    usize::try_from(if n == 0 { DEFAULT_LIMIT } else { n }).unwrap_or(usize::MAX)
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave half a write: every method checks
        // first and mutates last, with infallible steps only.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn user(&self, id: UserId) -> Result<&User, StoreError> {
        self.users
            .get(&id)
            .ok_or_else(|| StoreError::NotFound(Missing::User(id)))
    }

    fn plan_post(&self, entry: &NewEntry) -> Result<PostPlan, StoreError> {
        if entry.amount.is_zero() || entry.amount > MAX_BALANCE {
            return Err(StoreError::Invalid(format!(
                "ledger amounts must be between 0.01 ₽ and {MAX_BALANCE}"
            )));
        }
        if let Some(&i) = self.entry_by_key.get(entry.idempotency_key.as_str()) {
            let first = &self.entries[i];
            if !entry.matches(first) {
                return Err(StoreError::IdempotencyConflict {
                    key: entry.idempotency_key.to_string(),
                });
            }
            let balance = self.user(first.user_id)?.balance;
            return Ok(PostPlan::Replay(Posted {
                entry: first.clone(),
                balance,
                replayed: true,
            }));
        }
        let available = self.user(entry.user_id)?.balance;
        let next = available
            .kopecks()
            .checked_add(entry.kind.signed(entry.amount))
            .ok_or(StoreError::Invalid("balance overflow".into()))?;
        let balance = Money::from_kopecks(next).map_err(|_| StoreError::InsufficientFunds {
            needed: entry.amount,
            available,
        })?;
        if balance > MAX_BALANCE {
            return Err(StoreError::Invalid(format!(
                "a balance cannot exceed {MAX_BALANCE}"
            )));
        }
        Ok(PostPlan::New { balance })
    }

    /// Appends a planned entry; infallible.
    fn commit_post(&mut self, entry: NewEntry, balance: Money) -> Posted {
        let id = i64::try_from(self.entries.len())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        let stored = LedgerEntry {
            id,
            user_id: entry.user_id,
            kind: entry.kind,
            amount: entry.amount,
            ref_type: entry.ref_type,
            ref_id: entry.ref_id,
            description: entry.description,
            idempotency_key: entry.idempotency_key,
            created_at: entry.created_at,
        };
        self.entry_by_key
            .insert(stored.idempotency_key.to_string(), self.entries.len());
        if let Some(u) = self.users.get_mut(&stored.user_id) {
            u.balance = balance;
        }
        self.entries.push(stored.clone());
        Posted {
            entry: stored,
            balance,
            replayed: false,
        }
    }

    fn post(&mut self, entry: NewEntry) -> Result<Posted, StoreError> {
        match self.plan_post(&entry)? {
            PostPlan::Replay(p) => Ok(p),
            PostPlan::New { balance } => Ok(self.commit_post(entry, balance)),
        }
    }

    /// Checks a reservation request; `Some` is a replay of the key.
    fn plan_reserve(&self, r: &NewReservation) -> Result<ReservePlan, StoreError> {
        if let Some(id) = self.reservation_by_key.get(r.idempotency_key.as_str()) {
            let first = self.reservations.get(id).ok_or_else(|| {
                StoreError::Corrupt(format!("reservation {id} indexed but missing"))
            })?;
            return if r.matches(first) {
                Ok(ReservePlan::Replay(first.clone()))
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: r.idempotency_key.to_string(),
                })
            };
        }
        if self.reservations.contains_key(&r.id) {
            return Err(StoreError::Invalid(format!(
                "reservation id {} already exists",
                r.id
            )));
        }
        match self.plan_post(&r.hold_entry())? {
            PostPlan::New { balance } => Ok(ReservePlan::New { balance }),
            PostPlan::Replay(_) => Err(StoreError::IdempotencyConflict {
                key: r.idempotency_key.to_string(),
            }),
        }
    }

    /// Writes a planned hold; infallible.
    fn commit_reserve(&mut self, r: &NewReservation, balance: Money) -> Reservation {
        self.commit_post(r.hold_entry(), balance);
        let held = r.held();
        self.reservation_by_key
            .insert(r.idempotency_key.to_string(), r.id);
        self.reservations.insert(r.id, held.clone());
        held
    }

    fn plan_settle(
        &self,
        id: ReservationId,
        how: Settlement,
        at: Timestamp,
    ) -> Result<SettlePlan, StoreError> {
        let r = self
            .reservations
            .get(&id)
            .ok_or_else(|| StoreError::NotFound(Missing::Reservation(id)))?;
        let plan = r.settle(how, at)?;
        // A refund only adds; planning it checks the key and the user.
        let refund_balance = match &plan.refund {
            Some(refund) => match self.plan_post(refund)? {
                PostPlan::New { balance } => Some(balance),
                PostPlan::Replay(_) => None,
            },
            None => None,
        };
        Ok(SettlePlan {
            plan,
            refund_balance,
        })
    }

    /// Writes a planned settlement; infallible.
    fn commit_settle(
        &mut self,
        SettlePlan {
            plan,
            refund_balance,
        }: SettlePlan,
    ) -> Reservation {
        if !plan.changed {
            return plan.reservation;
        }
        if let (Some(refund), Some(balance)) = (plan.refund, refund_balance) {
            self.commit_post(refund, balance);
        }
        self.reservations
            .insert(plan.reservation.id, plan.reservation.clone());
        plan.reservation
    }

    /// Writes a checked job transition with its settlement (of the stored job's own
    /// reservation) and audit line, all or nothing.
    fn commit_job(
        &mut self,
        t: &JobTransition,
        audit: Option<AuditRecord>,
    ) -> Result<(), StoreError> {
        let plan = match t.settlement() {
            Some(how) => {
                Some(self.plan_settle(t.before().reservation_id, how, t.after().updated_at)?)
            }
            None => None,
        };
        if let Some(plan) = plan {
            self.commit_settle(plan);
        }
        if let Some(audit) = audit {
            self.audit.push(audit);
        }
        self.jobs.insert(t.after().id, t.after().clone());
        Ok(())
    }

    fn held_total(&self, user: Option<UserId>) -> Money {
        let k: i64 = self
            .reservations
            .values()
            .filter(|r| r.state == ReservationState::Held && user.is_none_or(|u| r.user_id == u))
            .map(|r| r.amount.kopecks())
            .sum();
        Money::from_kopecks(k).unwrap_or(Money::ZERO)
    }

    fn totals(&self) -> LedgerTotals {
        let mut sums: HashMap<UserId, i64> = HashMap::new();
        let mut by_ref: HashMap<(RefType, &str), Vec<&LedgerEntry>> = HashMap::new();
        for e in &self.entries {
            *sums.entry(e.user_id).or_default() += e.signed();
            by_ref
                .entry((e.ref_type, e.ref_id.as_str()))
                .or_default()
                .push(e);
        }
        let count_sum = |entries: Option<&Vec<&LedgerEntry>>, kind: EntryKind| {
            entries.map_or((0, 0), |v| {
                let of_kind = v.iter().filter(|e| e.kind == kind);
                (
                    u32::try_from(of_kind.clone().count()).unwrap_or(u32::MAX),
                    of_kind.map(|e| e.amount.kopecks()).sum(),
                )
            })
        };
        let users = self
            .users
            .values()
            .map(|u| UserTotals {
                user_id: u.id,
                cached: u.balance.kopecks(),
                sum: sums.get(&u.id).copied().unwrap_or(0),
            })
            .collect();
        let reservations = self
            .reservations
            .values()
            .map(|r| {
                let id = r.id.to_string();
                let entries = by_ref.get(&(RefType::Reservation, id.as_str()));
                let (debit_count, debit_sum) = count_sum(entries, EntryKind::Debit);
                let (refund_count, refund_sum) = count_sum(entries, EntryKind::Refund);
                ReservationTotals {
                    reservation: r.clone(),
                    debit_count,
                    debit_sum,
                    refund_count,
                    refund_sum,
                }
            })
            .collect();
        let jobs = self
            .jobs
            .values()
            .map(|j| JobTotals {
                job_id: j.id,
                state: j.state,
                reservation_id: j.reservation_id,
                reservation_state: self.reservations.get(&j.reservation_id).map(|r| r.state),
                cost_actual: j.cost_actual.map(Money::kopecks),
                captured: self
                    .reservations
                    .get(&j.reservation_id)
                    .and_then(|r| r.captured)
                    .map(Money::kopecks),
            })
            .collect();
        let payments = self
            .payments
            .values()
            .map(|p| {
                let id = p.id.to_string();
                let (credit_count, credit_sum) = count_sum(
                    by_ref.get(&(RefType::Payment, id.as_str())),
                    EntryKind::Credit,
                );
                PaymentTotals {
                    refund_hold: p.refund_hold(),
                    payment_id: p.id,
                    state: p.state,
                    amount: p.amount.kopecks(),
                    credit_count,
                    credit_sum,
                }
            })
            .collect();
        LedgerTotals {
            entries: self.entries.len() as u64,
            users,
            reservations,
            jobs,
            payments,
        }
    }
}

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
        })
    }
}

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

#[async_trait]
impl JobStore for MemoryStore {
    async fn create_job(&self, job: NewJob, max_active: u32) -> Result<Job, StoreError> {
        let mut s = self.lock();
        if let Some(id) = s.job_by_key.get(job.idempotency_key().as_str()) {
            let first = s
                .jobs
                .get(id)
                .ok_or_else(|| StoreError::Corrupt(format!("job {id} indexed but missing")))?;
            return if job.matches(first) {
                Ok(first.clone())
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: job.idempotency_key().to_string(),
                })
            };
        }
        s.user(job.user_id())?;
        if s.jobs.contains_key(&job.id()) {
            return Err(StoreError::Invalid(format!(
                "job id {} already exists",
                job.id()
            )));
        }
        let active = s
            .jobs
            .values()
            .filter(|j| j.user_id == job.user_id() && j.state.is_active())
            .count();
        if active >= usize::try_from(max_active).unwrap_or(usize::MAX) {
            return Err(StoreError::ActiveJobLimit { limit: max_active });
        }
        let reservation = job.reservation();
        let ReservePlan::New { balance } = s.plan_reserve(&reservation)? else {
            return Err(StoreError::IdempotencyConflict {
                key: reservation.idempotency_key.to_string(),
            });
        };
        s.commit_reserve(&reservation, balance);
        let created = job.pending();
        s.job_by_key
            .insert(job.idempotency_key().to_string(), job.id());
        s.job_order.push(job.id());
        s.jobs.insert(job.id(), created.clone());
        Ok(created)
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().jobs.get(&id).cloned())
    }

    async fn write_job(&self, w: &JobWrite) -> Result<Applied, StoreError> {
        let mut s = self.lock();
        let stored = s
            .jobs
            .get(&w.job_id)
            .ok_or_else(|| StoreError::NotFound(Missing::Job(w.job_id)))?;
        let t = stored.apply(&w.event, &w.guard, w.at)?;
        if !t.changed() {
            return Ok(Applied {
                job: t.into_after(),
                changed: false,
            });
        }
        s.commit_job(&t, w.audit.clone())?;
        Ok(Applied {
            job: t.into_after(),
            changed: true,
        })
    }

    async fn claim_job(
        &self,
        target: ClaimTarget,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, StoreError> {
        let mut s = self.lock();
        let candidate = match target {
            ClaimTarget::Job(id) => s.jobs.get(&id).filter(|j| j.is_claimable(at)),
            ClaimTarget::Next => s
                .job_order
                .iter()
                .filter_map(|id| s.jobs.get(id))
                .filter(|j| j.is_claimable(at))
                .min_by_key(|j| j.run_after),
        };
        let Some(job) = candidate else {
            return Ok(None);
        };
        let event = JobEvent::Claimed {
            lease: lease.clone(),
        };
        let t = job.apply(&event, &JobGuard::Unleased, at)?;
        s.commit_job(&t, None)?;
        Ok(Some(t.into_after()))
    }

    async fn queued_jobs(&self, limit_n: u32) -> Result<Vec<JobId>, StoreError> {
        let s = self.lock();
        let mut queued: Vec<&Job> = s.jobs.values().filter(|j| j.run_after.is_some()).collect();
        queued.sort_by_key(|j| j.run_after);
        Ok(queued
            .into_iter()
            .take(limit(limit_n))
            .map(|j| j.id)
            .collect())
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let s = self.lock();
        Ok(s.jobs.values().filter(|j| j.run_after.is_some()).count() as u64)
    }

    async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        let s = self.lock();
        Ok(s.job_order
            .iter()
            .rev()
            .filter_map(|id| s.jobs.get(id))
            .filter(|j| {
                filter.state.is_none_or(|st| j.state == st)
                    && filter.user_id.is_none_or(|u| j.user_id == u)
            })
            .take(limit(filter.limit))
            .cloned()
            .collect())
    }

    async fn import_legacy_job(&self, job: &crate::legacy::LegacyJob) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.user(job.user_id)?;
        if s.legacy_jobs.contains_key(&job.id) {
            return Ok(false);
        }
        s.legacy_jobs.insert(job.id, job.clone());
        Ok(true)
    }

    async fn legacy_jobs(
        &self,
        user: UserId,
        limit_n: u32,
    ) -> Result<Vec<crate::legacy::LegacyJob>, StoreError> {
        let s = self.lock();
        let mut jobs: Vec<crate::legacy::LegacyJob> = s
            .legacy_jobs
            .values()
            .filter(|j| j.user_id == user)
            .cloned()
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        jobs.truncate(limit(limit_n));
        Ok(jobs)
    }
}

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
                    s.commit_post(entry, balance);
                    let notice = crate::ports::Notice::PaymentCredited {
                        payment_id: id,
                        amount: stored.amount,
                        balance,
                    };
                    s.queue_notice(stored.user_id, notice, at);
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
                let plan = s.plan_settle(*r, how, at)?;
                s.commit_settle(plan);
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

#[async_trait]
impl crate::ports::OutboxStore for MemoryStore {
    async fn claim_notices(
        &self,
        now: Timestamp,
        hold_for: std::time::Duration,
        limit_n: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut s = self.lock();
        let mut taken = Vec::new();
        for row in &mut s.outbox {
            if taken.len() >= limit(limit_n) {
                break;
            }
            if row.next_at.is_some_and(|at| at <= now) {
                row.next_at = Some(now.plus(hold_for));
                taken.push(row.entry.clone());
            }
        }
        Ok(taken)
    }

    async fn notice_sent(&self, id: i64, _at: Timestamp) -> Result<(), StoreError> {
        self.finish_notice(id);
        Ok(())
    }

    async fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        retry_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        if let Some(row) = s.outbox.iter_mut().find(|r| r.entry.id == id) {
            if row.next_at.is_some() {
                row.entry.attempts = attempts;
                row.next_at = Some(retry_at);
            }
        }
        Ok(())
    }

    async fn notice_given_up(&self, id: i64, _at: Timestamp) -> Result<(), StoreError> {
        self.finish_notice(id);
        Ok(())
    }

    async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let s = self.lock();
        Ok(s.outbox.iter().filter(|r| r.next_at.is_some()).count() as u64)
    }
}

impl MemoryStore {
    fn finish_notice(&self, id: i64) {
        let mut s = self.lock();
        if let Some(row) = s.outbox.iter_mut().find(|r| r.entry.id == id) {
            row.next_at = None;
        }
    }
}

#[async_trait]
impl crate::ports::LeaseStore for MemoryStore {
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let free = s
            .leases
            .get(name)
            .is_none_or(|(h, end)| h == holder || *end <= now);
        if free {
            s.leases.insert(name.to_owned(), (holder.to_owned(), until));
        }
        Ok(free)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut s = self.lock();
        if s.leases.get(name).is_some_and(|(h, _)| h == holder) {
            s.leases.remove(name);
        }
        Ok(())
    }
}

#[async_trait]
impl DialogueStore for MemoryStore {
    async fn load_dialogue(&self, user: UserId) -> Result<Option<DialogueRecord>, StoreError> {
        Ok(self.lock().dialogues.get(&user).cloned())
    }

    async fn save_dialogue(
        &self,
        user: UserId,
        state: &str,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut s = self.lock();
        s.user(user)?;
        let current = s.dialogues.get(&user).map(|d| d.version);
        if current != expected {
            return Err(StoreError::Conflict {
                what: "dialogue",
                id: user.to_string(),
            });
        }
        let version = expected.map_or(1, |v| v.wrapping_add(1));
        s.dialogue_times.insert(user, at);
        s.dialogues.insert(
            user,
            DialogueRecord {
                state: state.to_owned(),
                version,
            },
        );
        Ok(version)
    }

    async fn clear_dialogue(&self, user: UserId) -> Result<(), StoreError> {
        self.lock().dialogues.remove(&user);
        Ok(())
    }
}
