//! The whole-ledger invariant check, as a pure function over totals every store can
//! compute (`rei-cli ledger verify`). One implementation, so every backend means the
//! same thing by "sound".

use crate::ids::{JobId, PaymentId, ReservationId, UserId};
use crate::job::JobState;
use serde::{Deserialize, Serialize};

use crate::ledger::{Reservation, ReservationState};
use crate::payment::PaymentState;

/// One broken invariant found by a ledger verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Violation {
    /// The cached balance differs from the sum of entries.
    CachedBalanceMismatch {
        /// The user.
        user_id: UserId,
        /// Cached value, kopecks.
        cached: i64,
        /// Sum of entries, kopecks.
        sum: i64,
    },
    /// The sum of a user's entries is negative.
    NegativeBalance {
        /// The user.
        user_id: UserId,
        /// Sum of entries, kopecks.
        sum: i64,
    },
    /// A job in a final state whose reservation is still held, or an active job whose
    /// reservation is settled or missing.
    DanglingReservation {
        /// The reservation.
        reservation_id: ReservationId,
        /// Its job, if any.
        job_id: Option<JobId>,
        /// What is wrong, in words.
        detail: String,
    },
    /// A reservation whose entries do not match its state (e.g. two settlements).
    SettlementMismatch {
        /// The reservation.
        reservation_id: ReservationId,
        /// What is wrong, in words.
        detail: String,
    },
    /// A paid payment without exactly one credit, or a credit without a paid payment.
    PaymentCreditMismatch {
        /// The payment.
        payment_id: String,
        /// What is wrong, in words.
        detail: String,
    },
    /// A completed job whose `cost_actual` is not what its reservation captured.
    JobCostMismatch {
        /// The job.
        job_id: JobId,
        /// What the job says it charged, kopecks.
        cost_actual: Option<i64>,
        /// What the reservation captured, kopecks.
        captured: Option<i64>,
    },
}

/// The result of checking every ledger invariant across a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Users checked.
    pub users_checked: u64,
    /// Entries summed.
    pub entries_checked: u64,
    /// Reservations checked.
    pub reservations_checked: u64,
    /// Everything found wrong; empty means the ledger is sound.
    pub violations: Vec<Violation>,
}

impl VerifyReport {
    /// True when no invariant is broken.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// A user's cached balance and the sum of their entries, in kopecks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserTotals {
    /// The user.
    pub user_id: UserId,
    /// The cached balance.
    pub cached: i64,
    /// The sum of their entries.
    pub sum: i64,
}

/// A reservation and the entries that refer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationTotals {
    /// The reservation.
    pub reservation: Reservation,
    /// Debit entries (the hold): must be exactly one, of the reservation's amount.
    pub debit_count: u32,
    /// Their sum.
    pub debit_sum: i64,
    /// Refund entries: none while held, one for a release or a cheaper capture.
    pub refund_count: u32,
    /// Their sum.
    pub refund_sum: i64,
}

/// A job and the state of its reservation (`None`: the reservation is missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobTotals {
    /// The job.
    pub job_id: JobId,
    /// Its state.
    pub state: JobState,
    /// Its reservation.
    pub reservation_id: ReservationId,
    /// The reservation's state, if it exists.
    pub reservation_state: Option<ReservationState>,
    /// What the job says it charged (`cost_actual`), kopecks.
    pub cost_actual: Option<i64>,
    /// What its reservation captured, kopecks.
    pub captured: Option<i64>,
}

/// A payment and its credit entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentTotals {
    /// The payment.
    pub payment_id: PaymentId,
    /// Its state.
    pub state: PaymentState,
    /// Its amount in kopecks.
    pub amount: i64,
    /// Credit entries referring to it.
    pub credit_count: u32,
    /// Their sum.
    pub credit_sum: i64,
    /// The hold of a refund under way, if any.
    pub refund_hold: Option<ReservationId>,
}

/// Everything a store gathers for a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    /// Entries summed.
    pub entries: u64,
    /// Per user.
    pub users: Vec<UserTotals>,
    /// Per reservation.
    pub reservations: Vec<ReservationTotals>,
    /// Per job.
    pub jobs: Vec<JobTotals>,
    /// Per payment.
    pub payments: Vec<PaymentTotals>,
}

