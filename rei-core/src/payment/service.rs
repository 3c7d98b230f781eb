//! Top-ups (YooKassa and Telegram Stars), applying provider states idempotently, and
//! refunds that never take more than the user still has.

use std::sync::Arc;

use crate::ids::{IdempotencyKey, PaymentId, ReservationId, UserId};
use crate::ledger::{NewReservation, ReservationState};
use crate::money::Money;
use crate::payment::{
    NewPayment, Payment, PaymentEffect, PaymentEvent, PaymentFilter, PaymentProvider, PaymentState,
    PaymentTransitionError,
};
use crate::ports::{
    Clock, CreatePayment, GatewayPayment, IdGenerator, LedgerStore, Missing, Notice, Notifier,
    PaymentGateway, PaymentStore, ProviderError, RefundRequest, RefundStatus, StoreError,
    UserStore,
};

/// Payment settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentConfig {
    /// Where the payer returns after paying (`YOOKASSA_RETURN_URL`).
    pub return_url: String,
    /// Smallest top-up.
    pub min_topup: Money,
    /// Largest top-up.
    pub max_topup: Money,
    /// 54-FZ receipts are attached (`YOOKASSA_RECEIPT_VAT_CODE` set): an e-mail is needed.
    pub receipts: bool,
    /// Rubles credited per Telegram Star (`STARS_RUB_RATE`); `None` disables Stars.
    pub stars_rate: Option<Money>,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            return_url: String::new(),
            min_topup: Money::from_kopecks(100).unwrap_or(Money::ZERO),
            max_topup: Money::from_kopecks(100_000_000).unwrap_or(Money::ZERO),
            receipts: false,
            stars_rate: None,
        }
    }
}

/// What payment operations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// No gateway is configured (missing YooKassa credentials) or Stars are off.
    #[error("this payment method is not available")]
    MethodUnavailable,
    /// No such user.
    #[error("user {0} is not registered")]
    UnknownUser(UserId),
    /// The user is banned.
    #[error("user {0} is banned")]
    Banned(UserId),
    /// The amount is outside the allowed range.
    #[error("the amount must be between {min} and {max}")]
    AmountOutOfRange {
        /// Smallest allowed.
        min: Money,
        /// Largest allowed.
        max: Money,
    },
    /// Receipts are on and no e-mail is known.
    #[error("an e-mail is needed for the receipt")]
    EmailRequired,
    /// No such payment.
    #[error("payment {0} not found")]
    UnknownPayment(String),
    /// The payment is not in a state that allows this.
    #[error("payment {id} is {state}")]
    WrongState {
        /// The payment.
        id: PaymentId,
        /// Its state.
        state: PaymentState,
    },
    /// The user has spent part of the top-up: refunding it would make the balance negative.
    #[error("cannot refund {needed}: the user's balance is only {available}")]
    RefundExceedsBalance {
        /// The payment amount.
        needed: Money,
        /// The balance.
        available: Money,
    },
    /// Another refund attempt of this payment is running or has just ended; try again.
    #[error("a refund of payment {id} is already under way")]
    RefundInProgress {
        /// The payment.
        id: PaymentId,
    },
    /// The provider refused the refund (the hold was released).
    #[error("the provider refused the refund: {reason}")]
    RefundRefused {
        /// Its reason.
        reason: String,
    },
    /// Telegram reports another number of Stars than the invoice (nothing credited).
    #[error("the invoice was for {invoiced} Stars but {paid} were paid")]
    StarsMismatch {
        /// Stars on the invoice.
        invoiced: u32,
        /// Stars reported paid.
        paid: u32,
    },
    /// The provider's data contradicts ours (nothing credited).
    #[error(transparent)]
    Transition(#[from] PaymentTransitionError),
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for PaymentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(Missing::Payment(id)) => Self::UnknownPayment(id.to_string()),
            other => Self::Store(other),
        }
    }
}

/// The result of applying a provider state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentApplied {
    /// The payment now.
    pub payment: Payment,
    /// True only for the one call that credited the user.
    pub credited: bool,
}

