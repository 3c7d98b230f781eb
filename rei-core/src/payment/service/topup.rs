//! Top-ups: YooKassa payments and Telegram Stars invoices, and the provider's word
//! on them (webhook hints, the check button, listings).

use super::*;

impl PaymentService {
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
        self.ports.notifier.alert_admins(alert).await
    }

    pub(super) fn new_payment(
        &self,
        user: UserId,
        provider: PaymentProvider,
        amount: Money,
        provider_units: Option<u32>,
    ) -> NewPayment {
        NewPayment {
            id: self.ports.ids.payment_id(),
            user_id: user,
            provider,
            amount,
            provider_units,
            created_at: self.ports.clock.now(),
        }
    }

    pub(super) async fn check_payer(
        &self,
        user: UserId,
        amount: Money,
    ) -> Result<(), PaymentError> {
        let Some(u) = self.ports.users.user(user).await? else {
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
        let Some(gateway) = &self.ports.gateway else {
            return Err(PaymentError::MethodUnavailable);
        };
        self.check_payer(user, amount).await?;
        if self.config.receipts && receipt_email.is_none() {
            return Err(PaymentError::EmailRequired);
        }
        let new = self.new_payment(user, self.config.gateway, amount, None);
        let payment = self.ports.payments.create_payment(new).await?;
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
        Ok(self.ports.payments.create_payment(new).await?)
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
        self.ports
            .payments
            .payment(id)
            .await?
            .ok_or_else(|| PaymentError::UnknownPayment(id.to_string()))
    }

    /// Payments matching a filter.
    ///
    /// # Errors
    /// [`PaymentError::Store`].
    pub async fn list(&self, filter: PaymentFilter) -> Result<Vec<Payment>, PaymentError> {
        Ok(self.ports.payments.payments(filter).await?)
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
        let age = self.ports.clock.now().since(payment.created_at);
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
        match self.ports.users.user(user).await? {
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
                    .ports
                    .payments
                    .payment_by_provider_id(self.config.gateway, provider_payment_id)
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

    /// `user`'s "Check payment" button: asks the gateway about their pending payment and
    /// applies the answer. Another user's payment is unknown to them, and the gateway is
    /// not asked.
    ///
    /// # Errors
    /// [`PaymentError::UnknownPayment`] for a payment that is not `user`'s; otherwise as
    /// [`Self::sync_provider_payment`].
    pub async fn check(&self, user: UserId, id: PaymentId) -> Result<PaymentApplied, PaymentError> {
        let payment = self.payment(id).await?;
        if payment.user_id != user {
            return Err(PaymentError::UnknownPayment(id.to_string()));
        }
        match (
            &payment.provider_payment_id,
            payment.state,
            payment.provider,
        ) {
            (Some(provider_id), PaymentState::Pending, provider)
                if provider == self.config.gateway =>
            {
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
            .ports
            .payments
            .payment_by_provider_id(self.config.gateway, &remote.provider_payment_id)
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
}
