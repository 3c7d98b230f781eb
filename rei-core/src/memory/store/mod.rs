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

mod broadcasts;
mod dialogues;
mod jobs;
mod ledger;
mod outbox;
mod payments;
mod prices;
mod promos;
mod referrals;
mod users;
mod web;

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
    promos: Vec<crate::promo::Promo>,
    /// (code, user) of every redemption.
    redemptions: std::collections::HashSet<(String, UserId)>,
    /// Each user's referral code, and its owner.
    referral_codes: HashMap<UserId, crate::referral::ReferralCode>,
    referral_code_owners: HashMap<crate::referral::ReferralCode, UserId>,
    /// Referee → referrer.
    referrers: HashMap<UserId, UserId>,
    /// The reward of each referee's top-up.
    referral_rewards: HashMap<PaymentId, crate::referral::ReferralReward>,
    /// Live prices by product name.
    prices: BTreeMap<String, Money>,
    /// Live options of the offer (models off, top-up amounts).
    offer_options: BTreeMap<String, String>,
    /// Web admin sign-in links by digest: admin, expiry, used.
    web_links: BTreeMap<String, (UserId, Timestamp, bool)>,
    /// Web admin sessions by digest.
    web_sessions: BTreeMap<String, crate::web::WebSession>,
    /// Broadcasts, in creation order.
    broadcasts: Vec<broadcasts::StoredBroadcast>,
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