/// How a refund ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    /// Money returned to the payer and taken from the balance.
    Refunded(Payment),
    /// The provider has not decided; the amount stays held. Repeat later (same key).
    Pending(Payment),
}

const CONFLICT_RETRIES: u32 = 3;

/// The ports a [`PaymentService`] works over.
#[derive(Clone)]
pub struct PaymentPorts {
    /// Users (who may pay).
    pub users: Arc<dyn UserStore>,
    /// Payments and their credits.
    pub payments: Arc<dyn PaymentStore>,
    /// Balances and refund holds.
    pub ledger: Arc<dyn LedgerStore>,
    /// YooKassa; `None` when it is not configured.
    pub gateway: Option<Arc<dyn PaymentGateway>>,
    /// Tells users of credits and refunds.
    pub notifier: Arc<dyn Notifier>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Payment and reservation ids.
    pub ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for PaymentPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaymentPorts")
    }
}

/// Top-ups and refunds.
pub struct PaymentService {
    users: Arc<dyn UserStore>,
    payments: Arc<dyn PaymentStore>,
    ledger: Arc<dyn LedgerStore>,
    gateway: Option<Arc<dyn PaymentGateway>>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    config: PaymentConfig,
}

impl std::fmt::Debug for PaymentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentService")
            .field("config", &self.config)
            .field("gateway", &self.gateway.is_some())
            .finish_non_exhaustive()
    }
}

impl PaymentService {
    /// A service over its ports.
    #[must_use]
    pub fn new(ports: PaymentPorts, config: PaymentConfig) -> Self {
        let PaymentPorts {
            users,
            payments,
            ledger,
            gateway,
            notifier,
            clock,
            ids,
        } = ports;
        Self {
            users,
            payments,
            ledger,
            gateway,
            notifier,
            clock,
            ids,
            config,
        }
    }

    /// The settings in force.
    #[must_use]
    pub const fn config(&self) -> &PaymentConfig {
        &self.config
    }

    fn new_payment(
        &self,
        user: UserId,
        provider: PaymentProvider,
        amount: Money,
        provider_units: Option<u32>,
    ) -> NewPayment {
        NewPayment {
            id: self.ids.payment_id(),
            user_id: user,
            provider,
            amount,
            provider_units,
            created_at: self.clock.now(),
        }
    }

    async fn check_payer(&self, user: UserId, amount: Money) -> Result<(), PaymentError> {
        let Some(u) = self.users.user(user).await? else {
            return Err(PaymentError::UnknownUser(user));
        };
        if u.is_banned {
            return Err(PaymentError::Banned(user));
        }
        if amount < self.config.min_topup || amount > self.config.max_topup {
            return Err(PaymentError::AmountOutOfRange {
                min: self.config.min_topup,
                max: self.config.max_topup,
            });
        }
        Ok(())
    }

    /// Creates a YooKassa top-up and returns it with its payment link. When the gateway
    /// fails, the local payment is cancelled (the user never saw a link).
    ///
    /// # Errors
    /// [`PaymentError::MethodUnavailable`], [`PaymentError::UnknownUser`],
    /// [`PaymentError::Banned`], [`PaymentError::AmountOutOfRange`],
    /// [`PaymentError::EmailRequired`], [`PaymentError::Provider`].
    pub async fn create_topup(
        &self,
        user: UserId,
        amount: Money,
        receipt_email: Option<String>,
    ) -> Result<Payment, PaymentError> {
        let Some(gateway) = &self.gateway else {
            return Err(PaymentError::MethodUnavailable);
        };
        self.check_payer(user, amount).await?;
        if self.config.receipts && receipt_email.is_none() {
            return Err(PaymentError::EmailRequired);
        }
        let new = self.new_payment(user, PaymentProvider::Yookassa, amount, None);
        let payment = self.payments.create_payment(new).await?;
        let request = CreatePayment {
            payment_id: payment.id,
            user_id: user,
            amount,
            description: format!("Top-up {amount}"),
            return_url: self.config.return_url.clone(),
            receipt_email,
        };
        match gateway.create_payment(&request).await {
            Ok(created) => {
                let event = PaymentEvent::Registered {
                    provider_payment_id: created.provider_payment_id.clone(),
                    confirmation_url: created.confirmation_url.clone(),
                };
                Ok(self.apply(payment.id, event).await?.payment)
            }
            // A definite refusal: the gateway created nothing, so the local payment is
            // cancelled. An unknown outcome (timeout, 5xx after retries) stays pending:
            // the gateway may have created it (same idempotency key), and its webhook or
            // the poller then registers it through the metadata.
            Err(e) if e.is_retryable() || matches!(e, ProviderError::Unknown { .. }) => {
                Err(e.into())
            }
            Err(e) => {
                let reason = Some(format!("creation failed: {}", e.kind()));
                self.apply(payment.id, PaymentEvent::ProviderCancelled { reason })
                    .await?;
                Err(e.into())
            }
        }
    }

