//! Top-ups (YooKassa and Telegram Stars), applying provider states idempotently, and
//! refunds that never take more than the user still has.

use std::sync::Arc;
use std::time::Duration;

use crate::ids::{IdempotencyKey, PaymentId, ReservationId, UserId};
use crate::money::Money;
use crate::payment::{
    Due, DueFilter, NewPayment, Payment, PaymentEffect, PaymentEvent, PaymentFilter,
    PaymentProvider, PaymentState, PaymentTransition, PaymentTransitionError,
};
use crate::ports::{
    AdminAlert, Clock, CreatePayment, GatewayPayment, GatewayRefund, IdGenerator, Missing,
    Notifier, NotifyError, PaymentGateway, PaymentListQuery, PaymentStore, ProviderError,
    ProviderErrorKind, RefundRequest, RefundStatus, StarsGateway, StoreError, UserStore,
};
use crate::referral::{self, ReferralMove, ReferralStore};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord};

mod poll;
mod refund;
mod topup;
pub use poll::{PollConfig, PollReport};
pub use refund::RefundOutcome;

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
    /// Who the gateway is: YooKassa, or the sandbox's checkout page (`SANDBOX=1`).
    pub gateway: PaymentProvider,
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
            gateway: PaymentProvider::Yookassa,
        }
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

crate::opaque_debug!(PaymentPorts);

/// The referral program as payments see it: who is bound to whom, and the share.
#[derive(Clone)]
struct Referrals {
    store: Arc<dyn ReferralStore>,
    percent: u8,
}

/// Top-ups and refunds.
pub struct PaymentService {
    ports: PaymentPorts,
    config: PaymentConfig,
    referrals: Option<Referrals>,
}

impl std::fmt::Debug for PaymentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentService")
            .field("config", &self.config)
            .field("gateway", &self.ports.gateway.is_some())
            .finish_non_exhaustive()
    }
}

impl PaymentService {
    /// A service over its ports.
    #[must_use]
    pub const fn new(ports: PaymentPorts, config: PaymentConfig) -> Self {
        Self {
            ports,
            config,
            referrals: None,
        }
    }

    /// With the referral program: a referee's top-up credits its referrer `percent`
    /// (`REFERRAL_PERCENT`, 0 = no new rewards) in the same transaction, and a refund
    /// takes the reward back in the transaction that captures it (whatever the percent
    /// is now).
    #[must_use]
    pub fn with_referrals(mut self, store: Arc<dyn ReferralStore>, percent: u8) -> Self {
        self.referrals = Some(Referrals {
            store,
            percent: percent.min(100),
        });
        self
    }

    /// The share of a referee's top-up its referrer earns (0 without the program).
    #[must_use]
    pub fn referral_percent(&self) -> u8 {
        self.referrals.as_ref().map_or(0, |r| r.percent)
    }

    /// The referral move that goes with `transition`: the reward of a credited top-up
    /// of a bound user, or what a captured refund takes back of an earlier reward.
    async fn referral_move(
        &self,
        transition: PaymentTransition,
    ) -> Result<PaymentTransition, PaymentError> {
        let Some(referrals) = &self.referrals else {
            return Ok(transition);
        };
        let (before, after) = (transition.before(), transition.after());
        let now = after.updated_at;
        let referral = match transition.effect() {
            Some(PaymentEffect::Credit) if referrals.percent > 0 => {
                let reward = referral::reward_of(after.amount, referrals.percent);
                match referrals.store.referrer_of(after.user_id).await? {
                    Some(referrer) if !reward.is_zero() => Some(ReferralMove::Reward {
                        referee: after.user_id,
                        entry: referral::reward_entry(referrer, after.id, reward, now)?,
                    }),
                    _ => None,
                }
            }
            Some(PaymentEffect::CaptureRefundHold(_)) => {
                match referrals.store.referral_reward(after.id).await? {
                    Some(given) => {
                        let due = referral::due_back(
                            given.reward,
                            after.amount,
                            before.refunded,
                            after.refunded,
                        );
                        (!due.is_zero())
                            .then(|| {
                                referral::take_back_entry(
                                    given.referrer,
                                    after.id,
                                    after.refunded,
                                    due,
                                    now,
                                )
                            })
                            .transpose()?
                            .map(|entry| ReferralMove::TakeBack { entry })
                    }
                    None => None,
                }
            }
            _ => None,
        };
        Ok(match referral {
            Some(referral) => transition.with_referral(referral),
            None => transition,
        })
    }

    /// The settings in force.
    #[must_use]
    pub const fn config(&self) -> &PaymentConfig {
        &self.config
    }

    /// Whether card payments (YooKassa) are configured.
    #[must_use]
    pub fn has_gateway(&self) -> bool {
        self.ports.gateway.is_some()
    }

    /// Whether Telegram Stars can be refunded and reconciled here (a bot token).
    #[must_use]
    pub fn has_stars(&self) -> bool {
        self.ports.stars.is_some()
    }

    pub(crate) fn payments_store(&self) -> &dyn PaymentStore {
        self.ports.payments.as_ref()
    }

    /// Every Stars transaction of the bot, oldest first (all pages).
    pub(crate) async fn star_transactions(
        &self,
    ) -> Result<Vec<crate::ports::StarTransaction>, PaymentError> {
        const PAGE: u8 = 100;
        let stars = self
            .ports
            .stars
            .as_ref()
            .ok_or(PaymentError::MethodUnavailable)?;
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
            let transition = payment.apply(event.clone(), self.ports.clock.now())?;
            if !transition.changed() {
                return Ok(PaymentApplied::unchanged(payment));
            }
            let transition = self.referral_move(transition).await?;
            match self
                .ports
                .payments
                .save_payment_transition(&transition)
                .await
            {
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
        Ok(self.ports.users.append_audit(record).await?)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.ports.clock.now()
    }

    /// The gateway, when it is the one that took `provider`'s payments (a sandbox
    /// payment is never sent to YooKassa, nor the other way round).
    fn gateway_for(
        &self,
        provider: PaymentProvider,
    ) -> Result<&Arc<dyn PaymentGateway>, PaymentError> {
        if provider != self.config.gateway {
            return Err(PaymentError::MethodUnavailable);
        }
        self.gateway()
    }

    fn gateway(&self) -> Result<&Arc<dyn PaymentGateway>, PaymentError> {
        self.ports
            .gateway
            .as_ref()
            .ok_or(PaymentError::MethodUnavailable)
    }
}
