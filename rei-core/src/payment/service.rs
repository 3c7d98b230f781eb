//! Top-ups (YooKassa and Telegram Stars), applying provider states idempotently, and
//! refunds that never take more than the user still has.

use std::sync::Arc;
use std::time::Duration;

use crate::ids::{IdempotencyKey, PaymentId, ReservationId, UserId};
use crate::money::Money;
use crate::payment::{
    Due, DueFilter, NewPayment, Payment, PaymentEffect, PaymentEvent, PaymentFilter,
    PaymentProvider, PaymentState, PaymentTransitionError,
};
use crate::ports::{
    AdminAlert, Clock, CreatePayment, GatewayPayment, GatewayRefund, IdGenerator, Missing,
    Notifier, NotifyError, PaymentGateway, PaymentListQuery, PaymentStore, ProviderError,
    ProviderErrorKind, RefundRequest, RefundStatus, StarsGateway, StoreError, UserStore,
};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord};

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
    /// How the poller for lost webhooks and unfinished refunds works.
    pub poll: PollConfig,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            return_url: String::new(),
            min_topup: Money::from_kopecks(100).unwrap_or(Money::ZERO),
            max_topup: Money::from_kopecks(100_000_000).unwrap_or(Money::ZERO),
            receipts: false,
            stars_rate: None,
            poll: PollConfig::default(),
        }
    }
}

/// The poller's timing: the one that catches lost webhooks, expires abandoned payments and
/// finishes refunds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollConfig {
    /// A payment nobody paid within this long is expired (cancelled here) after a last
    /// look at the provider; an unpaid Stars invoice is refused at checkout after it.
    pub pending_window: Duration,
    /// A YooKassa payment whose creation answer was lost (no provider id) is looked up
    /// in the provider's list once it is this old, and expired when it is not there.
    pub unregistered_after: Duration,
    /// The first wait before asking the provider about a payment; doubled after each
    /// check up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest wait between two checks of one payment.
    pub max_backoff: Duration,
    /// At most this many payments of each kind per round.
    pub batch: u32,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            pending_window: Duration::from_secs(24 * 3600),
            unregistered_after: Duration::from_secs(10 * 60),
            first_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30 * 60),
            batch: 50,
        }
    }
}

impl PollConfig {
    /// The wait after the `checks`-th check: `first_backoff × 2^(checks-1)`, capped.
    #[must_use]
    pub fn backoff(&self, checks: u32) -> Duration {
        let doubled = self
            .first_backoff
            .checked_mul(1_u32 << checks.saturating_sub(1).min(20))
            .unwrap_or(self.max_backoff);
        doubled.min(self.max_backoff)
    }
}

/// What one poller round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Payments the provider was asked about.
    pub checked: u32,
    /// Payments credited by this round (their webhook was lost).
    pub credited: u32,
    /// Payments the provider cancelled.
    pub cancelled: u32,
    /// Payments expired here, unpaid.
    pub expired: u32,
    /// Refunds finished (money returned, hold captured).
    pub refunds_done: u32,
    /// Refunds the provider refused (hold released, admins told).
    pub refunds_refused: u32,
    /// Payments whose check failed (provider error, contradiction); asked again later.
    pub errors: u32,
    /// Which, and why: for the caller's log.
    pub failures: Vec<(PaymentId, String)>,
    /// Rows that could not be read, skipped (stored id, why): for the caller's log.
    pub unreadable: Vec<(String, String)>,
}

impl PollReport {
    fn skip_unreadable(&mut self, rows: Vec<(String, String)>) {
        self.errors = self
            .errors
            .saturating_add(u32::try_from(rows.len()).unwrap_or(u32::MAX));
        self.unreadable.extend(rows);
    }
}

/// A provider's notification, reduced to what it names: only a hint, re-read before use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayHint {
    /// `payment.*`: a payment changed.
    Payment {
        /// The provider's payment id.
        provider_payment_id: String,
    },
    /// `refund.*`: a refund changed.
    Refund {
        /// The provider's refund id.
        refund_id: String,
        /// The provider's id of the refunded payment.
        provider_payment_id: String,
    },
}