    /// Creates a Telegram Stars top-up for `stars` Stars; the invoice payload carries the
    /// returned payment's id.
    ///
    /// # Errors
    /// [`PaymentError::MethodUnavailable`] when Stars are off, and as [`Self::create_topup`].
    pub async fn create_stars_topup(
        &self,
        user: UserId,
        stars: u32,
    ) -> Result<Payment, PaymentError> {
        let Some(rate) = self.config.stars_rate else {
            return Err(PaymentError::MethodUnavailable);
        };
        let range = || PaymentError::AmountOutOfRange {
            min: self.config.min_topup,
            max: self.config.max_topup,
        };
        let amount = rate.checked_mul(stars).ok_or_else(range)?;
        self.check_payer(user, amount).await?;
        let new = self.new_payment(user, PaymentProvider::TelegramStars, amount, Some(stars));
        Ok(self.payments.create_payment(new).await?)
    }

    /// Telegram confirmed a Stars payment (`successful_payment`): credits exactly once,
    /// keyed by the charge id.
    ///
    /// # Errors
    /// [`PaymentError::UnknownPayment`], [`PaymentError::Transition`] when the Stars total
    /// does not match the invoice.
    pub async fn stars_paid(
        &self,
        payment_id: PaymentId,
        charge_id: &str,
        stars: u32,
    ) -> Result<PaymentApplied, PaymentError> {
        // Credit what was invoiced, whatever `STARS_RUB_RATE` is now; a payment for
        // another number of Stars than the invoice is never credited.
        let payment = self.payment(payment_id).await?;
        let amount = match (payment.provider, payment.provider_units) {
            (PaymentProvider::TelegramStars, Some(invoiced)) if invoiced == stars => payment.amount,
            (PaymentProvider::TelegramStars, Some(invoiced)) => {
                return Err(PaymentError::StarsMismatch {
                    invoiced,
                    paid: stars,
                });
            }
            _ => {
                return Err(PaymentError::WrongState {
                    id: payment_id,
                    state: payment.state,
                });
            }
        };
        self.apply(
            payment_id,
            PaymentEvent::ProviderSucceeded {
                provider_payment_id: charge_id.to_owned(),
                amount,
            },
        )
        .await
    }

    /// A payment by our id.
    ///
    /// # Errors
    /// [`PaymentError::UnknownPayment`].
    pub async fn payment(&self, id: PaymentId) -> Result<Payment, PaymentError> {
        self.payments
            .payment(id)
            .await?
            .ok_or_else(|| PaymentError::UnknownPayment(id.to_string()))
    }

    /// Payments matching a filter.
    ///
    /// # Errors
    /// [`PaymentError::Store`].
    pub async fn list(&self, filter: PaymentFilter) -> Result<Vec<Payment>, PaymentError> {
        Ok(self.payments.payments(filter).await?)
    }

    /// A webhook named a provider payment: re-read it from the gateway (the body is only a
    /// hint) and apply what the gateway says.
    ///
    /// # Errors
    /// [`PaymentError::Provider`] when the gateway cannot be asked,
    /// [`PaymentError::UnknownPayment`] when the payment is not ours.
    pub async fn sync_provider_payment(
        &self,
        provider_payment_id: &str,
    ) -> Result<PaymentApplied, PaymentError> {
        let Some(gateway) = &self.gateway else {
            return Err(PaymentError::MethodUnavailable);
        };
        let remote = gateway.get_payment(provider_payment_id).await?;
        self.apply_gateway_payment(&remote).await
    }

