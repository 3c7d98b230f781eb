//! The poller: pending payments asked about with back-off, lost creations found,
//! abandoned ones expired, unfinished refunds finished.

use super::*;

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

impl PaymentService {
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
        let now = self.ports.clock.now();
        let cfg = self.config.poll;
        let mut report = PollReport::default();
        let due = |due| DueFilter {
            due,
            at: now,
            created_since: None,
            limit: cfg.batch,
        };
        if self.ports.gateway.is_some() {
            let pending = self
                .ports
                .payments
                .due_payments(due(Due::Pending(self.config.gateway)))
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
        if self.ports.gateway.is_some() || self.ports.stars.is_some() {
            let refunding = self
                .ports
                .payments
                .due_payments(due(Due::Refunding))
                .await?;
            report.skip_unreadable(refunding.unreadable);
            for p in refunding.payments {
                self.poll_refund(p, now, &mut report).await?;
            }
        }
        let invoices = self
            .ports
            .payments
            .due_payments(due(Due::Pending(PaymentProvider::TelegramStars)))
            .await?;
        report.skip_unreadable(invoices.unreadable);
        for p in invoices.payments {
            let expires = p.created_at.plus(cfg.pending_window);
            if now >= expires {
                self.expire(&p, &mut report).await?;
            } else {
                self.ports
                    .payments
                    .schedule_check(p.id, p.checks, expires)
                    .await?;
            }
        }
        Ok(report)
    }

    pub(super) async fn poll_topup(
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
                return Ok(self
                    .ports
                    .payments
                    .schedule_check(p.id, p.checks, at)
                    .await?);
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
    pub(super) async fn find_unregistered(
        &self,
        p: &Payment,
    ) -> Result<Option<PaymentApplied>, PaymentError> {
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

    pub(super) async fn poll_refund(
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

    pub(super) async fn resume_refund(
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

    pub(super) async fn expire(
        &self,
        p: &Payment,
        report: &mut PollReport,
    ) -> Result<(), PaymentError> {
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

    pub(super) async fn back_off(&self, p: &Payment, now: Timestamp) -> Result<(), PaymentError> {
        let checks = p.checks.saturating_add(1);
        let at = now.plus(self.config.poll.backoff(checks));
        Ok(self.ports.payments.schedule_check(p.id, checks, at).await?)
    }

    /// One payment's check failed: counted, reported and asked again later; a store
    /// failure ends the round.
    pub(super) async fn failed(
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
        if let Err(e) = self.ports.notifier.alert_admins(alert).await {
            report
                .failures
                .push((p.id, format!("the admins could not be told: {e}")));
        }
        let tomorrow = now.plus(Duration::from_secs(24 * 3600));
        Ok(self
            .ports
            .payments
            .schedule_check(p.id, p.checks.saturating_add(1), tomorrow)
            .await?)
    }
}
