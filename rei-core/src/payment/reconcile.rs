//! Reconciliation: the provider's payments in a window against ours. Each difference is
//! reported; with `apply`, those the normal idempotent path can fix (a payment paid or
//! cancelled there whose news never reached us) are fixed through it, and the rest are
//! listed for a person.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use super::service::{PaymentError, PaymentService};
use super::{Payment, PaymentFilter, PaymentProvider, PaymentState};
use crate::ids::{PaymentId, UserId};
use crate::money::Money;
use crate::ports::{GatewayPayment, GatewayStatus, StarTransaction, StarTransactionKind};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord};

/// Local payments are read from this long before the window, so that one created just
/// before it at our end but after it at the provider's is still matched.
const LOCAL_MARGIN: Duration = Duration::from_secs(3600);
/// At most this many local payments in one reconciliation.
const LOCAL_LIMIT: u32 = 100_000;

/// What differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Paid at the provider, not credited here.
    PaidThereNotHere,
    /// Cancelled at the provider, still pending here.
    CancelledThereNotHere,
    /// Credited here, not paid (or not listed) at the provider.
    PaidHereNotThere,
    /// Refunded (in part or whole) at the provider, not here.
    RefundedThereNotHere,
    /// Refunded here, not at the provider.
    RefundedHereNotThere,
    /// Another amount there than here.
    AmountMismatch,
    /// A payment of the shop that names none of ours.
    UnknownToUs,
}

/// What became of a difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "resolution", content = "detail", rename_all = "snake_case")]
pub enum Resolution {
    /// Fixed now through the normal path (what was done).
    Fixed(String),
    /// Fixable by `--apply`.
    Fixable,
    /// A person must look (why it cannot be fixed automatically).
    NeedsPerson(String),
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Whose books: YooKassa's or Telegram Stars'.
    pub provider: PaymentProvider,
    /// What differs.
    pub kind: DifferenceKind,
    /// Our payment, when one is involved.
    pub payment_id: Option<PaymentId>,
    /// The provider's id, when the provider knows it.
    pub provider_payment_id: Option<String>,
    /// The payer.
    pub user_id: Option<UserId>,
    /// Our amount.
    pub local_amount: Option<Money>,
    /// The provider's amount.
    pub remote_amount: Option<Money>,
    /// Our state.
    pub local_state: Option<PaymentState>,
    /// The provider's status (`succeeded`, `canceled`, …).
    pub remote_status: Option<String>,
    /// What became of it.
    pub resolution: Resolution,
}

/// What a reconciliation found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Payments listed by the provider.
    pub remote_checked: usize,
    /// Our payments in the window.
    pub local_checked: usize,
    /// Every difference, oldest first.
    pub differences: Vec<Difference>,
}

impl ReconcileReport {
    /// Differences a person must look at.
    #[must_use]
    pub fn needs_person(&self) -> usize {
        self.differences
            .iter()
            .filter(|d| matches!(d.resolution, Resolution::NeedsPerson(_)))
            .count()
    }
}

impl PaymentService {
    /// One audit line for a fix made by reconciliation.
    async fn audit_fix(
        &self,
        actor: Actor,
        payment: &Payment,
        credited: bool,
        done: &str,
        why: &str,
    ) -> Result<(), PaymentError> {
        self.audit(AuditRecord {
            actor,
            action: AuditAction::PaymentReconcile,
            target_user: Some(payment.user_id),
            amount: credited.then_some(payment.amount),
            reason: format!(
                "payment {} ({}): {why}; {done}",
                payment.id,
                payment.provider_payment_id.as_deref().unwrap_or("-")
            ),
            created_at: self.now(),
        })
        .await
    }
}