    /// The user's "Check payment" button, and the poller for lost webhooks: asks the
    /// gateway about a pending payment and applies the answer.
    ///
    /// # Errors
    /// As [`Self::sync_provider_payment`].
    pub async fn check(&self, id: PaymentId) -> Result<PaymentApplied, PaymentError> {
        let payment = self.payment(id).await?;
        match (
            &payment.provider_payment_id,
            payment.state,
            payment.provider,
        ) {
            (Some(provider_id), PaymentState::Pending, PaymentProvider::Yookassa) => {
                self.sync_provider_payment(provider_id).await
            }
            _ => Ok(PaymentApplied {
                payment,
                credited: false,
            }),
        }
    }

    /// Applies the gateway's view of a payment; crediting happens at most once.
    ///
    /// # Errors
    /// [`PaymentError::UnknownPayment`] when neither the provider id nor the metadata
    /// names one of our payments; [`PaymentError::Transition`] on contradictions.
    pub async fn apply_gateway_payment(
        &self,
        remote: &GatewayPayment,
    ) -> Result<PaymentApplied, PaymentError> {
        let by_provider = self
            .payments
            .payment_by_provider_id(PaymentProvider::Yookassa, &remote.provider_payment_id)
            .await?;
        let payment = match (by_provider, remote.payment_id) {
            (Some(p), _) => p,
            // Created, but we crashed before storing the provider id: register it now.
            (None, Some(ours)) => {
                let event = PaymentEvent::Registered {
                    provider_payment_id: remote.provider_payment_id.clone(),
                    confirmation_url: remote.confirmation_url.clone(),
                };
                self.apply(ours, event).await?.payment
            }
            (None, None) => {
                return Err(PaymentError::UnknownPayment(
                    remote.provider_payment_id.clone(),
                ));
            }
        };
        self.apply(payment.id, remote.event()).await
    }

