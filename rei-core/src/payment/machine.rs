//! The payment state machine: events, the transitions `Payment::apply` makes of
//! them, and the ledger effect each carries (a credit, a refund hold placed, captured or
//! released).

use super::*;

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

/// The `cancel_reason` of a payment that expired unpaid.
pub const EXPIRED_REASON: &str = "expired";

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
    pub(super) before: Payment,
    pub(super) after: Payment,
    pub(super) effect: Option<PaymentEffect>,
    pub(super) referral: Option<crate::referral::ReferralMove>,
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

    /// The referral move written with it: a reward with a credit, a take-back with a
    /// refund's capture.
    #[must_use]
    pub const fn referral(&self) -> Option<&crate::referral::ReferralMove> {
        self.referral.as_ref()
    }

    /// Adds the referral move core computed for this transition: a reward only to a
    /// credit, a take-back only to a refund's capture; anything else is ignored.
    #[must_use]
    pub fn with_referral(mut self, referral: crate::referral::ReferralMove) -> Self {
        use crate::referral::ReferralMove;
        let fits = matches!(
            (&referral, &self.effect),
            (ReferralMove::Reward { .. }, Some(PaymentEffect::Credit))
                | (
                    ReferralMove::TakeBack { .. },
                    Some(PaymentEffect::CaptureRefundHold(_))
                )
        );
        if fits {
            self.referral = Some(referral);
        }
        self
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
            referral: None,
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
            // Sandbox money is marked as such in the ledger itself.
            description: match self.provider {
                PaymentProvider::Sandbox => {
                    "sandbox top-up: play money, nothing was charged".to_owned()
                }
                provider => format!("top-up via {provider}"),
            },
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
    pub(super) fn refund_hold_of(
        &self,
        id: ReservationId,
        amount: Money,
        now: Timestamp,
    ) -> NewReservation {
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

    pub(super) fn check_provider_id(&self, reported: &str) -> Result<(), PaymentTransitionError> {
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