impl PaymentService {
    /// The bot's Stars transactions since `since` against our Stars payments: charges we
    /// never credited (a lost `successful_payment`; credited with `apply` when the
    /// invoice names a payment of ours), credits without a charge, and refunds made
    /// there but not here.
    async fn reconcile_stars(
        &self,
        since: Timestamp,
        apply: Option<&Actor>,
        report: &mut ReconcileReport,
    ) -> Result<(), PaymentError> {
        let transactions: Vec<StarTransaction> = self
            .star_transactions()
            .await?
            .into_iter()
            .filter(|t| t.at >= since)
            .collect();
        let refunded_there: HashSet<&str> = transactions
            .iter()
            .filter(|t| matches!(t.kind, StarTransactionKind::Refund { .. }))
            .map(|t| t.charge_id.as_str())
            .collect();
        let mut charged: HashSet<&str> = HashSet::new();
        for t in &transactions {
            let StarTransactionKind::Payment { user, payment } = &t.kind else {
                continue;
            };
            report.remote_checked += 1;
            charged.insert(t.charge_id.as_str());
            let ours = self
                .payments_store()
                .payment_by_provider_id(PaymentProvider::TelegramStars, &t.charge_id)
                .await?;
            if let Some(p) = ours {
                let refunded_here = p.state == PaymentState::Refunded || p.refund.is_some();
                if refunded_there.contains(t.charge_id.as_str()) && !refunded_here {
                    report.differences.push(star_difference(
                        DifferenceKind::RefundedThereNotHere,
                        Some(&p),
                        t,
                        *user,
                        Resolution::NeedsPerson(
                            "refunded in Telegram, not here: take it back with `rei-cli balance sub` if the user still has it".into(),
                        ),
                    ));
                }
                continue;
            }
            let invoice = match *payment {
                Some(id) => match self.payment(id).await {
                    Ok(p) => Some(p),
                    Err(PaymentError::UnknownPayment(_)) => None,
                    Err(e) => return Err(e),
                },
                None => None,
            };
            let Some(invoice) = invoice.filter(|p| {
                p.provider == PaymentProvider::TelegramStars && p.provider_units == Some(t.stars)
            }) else {
                report.differences.push(star_difference(
                    DifferenceKind::UnknownToUs,
                    None,
                    t,
                    *user,
                    Resolution::NeedsPerson(format!(
                        "{} Stars charged (charge {}) for no invoice of ours: credit or refund it by hand",
                        t.stars, t.charge_id
                    )),
                ));
                continue;
            };
            let resolution = match apply {
                Some(actor) => match self.stars_paid(invoice.id, &t.charge_id, t.stars).await {
                    Ok(applied) => {
                        let done = format!("credited {}", applied.payment.amount);
                        self.audit_fix(
                            actor.clone(),
                            &applied.payment,
                            applied.credited,
                            &done,
                            "charged in Telegram Stars, not credited here",
                        )
                        .await?;
                        Resolution::Fixed(done)
                    }
                    Err(e @ PaymentError::Store(_)) => return Err(e),
                    Err(e) => Resolution::NeedsPerson(format!("could not be applied: {e}")),
                },
                None => Resolution::Fixable,
            };
            report.differences.push(star_difference(
                DifferenceKind::PaidThereNotHere,
                Some(&invoice),
                t,
                *user,
                resolution,
            ));
        }
        let local = self
            .list(PaymentFilter {
                state: None,
                user_id: None,
                since: Some(since),
                provider: None,
                limit: LOCAL_LIMIT,
            })
            .await?;
        for p in local
            .iter()
            .filter(|p| p.provider == PaymentProvider::TelegramStars)
        {
            report.local_checked += 1;
            let credited = matches!(p.state, PaymentState::Paid | PaymentState::Refunded);
            let charge = p.provider_payment_id.as_deref().unwrap_or_default();
            if credited && !charged.contains(charge) {
                report.differences.push(paid_here_not_there(
                    p,
                    "credited here but no such charge among the bot's Stars transactions",
                ));
            }
        }
        Ok(())
    }
}

/// A payment we credited that the provider's books do not show: a person must look.
fn paid_here_not_there(p: &Payment, why: &str) -> Difference {
    Difference {
        provider: p.provider,
        kind: DifferenceKind::PaidHereNotThere,
        payment_id: Some(p.id),
        provider_payment_id: p.provider_payment_id.clone(),
        user_id: Some(p.user_id),
        local_amount: Some(p.amount),
        remote_amount: None,
        local_state: Some(p.state),
        remote_status: None,
        resolution: Resolution::NeedsPerson(why.to_owned()),
    }
}