/// Whether the user is told about a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Told {
    /// Nothing to tell.
    Nothing,
    /// The notice was written into the outbox with the change: the dispatcher sends it.
    Queued,
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
    /// The user has spent part of it: refunding would make the balance negative.
    #[error("cannot refund {needed}: the user's balance is only {available}")]
    RefundExceedsBalance {
        /// The payment amount.
        needed: Money,
        /// The balance.
        available: Money,
    },
    /// Another refund of this payment is under way (of another amount).
    #[error("a refund of payment {id} is already under way")]
    RefundInProgress {
        /// The payment.
        id: PaymentId,
    },
    /// The provider refunds only whole payments (Telegram Stars).
    #[error("{provider} refunds only whole payments")]
    PartialRefundUnsupported {
        /// The provider.
        provider: PaymentProvider,
    },
    /// The provider refused the refund (the hold was released).
    #[error("the provider refused the refund: {reason}")]
    RefundRefused {
        /// Its reason.
        reason: String,
    },
    /// The Stars invoice is not this user's, not pending, or too old to be paid.
    #[error("this invoice can no longer be paid")]
    InvoiceNotPayable,
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
    /// Whether the user was told (only the call that changed something tells).
    pub told: Told,
}

impl PaymentApplied {
    fn unchanged(payment: Payment) -> Self {
        Self {
            payment,
            credited: false,
            told: Told::Nothing,
        }
    }
}

/// Where a refund answer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// The answer to our own request for the attempt (its key is the attempt's).
    OurRequest,
    /// A notification or a read by refund id.
    Report,
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
/// Page size when listing the gateway's payments.
const LIST_PAGE: u32 = 100;
/// At most this many pages (100 000 payments) in one listing.
const MAX_LIST_PAGES: u32 = 1000;