/// Checks every invariant and lists what is broken.
#[must_use]
pub fn check(totals: &LedgerTotals) -> VerifyReport {
    let mut violations = Vec::new();
    for u in &totals.users {
        if u.cached != u.sum {
            violations.push(Violation::CachedBalanceMismatch {
                user_id: u.user_id,
                cached: u.cached,
                sum: u.sum,
            });
        }
        if u.sum < 0 {
            violations.push(Violation::NegativeBalance {
                user_id: u.user_id,
                sum: u.sum,
            });
        }
    }
    for t in &totals.reservations {
        if let Some(detail) = reservation_problem(t) {
            violations.push(Violation::SettlementMismatch {
                reservation_id: t.reservation.id,
                detail,
            });
        }
    }
    for j in &totals.jobs {
        let expected = match j.state {
            JobState::Pending | JobState::Processing => ReservationState::Held,
            JobState::Completed => ReservationState::Captured,
            JobState::Failed | JobState::Cancelled => ReservationState::Released,
        };
        let detail = match j.reservation_state {
            None => Some(format!("job is {} but its reservation is missing", j.state)),
            Some(actual) if actual != expected => Some(format!(
                "job is {} but its reservation is {actual}",
                j.state
            )),
            Some(_) => None,
        };
        if let Some(detail) = detail {
            violations.push(Violation::DanglingReservation {
                reservation_id: j.reservation_id,
                job_id: Some(j.job_id),
                detail,
            });
        }
        if j.state == JobState::Completed && j.cost_actual != j.captured {
            violations.push(Violation::JobCostMismatch {
                job_id: j.job_id,
                cost_actual: j.cost_actual,
                captured: j.captured,
            });
        }
    }
    // A refund hold (keyed in the reserved `payment:` namespace) must belong to a paid
    // payment's refund under way; one that no payment names is money held for nothing,
    // e.g. orphaned by a crash between placing it and recording it on the payment.
    // (Other job-less holds are an embedder's own use of `LedgerStore::reserve`.)
    let refund_holds: std::collections::HashSet<ReservationId> = totals
        .payments
        .iter()
        .filter(|p| p.state == PaymentState::Paid)
        .filter_map(|p| p.refund_hold)
        .collect();
    for t in &totals.reservations {
        let r = &t.reservation;
        let refund_hold = r.job_id.is_none() && r.idempotency_key.as_str().starts_with("payment:");
        if r.state == ReservationState::Held && refund_hold && !refund_holds.contains(&r.id) {
            violations.push(Violation::DanglingReservation {
                reservation_id: r.id,
                job_id: None,
                detail: "refund hold that no paid payment names".to_owned(),
            });
        }
    }
    for p in &totals.payments {
        let credited = matches!(p.state, PaymentState::Paid | PaymentState::Refunded);
        let detail = match (credited, p.credit_count) {
            (true, 1) if p.credit_sum == p.amount => None,
            (true, 1) => Some(format!(
                "credited {} kopecks for a payment of {}",
                p.credit_sum, p.amount
            )),
            (true, n) => Some(format!("payment is {} with {n} credits", p.state)),
            (false, 0) => None,
            (false, n) => Some(format!("payment is {} but has {n} credits", p.state)),
        };
        if let Some(detail) = detail {
            violations.push(Violation::PaymentCreditMismatch {
                payment_id: p.payment_id.to_string(),
                detail,
            });
        }
    }
    VerifyReport {
        users_checked: totals.users.len() as u64,
        entries_checked: totals.entries,
        reservations_checked: totals.reservations.len() as u64,
        violations,
    }
}

