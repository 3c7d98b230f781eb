//! Top-ups from the dialogue: the amounts, YooKassa links, Telegram Stars invoices,
//! checkout and the credit, and `/history`.

use super::*;

fn pay_link(payment: &crate::payment::Payment) -> Vec<Reply> {
    let mut row = Vec::new();
    if let Some(url) = &payment.confirmation_url {
        row.push(Button {
            label: Text::key("pay-open"),
            target: ButtonTarget::Url(url.clone()),
        });
    }
    row.push(Button::action(
        Text::key("pay-check"),
        Action::CheckPayment(payment.id),
    ));
    vec![Reply::with_buttons(
        Text::key("pay-link").arg("amount", Arg::Money(payment.amount)),
        vec![row],
    )]
}

impl Conversation {
    /// `/history`: page `page` of the user's jobs (five a page, newest first), each
    /// numbered and dated, with "Send again" and "Repeat" for finished ones and buttons
    /// to the older and newer pages. The first page also shows the latest money
    /// movements, and jobs of the v2.0 bot when there are few newer ones.
    pub(super) async fn history(&self, user: UserId, page: u32) -> Replies {
        const PER_PAGE: u32 = 5;
        let Some(offset) = page.checked_mul(PER_PAGE) else {
            return Ok(say("button-expired"));
        };
        let mut jobs = self.ports.jobs.history(user, PER_PAGE + 1, offset).await?;
        let older_page = jobs.len() > PER_PAGE as usize;
        jobs.truncate(PER_PAGE as usize);
        let first = page == 0;
        let entries = if first {
            self.ports.ledger.history(user, 10).await?
        } else {
            Vec::new()
        };
        // Jobs of the v2.0 bot fill the first page when there are few newer ones.
        let older = PER_PAGE.saturating_sub(u32::try_from(jobs.len()).unwrap_or(PER_PAGE));
        let legacy = if first && older > 0 {
            self.ports.jobs.legacy_history(user, older).await?
        } else {
            Vec::new()
        };
        if jobs.is_empty() && legacy.is_empty() {
            if !first {
                return Ok(say("button-expired"));
            }
            if entries.is_empty() {
                return Ok(say("history-empty"));
            }
        }
        let entry_lines = entries
            .iter()
            .map(|e| {
                Text::key(match e.kind {
                    crate::ledger::EntryKind::Credit => "history-credit",
                    crate::ledger::EntryKind::Debit => "history-debit",
                    crate::ledger::EntryKind::Refund => "history-refund",
                })
                .arg("amount", Arg::Money(e.amount))
                .arg("what", Arg::Text(e.description.clone()))
            })
            .collect();
        let now = self.ports.clock.now();
        let number = |i: usize| {
            Arg::Number(i64::from(offset).saturating_add(i64::try_from(i + 1).unwrap_or(i64::MAX)))
        };
        let job_lines = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                // A result still kept can be downloaded until its link expires.
                let link = j.result.as_ref().and_then(|result| {
                    let expires = j
                        .finished_at
                        .unwrap_or(j.updated_at)
                        .plus(self.config.result_link_ttl);
                    (expires > now)
                        .then(|| self.ports.assets.download_link(result, expires))
                        .flatten()
                });
                let line = Text::key(if link.is_some() {
                    "history-job-link"
                } else {
                    "history-job"
                })
                .arg("n", number(i))
                .arg("date", Arg::Date(j.created_at))
                .arg("what", Arg::Text(j.quote.product.to_string()))
                .arg("status", Arg::Text(j.state.as_str().to_owned()))
                .arg("price", Arg::Money(j.quote.amount));
                match link {
                    Some(link) => line.arg("link", Arg::Text(link)),
                    None => line,
                }
            })
            .chain(legacy.iter().map(|j| {
                Text::key("history-legacy-job")
                    .arg("what", Arg::Text(j.kind.clone()))
                    .arg("status", Arg::Text(j.status.clone()))
                    .arg(
                        "price",
                        Arg::Money(j.cost_actual.or(j.cost_estimate).unwrap_or(Money::ZERO)),
                    )
            }))
            .collect();
        // For each finished job shown, by its number in the list: "Send again" (a
        // completed one's result) and "Repeat"; one row a job.
        let mut rows: Vec<Vec<Button>> = jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.state.is_final())
            .map(|(i, j)| {
                let mut row = Vec::new();
                if j.state == crate::job::JobState::Completed && j.result.is_some() {
                    row.push(Button::action(
                        Text::key("history-send-again").arg("n", number(i)),
                        Action::SendAgain(j.id),
                    ));
                }
                row.push(Button::action(
                    Text::key("history-repeat").arg("n", number(i)),
                    Action::Repeat(j.id),
                ));
                row
            })
            .collect();
        let mut pages = Vec::new();
        if let Some(newer) = page.checked_sub(1) {
            pages.push(Button::action(
                Text::key("history-newer"),
                Action::HistoryPage(newer),
            ));
        }
        if older_page {
            pages.push(Button::action(
                Text::key("history-older"),
                Action::HistoryPage(page.saturating_add(1)),
            ));
        }
        if !pages.is_empty() {
            rows.push(pages);
        }
        let text = if first {
            Text::key("history")
                .arg("entries", Arg::List(entry_lines))
                .arg("jobs", Arg::List(job_lines))
        } else {
            Text::key("history-page")
                .arg("page", Arg::Number(i64::from(page) + 1))
                .arg("jobs", Arg::List(job_lines))
        };
        Ok(vec![Reply::with_buttons(text, rows)])
    }

    /// `/promo CODE`: the code's credit, once per user, or why not.
    pub(super) async fn promo(&self, user: UserId, code: &str) -> Replies {
        use crate::promo::{PromoError, Redeemed};
        let (code, redeemed) = match self.ports.promos.redeem(user, code).await {
            Ok(done) => done,
            Err(PromoError::BadCode(_)) => return Ok(say("promo-bad-code")),
            Err(e) => return Err(e.into()),
        };
        let text = |key| Text::key(key).arg("code", Arg::Text(code.to_string()));
        Ok(vec![Reply::text(match redeemed {
            Redeemed::Credited(posted) => text("promo-credited")
                .arg("amount", Arg::Money(posted.entry.amount))
                .arg("balance", Arg::Money(posted.balance)),
            Redeemed::AlreadyUsed => text("promo-already-used"),
            Redeemed::Exhausted => text("promo-exhausted"),
            Redeemed::Expired => text("promo-expired"),
            Redeemed::Disabled => text("promo-disabled"),
            Redeemed::Unknown => text("promo-unknown"),
        })])
    }

    /// `/ref`: the user's link, how many they invited and what it earned; while the
    /// program is off (`REFERRAL_PERCENT=0`), the link and what it earned before.
    pub(super) async fn referral(&self, user: UserId) -> Replies {
        let percent = self
            .ports
            .payments
            .as_ref()
            .map_or(0, |p| p.referral_percent());
        let (code, summary) = self.ports.referrals.summary(user).await?;
        let key = if percent == 0 { "ref-off" } else { "ref-info" };
        Ok(vec![Reply::text(
            Text::key(key)
                .arg("link", Arg::StartLink(code.start_payload()))
                .arg("percent", Arg::Number(i64::from(percent)))
                .arg("invited", Arg::Number(i64::from(summary.invited)))
                .arg("earned", Arg::Money(summary.earned)),
        )])
    }

    pub(super) fn pay_menu(&self) -> Vec<Reply> {
        let Some(payments) = &self.ports.payments else {
            return say("pay-unavailable");
        };
        let offered = self.topup_amounts();
        let amounts = || offered.iter().copied();
        let mut buttons: Vec<Vec<Button>> = Vec::new();
        if payments.has_gateway() {
            let cards: Vec<Button> = amounts()
                .map(|amount| {
                    Button::action(
                        Text::key("pay-amount").arg("amount", Arg::Money(amount)),
                        Action::TopUp(amount),
                    )
                })
                .collect();
            buttons.push(cards);
        }
        let stars: Vec<Button> = amounts()
            .filter_map(|amount| {
                let stars = payments.stars_for(amount)?;
                Some(Button::action(
                    Text::key("pay-stars-amount")
                        .arg("stars", Arg::Number(i64::from(stars)))
                        .arg("amount", Arg::Money(amount)),
                    Action::TopUpStars(amount),
                ))
            })
            .collect();
        buttons.push(stars);
        buttons.retain(|group| !group.is_empty());
        if buttons.is_empty() {
            return say("pay-unavailable");
        }
        vec![Reply::with_buttons(Text::key("pay-choose"), buttons)]
    }

    /// The top-up amounts offered now: the live ones (`rei-cli prices set topups …`),
    /// else the settings' (`TOPUP_AMOUNTS`).
    pub(super) fn topup_amounts(&self) -> Vec<Money> {
        let live = self.ports.prices.offer().topup_amounts;
        if live.is_empty() {
            self.config.topup_amounts.clone()
        } else {
            live
        }
    }

    /// Whether `amount` is one of the top-up amounts offered now: a button for an
    /// amount no longer offered has expired.
    pub(super) fn offers(&self, amount: Money) -> bool {
        self.topup_amounts().contains(&amount)
    }

    /// A card top-up of `amount` (one of `TOPUP_AMOUNTS`): with receipts on, the payer's
    /// e-mail is asked once (and kept) before the payment is created.
    pub(super) async fn top_up(
        &self,
        user: UserId,
        amount: Money,
        typed_email: Option<Email>,
        stored: &mut Stored,
    ) -> Replies {
        let (Some(payments), true) = (&self.ports.payments, self.offers(amount)) else {
            return Ok(say("button-expired"));
        };
        let email = if payments.config().receipts {
            let known = match typed_email {
                Some(email) => Some(email),
                None => self
                    .ports
                    .users
                    .user(user)
                    .await?
                    .and_then(|u| u.receipt_email),
            };
            let Some(email) = known else {
                stored.state = DialogueState::AwaitingEmail { amount };
                return Ok(say("pay-email-ask"));
            };
            Some(email.as_str().to_owned())
        } else {
            None
        };
        match payments.create_topup(user, amount, email).await {
            Ok(payment) => Ok(pay_link(&payment)),
            Err(PaymentError::MethodUnavailable) => Ok(say("pay-unavailable")),
            Err(PaymentError::AmountOutOfRange { .. }) => Ok(say("button-expired")),
            Err(PaymentError::Provider(_)) => Ok(say("pay-provider-down")),
            Err(e) => Err(e.into()),
        }
    }

    /// The messenger asks, before taking the Stars, whether an invoice may be paid:
    /// `payment` is the payment the front end read from the invoice (`None` when it is
    /// not one of ours, or not in Stars); it must be this user's, still open and for this
    /// many Stars. `Err` carries the words shown to the payer.
    pub async fn stars_checkout(
        &self,
        sender: &Sender,
        payment: Option<PaymentId>,
        stars: u32,
    ) -> Result<(), Text> {
        let (Some(payments), Some(id)) = (&self.ports.payments, payment) else {
            return Err(Text::key("stars-invoice-expired"));
        };
        match payments.stars_checkout(id, sender.id, stars).await {
            Ok(_) => Ok(()),
            Err(PaymentError::Store(_)) => Err(Text::key("stars-checkout-unavailable")),
            Err(_) => Err(Text::key("stars-invoice-expired")),
        }
    }

    /// The messenger took the Stars (Telegram: `successful_payment`): credit exactly once
    /// by the charge id, whatever the rate limit, a ban or the dialogue say. `payment` is
    /// as in [`Self::stars_checkout`]. A payment that cannot be credited (another sum,
    /// not our invoice) is told to the admins.
    ///
    /// # Errors
    /// [`ConversationError::Payment`] when the store fails (Telegram does not resend
    /// `successful_payment`: the admins are told to credit it by hand).
    pub async fn stars_paid(
        &self,
        sender: &Sender,
        payment: Option<PaymentId>,
        stars: u32,
        charge_id: &str,
    ) -> Replies {
        let Some(payments) = &self.ports.payments else {
            return Ok(say("stars-payment-problem"));
        };
        let Some(id) = payment else {
            payments
                .stars_unmatched(sender.id, charge_id, stars, "not one of our invoices")
                .await?;
            return Ok(say("stars-payment-problem"));
        };
        match payments.stars_paid(id, charge_id, stars).await {
            // The credit notice (from the outbox) is the answer; a repeat says nothing.
            Ok(_) => Ok(Vec::new()),
            Err(e @ PaymentError::Store(_)) => {
                payments
                    .stars_unmatched(sender.id, charge_id, stars, "the database failed")
                    .await?;
                Err(e.into())
            }
            Err(e) => {
                payments
                    .stars_unmatched(sender.id, charge_id, stars, &e.to_string())
                    .await?;
                Ok(say("stars-payment-problem"))
            }
        }
    }
}
