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

/// Who takes the money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentProvider {
    /// YooKassa (cards, SBP, wallets).
    Yookassa,
    /// Telegram Stars (XTR invoices).
    TelegramStars,
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

text_codes!(PaymentProvider { Yookassa => "yookassa", TelegramStars => "telegram_stars" });
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

/// Something that happens to a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentEvent {
    /// The provider created it (id and link known).
    Registered {
        /// Provider id.
        provider_payment_id: String,
        /// Where to pay.
        confirmation_url: Option<String>,
    },
    /// The provider says: not paid yet (`pending`, `waiting_for_capture`).
    ProviderPending,
    /// The provider says: paid (`succeeded`, Telegram `successful_payment`).
    ProviderSucceeded {
        /// Provider id (for Stars it first becomes known here).
        provider_payment_id: String,
        /// The amount the provider reports.
        amount: Money,
    },
    /// The provider says: cancelled.
    ProviderCancelled {
        /// The provider's reason.
        reason: Option<String>,
    },
    /// A refund starts: `amount` is held on the balance under the new hold
    /// `reservation_id`, in the same transaction.
    RefundStarted {
        /// The new hold (also the attempt's identity).
        reservation_id: ReservationId,
        /// How much goes back (at most what is still refundable).
        amount: Money,
    },
    /// The provider accepted the refund request of the attempt `hold` and named it (it
    /// may still be pending).
    RefundRequested {
        /// The attempt.
        hold: ReservationId,
        /// The provider's refund id.
        refund_id: String,
    },
    /// The provider refunded the attempt `hold`: its hold is captured.
    RefundSucceeded {
        /// The attempt.
        hold: ReservationId,
    },
    /// The provider refused the attempt `hold`: its hold is released.
    RefundFailed {
        /// The attempt.
        hold: ReservationId,
    },
    /// Nobody paid within the payment window: cancelled here. A provider that later
    /// reports the money taken is still believed (see [`Payment::apply`]).
    Expired,
}

/// The `cancel_reason` of a payment that expired unpaid.
pub const EXPIRED_REASON: &str = "expired";

impl PaymentEvent {
    /// A short name for logs and errors.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "registered",
            Self::ProviderPending => "provider_pending",
            Self::ProviderSucceeded { .. } => "provider_succeeded",
            Self::ProviderCancelled { .. } => "provider_cancelled",
            Self::RefundStarted { .. } => "refund_started",
            Self::RefundRequested { .. } => "refund_requested",
            Self::Expired => "expired",
            Self::RefundSucceeded { .. } => "refund_succeeded",
            Self::RefundFailed { .. } => "refund_failed",
        }
    }
}

/// A ledger effect that must be written with a payment transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentEffect {
    /// Credit the payment's amount (exactly once per payment).
    Credit,
    /// Hold a refund's amount on the user's balance: the store places this hold in the
    /// same transaction (refused, with nothing written, when the balance is short).
    HoldRefund(NewReservation),
    /// Capture the refund hold in full: the money went back.
    CaptureRefundHold(ReservationId),
    /// Release the refund hold: the provider refused.
    ReleaseRefundHold(ReservationId),
}

/// Why a payment event is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentTransitionError {
    /// Not allowed in this state.
    #[error("payment {payment_id}: `{event}` is not allowed when {from}")]
    Illegal {
        /// The payment.
        payment_id: PaymentId,
        /// Its state.
        from: PaymentState,
        /// The event's name.
        event: &'static str,
    },
    /// The provider reports another amount than we asked for: never credit it blindly.
    #[error("payment {payment_id}: provider reports {reported}, expected {expected}")]
    AmountMismatch {
        /// The payment.
        payment_id: PaymentId,
        /// What we created.
        expected: Money,
        /// What the provider says.
        reported: Money,
    },
    /// More than what is left to refund, or nothing.
    #[error("payment {payment_id}: cannot refund {asked}, {refundable} is refundable")]
    RefundTooLarge {
        /// The payment.
        payment_id: PaymentId,
        /// Asked for.
        asked: Money,
        /// What is left.
        refundable: Money,
    },
    /// The provider reports another id than the one stored.
    #[error("payment {payment_id}: provider id {reported} differs from stored {stored}")]
    ProviderIdMismatch {
        /// The payment.
        payment_id: PaymentId,
        /// Stored id.
        stored: String,
        /// Reported id.
        reported: String,
    },
}

/// A payment transition: what to store and the ledger effect to write with it. Only
/// [`Payment::apply`] makes one; stores check that `before` is their stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentTransition {
    before: Payment,
    after: Payment,
    effect: Option<PaymentEffect>,
}

