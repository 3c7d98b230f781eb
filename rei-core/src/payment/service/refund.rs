//! Refunds: the money is held first, then the provider is asked; only a definite
//! answer about this very attempt captures or releases the hold.

use super::*;

/// How a refund ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    /// Money returned to the payer and taken from the balance.
    Refunded(Payment),
    /// The provider has not decided; the amount stays held. Repeat later (same key).
    Pending(Payment),
}

impl PaymentService {
    /// Refunds a paid top-up (YooKassa or Stars) to the payer: `amount`, or all that is
    /// still refundable. The amount is first held on the balance (refused when the user
    /// has spent it) in the same transaction that records the refund on the payment, then
    /// the provider is asked; its answer captures or releases the hold. Safe to repeat: a
    /// refund under way is continued, not started again, and the poller finishes one left
    /// pending or cut off by an error. YooKassa refunds may be partial (several, up to the
    /// paid amount); Stars refunds are whole only. The provider gets a fixed description,
    /// so that a repeat is the same request; callers audit their own reason.
    ///
    /// # Errors
    /// [`PaymentError::WrongState`] unless paid, [`PaymentError::PartialRefundUnsupported`]
    /// (Stars), [`PaymentError::Transition`] for more than is refundable,
    /// [`PaymentError::RefundInProgress`] when another amount is being refunded,
    /// [`PaymentError::RefundExceedsBalance`], [`PaymentError::RefundRefused`] (hold
    /// released), [`PaymentError::Provider`] for a failure (hold kept; the poller or a
    /// repeat finishes it).
    pub async fn refund(
        &self,
        id: PaymentId,
        amount: Option<Money>,
    ) -> Result<RefundOutcome, PaymentError> {
        self.refund_by(id, amount, None).await
    }

    /// [`Self::refund`], audited as `actor` with `reason` when the refund starts.
    ///
    /// # Errors
    /// As [`Self::refund`].
    pub async fn refund_audited(
        &self,
        id: PaymentId,
        amount: Option<Money>,
        actor: Actor,
        reason: &str,
    ) -> Result<RefundOutcome, PaymentError> {
        self.refund_by(id, amount, Some((actor, reason))).await
    }

    pub(super) async fn refund_by(
        &self,
        id: PaymentId,
        amount: Option<Money>,
        audit: Option<(Actor, &str)>,
    ) -> Result<RefundOutcome, PaymentError> {
        let payment = self.payment(id).await?;
        match payment.provider {
            PaymentProvider::Yookassa | PaymentProvider::Sandbox => {
                self.gateway_for(payment.provider)?;
            }
            PaymentProvider::TelegramStars => {
                self.ports
                    .stars
                    .as_ref()
                    .ok_or(PaymentError::MethodUnavailable)?;
                if amount.is_some_and(|a| a != payment.amount) {
                    return Err(PaymentError::PartialRefundUnsupported {
                        provider: payment.provider,
                    });
                }
            }
        }
        if payment.state == PaymentState::Refunded {
            return Ok(RefundOutcome::Refunded(payment));
        }
        let (PaymentState::Paid, Some(_)) = (payment.state, payment.provider_payment_id.as_ref())
        else {
            return Err(PaymentError::WrongState {
                id,
                state: payment.state,
            });
        };
        let started = match &payment.refund {
            // A repeat of the refund under way continues it.
            Some(r) if amount.is_none_or(|a| a == r.amount) => payment.clone(),
            Some(_) => return Err(PaymentError::RefundInProgress { id }),
            None => {
                let amount = amount.unwrap_or_else(|| payment.refundable());
                let event = PaymentEvent::RefundStarted {
                    reservation_id: self.ports.ids.reservation_id(),
                    amount,
                };
                let started = match self.apply(id, event).await {
                    Ok(applied) => applied.payment,
                    Err(PaymentError::Store(StoreError::InsufficientFunds {
                        needed,
                        available,
                    })) => return Err(PaymentError::RefundExceedsBalance { needed, available }),
                    // Another caller started one meanwhile.
                    Err(PaymentError::Transition(PaymentTransitionError::Illegal { .. })) => {
                        return Err(PaymentError::RefundInProgress { id });
                    }
                    Err(e) => return Err(e),
                };
                if let Some((actor, reason)) = audit {
                    self.ports
                        .users
                        .append_audit(AuditRecord {
                            actor,
                            action: AuditAction::PaymentRefund,
                            target_user: Some(payment.user_id),
                            amount: Some(amount),
                            reason: format!("payment {id}: {reason}"),
                            created_at: self.ports.clock.now(),
                        })
                        .await?;
                }
                started
            }
        };
        let Some(hold) = started.refund_hold() else {
            // Another caller settled it meanwhile: report how it stands.
            return Self::refund_outcome(self.payment(id).await?);
        };
        let done = self.continue_refund(&started, hold).await?;
        Self::refund_outcome(done.payment)
    }

    /// Asks the provider about the refund under way (`hold`) and applies the answer.
    pub(super) async fn continue_refund(
        &self,
        payment: &Payment,
        hold: ReservationId,
    ) -> Result<PaymentApplied, PaymentError> {
        match payment.provider {
            PaymentProvider::Yookassa | PaymentProvider::Sandbox => {
                let refund = self.request_refund(payment).await?;
                self.finish_refund(payment.id, hold, &refund, Origin::OurRequest)
                    .await
            }
            PaymentProvider::TelegramStars => self.refund_stars(payment).await,
        }
    }

