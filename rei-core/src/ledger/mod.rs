//! The ledger: an append-only list of entries per user, and reservations on it.
//!
//! A user's balance is the sum of their entries (credits and refunds add, debits
//! subtract). A reservation is a debit with `ref_type = reservation`, so the available
//! balance drops at once; it is then settled exactly once: captured (the actual cost is
//! recorded and any difference to the hold refunded) or released (the hold refunded).

pub mod service;
pub mod verify;

pub use verify::{VerifyReport, Violation};

use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, JobId, ReservationId, UserId};
use crate::money::Money;
use crate::time::Timestamp;

pub use service::{LedgerError, LedgerService};

/// The largest balance (and entry) a store accepts: 10 000 000 000 000 ₽ in kopecks.
/// Far above any real balance, and far enough below `i64::MAX` that no sum of two
/// overflows; the SQL schemas carry the same bound as a CHECK.
pub const MAX_BALANCE: Money = Money::from_nonnegative_const(1_000_000_000_000_000);

/// Direction of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Money in (top-up, admin credit).
    Credit,
    /// Money out (reservation, admin debit, payment refund).
    Debit,
    /// Money back (released or partly captured reservation).
    Refund,
}

/// What an entry refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefType {
    /// A top-up payment (`ref_id` = payment id).
    Payment,
    /// A generation job (`ref_id` = job id).
    Job,
    /// An admin adjustment (`ref_id` = admin actor).
    Admin,
    /// A reservation and its settlement (`ref_id` = reservation id).
    Reservation,
    /// A gift of the bot: the signup bonus (`ref_id` = what it is for, e.g. `signup`).
    Bonus,
    /// A reward for a referred user's top-up, or its reversal (`ref_id` = the payment).
    Referral,
    /// A promo code's credit (`ref_id` = the code).
    Promo,
}

macro_rules! text_codes {
    ($ty:ident { $($variant:ident => $code:literal),+ $(,)? }) => {
        impl $ty {
            /// The stable text code stored in databases.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code),+ }
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::ledger::UnknownCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($code => Ok(Self::$variant),)+
                    other => Err($crate::ledger::UnknownCode { what: stringify!($ty), code: other.to_owned() }),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_codes;

/// A stored text code that names no known variant (a corrupt or newer database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} code `{code}`")]
pub struct UnknownCode {
    /// The type whose code it should be.
    pub what: &'static str,
    /// The text found.
    pub code: String,
}

text_codes!(EntryKind { Credit => "credit", Debit => "debit", Refund => "refund" });
text_codes!(RefType { Payment => "payment", Job => "job", Admin => "admin", Reservation => "reservation", Bonus => "bonus", Referral => "referral", Promo => "promo" });
text_codes!(ReservationState { Held => "held", Captured => "captured", Released => "released" });

impl EntryKind {
    /// The signed effect of `amount` on a balance, in kopecks.
    #[must_use]
    pub const fn signed(self, amount: Money) -> i64 {
        match self {
            Self::Credit | Self::Refund => amount.kopecks(),
            Self::Debit => -amount.kopecks(),
        }
    }
}

/// One line of the ledger, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Store-assigned, increasing id.
    pub id: i64,
    /// Whose balance it changes.
    pub user_id: UserId,
    /// Credit, debit or refund.
    pub kind: EntryKind,
    /// Always positive; the sign comes from `kind`.
    pub amount: Money,
    /// What it refers to.
    pub ref_type: RefType,
    /// Id of what it refers to.
    pub ref_id: String,
    /// Human-readable reason.
    pub description: String,
    /// The key that made it; unique across the ledger.
    pub idempotency_key: IdempotencyKey,
    /// When it was posted.
    pub created_at: Timestamp,
}

impl LedgerEntry {
    /// The signed effect on the balance, in kopecks.
    #[must_use]
    pub const fn signed(&self) -> i64 {
        self.kind.signed(self.amount)
    }
}

/// An entry to post. `amount` must be positive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    /// Whose balance it changes.
    pub user_id: UserId,
    /// Credit, debit or refund.
    pub kind: EntryKind,
    /// Positive amount.
    pub amount: Money,
    /// What it refers to.
    pub ref_type: RefType,
    /// Id of what it refers to.
    pub ref_id: String,
    /// Human-readable reason.
    pub description: String,
    /// Repeating a post with this key returns the first result and posts nothing.
    pub idempotency_key: IdempotencyKey,
    /// When it is posted.
    pub created_at: Timestamp,
}

impl NewEntry {
    /// True when `entry` is what this request would have posted (same user, kind, amount
    /// and reference): a replay, not a conflicting reuse of the key.
    #[must_use]
    pub fn matches(&self, entry: &LedgerEntry) -> bool {
        entry.user_id == self.user_id
            && entry.kind == self.kind
            && entry.amount == self.amount
            && entry.ref_type == self.ref_type
            && entry.ref_id == self.ref_id
    }
}

/// The result of a post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The entry (the first one, on a replay).
    pub entry: LedgerEntry,
    /// The user's balance after this call.
    pub balance: Money,
    /// True when the key had been used before and nothing was posted now.
    pub replayed: bool,
}