    /// Applies one event with its ledger effect; tells the user once when credited.
    async fn apply(
        &self,
        id: PaymentId,
        event: PaymentEvent,
    ) -> Result<PaymentApplied, PaymentError> {
        let mut attempt = 0;
        loop {
            let payment = self.payment(id).await?;
            let transition = payment.apply(event.clone(), self.clock.now())?;
            if !transition.changed() {
                return Ok(PaymentApplied {
                    payment,
                    credited: false,
                });
            }
            match self.payments.save_payment_transition(&transition).await {
                Ok(saved) => {
                    let credited = transition.effect == Some(PaymentEffect::Credit);
                    if credited {
                        let balance = self
                            .ledger
                            .balance(saved.user_id)
                            .await
                            .map(|b| b.available)
                            .unwrap_or(Money::ZERO);
                        let notice = Notice::PaymentCredited {
                            payment_id: saved.id,
                            amount: saved.amount,
                            balance,
                        };
                        // Best effort: the credit is committed; the notifier logs failures.
                        let _ = self.notifier.notify(saved.user_id, notice).await;
                    }
                    return Ok(PaymentApplied {
                        payment: saved,
                        credited,
                    });
                }
                Err(StoreError::Conflict { .. }) if attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Refunds a paid YooKassa top-up to the payer. The credited amount is first held on
    /// the balance (refused when the user has spent part of it), then the provider is
    /// asked; its answer captures or releases the hold. Safe to repeat: the hold and the
    /// provider request reuse the same keys.
    ///
    /// # Errors
    /// [`PaymentError::WrongState`] unless paid, [`PaymentError::RefundExceedsBalance`],
    /// [`PaymentError::RefundRefused`] (hold released), [`PaymentError::Provider`] for a
    /// transient failure (hold kept; repeat later).
    pub async fn refund(&self, id: PaymentId, reason: &str) -> Result<RefundOutcome, PaymentError> {
        let Some(gateway) = &self.gateway else {
            return Err(PaymentError::MethodUnavailable);
        };
        let payment = self.payment(id).await?;
        if payment.state == PaymentState::Refunded {
            return Ok(RefundOutcome::Refunded(payment));
        }
        let (PaymentState::Paid, Some(provider_payment_id), PaymentProvider::Yookassa) = (
            payment.state,
            payment.provider_payment_id.clone(),
            payment.provider,
        ) else {
            return Err(PaymentError::WrongState {
                id,
                state: payment.state,
            });
        };
        let hold = self.hold_for_refund(&payment).await?;
        self.apply(
            id,
            PaymentEvent::RefundStarted {
                reservation_id: hold,
            },
        )
        .await?;
        // One key per refund attempt, derived from its hold: the same for every retry of
        // this attempt, new after a refusal (the hold is then new too).
        let request = RefundRequest {
            payment_id: id,
            idempotency_key: IdempotencyKey::derived("refund", &hold, "gateway"),
            provider_payment_id,
            amount: payment.amount,
            description: reason.to_owned(),
            receipt_email: None,
        };
        match gateway.refund(&request).await {
            Ok(refund) => match refund.status {
                RefundStatus::Succeeded => {
                    let done = self.apply(id, PaymentEvent::RefundSucceeded).await?.payment;
                    let balance = self
                        .ledger
                        .balance(done.user_id)
                        .await
                        .map(|b| b.available)
                        .unwrap_or(Money::ZERO);
                    let _ = self
                        .notifier
                        .notify(
                            done.user_id,
                            Notice::PaymentRefunded {
                                payment_id: id,
                                amount: done.amount,
                                balance,
                            },
                        )
                        .await;
                    Ok(RefundOutcome::Refunded(done))
                }
                RefundStatus::Pending => Ok(RefundOutcome::Pending(self.payment(id).await?)),
                RefundStatus::Canceled { reason } => {
                    self.apply(id, PaymentEvent::RefundFailed).await?;
                    Err(PaymentError::RefundRefused {
                        reason: reason.unwrap_or_else(|| "canceled".to_owned()),
                    })
                }
            },
            // Only an explicit refusal releases the hold. Any error — even a 4xx — may
            // hide a refund that was made (e.g. a repeat after the key expired), so the
            // amount stays held until the refund is reconciled: never refund twice.
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn hold_for_refund(
        &self,
        payment: &Payment,
    ) -> Result<ReservationId, PaymentError> {
        if let Some(existing) = payment.refund_reservation_id {
            return Ok(existing);
        }
        let hold = NewReservation {
            id: self.ids.reservation_id(),
            user_id: payment.user_id,
            amount: payment.amount,
            job_id: None,
            description: format!("refund of payment {}", payment.id),
            // Keyed by the payment's version: a crash before `RefundStarted` is stored
            // finds the same hold again, while a new attempt after a refused refund
            // (version bumped) gets a new one.
            idempotency_key: IdempotencyKey::derived(
                "payment",
                &payment.id,
                &format!("refund-hold-v{}", payment.version),
            ),
            created_at: self.clock.now(),
        };
        match self.ledger.reserve(hold).await {
            Ok(r) if r.state == ReservationState::Held => Ok(r.id),
            // The key replayed a hold that an earlier, concurrent attempt already settled.
            Ok(_) => Err(PaymentError::RefundInProgress { id: payment.id }),
            Err(StoreError::InsufficientFunds { needed, available }) => {
                Err(PaymentError::RefundExceedsBalance { needed, available })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Payments still pending, oldest first, for the poller that catches lost webhooks.
    ///
    /// # Errors
    /// [`PaymentError::Store`].
    pub async fn pending(&self, limit: u32) -> Result<Vec<Payment>, PaymentError> {
        let mut list = self
            .payments
            .payments(PaymentFilter {
                state: Some(PaymentState::Pending),
                user_id: None,
                since: None,
                limit,
            })
            .await?;
        list.reverse();
        Ok(list)
    }
}