/// A difference about one Stars transaction.
fn star_difference(
    kind: DifferenceKind,
    mine: Option<&Payment>,
    t: &StarTransaction,
    payer: Option<UserId>,
    resolution: Resolution,
) -> Difference {
    Difference {
        provider: PaymentProvider::TelegramStars,
        kind,
        payment_id: mine.map(|p| p.id),
        provider_payment_id: Some(t.charge_id.clone()),
        user_id: mine.map(|p| p.user_id).or(payer),
        local_amount: mine.map(|p| p.amount),
        remote_amount: None,
        local_state: mine.map(|p| p.state),
        remote_status: Some(format!("{} stars", t.stars)),
        resolution,
    }
}

const fn status_text(status: &GatewayStatus) -> &'static str {
    match status {
        GatewayStatus::Pending => "pending",
        GatewayStatus::WaitingForCapture => "waiting_for_capture",
        GatewayStatus::Succeeded => "succeeded",
        GatewayStatus::Canceled { .. } => "canceled",
    }
}

impl PaymentService {
    /// Compares the providers' books since `since` with ours — YooKassa's payments and
    /// the bot's Telegram Stars transactions, each when configured; with `apply` (made
    /// by `actor`), fixes what the idempotent path can fix (never crediting anything
    /// twice) and writes an audit line per fix: who, when, what and why.
    ///
    /// # Errors
    /// [`PaymentError::MethodUnavailable`] with neither, [`PaymentError::Provider`] when a
    /// list cannot be read, [`PaymentError::Store`].
    pub async fn reconcile(
        &self,
        since: Timestamp,
        apply: Option<Actor>,
    ) -> Result<ReconcileReport, PaymentError> {
        if !self.has_gateway() && !self.has_stars() {
            return Err(PaymentError::MethodUnavailable);
        }
        let mut report = ReconcileReport::default();
        if self.has_gateway() {
            report = self.reconcile_yookassa(since, apply.as_ref()).await?;
        }
        if self.has_stars() {
            self.reconcile_stars(since, apply.as_ref(), &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn reconcile_yookassa(
        &self,
        since: Timestamp,
        apply: Option<&Actor>,
    ) -> Result<ReconcileReport, PaymentError> {
        let mut remote = self.gateway_payments(since, None).await?;
        remote.reverse();
        let local: Vec<Payment> = self
            .list(PaymentFilter {
                state: None,
                user_id: None,
                since: Some(since.minus(LOCAL_MARGIN)),
                provider: None,
                limit: LOCAL_LIMIT,
            })
            .await?
            .into_iter()
            .filter(|p| p.provider == self.config().gateway)
            .collect();
        let by_provider: HashMap<&str, &Payment> = local
            .iter()
            .filter_map(|p| p.provider_payment_id.as_deref().map(|id| (id, p)))
            .collect();
        let by_ours: HashMap<PaymentId, &Payment> = local.iter().map(|p| (p.id, p)).collect();
        let mut report = ReconcileReport {
            remote_checked: remote.len(),
            local_checked: local.iter().filter(|p| p.created_at >= since).count(),
            differences: Vec::new(),
        };
        let mut seen: HashSet<PaymentId> = HashSet::new();
        for r in &remote {
            let mine = match by_provider.get(r.provider_payment_id.as_str()) {
                Some(p) => Some((*p).clone()),
                None => match r.payment_id {
                    Some(ours) => match by_ours.get(&ours) {
                        Some(p) => Some((*p).clone()),
                        // Older than the local window: ask the store directly.
                        None => match self.payment(ours).await {
                            Ok(p) => Some(p),
                            Err(PaymentError::UnknownPayment(_)) => None,
                            Err(e) => return Err(e),
                        },
                    },
                    None => None,
                },
            };
            if let Some(p) = &mine {
                seen.insert(p.id);
            }
            if let Some(d) = self.compare(r, mine.as_ref(), apply).await? {
                report.differences.push(d);
            }
        }
        for p in local.iter().filter(|p| p.created_at >= since) {
            if seen.contains(&p.id)
                || !matches!(p.state, PaymentState::Paid | PaymentState::Refunded)
            {
                continue;
            }
            report.differences.push(paid_here_not_there(
                p,
                "credited here but not in the provider's list",
            ));
        }
        Ok(report)
    }

    async fn compare(
        &self,
        r: &GatewayPayment,
        mine: Option<&Payment>,
        apply: Option<&Actor>,
    ) -> Result<Option<Difference>, PaymentError> {
        let difference = |kind, resolution| Difference {
            provider: self.config().gateway,
            kind,
            payment_id: mine.map(|p| p.id),
            provider_payment_id: Some(r.provider_payment_id.clone()),
            user_id: mine.map(|p| p.user_id).or(r.user_id),
            local_amount: mine.map(|p| p.amount),
            remote_amount: Some(r.amount),
            local_state: mine.map(|p| p.state),
            remote_status: Some(status_text(&r.status).to_owned()),
            resolution,
        };
        let Some(p) = mine else {
            return Ok(Some(difference(
                DifferenceKind::UnknownToUs,
                Resolution::NeedsPerson("no payment of ours matches it".into()),
            )));
        };
        if p.amount != r.amount {
            return Ok(Some(difference(
                DifferenceKind::AmountMismatch,
                Resolution::NeedsPerson(format!("{} here, {} there", p.amount, r.amount)),
            )));
        }
        let refunded_there = r.refunded_amount.unwrap_or(Money::ZERO);
        let kind = match (&r.status, p.state) {
            (GatewayStatus::Succeeded, PaymentState::Pending | PaymentState::Cancelled) => {
                DifferenceKind::PaidThereNotHere
            }
            (GatewayStatus::Canceled { .. }, PaymentState::Pending) => {
                DifferenceKind::CancelledThereNotHere
            }
            (
                GatewayStatus::Pending
                | GatewayStatus::WaitingForCapture
                | GatewayStatus::Canceled { .. },
                PaymentState::Paid | PaymentState::Refunded,
            ) => DifferenceKind::PaidHereNotThere,
            // Our own refund under way: the poller captures its hold; not a difference.
            (GatewayStatus::Succeeded, PaymentState::Paid) if p.refund.is_some() => {
                return Ok(None);
            }
            (GatewayStatus::Succeeded, PaymentState::Paid | PaymentState::Refunded)
                if refunded_there > p.refunded =>
            {
                DifferenceKind::RefundedThereNotHere
            }
            (GatewayStatus::Succeeded, PaymentState::Paid | PaymentState::Refunded)
                if refunded_there < p.refunded =>
            {
                DifferenceKind::RefundedHereNotThere
            }
            _ => return Ok(None),
        };
        let resolution = match kind {
            DifferenceKind::PaidThereNotHere | DifferenceKind::CancelledThereNotHere
                if apply.is_some() =>
            {
                match self.apply_gateway_payment(r).await {
                    Ok(applied) => {
                        let done = if applied.credited {
                            format!("credited {}", applied.payment.amount)
                        } else {
                            format!("now {}", applied.payment.state)
                        };
                        if let Some(actor) = apply {
                            let why = match kind {
                                DifferenceKind::PaidThereNotHere => {
                                    "paid at the provider, not here"
                                }
                                _ => "cancelled at the provider, still pending here",
                            };
                            self.audit_fix(
                                actor.clone(),
                                &applied.payment,
                                applied.credited,
                                &done,
                                why,
                            )
                            .await?;
                        }
                        Resolution::Fixed(done)
                    }
                    Err(e @ PaymentError::Store(_)) => return Err(e),
                    // One that cannot be applied is listed; the others still are fixed.
                    Err(e) => Resolution::NeedsPerson(format!("could not be applied: {e}")),
                }
            }
            DifferenceKind::PaidThereNotHere | DifferenceKind::CancelledThereNotHere => {
                Resolution::Fixable
            }
            DifferenceKind::PaidHereNotThere => Resolution::NeedsPerson(
                "credited here but not paid there: check the payment in the YooKassa dashboard"
                    .into(),
            ),
            DifferenceKind::RefundedThereNotHere => Resolution::NeedsPerson(format!(
                "{refunded_there} refunded there, {} here: take the difference back with `rei-cli balance sub` if the user still has it",
                p.refunded
            )),
            DifferenceKind::RefundedHereNotThere => Resolution::NeedsPerson(format!(
                "{} refunded here, {refunded_there} there: look the refund up in the YooKassa dashboard",
                p.refunded
            )),
            DifferenceKind::AmountMismatch | DifferenceKind::UnknownToUs => {
                Resolution::NeedsPerson(String::new())
            }
        };
        Ok(Some(difference(kind, resolution)))
    }
}
