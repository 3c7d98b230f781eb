//! Importing the v2.0 Python bot's data (users, ledger, jobs, payments), already read and
//! typed by an adapter, into REI's stores.
//!
//! Everything is checked before anything is written: a snapshot whose balances do not add
//! up (a running balance below zero, a paid payment without exactly one credit of its
//! amount, an entry of an unknown user, a job still running) is refused with every
//! problem named, and nothing changes. The import is idempotent: every row is written
//! under an id or key derived from its legacy id, so a second run imports nothing new;
//! a payment's credit row is written under the payment's own credit key, so it and a
//! credit REI made (webhook, poller) are one credit. Provider payment ids are kept, so a
//! late webhook for an old payment finds it paid.
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
use crate::payment::{Payment, PaymentEvent, PaymentProvider, PaymentState};
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
    /// Payments imported before as unpaid that the old bot has since seen paid:
    /// credited now, once.
    pub payments_credited: usize,
    /// Rows left as they are here, each with the reason (also those whose money is
    /// already in the ledger through another path).
    pub skipped: Vec<String>,
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

crate::opaque_debug!(ImportPorts);

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

/// Imports a checked snapshot; a second run writes nothing new. A file from an old bot
/// that ran on after an earlier import is imported too: new rows are added, and each
/// legacy ledger row and each legacy payment is credited at most once — a payment's
/// credit is one credit whichever side wrote it (REI through a webhook or the poller, or
/// the old bot's ledger row), because both are posted under the payment's own credit key.
/// What is left as it is here is listed in [`ImportReport::skipped`].
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
        import_payment(ports, p, now, &mut report).await?;
    }
    let mut entries: Vec<&LegacyEntry> = s.entries.iter().collect();
    entries.sort_by_key(|e| e.id);
    for e in entries {
        import_entry(ports, e, &mut report).await?;
    }
    for j in &s.jobs {
        report.jobs_new += usize::from(ports.jobs.import_legacy_job(j).await?);
    }
    Ok(report)
}

/// One legacy payment: new ones are inserted as they are; one imported before follows
/// the old bot only where that cannot count money twice.
async fn import_payment(
    ports: &ImportPorts,
    p: &LegacyPayment,
    now: Timestamp,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let Some(here) = ports.payments.payment(payment_id_of(p.id)).await? else {
        let payment = legacy_payment(p, now);
        report.payments_new += usize::from(ports.payments.import_payment(&payment).await?);
        return Ok(());
    };
    let ids_differ = matches!(
        (&here.provider_payment_id, &p.provider_payment_id),
        (Some(a), Some(b)) if a != b
    );
    if here.user_id != p.user_id || here.amount != p.amount || ids_differ {
        report.skipped.push(format!(
            "payment {}: not the payment imported before ({} of user {} here, {} of user {} in the file): left as it is here",
            p.id, here.amount, here.user_id, p.amount, p.user_id
        ));
        return Ok(());
    }
    let paid_in_file = matches!(p.state, PaymentState::Paid | PaymentState::Refunded);
    let event = match (here.state, p.state) {
        (a, b) if a == b => return Ok(()),
        // The old bot saw it paid after the first import: credited here now, once — its
        // own credit row, imported below, is the same credit under the same key.
        (PaymentState::Pending | PaymentState::Cancelled, _) if paid_in_file => {
            let Some(provider_payment_id) = here
                .provider_payment_id
                .clone()
                .or_else(|| p.provider_payment_id.clone())
            else {
                report.skipped.push(format!(
                    "payment {}: {} in the file but without a provider id: check it by hand",
                    p.id, p.state
                ));
                return Ok(());
            };
            PaymentEvent::ProviderSucceeded {
                provider_payment_id,
                amount: here.amount,
            }
        }
        (PaymentState::Pending, PaymentState::Cancelled) => PaymentEvent::ProviderCancelled {
            reason: Some("cancelled in the v2.0 bot".to_owned()),
        },
        (here_state, file_state) => {
            report.skipped.push(format!(
                "payment {}: {here_state} here, {file_state} in the file: left as it is here",
                p.id
            ));
            return Ok(());
        }
    };
    let transition = match here.apply(event, now) {
        Ok(t) => t,
        Err(e) => {
            report.skipped.push(format!("payment {}: {e}", p.id));
            return Ok(());
        }
    };
    let saved = ports.payments.save_payment_transition(&transition).await?;
    if transition.credits() {
        report.payments_credited += 1;
        if p.state == PaymentState::Refunded {
            report.skipped.push(format!(
                "payment {}: refunded in the v2.0 bot; paid here (its refund rows are imported): check it with `rei-cli payments reconcile`",
                p.id
            ));
        }
    } else {
        report.skipped.push(format!(
            "payment {}: now {} here, as in the file",
            p.id, saved.state
        ));
    }
    Ok(())
}

