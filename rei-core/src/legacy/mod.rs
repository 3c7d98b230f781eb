//! Importing the v2.0 Python bot's data (users, ledger, jobs, payments), already read and
//! typed by an adapter, into REI's stores.
//!
//! Everything is checked before anything is written: a snapshot whose balances do not add
//! up (a running balance below zero, a paid payment without exactly one credit of its
//! amount, an entry of an unknown user, a job still running) is refused with every
//! problem named, and nothing changes. The import is idempotent: every row is written
//! under an id or key derived from its legacy id, so a second run imports nothing new.
//! Provider payment ids are kept, so a late webhook for an old payment finds it paid.
//!
//! Mapping: legacy entries keep their kind, amount and time; `payment` entries refer to
//! the imported payment; `job` and `reservation` entries (the legacy bot debited and
//! refunded jobs directly) refer to the imported job. Legacy jobs are kept as history
//! (`legacy_jobs`), outside REI's job queue: their money is already in the ledger.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use crate::ids::{IdempotencyKey, PaymentId, UserId};
use crate::ledger::{EntryKind, NewEntry, RefType};
use crate::money::Money;
use crate::payment::{Payment, PaymentProvider, PaymentState};
use crate::ports::{JobStore, LedgerStore, PaymentStore, StoreError, UserStore};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord, Language, UserProfile};

/// A legacy user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyUser {
    /// Telegram id.
    pub id: UserId,
    /// @username.
    pub username: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Banned in the old bot.
    pub banned: bool,
    /// Registered.
    pub created_at: Timestamp,
}

/// What a legacy entry refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegacyRef {
    /// A legacy payment, by its legacy id.
    Payment(i64),
    /// A legacy job, by its legacy id (`job` and `reservation` entries).
    Job(i64),
    /// An admin adjustment (the legacy `ref_id`, e.g. the admin's id).
    Admin(String),
    /// Anything else (kept as text).
    Other(String),
}

/// A legacy ledger entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyEntry {
    /// Legacy id (entries are applied in this order).
    pub id: i64,
    /// Whose.
    pub user_id: UserId,
    /// Credit, debit or refund.
    pub kind: EntryKind,
    /// Positive.
    pub amount: Money,
    /// What it refers to.
    pub reference: LegacyRef,
    /// Why.
    pub description: String,
    /// When.
    pub created_at: Timestamp,
}

/// A legacy payment (YooKassa).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyPayment {
    /// Legacy id.
    pub id: i64,
    /// YooKassa's id, if any.
    pub provider_payment_id: Option<String>,
    /// Who paid.
    pub user_id: UserId,
    /// How much.
    pub amount: Money,
    /// Where it ended.
    pub state: PaymentState,
    /// When.
    pub created_at: Timestamp,
    /// When paid.
    pub paid_at: Option<Timestamp>,
}

/// A legacy job, kept as history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LegacyJob {
    /// Legacy id.
    pub id: i64,
    /// Whose.
    pub user_id: UserId,
    /// `image_generation`, `image_edit`, `video_generation`.
    pub kind: String,
    /// `pending`, `processing`, `completed`, `failed`, `cancelled`.
    pub status: String,
    /// The legacy `params` JSON, as text.
    pub params: String,
    /// Where the result was.
    pub result_url: Option<String>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// The estimate.
    pub cost_estimate: Option<Money>,
    /// What was charged.
    pub cost_actual: Option<Money>,
    /// When created.
    pub created_at: Timestamp,
    /// When finished.
    pub completed_at: Option<Timestamp>,
}

/// Everything read from a legacy file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegacySnapshot {
    /// Users.
    pub users: Vec<LegacyUser>,
    /// Ledger entries.
    pub entries: Vec<LegacyEntry>,
    /// Payments.
    pub payments: Vec<LegacyPayment>,
    /// Jobs.
    pub jobs: Vec<LegacyJob>,
}

/// What a run imported (0 everywhere on a second run).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Users in the file, and those new here.
    pub users: usize,
    /// New users.
    pub users_new: usize,
    /// Ledger entries in the file.
    pub entries: usize,
    /// New entries.
    pub entries_new: usize,
    /// Payments in the file.
    pub payments: usize,
    /// New payments.
    pub payments_new: usize,
    /// Jobs in the file.
    pub jobs: usize,
    /// New jobs.
    pub jobs_new: usize,
    /// The sum of the imported users' balances, kopecks.
    pub balances_total: Money,
}