/// The ports a [`PaymentService`] works over.
#[derive(Clone)]
pub struct PaymentPorts {
    /// Users (who may pay).
    pub users: Arc<dyn UserStore>,
    /// Payments and their credits.
    pub payments: Arc<dyn PaymentStore>,
    /// YooKassa; `None` when it is not configured.
    pub gateway: Option<Arc<dyn PaymentGateway>>,
    /// Telegram Stars refunds; `None` without a bot token.
    pub stars: Option<Arc<dyn StarsGateway>>,
    /// Alerts admins (a refund that needs a hand). Users' notices of credits and
    /// refunds go through the outbox.
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
    gateway: Option<Arc<dyn PaymentGateway>>,
    stars: Option<Arc<dyn StarsGateway>>,
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
            gateway,
            stars,
            notifier,
            clock,
            ids,
        } = ports;
        Self {
            users,
            payments,
            gateway,
            stars,
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

    /// Whether card payments (YooKassa) are configured.
    #[must_use]
    pub fn has_gateway(&self) -> bool {
        self.gateway.is_some()
    }

    /// Whether Telegram Stars can be refunded and reconciled here (a bot token).
    #[must_use]
    pub fn has_stars(&self) -> bool {
        self.stars.is_some()
    }

    pub(crate) fn payments_store(&self) -> &dyn PaymentStore {
        self.payments.as_ref()
    }

    /// Every Stars transaction of the bot, oldest first (all pages).
    pub(crate) async fn star_transactions(
        &self,
    ) -> Result<Vec<crate::ports::StarTransaction>, PaymentError> {
        const PAGE: u8 = 100;
        let stars = self.stars.as_ref().ok_or(PaymentError::MethodUnavailable)?;
        let mut all = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let offset = u32::try_from(all.len()).unwrap_or(u32::MAX);
            let page = stars.transactions(offset, PAGE).await?;
            let last = page.len() < usize::from(PAGE);
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
        Err(PaymentError::Provider(ProviderError::Unknown {
            message: format!("the Stars transactions run past {MAX_LIST_PAGES} pages"),
        }))
    }

    /// How many Stars top up at least `amount` (rounded up to whole Stars; the credit is
    /// Stars × `STARS_RUB_RATE`). `None` when Stars are off or the sum is out of range.
    #[must_use]
    pub fn stars_for(&self, amount: Money) -> Option<u32> {
        let rate = self.config.stars_rate.filter(|r| !r.is_zero())?;
        let (amount, rate_k) = (
            amount.kopecks().unsigned_abs(),
            rate.kopecks().unsigned_abs(),
        );
        let stars = u32::try_from(amount.div_ceil(rate_k))
            .ok()
            .filter(|s| *s > 0)?;
        let credit = rate.checked_mul(stars)?;
        (credit >= self.config.min_topup && credit <= self.config.max_topup).then_some(stars)
    }

    /// Telegram took Stars that cannot be credited (another sum than the invoice, not
    /// one of our invoices, a store failure): the admins are told, with the charge id a
    /// person needs to credit or refund it. Never throttled.
    ///
    /// # Errors
    /// [`NotifyError`] when no admin could be told.
    pub async fn stars_unmatched(
        &self,
        user: UserId,
        charge_id: &str,
        stars: u32,
        why: &str,
    ) -> Result<(), NotifyError> {
        let alert = AdminAlert {
            provider: PaymentProvider::TelegramStars.as_str().to_owned(),
            kind: ProviderErrorKind::Unknown,
            message: format!(
                "{stars} Stars paid by user {user} (charge {charge_id}) were not credited: {why}"
            ),
            subject: Some(format!("Stars charge {charge_id}")),
        };
        self.notifier.alert_admins(alert).await
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

    /// Checks a Telegram Stars checkout before Telegram takes the money
    /// (`pre_checkout_query`): the invoice must be this user's, still pending, for this
    /// many Stars, and younger than the payment window.
    ///
    /// # Errors
    /// [`PaymentError::UnknownPayment`], [`PaymentError::InvoiceNotPayable`],
    /// [`PaymentError::StarsMismatch`], [`PaymentError::Banned`].
    pub async fn stars_checkout(
        &self,
        payment_id: PaymentId,
        user: UserId,
        stars: u32,
    ) -> Result<Payment, PaymentError> {
        let payment = self.payment(payment_id).await?;
        let age = self.clock.now().since(payment.created_at);
        if payment.provider != PaymentProvider::TelegramStars
            || payment.user_id != user
            || payment.state != PaymentState::Pending
            || age >= self.config.poll.pending_window
        {
            return Err(PaymentError::InvoiceNotPayable);
        }
        match payment.provider_units {
            Some(invoiced) if invoiced == stars => {}
            Some(invoiced) => {
                return Err(PaymentError::StarsMismatch {
                    invoiced,
                    paid: stars,
                });
            }
            None => return Err(PaymentError::InvoiceNotPayable),
        }
        match self.users.user(user).await? {
            Some(u) if u.is_banned => Err(PaymentError::Banned(user)),
            Some(_) => Ok(payment),
            None => Err(PaymentError::UnknownUser(user)),
        }
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
        let gateway = self.gateway()?;
        let remote = match gateway.get_payment(provider_payment_id).await {
            Ok(remote) => remote,
            // The provider does not know it: not a payment of ours (a forged hint).
            Err(ProviderError::NotFound { .. }) => {
                return Err(PaymentError::UnknownPayment(provider_payment_id.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        self.apply_gateway_payment(&remote).await
    }

    /// A provider notification: re-reads what it names and applies that (a payment's
    /// state, or a refund of one of our refunds in progress). Repeats change nothing.
    ///
    /// # Errors
    /// [`PaymentError::Provider`] when the gateway cannot be asked (the provider should
    /// retry), [`PaymentError::Store`] when the database cannot (likewise),
    /// [`PaymentError::UnknownPayment`] when it is not ours.
    pub async fn gateway_notification(
        &self,
        hint: &GatewayHint,
    ) -> Result<PaymentApplied, PaymentError> {
        match hint {
            GatewayHint::Payment {
                provider_payment_id,
            } => self.sync_provider_payment(provider_payment_id).await,
            GatewayHint::Refund {
                refund_id,
                provider_payment_id,
            } => {
                let payment = self
                    .payments
                    .payment_by_provider_id(PaymentProvider::Yookassa, provider_payment_id)
                    .await?
                    .ok_or_else(|| PaymentError::UnknownPayment(provider_payment_id.clone()))?;
                // Only a refund we started moves money here; one made elsewhere (the
                // provider's dashboard) is left to `rei-cli payments reconcile`.
                let Some(hold) = payment
                    .refund_hold()
                    .filter(|_| payment.state == PaymentState::Paid)
                else {
                    return Ok(PaymentApplied::unchanged(payment));
                };
                let refund = self.gateway()?.get_refund(refund_id).await?;
                if refund
                    .provider_payment_id
                    .as_deref()
                    .is_some_and(|p| p != provider_payment_id)
                {
                    return Ok(PaymentApplied::unchanged(payment));
                }
                self.finish_refund(payment.id, hold, &refund, Origin::Report)
                    .await
            }
        }
    }

    /// The user's "Check payment" button: asks the gateway about a pending payment and
    /// applies the answer.
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
            _ => Ok(PaymentApplied::unchanged(payment)),
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

    /// The gateway's payments created in a window, every page (newest first): what
    /// reconciliation compares with ours.
    ///
    /// # Errors
    /// [`PaymentError::MethodUnavailable`], [`PaymentError::Provider`].
    pub async fn gateway_payments(
        &self,
        since: Timestamp,
        until: Option<Timestamp>,
    ) -> Result<Vec<GatewayPayment>, PaymentError> {
        let gateway = self.gateway()?;
        let mut all = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = gateway
                .list_payments(&PaymentListQuery {
                    since,
                    until,
                    cursor: cursor.take(),
                    limit: LIST_PAGE,
                })
                .await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
        Err(PaymentError::Provider(ProviderError::Unknown {
            message: format!("the payment list has more than {MAX_LIST_PAGES} pages"),
        }))
    }

    /// Applies one event with its ledger effect; tells the user once, after the commit,
    /// when credited or refunded.
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
                return Ok(PaymentApplied::unchanged(payment));
            }
            match self.payments.save_payment_transition(&transition).await {
                Ok(saved) => {
                    let credited = transition.credits();
                    let refunded = matches!(
                        transition.effect(),
                        Some(PaymentEffect::CaptureRefundHold(_))
                    );
                    // The notice was written with the change, into the outbox: the
                    // dispatcher tells the user, whatever happens to this process now.
                    let told = if credited || refunded {
                        Told::Queued
                    } else {
                        Told::Nothing
                    };
                    return Ok(PaymentApplied {
                        payment: saved,
                        credited,
                        told,
                    });
                }
                Err(StoreError::Conflict { .. }) if attempt < CONFLICT_RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Appends an audit line (for operations whose money moves were written already).
    pub(crate) async fn audit(&self, record: AuditRecord) -> Result<(), PaymentError> {
        Ok(self.users.append_audit(record).await?)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn gateway(&self) -> Result<&Arc<dyn PaymentGateway>, PaymentError> {
        self.gateway.as_ref().ok_or(PaymentError::MethodUnavailable)
    }

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

    async fn refund_by(
        &self,
        id: PaymentId,
        amount: Option<Money>,
        audit: Option<(Actor, &str)>,
    ) -> Result<RefundOutcome, PaymentError> {
        let payment = self.payment(id).await?;
        match payment.provider {
            PaymentProvider::Yookassa => {
                self.gateway()?;
            }
            PaymentProvider::TelegramStars => {
                self.stars.as_ref().ok_or(PaymentError::MethodUnavailable)?;
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
                    reservation_id: self.ids.reservation_id(),
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
                    self.users
                        .append_audit(AuditRecord {
                            actor,
                            action: AuditAction::PaymentRefund,
                            target_user: Some(payment.user_id),
                            amount: Some(amount),
                            reason: format!("payment {id}: {reason}"),
                            created_at: self.clock.now(),
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
    async fn continue_refund(
        &self,
        payment: &Payment,
        hold: ReservationId,
    ) -> Result<PaymentApplied, PaymentError> {
        match payment.provider {
            PaymentProvider::Yookassa => {
                let refund = self.request_refund(payment).await?;
                self.finish_refund(payment.id, hold, &refund, Origin::OurRequest)
                    .await
            }
            PaymentProvider::TelegramStars => self.refund_stars(payment).await,
        }
    }

    /// Asks Telegram to return a Stars charge; the answer captures the hold (done) or,
    /// for a definite refusal, releases it (admins told). Anything else keeps the hold.
    async fn refund_stars(&self, payment: &Payment) -> Result<PaymentApplied, PaymentError> {
        let stars = self.stars.as_ref().ok_or(PaymentError::MethodUnavailable)?;
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
    async fn request_refund(&self, payment: &Payment) -> Result<GatewayRefund, PaymentError> {
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
    async fn finish_refund(
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
        if current.provider_refund_id.is_none() && payment.provider == PaymentProvider::Yookassa {
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
                    if self.notifier.alert_admins(alert).await.is_err() {
                        return Err(PaymentError::RefundRefused {
                            reason: format!("{reason} (admins could not be told)"),
                        });
                    }
                }
                Err(PaymentError::RefundRefused { reason })
            }
        }
    }

    fn refund_outcome(payment: Payment) -> Result<RefundOutcome, PaymentError> {
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

    /// One round of the poller: asks the provider about pending YooKassa payments whose
    /// next check is due (oldest first; their webhook may be lost), looks up payments
    /// whose creation answer was lost, expires payments nobody paid within the window
    /// (Stars invoices included), and finishes refunds left pending or cut off by an
    /// error. Each check backs off (`PollConfig`); everything converges on the same
    /// idempotent path as webhooks and the "Check payment" button.
    ///
    /// # Errors
    /// [`PaymentError::Store`] when the store cannot list what is due. A failure about
    /// one payment is counted in the report and retried later.
    pub async fn poll(&self) -> Result<PollReport, PaymentError> {
        let now = self.clock.now();
        let cfg = self.config.poll;
        let mut report = PollReport::default();
        let due = |due| DueFilter {
            due,
            at: now,
            created_since: None,
            limit: cfg.batch,
        };
        if self.gateway.is_some() {
            let pending = self
                .payments
                .due_payments(due(Due::Pending(PaymentProvider::Yookassa)))
                .await?;
            report.skip_unreadable(pending.unreadable);
            for p in pending.payments {
                // Webhooks usually come within seconds: the first look waits a little.
                if p.checks == 0 && now.since(p.created_at) < cfg.first_backoff {
                    continue;
                }
                self.poll_topup(p, now, &mut report).await?;
            }
        }
        if self.gateway.is_some() || self.stars.is_some() {
            let refunding = self.payments.due_payments(due(Due::Refunding)).await?;
            report.skip_unreadable(refunding.unreadable);
            for p in refunding.payments {
                self.poll_refund(p, now, &mut report).await?;
            }
        }
        let invoices = self
            .payments
            .due_payments(due(Due::Pending(PaymentProvider::TelegramStars)))
            .await?;
        report.skip_unreadable(invoices.unreadable);
        for p in invoices.payments {
            let expires = p.created_at.plus(cfg.pending_window);
            if now >= expires {
                self.expire(&p, &mut report).await?;
            } else {
                self.payments
                    .schedule_check(p.id, p.checks, expires)
                    .await?;
            }
        }
        Ok(report)
    }

    async fn poll_topup(
        &self,
        p: Payment,
        now: Timestamp,
        report: &mut PollReport,
    ) -> Result<(), PaymentError> {
        let cfg = self.config.poll;
        let age = now.since(p.created_at);
        let result = match &p.provider_payment_id {
            Some(provider_id) => self.sync_provider_payment(provider_id).await.map(Some),
            None if age < cfg.unregistered_after => {
                let at = p.created_at.plus(cfg.unregistered_after);
                return Ok(self.payments.schedule_check(p.id, p.checks, at).await?);
            }
            None => self.find_unregistered(&p).await,
        };
        report.checked += 1;
        match result {
            Ok(Some(applied)) => {
                report.credited += u32::from(applied.credited);
                match applied.payment.state {
                    PaymentState::Pending if age >= cfg.pending_window => {
                        self.expire(&applied.payment, report).await
                    }
                    PaymentState::Pending => self.back_off(&p, now).await,
                    PaymentState::Cancelled => {
                        report.cancelled += u32::from(p.state == PaymentState::Pending);
                        Ok(())
                    }
                    PaymentState::Paid | PaymentState::Refunded => Ok(()),
                }
            }
            // Never created at the provider: nobody can pay it.
            Ok(None) => self.expire(&p, report).await,
            Err(e) => self.failed(&p, now, e, report).await,
        }
    }

    /// A payment whose creation answer was lost: is it in the provider's list (by our id
    /// in its metadata)? Applies what the provider says, or `None` when it is not there.
    async fn find_unregistered(&self, p: &Payment) -> Result<Option<PaymentApplied>, PaymentError> {
        let margin = Duration::from_secs(300);
        let since = p.created_at.minus(margin);
        let until = p
            .created_at
            .plus(self.config.poll.unregistered_after)
            .plus(margin);
        let listed = self.gateway_payments(since, Some(until)).await?;
        match listed.iter().find(|r| r.payment_id == Some(p.id)) {
            Some(remote) => self.apply_gateway_payment(remote).await.map(Some),
            None => Ok(None),
        }
    }

    async fn poll_refund(
        &self,
        p: Payment,
        now: Timestamp,
        report: &mut PollReport,
    ) -> Result<(), PaymentError> {
        let Some(hold) = p.refund_hold() else {
            return Ok(());
        };
        report.checked += 1;
        let result = self.resume_refund(&p, hold).await;
        match result {
            Ok(applied) if applied.payment.refund_hold() != Some(hold) => {
                report.refunds_done += 1;
                Ok(())
            }
            Ok(_) => self.back_off(&p, now).await,
            Err(PaymentError::RefundRefused { .. }) => {
                report.refunds_refused += 1;
                Ok(())
            }
            Err(e) => self.failed(&p, now, e, report).await,
        }
    }

    async fn resume_refund(
        &self,
        p: &Payment,
        hold: ReservationId,
    ) -> Result<PaymentApplied, PaymentError> {
        if p.provider == PaymentProvider::TelegramStars {
            return self.refund_stars(p).await;
        }
        let gateway = self.gateway()?;
        let Some(current) = p.refund.as_ref() else {
            return Ok(PaymentApplied::unchanged(p.clone()));
        };
        if let Some(refund_id) = &current.provider_refund_id {
            let refund = gateway.get_refund(refund_id).await?;
            return self
                .finish_refund(p.id, hold, &refund, Origin::Report)
                .await;
        }
        // The request's answer was lost. Its key may have expired (24 h): before sending
        // it again, make sure the money did not go back already.
        if let Some(provider_id) = &p.provider_payment_id {
            let remote = gateway.get_payment(provider_id).await?;
            let expected = p.refunded.checked_add(current.amount);
            if remote
                .refunded_amount
                .zip(expected)
                .is_some_and(|(there, expected)| there >= expected)
            {
                return self
                    .apply(p.id, PaymentEvent::RefundSucceeded { hold })
                    .await;
            }
        }
        match self.request_refund(p).await {
            Ok(refund) => {
                self.finish_refund(p.id, hold, &refund, Origin::OurRequest)
                    .await
            }
            // Nothing was refunded (just checked) and the provider refuses the request
            // outright: a refusal — the hold is released and the admins are told, rather
            // than asking again forever.
            Err(PaymentError::Provider(ProviderError::InvalidRequest { message })) => {
                let refused = GatewayRefund {
                    refund_id: format!("refused:{hold}"),
                    status: RefundStatus::Canceled {
                        reason: Some(message),
                    },
                    provider_payment_id: p.provider_payment_id.clone(),
                    amount: Some(current.amount),
                };
                self.finish_refund(p.id, hold, &refused, Origin::OurRequest)
                    .await
            }
            Err(e) => Err(e),
        }
    }

    async fn expire(&self, p: &Payment, report: &mut PollReport) -> Result<(), PaymentError> {
        let applied = self.apply(p.id, PaymentEvent::Expired).await;
        match applied {
            Ok(a) => {
                report.expired += u32::from(a.payment.state == PaymentState::Cancelled);
                Ok(())
            }
            // Paid meanwhile (its webhook won the race): nothing to expire.
            Err(PaymentError::Transition(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn back_off(&self, p: &Payment, now: Timestamp) -> Result<(), PaymentError> {
        let checks = p.checks.saturating_add(1);
        let at = now.plus(self.config.poll.backoff(checks));
        Ok(self.payments.schedule_check(p.id, checks, at).await?)
    }

    /// One payment's check failed: counted, reported and asked again later; a store
    /// failure ends the round.
    async fn failed(
        &self,
        p: &Payment,
        now: Timestamp,
        error: PaymentError,
        report: &mut PollReport,
    ) -> Result<(), PaymentError> {
        // The database is down: the round ends. Anything else about this one payment
        // is counted, and the others are still looked at.
        if let PaymentError::Store(StoreError::Unavailable(_)) = error {
            return Err(error);
        }
        report.errors += 1;
        report.failures.push((p.id, error.to_string()));
        // The provider does not know it, or its data contradicts ours: asking again soon
        // will not help. A pending one past its window expires; otherwise a person is
        // told and it is asked about again once a day.
        let permanent = matches!(
            error,
            PaymentError::UnknownPayment(_) | PaymentError::Transition(_)
        );
        if !permanent {
            return self.back_off(p, now).await;
        }
        let past_window = now.since(p.created_at) >= self.config.poll.pending_window;
        if past_window
            && p.state == PaymentState::Pending
            && matches!(error, PaymentError::UnknownPayment(_))
        {
            return self.expire(p, report).await;
        }
        let alert = AdminAlert {
            provider: p.provider.as_str().to_owned(),
            kind: ProviderErrorKind::Unknown,
            message: format!("payment {} needs a person: {error}", p.id),
            subject: Some(format!("payment {}", p.id)),
        };
        if let Err(e) = self.notifier.alert_admins(alert).await {
            report
                .failures
                .push((p.id, format!("the admins could not be told: {e}")));
        }
        let tomorrow = now.plus(Duration::from_secs(24 * 3600));
        Ok(self
            .payments
            .schedule_check(p.id, p.checks.saturating_add(1), tomorrow)
            .await?)
    }
}