fn legacy_payment(p: &LegacyPayment, now: Timestamp) -> Payment {
    Payment {
        id: payment_id_of(p.id),
        user_id: p.user_id,
        provider: PaymentProvider::Yookassa,
        provider_payment_id: p.provider_payment_id.clone(),
        amount: p.amount,
        provider_units: None,
        state: p.state,
        confirmation_url: None,
        refund: None,
        refunded: if p.state == PaymentState::Refunded {
            p.amount
        } else {
            Money::ZERO
        },
        cancel_reason: (p.state == PaymentState::Cancelled).then(|| "legacy".to_owned()),
        version: 0,
        checks: 0,
        next_check_at: None,
        created_at: p.created_at,
        paid_at: match p.state {
            PaymentState::Paid | PaymentState::Refunded => Some(p.paid_at.unwrap_or(p.created_at)),
            PaymentState::Pending | PaymentState::Cancelled => None,
        },
        updated_at: now,
    }
}

/// One legacy ledger row, posted at most once: under its own key, or — a payment's
/// credit — under the payment's credit key, so that it and REI's credit are one.
async fn import_entry(
    ports: &ImportPorts,
    e: &LegacyEntry,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let legacy_key = IdempotencyKey::derived("legacy", &e.id, "ledger");
    let mut entry = NewEntry {
        user_id: e.user_id,
        kind: e.kind,
        amount: e.amount,
        ref_type: RefType::Admin,
        ref_id: String::new(),
        description: e.description.clone(),
        idempotency_key: legacy_key.clone(),
        created_at: e.created_at,
    };
    match &e.reference {
        LegacyRef::Payment(p) if e.kind == EntryKind::Credit => {
            // Imported under its own key by an earlier version of this import.
            if ports.ledger.entry_by_key(&legacy_key).await?.is_some() {
                return Ok(());
            }
            let payment = payment_id_of(*p);
            entry.ref_type = RefType::Payment;
            entry.ref_id = payment.to_string();
            entry.idempotency_key = Payment::credit_key(payment);
        }
        LegacyRef::Payment(p) => {
            entry.ref_type = RefType::Payment;
            entry.ref_id = payment_id_of(*p).to_string();
        }
        LegacyRef::Job(j) => {
            entry.ref_type = RefType::Job;
            entry.ref_id = format!("legacy-job-{j}");
        }
        LegacyRef::Admin(who) | LegacyRef::Other(who) => entry.ref_id = format!("legacy:{who}"),
    }
    let posted = match ports.ledger.post(entry.clone(), None).await {
        Ok(posted) => posted,
        // The key holds another operation: this row's money is not what was credited.
        Err(StoreError::IdempotencyConflict { .. }) => {
            report.skipped.push(format!(
                "ledger row {}: its key is taken by another entry: check it by hand",
                e.id
            ));
            return Ok(());
        }
        Err(other) => return Err(other.into()),
    };
    if !posted.replayed {
        report.entries_new += 1;
    } else if posted.entry.description != e.description || posted.entry.created_at != e.created_at {
        // Not this row posted before, but the same credit written by REI.
        report.skipped.push(format!(
            "ledger row {}: the credit of payment {} is already in the ledger (credited here): not credited twice",
            e.id, posted.entry.ref_id
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