/// A user's money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Balance {
    /// What can be spent now: the sum of all entries (holds already subtracted).
    pub available: Money,
    /// What is held by unsettled reservations (already subtracted from `available`).
    pub held: Money,
}

/// Where a reservation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Money held, not yet settled.
    Held,
    /// Settled: the work was done and paid for.
    Captured,
    /// Settled: the hold was given back.
    Released,
}

/// A hold on a user's balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// Whose money is held.
    pub user_id: UserId,
    /// How much is held (positive).
    pub amount: Money,
    /// Held, captured or released.
    pub state: ReservationState,
    /// The actual cost, once captured.
    pub captured: Option<Money>,
    /// The job it pays for, if any.
    pub job_id: Option<JobId>,
    /// Free text shown in history.
    pub description: String,
    /// The key that created it.
    pub idempotency_key: IdempotencyKey,
    /// When it was placed.
    pub created_at: Timestamp,
    /// When it was settled.
    pub settled_at: Option<Timestamp>,
}

/// A request to hold money.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReservation {
    /// Its id (used when the key is new).
    pub id: ReservationId,
    /// Whose money to hold.
    pub user_id: UserId,
    /// How much (positive).
    pub amount: Money,
    /// The job it pays for, if any.
    pub job_id: Option<JobId>,
    /// Free text shown in history.
    pub description: String,
    /// Repeating with this key returns the first reservation and holds nothing more.
    pub idempotency_key: IdempotencyKey,
    /// When.
    pub created_at: Timestamp,
}

impl NewReservation {
    /// The debit entry that places this hold.
    #[must_use]
    pub fn hold_entry(&self) -> NewEntry {
        NewEntry {
            user_id: self.user_id,
            kind: EntryKind::Debit,
            amount: self.amount,
            ref_type: RefType::Reservation,
            ref_id: self.id.to_string(),
            description: self.description.clone(),
            idempotency_key: self.idempotency_key.clone(),
            created_at: self.created_at,
        }
    }

    /// The reservation as it is right after placing.
    #[must_use]
    pub fn held(&self) -> Reservation {
        Reservation {
            id: self.id,
            user_id: self.user_id,
            amount: self.amount,
            state: ReservationState::Held,
            captured: None,
            job_id: self.job_id,
            description: self.description.clone(),
            idempotency_key: self.idempotency_key.clone(),
            created_at: self.created_at,
            settled_at: None,
        }
    }

    /// True when `r` is what this request would have created (a replay).
    #[must_use]
    pub fn matches(&self, r: &Reservation) -> bool {
        r.user_id == self.user_id && r.amount == self.amount && r.job_id == self.job_id
    }
}

/// How a reservation is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settlement {
    /// The work was done; `actual` (≤ the hold) is kept and the rest refunded.
    Capture {
        /// The actual cost.
        actual: Money,
    },
    /// The work was not done; the whole hold is refunded.
    Release,
}

/// Why a settlement is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// The reservation was already settled the other way (or captured at another cost).
    #[error("reservation {id} is already {state}")]
    AlreadySettled {
        /// The reservation.
        id: ReservationId,
        /// How it was settled.
        state: ReservationState,
    },
    /// The reservation pays for something else (a job, a payment's refund): it is
    /// settled only with that, by the job's or the payment's own transition.
    #[error("reservation {id} belongs to {owner}: it is settled only with it")]
    BelongsElsewhere {
        /// The reservation.
        id: ReservationId,
        /// What it belongs to (`job …`, `payment …`).
        owner: String,
    },
    /// A capture asked for more than was held.
    #[error("cannot capture {actual} from a hold of {held}")]
    CaptureExceedsHold {
        /// Requested cost.
        actual: Money,
        /// What is held.
        held: Money,
    },
}

/// The outcome of settling: the new reservation and the refund entry to post, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementPlan {
    /// The reservation after settlement.
    pub reservation: Reservation,
    /// The refund to post with it (none for a full capture or a repeated settlement).
    pub refund: Option<NewEntry>,
    /// False when the reservation was already settled this way: nothing to write.
    pub changed: bool,
}

