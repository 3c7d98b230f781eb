//! Top-up payments and their state machine.
//!
//! `pending → paid → refunded` and `pending → cancelled`. The provider's
//! `waiting_for_capture` counts as pending. Entering `paid` credits the user exactly
//! once, in the same store transaction. A refund takes money back only if the user still
//! has it: starting one holds its amount on the balance (in the same transaction that
//! records the refund on the payment), then the provider is asked, then its answer
//! captures (refund done) or releases (provider refused) that hold. Refunds may be
//! partial, one at a time, up to the paid amount; the payment is `refunded` once all of
//! it went back. Every refund outcome names its attempt (its hold): a late answer about
//! an earlier attempt never moves a newer one's hold.
//!
//! A [`PaymentTransition`] is made only by [`Payment::apply`]; stores check that its
//! `before` is the stored row and that the hold it settles is the payment's own.

pub mod reconcile;
pub mod service;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, PaymentId, ReservationId, UserId};
use crate::ledger::{EntryKind, NewEntry, NewReservation, RefType, text_codes};
use crate::money::Money;
use crate::time::Timestamp;

pub use reconcile::{Difference, DifferenceKind, ReconcileReport, Resolution};
pub use service::{
    GatewayHint, PaymentApplied, PaymentConfig, PaymentError, PaymentPorts, PaymentService,
    PollConfig, PollReport, RefundOutcome, Told,
};

mod machine;
pub use machine::{
    EXPIRED_REASON, PaymentEffect, PaymentEvent, PaymentTransition, PaymentTransitionError,
};

/// Who takes the money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentProvider {
    /// YooKassa (cards, SBP, wallets).
    Yookassa,
    /// Telegram Stars (XTR invoices).
    TelegramStars,
    /// The sandbox's own checkout page (`SANDBOX=1`): play money, nothing is charged.
    Sandbox,
}

/// Where a payment is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Created; the user has not paid (or the provider holds it).
    Pending,
    /// Paid and credited.
    Paid,
    /// Cancelled or expired before paying.
    Cancelled,
    /// Paid, credited, then refunded (credit taken back).
    Refunded,
}

text_codes!(PaymentProvider { Yookassa => "yookassa", TelegramStars => "telegram_stars", Sandbox => "sandbox" });
text_codes!(PaymentState { Pending => "pending", Paid => "paid", Cancelled => "cancelled", Refunded => "refunded" });

impl PaymentState {
    /// Every state, for reports.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Paid, Self::Cancelled, Self::Refunded];
}

/// A payment, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Our id (YooKassa's `Idempotence-Key` and `metadata.payment_id`).
    pub id: PaymentId,
    /// Who pays.
    pub user_id: UserId,
    /// Who takes the money.
    pub provider: PaymentProvider,
    /// The provider's id (YooKassa payment id, Telegram charge id); unique per provider.
    pub provider_payment_id: Option<String>,
    /// What is credited when paid.
    pub amount: Money,
    /// The price in the provider's own units, when it has them (Telegram Stars): a
    /// payment is credited for the units it was invoiced in, whatever the rate is later.
    pub provider_units: Option<u32>,
    /// Where it is.
    pub state: PaymentState,
    /// The link the user pays at (YooKassa).
    pub confirmation_url: Option<String>,
    /// The refund under way, if any (one at a time).
    pub refund: Option<RefundUnderWay>,
    /// What went back to the payer so far (captured refunds).
    pub refunded: Money,
    /// Provider's cancellation reason, if any.
    pub cancel_reason: Option<String>,
    /// Bumped by every stored change.
    pub version: u32,
    /// How many times the poller has asked the provider about it (bookkeeping, outside
    /// the state machine: it never bumps `version`).
    pub checks: u32,
    /// When the poller may ask again; `None` = at once.
    pub next_check_at: Option<Timestamp>,
    /// When created.
    pub created_at: Timestamp,
    /// When paid.
    pub paid_at: Option<Timestamp>,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A refund that was started and is not settled yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundUnderWay {
    /// The hold on the user's balance: also the attempt's identity (its provider request
    /// is keyed by it).
    pub hold: ReservationId,
    /// How much goes back.
    pub amount: Money,
    /// The provider's id of this refund, once it answered.
    pub provider_refund_id: Option<String>,
}