impl PaymentTransition {
    /// False when the event was a repeat: nothing to write.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.before != self.after
    }

    /// The payment before (stores compare it with their row).
    #[must_use]
    pub const fn before(&self) -> &Payment {
        &self.before
    }

    /// The payment after.
    #[must_use]
    pub const fn after(&self) -> &Payment {
        &self.after
    }

    /// The ledger effect, written in the same transaction.
    #[must_use]
    pub const fn effect(&self) -> Option<&PaymentEffect> {
        self.effect.as_ref()
    }

    /// Whether this transition credits the payment.
    #[must_use]
    pub fn credits(&self) -> bool {
        self.effect == Some(PaymentEffect::Credit)
    }
}

impl Payment {
    /// Applies an event: a pure function. Repeats (a duplicate webhook, a status re-read)
    /// are `Ok` with no change and no effect.
    ///
    /// # Errors
    /// [`PaymentTransitionError`] for illegal events or mismatching provider data.
    pub fn apply(
        &self,
        event: PaymentEvent,
        now: Timestamp,
    ) -> Result<PaymentTransition, PaymentTransitionError> {
        use PaymentState::{Cancelled, Paid, Pending, Refunded};
        let illegal = || PaymentTransitionError::Illegal {
            payment_id: self.id,
            from: self.state,
            event: event.name(),
        };
        let mut next = self.clone();
        let mut effect = None;
        match (&event, self.state) {
            (
                PaymentEvent::Registered {
                    provider_payment_id,
                    confirmation_url,
                },
                Pending,
            ) => {
                self.check_provider_id(provider_payment_id)?;
                next.provider_payment_id = Some(provider_payment_id.clone());
                next.confirmation_url.clone_from(confirmation_url);
            }
            // "Not paid yet" changes nothing, also about a payment we gave up on.
            (PaymentEvent::ProviderPending, _) => {}
            // Money taken wins: besides a pending payment, one we expired (an old invoice
            // paid late) or saw cancelled is credited when the provider says it was paid.
            (
                PaymentEvent::ProviderSucceeded {
                    provider_payment_id,
                    amount,
                },
                Pending | Cancelled,
            ) => {
                self.check_provider_id(provider_payment_id)?;
                if *amount != self.amount {
                    return Err(PaymentTransitionError::AmountMismatch {
                        payment_id: self.id,
                        expected: self.amount,
                        reported: *amount,
                    });
                }
                next.provider_payment_id = Some(provider_payment_id.clone());
                next.state = Paid;
                next.paid_at = Some(now);
                next.cancel_reason = None;
                effect = Some(PaymentEffect::Credit);
            }
            (
                PaymentEvent::ProviderSucceeded {
                    provider_payment_id,
                    ..
                },
                Paid | Refunded,
            ) => {
                self.check_provider_id(provider_payment_id)?;
            }
            (PaymentEvent::ProviderCancelled { reason }, Pending) => {
                next.state = Cancelled;
                next.cancel_reason.clone_from(reason);
            }
            (PaymentEvent::ProviderCancelled { .. } | PaymentEvent::Expired, Cancelled) => {}
            (PaymentEvent::Expired, Pending) => {
                next.state = Cancelled;
                next.cancel_reason = Some(EXPIRED_REASON.to_owned());
            }
            (
                PaymentEvent::RefundStarted {
                    reservation_id,
                    amount,
                },
                Paid,
            ) => match &self.refund {
                Some(r) if r.hold == *reservation_id && r.amount == *amount => {}
                Some(_) => return Err(illegal()),
                None => {
                    if amount.is_zero() || *amount > self.refundable() {
                        return Err(PaymentTransitionError::RefundTooLarge {
                            payment_id: self.id,
                            asked: *amount,
                            refundable: self.refundable(),
                        });
                    }
                    next.refund = Some(RefundUnderWay {
                        hold: *reservation_id,
                        amount: *amount,
                        provider_refund_id: None,
                    });
                    effect = Some(PaymentEffect::HoldRefund(self.refund_hold_of(
                        *reservation_id,
                        *amount,
                        now,
                    )));
                }
            },
            (PaymentEvent::RefundRequested { hold, refund_id }, Paid) => {
                match &self.refund {
                    // A late answer about an earlier attempt: nothing to do.
                    Some(r) if r.hold != *hold => {}
                    None => {}
                    Some(r) => match &r.provider_refund_id {
                        Some(known) if known == refund_id => {}
                        Some(_) => return Err(illegal()),
                        None => {
                            next.refund = Some(RefundUnderWay {
                                provider_refund_id: Some(refund_id.clone()),
                                ..r.clone()
                            });
                        }
                    },
                }
            }
            (PaymentEvent::RefundSucceeded { hold }, Paid) => match &self.refund {
                Some(r) if r.hold == *hold => {
                    next.refunded = self.refunded.checked_add(r.amount).ok_or_else(illegal)?;
                    next.refund = None;
                    if next.refunded >= self.amount {
                        next.state = Refunded;
                    }
                    effect = Some(PaymentEffect::CaptureRefundHold(r.hold));
                }
                _ => {}
            },
            (PaymentEvent::RefundFailed { hold }, Paid) => match &self.refund {
                Some(r) if r.hold == *hold => {
                    next.refund = None;
                    effect = Some(PaymentEffect::ReleaseRefundHold(r.hold));
                }
                _ => {}
            },
            // Whatever is said of an attempt once all of the payment went back changes
            // nothing: every attempt was settled before.
            (
                PaymentEvent::RefundRequested { .. }
                | PaymentEvent::RefundSucceeded { .. }
                | PaymentEvent::RefundFailed { .. },
                Refunded,
            ) => {}
            // A webhook may be applied before creation stores the provider id: a later
            // `Registered` with the same id is then a repeat.
            (
                PaymentEvent::Registered {
                    provider_payment_id,
                    ..
                },
                Paid | Cancelled | Refunded,
            ) if self.provider_payment_id.as_deref() == Some(provider_payment_id.as_str()) => {}
            // Expired here before the provider id was stored (a crash after creating it
            // at the provider): learning the id keeps it cancelled, and a later success
            // still credits it.
            (
                PaymentEvent::Registered {
                    provider_payment_id,
                    ..
                },
                Cancelled,
            ) if self.provider_payment_id.is_none() => {
                next.provider_payment_id = Some(provider_payment_id.clone());
            }
            (PaymentEvent::Registered { .. }, Paid | Cancelled | Refunded)
            | (PaymentEvent::ProviderCancelled { .. } | PaymentEvent::Expired, Paid | Refunded)
            | (PaymentEvent::RefundRequested { .. }, Pending | Cancelled)
            | (PaymentEvent::RefundStarted { .. }, Pending | Cancelled | Refunded)
            | (
                PaymentEvent::RefundSucceeded { .. } | PaymentEvent::RefundFailed { .. },
                Pending | Cancelled,
            ) => return Err(illegal()),
        }
        if next != *self {
            next.version = self.version.wrapping_add(1);
            next.updated_at = now;
        }
        Ok(PaymentTransition {
            before: self.clone(),
            after: next,
            effect,
        })
    }