/// Why an import was refused (nothing was written) or failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file does not add up; each problem names its table and row.
    #[error("the legacy data does not add up ({} problem(s)): {}", .0.len(), .0.join("; "))]
    Inconsistent(Vec<String>),
    /// The store failed (the import can be run again: it continues where it stopped).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The id a legacy row gets here: a fixed prefix (`1e6ac1`…) and the legacy id.
fn legacy_uuid(kind: u8, id: i64) -> Uuid {
    let id = u128::from(id.unsigned_abs());
    Uuid::from_u128((0x1e6a_c100_u128 << 96) | (u128::from(kind) << 88) | id)
}

/// Our id of a legacy payment.
#[must_use]
pub fn payment_id_of(legacy_id: i64) -> PaymentId {
    PaymentId::from_uuid(legacy_uuid(1, legacy_id))
}

/// The stores an import writes to.
#[derive(Clone)]
pub struct ImportPorts {
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// The ledger.
    pub ledger: Arc<dyn LedgerStore>,
    /// Payments.
    pub payments: Arc<dyn PaymentStore>,
    /// Jobs (legacy history).
    pub jobs: Arc<dyn JobStore>,
}

impl std::fmt::Debug for ImportPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImportPorts")
    }
}

/// Checks a snapshot: every problem found, or the final balance of each user.
///
/// # Errors
/// [`ImportError::Inconsistent`] naming every problem.
pub fn check(s: &LegacySnapshot) -> Result<BTreeMap<UserId, Money>, ImportError> {
    let mut problems = Vec::new();
    let users: HashSet<UserId> = s.users.iter().map(|u| u.id).collect();
    let payments: HashMap<i64, &LegacyPayment> = s.payments.iter().map(|p| (p.id, p)).collect();
    let jobs: HashSet<i64> = s.jobs.iter().map(|j| j.id).collect();
    let mut balances: BTreeMap<UserId, Money> = users.iter().map(|u| (*u, Money::ZERO)).collect();
    let mut entries: Vec<&LegacyEntry> = s.entries.iter().collect();
    entries.sort_by_key(|e| e.id);
    let mut credits: HashMap<i64, Vec<Money>> = HashMap::new();
    for e in entries {
        let Some(balance) = balances.get_mut(&e.user_id) else {
            problems.push(format!(
                "ledger row {}: user {} is not in users",
                e.id, e.user_id
            ));
            continue;
        };
        match &e.reference {
            LegacyRef::Payment(p) if !payments.contains_key(p) => problems.push(format!(
                "ledger row {}: payment {p} is not in payments",
                e.id
            )),
            LegacyRef::Payment(p) if e.kind == EntryKind::Credit => {
                credits.entry(*p).or_default().push(e.amount);
            }
            LegacyRef::Job(j) if !jobs.contains(j) => {
                problems.push(format!("ledger row {}: job {j} is not in jobs", e.id));
            }
            _ => {}
        }
        let next = match e.kind {
            EntryKind::Credit | EntryKind::Refund => balance.checked_add(e.amount),
            EntryKind::Debit => balance.checked_sub(e.amount),
        };
        match next {
            Some(b) => *balance = b,
            None => problems.push(format!(
                "ledger row {} (user {}): the balance {} cannot take {} {} — it would go below zero",
                e.id,
                e.user_id,
                balance,
                e.kind,
                e.amount
            )),
        }
    }
    for p in &s.payments {
        if !users.contains(&p.user_id) {
            problems.push(format!(
                "payment {}: user {} is not in users",
                p.id, p.user_id
            ));
        }
        let found = credits.get(&p.id).map_or(&[][..], Vec::as_slice);
        let paid = matches!(p.state, PaymentState::Paid | PaymentState::Refunded);
        match (paid, found) {
            (true, [one]) if *one == p.amount => {}
            (true, []) => problems.push(format!(
                "payment {} is {} but the ledger has no credit for it",
                p.id, p.state
            )),
            (true, many) => problems.push(format!(
                "payment {} of {} has {} credit(s) in the ledger: {}",
                p.id,
                p.amount,
                many.len(),
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            (false, []) => {}
            (false, _) => problems.push(format!(
                "payment {} is {} but the ledger credits it",
                p.id, p.state
            )),
        }
    }
    let mut seen_provider_ids = HashSet::new();
    for p in &s.payments {
        if let Some(id) = &p.provider_payment_id {
            if !seen_provider_ids.insert(id) {
                problems.push(format!("payment {}: provider id {id} appears twice", p.id));
            }
        }
    }
    for j in &s.jobs {
        if !users.contains(&j.user_id) {
            problems.push(format!("job {}: user {} is not in users", j.id, j.user_id));
        }
        if matches!(j.status.as_str(), "pending" | "processing") {
            problems.push(format!(
                "job {} is still {}: stop the old bot and let its jobs finish first",
                j.id, j.status
            ));
        }
    }
    if problems.is_empty() {
        Ok(balances)
    } else {
        Err(ImportError::Inconsistent(problems))
    }
}

/// Imports a checked snapshot; a second run writes nothing new.
///
/// # Errors
/// [`ImportError::Inconsistent`] (nothing written), [`ImportError::Store`].
pub async fn import(
    ports: &ImportPorts,
    s: &LegacySnapshot,
    actor: Actor,
    now: Timestamp,
) -> Result<ImportReport, ImportError> {
    let balances = check(s)?;
    // A payment imported before must be exactly as the file says now: a payment that
    // moved on since (paid in the old bot after the first import, or here through a
    // webhook) would otherwise be credited twice, once by each path.
    let mut changed = Vec::new();
    for p in &s.payments {
        if let Some(existing) = ports.payments.payment(payment_id_of(p.id)).await? {
            let same = existing.state == p.state
                && existing.amount == p.amount
                && existing.provider_payment_id == p.provider_payment_id
                && existing.user_id == p.user_id;
            if !same {
                changed.push(format!(
                    "payment {} changed since it was imported ({} {} here, {} {} in the file)",
                    p.id, existing.state, existing.amount, p.state, p.amount
                ));
            }
        }
    }
    if !changed.is_empty() {
        return Err(ImportError::Inconsistent(changed));
    }
    let mut report = ImportReport {
        users: s.users.len(),
        entries: s.entries.len(),
        payments: s.payments.len(),
        jobs: s.jobs.len(),
        balances_total: balances
            .values()
            .try_fold(Money::ZERO, |a, b| a.checked_add(*b))
            .unwrap_or(Money::ZERO),
        ..ImportReport::default()
    };
    for u in &s.users {
        let profile = UserProfile {
            id: u.id,
            username: u.username.clone(),
            first_name: u.first_name.clone(),
            language: Language::Ru,
        };
        let (user, new) = ports.users.register(profile, u.created_at).await?;
        report.users_new += usize::from(new);
        if new && u.banned && !user.is_banned {
            let audit = AuditRecord {
                actor: actor.clone(),
                action: AuditAction::Ban,
                target_user: Some(u.id),
                amount: None,
                reason: "banned in the v2.0 bot (import-legacy)".into(),
                created_at: now,
            };
            ports.users.set_banned(u.id, true, audit).await?;
        }
    }
    for p in &s.payments {
        let payment = Payment {
            id: payment_id_of(p.id),
            user_id: p.user_id,
            provider: PaymentProvider::Yookassa,
            provider_payment_id: p.provider_payment_id.clone(),
            amount: p.amount,
            provider_units: None,
            state: p.state,
            confirmation_url: None,
            refund_reservation_id: None,
            refund_id: None,
            cancel_reason: (p.state == PaymentState::Cancelled).then(|| "legacy".to_owned()),
            version: 0,
            checks: 0,
            next_check_at: None,
            created_at: p.created_at,
            paid_at: match p.state {
                PaymentState::Paid | PaymentState::Refunded => {
                    Some(p.paid_at.unwrap_or(p.created_at))
                }
                PaymentState::Pending | PaymentState::Cancelled => None,
            },
            updated_at: now,
        };
        report.payments_new += usize::from(ports.payments.import_payment(&payment).await?);
    }
    let mut entries: Vec<&LegacyEntry> = s.entries.iter().collect();
    entries.sort_by_key(|e| e.id);
    for e in entries {
        let (ref_type, ref_id) = match &e.reference {
            LegacyRef::Payment(p) => (RefType::Payment, payment_id_of(*p).to_string()),
            LegacyRef::Job(j) => (RefType::Job, format!("legacy-job-{j}")),
            LegacyRef::Admin(who) => (RefType::Admin, format!("legacy:{who}")),
            LegacyRef::Other(what) => (RefType::Admin, format!("legacy:{what}")),
        };
        let posted = ports
            .ledger
            .post(
                NewEntry {
                    user_id: e.user_id,
                    kind: e.kind,
                    amount: e.amount,
                    ref_type,
                    ref_id,
                    description: e.description.clone(),
                    idempotency_key: IdempotencyKey::derived("legacy", &e.id, "ledger"),
                    created_at: e.created_at,
                },
                None,
            )
            .await?;
        report.entries_new += usize::from(!posted.replayed);
    }
    for j in &s.jobs {
        report.jobs_new += usize::from(ports.jobs.import_legacy_job(j).await?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