impl Reservation {
    /// Plans a settlement: a pure function, the store writes the result atomically.
    ///
    /// Settling a reservation again the same way (same capture cost, or release after
    /// release) is `Ok` with nothing to write; settling it differently is an error.
    ///
    /// # Errors
    /// [`SettlementError`] when already settled differently or capturing too much.
    pub fn settle(
        &self,
        how: Settlement,
        at: Timestamp,
    ) -> Result<SettlementPlan, SettlementError> {
        let unchanged = || SettlementPlan {
            reservation: self.clone(),
            refund: None,
            changed: false,
        };
        let already = || SettlementError::AlreadySettled {
            id: self.id,
            state: self.state,
        };
        match (self.state, how) {
            (ReservationState::Held, Settlement::Capture { actual }) => {
                let Some(refund) = self.amount.checked_sub(actual) else {
                    return Err(SettlementError::CaptureExceedsHold {
                        actual,
                        held: self.amount,
                    });
                };
                let mut r = self.clone();
                r.state = ReservationState::Captured;
                r.captured = Some(actual);
                r.settled_at = Some(at);
                let refund = (!refund.is_zero()).then(|| self.refund_entry(refund, "capture", at));
                Ok(SettlementPlan {
                    reservation: r,
                    refund,
                    changed: true,
                })
            }
            (ReservationState::Held, Settlement::Release) => {
                let mut r = self.clone();
                r.state = ReservationState::Released;
                r.settled_at = Some(at);
                let refund = Some(self.refund_entry(self.amount, "release", at));
                Ok(SettlementPlan {
                    reservation: r,
                    refund,
                    changed: true,
                })
            }
            (ReservationState::Captured, Settlement::Capture { actual })
                if self.captured == Some(actual) =>
            {
                Ok(unchanged())
            }
            (ReservationState::Released, Settlement::Release) => Ok(unchanged()),
            (ReservationState::Captured, Settlement::Capture { .. } | Settlement::Release)
            | (ReservationState::Released, Settlement::Capture { .. }) => Err(already()),
        }
    }

    fn refund_entry(&self, amount: Money, step: &str, at: Timestamp) -> NewEntry {
        NewEntry {
            user_id: self.user_id,
            kind: EntryKind::Refund,
            amount,
            ref_type: RefType::Reservation,
            ref_id: self.id.to_string(),
            description: self.description.clone(),
            idempotency_key: IdempotencyKey::derived("reservation", &self.id, step),
            created_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn hold(amount: i64) -> Reservation {
        NewReservation {
            id: ReservationId::from_uuid(Uuid::from_u128(1)),
            user_id: UserId::new(1).unwrap(),
            amount: Money::from_kopecks(amount).unwrap(),
            job_id: None,
            description: "test".into(),
            idempotency_key: IdempotencyKey::new("k").unwrap(),
            created_at: Timestamp::from_millis(0),
        }
        .held()
    }

    fn m(k: i64) -> Money {
        Money::from_kopecks(k).unwrap()
    }

    #[test]
    fn full_capture_posts_nothing_more() {
        let plan = hold(100)
            .settle(
                Settlement::Capture { actual: m(100) },
                Timestamp::from_millis(1),
            )
            .unwrap();
        assert_eq!(plan.reservation.state, ReservationState::Captured);
        assert_eq!(plan.refund, None);
        assert!(plan.changed);
    }

    #[test]
    fn cheaper_capture_refunds_the_difference() {
        let plan = hold(100)
            .settle(
                Settlement::Capture { actual: m(60) },
                Timestamp::from_millis(1),
            )
            .unwrap();
        let refund = plan.refund.unwrap();
        assert_eq!((refund.kind, refund.amount), (EntryKind::Refund, m(40)));
        assert_eq!(plan.reservation.captured, Some(m(60)));
    }

    #[test]
    fn capture_above_the_hold_is_rejected() {
        assert_eq!(
            hold(100).settle(
                Settlement::Capture { actual: m(101) },
                Timestamp::from_millis(1)
            ),
            Err(SettlementError::CaptureExceedsHold {
                actual: m(101),
                held: m(100)
            })
        );
    }

    #[test]
    fn release_refunds_everything() {
        let plan = hold(100)
            .settle(Settlement::Release, Timestamp::from_millis(1))
            .unwrap();
        assert_eq!(plan.refund.unwrap().amount, m(100));
        assert_eq!(plan.reservation.state, ReservationState::Released);
    }

    #[test]
    fn settling_again_the_same_way_changes_nothing() {
        let at = Timestamp::from_millis(1);
        let captured = hold(100)
            .settle(Settlement::Capture { actual: m(70) }, at)
            .unwrap()
            .reservation;
        let again = captured
            .settle(Settlement::Capture { actual: m(70) }, at)
            .unwrap();
        assert!(!again.changed);
        assert_eq!(again.refund, None);
        let released = hold(100)
            .settle(Settlement::Release, at)
            .unwrap()
            .reservation;
        assert!(!released.settle(Settlement::Release, at).unwrap().changed);
    }

    #[test]
    fn settling_differently_is_rejected() {
        let at = Timestamp::from_millis(1);
        let captured = hold(100)
            .settle(Settlement::Capture { actual: m(70) }, at)
            .unwrap()
            .reservation;
        assert!(matches!(
            captured.settle(Settlement::Release, at),
            Err(SettlementError::AlreadySettled { .. })
        ));
        assert!(matches!(
            captured.settle(Settlement::Capture { actual: m(80) }, at),
            Err(SettlementError::AlreadySettled { .. })
        ));
        let released = hold(100)
            .settle(Settlement::Release, at)
            .unwrap()
            .reservation;
        assert!(matches!(
            released.settle(Settlement::Capture { actual: m(1) }, at),
            Err(SettlementError::AlreadySettled { .. })
        ));
    }

    #[test]
    fn codes_round_trip() {
        for k in [EntryKind::Credit, EntryKind::Debit, EntryKind::Refund] {
            assert_eq!(k.as_str().parse::<EntryKind>(), Ok(k));
        }
        assert!("credit2".parse::<EntryKind>().is_err());
    }
}