    /// The credit entry that entering `paid` posts: keyed by the payment, so a payment
    /// can never be credited twice.
    #[must_use]
    pub fn credit_entry(&self, at: Timestamp) -> NewEntry {
        NewEntry {
            user_id: self.user_id,
            kind: EntryKind::Credit,
            amount: self.amount,
            ref_type: RefType::Payment,
            ref_id: self.id.to_string(),
            description: format!("top-up via {}", self.provider),
            idempotency_key: Self::credit_key(self.id),
            created_at: at,
        }
    }

    /// The key of a payment's one credit: whoever posts it (this payment's transition to
    /// paid, an import of older data) posts it at most once.
    #[must_use]
    pub fn credit_key(id: PaymentId) -> IdempotencyKey {
        IdempotencyKey::derived("payment", &id, "credit")
    }

    /// The hold a refund of `amount` places: keyed by the payment and its version, so a
    /// repeat of the same start finds it, and a new attempt (a later version) gets its own.
    fn refund_hold_of(&self, id: ReservationId, amount: Money, now: Timestamp) -> NewReservation {
        NewReservation {
            id,
            user_id: self.user_id,
            amount,
            job_id: None,
            description: format!("refund of payment {}", self.id),
            idempotency_key: IdempotencyKey::derived(
                "payment",
                &self.id,
                &format!("refund-hold-v{}", self.version),
            ),
            created_at: now,
        }
    }

    /// The payment as a store compares it with a transition's `before`: without the
    /// poller's bookkeeping, which changes outside the state machine.
    #[must_use]
    pub fn without_bookkeeping(&self) -> Self {
        Self {
            checks: 0,
            next_check_at: None,
            ..self.clone()
        }
    }

    fn check_provider_id(&self, reported: &str) -> Result<(), PaymentTransitionError> {
        match &self.provider_payment_id {
            Some(stored) if stored != reported => Err(PaymentTransitionError::ProviderIdMismatch {
                payment_id: self.id,
                stored: stored.clone(),
                reported: reported.to_owned(),
            }),
            _ => Ok(()),
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