impl Payment {
    /// What can still be refunded.
    #[must_use]
    pub fn refundable(&self) -> Money {
        self.amount
            .checked_sub(self.refunded)
            .unwrap_or(Money::ZERO)
    }

    /// The hold of the refund under way, if any.
    #[must_use]
    pub fn refund_hold(&self) -> Option<ReservationId> {
        self.refund.as_ref().map(|r| r.hold)
    }
}

/// A payment to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPayment {
    /// Its id (creating the same id twice returns the first).
    pub id: PaymentId,
    /// Who pays.
    pub user_id: UserId,
    /// Who takes the money.
    pub provider: PaymentProvider,
    /// What to credit (positive).
    pub amount: Money,
    /// The price in the provider's units (Telegram Stars), if any.
    pub provider_units: Option<u32>,
    /// When.
    pub created_at: Timestamp,
}

impl NewPayment {
    /// The payment as created.
    #[must_use]
    pub fn pending(&self) -> Payment {
        Payment {
            id: self.id,
            user_id: self.user_id,
            provider: self.provider,
            provider_payment_id: None,
            amount: self.amount,
            provider_units: self.provider_units,
            state: PaymentState::Pending,
            confirmation_url: None,
            refund: None,
            refunded: Money::ZERO,
            cancel_reason: None,
            version: 0,
            checks: 0,
            next_check_at: None,
            created_at: self.created_at,
            paid_at: None,
            updated_at: self.created_at,
        }
    }
}

/// Which payments to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    /// Only this state.
    pub state: Option<PaymentState>,
    /// Only this user.
    pub user_id: Option<UserId>,
    /// Only created at or after this instant.
    pub since: Option<Timestamp>,
    /// Only this provider's.
    pub provider: Option<PaymentProvider>,
    /// At most this many, newest first (0 = store default of 100).
    pub limit: u32,
}

/// Which payments the poller looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Pending top-ups of one provider.
    Pending(PaymentProvider),
    /// Paid payments with a refund under way (a refund hold attached).
    Refunding,
}

/// What a poller query found: the payments, and rows that could not be read (each with
/// its id as stored and why), which the poller counts and skips.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DuePayments {
    /// Readable payments, oldest first.
    pub payments: Vec<Payment>,
    /// Rows that could not be read: (stored id, what is wrong).
    pub unreadable: Vec<(String, String)>,
}

/// A poller query: see `PaymentStore::due_payments`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DueFilter {
    /// Which payments.
    pub due: Due,
    /// Only those whose next check is at or before this instant (or unset).
    pub at: Timestamp,
    /// Only those created at or after this instant, if set.
    pub created_since: Option<Timestamp>,
    /// At most this many (0 = store default of 100), oldest first.
    pub limit: u32,
}

impl DueFilter {
    /// Whether a payment matches (memory stores and tests use it; SQL stores say the same
    /// in SQL).
    #[must_use]
    pub fn matches(&self, p: &Payment) -> bool {
        let which = match self.due {
            Due::Pending(provider) => p.state == PaymentState::Pending && p.provider == provider,
            Due::Refunding => p.state == PaymentState::Paid && p.refund.is_some(),
        };
        which
            && p.next_check_at.is_none_or(|t| t <= self.at)
            && self.created_since.is_none_or(|t| p.created_at >= t)
    }
}

impl fmt::Display for Payment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payment {} ({}, {}, {})",
            self.id, self.provider, self.amount, self.state
        )
    }
}

#[cfg(test)]
mod tests;