fn reservation_problem(t: &ReservationTotals) -> Option<String> {
    let r = &t.reservation;
    let amount = r.amount.kopecks();
    if t.debit_count != 1 || t.debit_sum != amount {
        return Some(format!(
            "{} hold entries summing {} for a hold of {amount}",
            t.debit_count, t.debit_sum
        ));
    }
    let expected_refund = match (r.state, r.captured) {
        (ReservationState::Held, _) => 0,
        (ReservationState::Released, _) => amount,
        (ReservationState::Captured, Some(actual)) => amount - actual.kopecks(),
        (ReservationState::Captured, None) => {
            return Some("captured without an actual cost".to_owned());
        }
    };
    let expected_count = u32::from(expected_refund > 0);
    if t.refund_count != expected_count || t.refund_sum != expected_refund {
        return Some(format!(
            "{} reservation has {} refunds summing {}, expected {expected_count} summing {expected_refund}",
            r.state, t.refund_count, t.refund_sum
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::ids::IdempotencyKey;
    use crate::money::Money;
    use crate::time::Timestamp;

    fn user() -> UserId {
        UserId::new(1).unwrap()
    }

    fn reservation(state: ReservationState, captured: Option<i64>) -> Reservation {
        Reservation {
            id: ReservationId::from_uuid(Uuid::from_u128(7)),
            user_id: user(),
            amount: Money::from_kopecks(100).unwrap(),
            state,
            captured: captured.map(|c| Money::from_kopecks(c).unwrap()),
            job_id: Some(JobId::from_uuid(Uuid::from_u128(8))),
            description: "d".into(),
            idempotency_key: IdempotencyKey::new("k").unwrap(),
            created_at: Timestamp::from_millis(0),
            settled_at: (state != ReservationState::Held).then(|| Timestamp::from_millis(1)),
        }
    }

    /// A sound store: one user with 100 credited, a captured job of 60 (40 refunded).
    fn sound() -> LedgerTotals {
        LedgerTotals {
            entries: 3,
            users: vec![UserTotals {
                user_id: user(),
                cached: 40,
                sum: 40,
            }],
            reservations: vec![ReservationTotals {
                reservation: reservation(ReservationState::Captured, Some(60)),
                debit_count: 1,
                debit_sum: 100,
                refund_count: 1,
                refund_sum: 40,
            }],
            jobs: vec![JobTotals {
                job_id: JobId::from_uuid(Uuid::from_u128(8)),
                state: JobState::Completed,
                reservation_id: ReservationId::from_uuid(Uuid::from_u128(7)),
                reservation_state: Some(ReservationState::Captured),
                cost_actual: Some(60),
                captured: Some(60),
            }],
            payments: vec![PaymentTotals {
                payment_id: PaymentId::from_uuid(Uuid::from_u128(9)),
                state: PaymentState::Paid,
                amount: 100,
                credit_count: 1,
                credit_sum: 100,
                refund_hold: None,
            }],
        }
    }

    fn kinds(totals: &LedgerTotals) -> Vec<&'static str> {
        check(totals)
            .violations
            .iter()
            .map(|v| match v {
                Violation::CachedBalanceMismatch { .. } => "cached_balance",
                Violation::NegativeBalance { .. } => "negative_balance",
                Violation::DanglingReservation { .. } => "dangling_reservation",
                Violation::SettlementMismatch { .. } => "settlement_mismatch",
                Violation::PaymentCreditMismatch { .. } => "payment_credit",
                Violation::JobCostMismatch { .. } => "job_cost",
            })
            .collect()
    }

    fn check_one(corrupt: impl FnOnce(&mut LedgerTotals), expected: &[&str]) {
        let mut t = sound();
        corrupt(&mut t);
        assert_eq!(kinds(&t), expected);
    }

    #[test]
    fn a_sound_store_has_no_violation() {
        assert!(check(&sound()).is_ok());
    }

    #[test]
    fn a_cached_balance_that_is_not_the_sum_is_reported() {
        check_one(|t| t.users[0].cached = 41, &["cached_balance"]);
    }

    #[test]
    fn a_negative_sum_is_reported() {
        check_one(
            |t| {
                t.users[0].cached = -1;
                t.users[0].sum = -1;
            },
            &["negative_balance"],
        );
    }

    #[test]
    fn a_second_refund_of_a_reservation_is_a_settlement_mismatch() {
        check_one(
            |t| {
                t.reservations[0].refund_count = 2;
                t.reservations[0].refund_sum = 80;
            },
            &["settlement_mismatch"],
        );
        check_one(
            |t| t.reservations[0].debit_count = 0,
            &["settlement_mismatch"],
        );
    }

    #[test]
    fn a_finished_job_whose_hold_is_still_held_is_dangling() {
        check_one(
            |t| t.jobs[0].reservation_state = Some(ReservationState::Held),
            &["dangling_reservation"],
        );
        check_one(
            |t| t.jobs[0].reservation_state = None,
            &["dangling_reservation"],
        );
    }

    #[test]
    fn a_paid_payment_without_exactly_one_credit_is_reported() {
        check_one(|t| t.payments[0].credit_count = 2, &["payment_credit"]);
        check_one(|t| t.payments[0].credit_sum = 90, &["payment_credit"]);
        check_one(
            |t| {
                t.payments[0].state = PaymentState::Cancelled;
            },
            &["payment_credit"],
        );
    }

    #[test]
    fn a_job_that_charged_other_than_its_capture_is_reported() {
        check_one(|t| t.jobs[0].cost_actual = Some(50), &["job_cost"]);
        check_one(|t| t.jobs[0].captured = None, &["job_cost"]);
    }
}