    /// Asks Telegram to return a Stars charge; the answer captures the hold (done) or,
    /// for a definite refusal, releases it (admins told). Anything else keeps the hold.
    pub(super) async fn refund_stars(
        &self,
        payment: &Payment,
    ) -> Result<PaymentApplied, PaymentError> {
        let stars = self
            .ports
            .stars
            .as_ref()
            .ok_or(PaymentError::MethodUnavailable)?;
        let (Some(charge), Some(refund)) = (
            payment.provider_payment_id.as_deref(),
            payment.refund.as_ref(),
        ) else {
            return Err(PaymentError::WrongState {
                id: payment.id,
                state: payment.state,
            });
        };
        match stars.refund_stars(payment.user_id, charge).await {
            Ok(()) => {
                self.apply(
                    payment.id,
                    PaymentEvent::RefundSucceeded { hold: refund.hold },
                )
                .await
            }
            Err(
                ProviderError::InvalidRequest { message } | ProviderError::NotFound { message },
            ) => {
                let refused = GatewayRefund {
                    refund_id: charge.to_owned(),
                    status: RefundStatus::Canceled {
                        reason: Some(message),
                    },
                    provider_payment_id: Some(charge.to_owned()),
                    amount: Some(refund.amount),
                };
                self.finish_refund(payment.id, refund.hold, &refused, Origin::OurRequest)
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends (or re-sends, with the same key and body) the refund request of the refund
    /// under way.
    pub(super) async fn request_refund(
        &self,
        payment: &Payment,
    ) -> Result<GatewayRefund, PaymentError> {
        let gateway = self.gateway()?;
        let (Some(provider_payment_id), Some(refund)) =
            (payment.provider_payment_id.clone(), payment.refund.as_ref())
        else {
            return Err(PaymentError::WrongState {
                id: payment.id,
                state: payment.state,
            });
        };
        // One key per refund attempt, derived from its hold: the same for every retry of
        // this attempt, new for the next one (its hold is new too).
        let request = RefundRequest {
            payment_id: payment.id,
            idempotency_key: IdempotencyKey::derived("refund", &refund.hold, "gateway"),
            provider_payment_id,
            amount: refund.amount,
            description: format!("Refund of top-up {}", payment.id),
            // With 54-FZ receipts on, a refund needs its receipt too (the payer's e-mail).
            receipt_email: self
                .ports
                .users
                .user(payment.user_id)
                .await?
                .and_then(|u| u.receipt_email)
                .map(|e| e.as_str().to_owned()),
        };
        // Only an explicit refusal releases the hold. Any error — even a 4xx — may hide a
        // refund that was made, so the amount stays held until the refund is known.
        Ok(gateway.refund(&request).await?)
    }

    /// Applies the provider's answer about the refund attempt `hold`: records its id,
    /// captures the hold when it succeeded (the user is told), releases it when refused
    /// (admins are told). An answer about another attempt than the one under way, or one
    /// that cannot be told to be ours, changes nothing.
    pub(super) async fn finish_refund(
        &self,
        id: PaymentId,
        hold: ReservationId,
        refund: &GatewayRefund,
        origin: Origin,
    ) -> Result<PaymentApplied, PaymentError> {
        let payment = self.payment(id).await?;
        let Some(current) = payment.refund.clone().filter(|r| r.hold == hold) else {
            return Ok(PaymentApplied::unchanged(payment));
        };
        // Ours: the refund whose id we stored, or — before the id is known — the answer
        // to our own request for this attempt. A report of an unknown refund id (an older
        // attempt, one made in the dashboard) moves nothing; the poller asks again.
        let ours = match (&current.provider_refund_id, origin) {
            (Some(known), _) => *known == refund.refund_id,
            (None, Origin::OurRequest) => true,
            (None, Origin::Report) => false,
        } && refund.amount.is_none_or(|a| a == current.amount);
        if !ours {
            return Ok(PaymentApplied::unchanged(payment));
        }
        if current.provider_refund_id.is_none() && payment.provider == self.config.gateway {
            self.apply(
                id,
                PaymentEvent::RefundRequested {
                    hold,
                    refund_id: refund.refund_id.clone(),
                },
            )
            .await?;
        }
        match &refund.status {
            RefundStatus::Pending => Ok(PaymentApplied::unchanged(self.payment(id).await?)),
            RefundStatus::Succeeded => self.apply(id, PaymentEvent::RefundSucceeded { hold }).await,
            RefundStatus::Canceled { reason } => {
                let applied = self.apply(id, PaymentEvent::RefundFailed { hold }).await?;
                let reason = reason.clone().unwrap_or_else(|| "canceled".to_owned());
                if applied.payment.version != payment.version {
                    let alert = AdminAlert {
                        provider: applied.payment.provider.as_str().to_owned(),
                        kind: ProviderErrorKind::Refused,
                        message: format!(
                            "the refund of {} of payment {id} was refused: {reason}; the amount is back on the user's balance",
                            current.amount
                        ),
                        subject: Some(format!("payment {id}")),
                    };
                    // Best effort, like every notice: the release is committed.
                    if self.ports.notifier.alert_admins(alert).await.is_err() {
                        return Err(PaymentError::RefundRefused {
                            reason: format!("{reason} (admins could not be told)"),
                        });
                    }
                }
                Err(PaymentError::RefundRefused { reason })
            }
        }
    }

    pub(super) fn refund_outcome(payment: Payment) -> Result<RefundOutcome, PaymentError> {
        match payment.state {
            PaymentState::Refunded => Ok(RefundOutcome::Refunded(payment)),
            PaymentState::Paid if payment.refund.is_some() => Ok(RefundOutcome::Pending(payment)),
            PaymentState::Paid => Ok(RefundOutcome::Refunded(payment)),
            state => Err(PaymentError::WrongState {
                id: payment.id,
                state,
            }),
        }
    }
}
