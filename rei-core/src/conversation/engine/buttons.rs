//! Buttons: what each typed action does, and a draft's confirmation (one job per
//! draft, however often it is pressed).

use super::*;

/// Recently confirmed drafts remembered (a second press finds its job).
const CONFIRMED_KEPT: usize = 8;

impl Conversation {
    pub(super) async fn button(
        &self,
        sender: &Sender,
        action: Action,
        stored: &mut Stored,
    ) -> Replies {
        let user = sender.id;
        match action {
            Action::Confirm(id) => self.confirm(user, id, stored).await,
            Action::DraftAspect(id, aspect) => {
                self.relook(user, id, Some(aspect), None, stored).await
            }
            Action::DraftResolution(id, resolution) => {
                self.relook(user, id, None, Some(resolution), stored).await
            }
            Action::Discard(id) => Ok(match &stored.state {
                DialogueState::Draft(d) if d.id == id => {
                    stored.state = DialogueState::Idle;
                    say("draft-cancelled")
                }
                _ => say("button-expired"),
            }),
            Action::VideoModel(api_name) => {
                let Some(model) = self.model(&api_name).cloned() else {
                    return Ok(say("button-expired"));
                };
                if !matches!(stored.state, DialogueState::VideoModel) || !self.config.videos {
                    return Ok(say("button-expired"));
                }
                let prices = self.ports.jobs.prices();
                let price = |d: VideoDuration| {
                    prices.price(&crate::pricing::Product::Video {
                        model: model.api_name.clone(),
                        duration: d,
                    })
                };
                let buttons = vec![vec![
                    Button::action(
                        Text::key("video-duration")
                            .arg("seconds", Arg::Number(5))
                            .arg("price", Arg::Money(price(VideoDuration::Five))),
                        Action::VideoDuration(VideoDuration::Five),
                    ),
                    Button::action(
                        Text::key("video-duration")
                            .arg("seconds", Arg::Number(10))
                            .arg("price", Arg::Money(price(VideoDuration::Ten))),
                        Action::VideoDuration(VideoDuration::Ten),
                    ),
                ]];
                let label = model.label.clone();
                stored.state = DialogueState::VideoDuration {
                    model: model.api_name,
                };
                Ok(vec![Reply::with_buttons(
                    Text::key("video-choose-duration").arg("model", Arg::Text(label)),
                    buttons,
                )])
            }
            Action::VideoDuration(duration) => {
                let DialogueState::VideoDuration { model } = stored.state.clone() else {
                    return Ok(say("button-expired"));
                };
                let Some(m) = self.model(&model) else {
                    return Ok(say("button-expired"));
                };
                let key = match (m.text_to_video, m.image_to_video) {
                    (true, true) => "video-send-any",
                    (false, true) => "video-send-photo",
                    (true, false) => "video-send-text",
                    (false, false) => "video-send-video",
                };
                stored.state = DialogueState::VideoInput { model, duration };
                let mut text = Text::key(key);
                if self.config.video_to_video {
                    text = text.arg("video", Arg::Key("video-send-video-too"));
                } else {
                    text = text.arg("video", Arg::Text(String::new()));
                }
                Ok(vec![Reply::text(text)])
            }
            Action::TopUp(amount) => self.top_up(user, amount, None, stored).await,
            Action::TopUpStars(amount) => {
                let (Some(payments), true) = (&self.ports.payments, self.offers(amount)) else {
                    return Ok(say("button-expired"));
                };
                let Some(stars) = payments.stars_for(amount) else {
                    return Ok(say("pay-unavailable"));
                };
                match payments.create_stars_topup(user, stars).await {
                    Ok(payment) => Ok(vec![Reply {
                        invoice: Some(Invoice {
                            title: Text::key("stars-invoice-title")
                                .arg("amount", Arg::Money(payment.amount)),
                            payment: payment.id,
                            stars,
                        }),
                        ..Reply::text(
                            Text::key("stars-invoice-description")
                                .arg("amount", Arg::Money(payment.amount)),
                        )
                    }]),
                    Err(PaymentError::MethodUnavailable) => Ok(say("pay-unavailable")),
                    Err(PaymentError::AmountOutOfRange { .. }) => Ok(say("button-expired")),
                    Err(e) => Err(e.into()),
                }
            }
            Action::CheckPayment(id) => {
                let Some(payments) = &self.ports.payments else {
                    return Ok(say("pay-unavailable"));
                };
                match payments.check(user, id).await {
                    // Credited just now: the credit notice is the answer.
                    Ok(applied) if applied.credited => Ok(Vec::new()),
                    Ok(applied) => Ok(say(match applied.payment.state {
                        PaymentState::Paid | PaymentState::Refunded => "pay-check-paid",
                        PaymentState::Pending => "pay-check-pending",
                        PaymentState::Cancelled => "pay-check-cancelled",
                    })),
                    Err(PaymentError::UnknownPayment(_)) => Ok(say("button-expired")),
                    Err(PaymentError::Provider(_)) => Ok(say("pay-provider-down")),
                    Err(e) => Err(e.into()),
                }
            }
            Action::SetLanguage(language) => {
                self.ports.users.set_language(user, language).await?;
                Ok(say("lang-set"))
            }
            Action::Menu(item) => self.menu(sender, item, stored).await,
            Action::Repeat(job) => self.repeat(user, job, stored).await,
            Action::SendAgain(job) => self.send_again(user, job).await,
            Action::HistoryPage(page) => self.history(user, page).await,
            Action::BroadcastSegment(..)
            | Action::BroadcastStart(_)
            | Action::BroadcastPause(_)
            | Action::BroadcastCancel(_)
            | Action::BroadcastProgress(_) => self.broadcast_button(user, action).await,
            Action::AdminStats => {
                if self.config.admins.contains(&user) {
                    self.stats().await
                } else {
                    Ok(say("button-expired"))
                }
            }
        }
    }

    /// "Repeat" under `/history`: the same request as `job` (the user's own), as a new
    /// draft at today's prices. Nothing is charged until its Confirm. A request whose
    /// input file is gone (retention), or whose kind or model is no longer offered, is
    /// refused.
    async fn repeat(&self, user: UserId, job: crate::ids::JobId, stored: &mut Stored) -> Replies {
        let Some(job) = self
            .own_job(user, job)
            .await?
            .filter(|j| j.state.is_final())
        else {
            return Ok(say("button-expired"));
        };
        let input = match &job.spec {
            JobSpec::ImageGeneration { .. } | JobSpec::ImageEdit { .. } if !self.config.images => {
                return Ok(say("images-unavailable"));
            }
            JobSpec::ImageGeneration { .. } => None,
            JobSpec::ImageEdit { image, .. } => Some(image),
            JobSpec::Video { model, input, .. } => {
                if !self.config.videos || self.model(model).is_none() {
                    return Ok(say("video-unavailable"));
                }
                input.as_ref()
            }
        };
        if let Some(input) = input {
            match self.ports.assets.exists(input).await {
                Ok(true) => {}
                Ok(false) => return Ok(say("repeat-input-gone")),
                Err(e) => return Err(e.into()),
            }
        }
        self.draft(user, job.spec, stored).await
    }

    /// "Send again" under `/history`: the user's completed result once more, while its
    /// file is kept here or the provider still has it.
    async fn send_again(&self, user: UserId, id: crate::ids::JobId) -> Replies {
        let job = self.own_job(user, id).await?;
        let Some((job, result)) = job
            .filter(|j| j.state == crate::job::JobState::Completed)
            .and_then(|j| j.result.clone().map(|r| (j, r)))
        else {
            return Ok(say("button-expired"));
        };
        if job.result_url.is_none() && !self.ports.assets.exists(&result).await? {
            return Ok(say("send-again-gone"));
        }
        Ok(say(if self.ports.jobs.send_again(user, id).await? {
            "send-again-queued"
        } else {
            "send-again-under-way"
        }))
    }

    /// Job `id` when it is `user`'s own; `None` for another user's or an unknown one (a
    /// button from elsewhere).
    async fn own_job(
        &self,
        user: UserId,
        id: crate::ids::JobId,
    ) -> Result<Option<crate::job::Job>, ConversationError> {
        match self.ports.jobs.job(id).await {
            Ok(job) => Ok((job.user_id == user).then_some(job)),
            Err(JobError::UnknownJob(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a queued job's status message through the notifier (its one writer: it
    /// edits it with the progress and the outcome) and keeps it with the job. Best
    /// effort, like every later edit: if it cannot be sent now, the worker's first
    /// progress notice starts it.
    async fn open_status(
        &self,
        user: UserId,
        job: crate::ids::JobId,
        price: Money,
    ) -> Result<(), ConversationError> {
        let notice = Notice::JobQueued { job_id: job, price };
        match self.ports.notifier.notify(user, notice).await {
            Ok(Some(message)) => {
                self.ports.jobs.set_status_message(job, message).await?;
            }
            Ok(None) | Err(NotifyError::Unavailable(_)) => {}
            Err(NotifyError::Unreachable(_)) => self.ports.users.mark_unreachable(user).await?,
        }
        Ok(())
    }

    /// Confirm: hold the price and queue the job; a second press finds the first job.
    pub(super) async fn confirm(&self, user: UserId, id: DraftId, stored: &mut Stored) -> Replies {
        let draft = match &stored.state {
            DialogueState::Draft(d) if d.id == id => d.clone(),
            _ if stored.confirmed.contains(&id) => return Ok(say("draft-already-confirmed")),
            _ => return Ok(say("button-expired")),
        };
        let now = self.ports.clock.now();
        if now.since(draft.created_at) > self.config.draft_ttl {
            // Priced again at today's prices, and asked again: nothing is charged.
            let mut replies = say("draft-expired");
            replies.extend(self.draft(user, draft.spec, stored).await?);
            return Ok(replies);
        }
        let Ok(key) = IdempotencyKey::new(format!("confirm:{}:{:016x}", user, id.0)) else {
            return Ok(say("button-expired"));
        };
        match self
            .ports
            .jobs
            .create_quoted(
                user,
                draft.spec.clone(),
                &draft.quote,
                Some(draft.created_at),
                key,
            )
            .await
        {
            Ok(job) => {
                stored.state = DialogueState::Idle;
                stored.confirmed.insert(0, id);
                stored.confirmed.truncate(CONFIRMED_KEPT);
                self.open_status(user, job.id, job.quote.amount).await?;
                // The status message is the answer.
                Ok(Vec::new())
            }
            Err(JobError::InsufficientFunds { needed, available }) => Ok(vec![Reply::text(
                Text::key("insufficient-funds")
                    .arg("price", Arg::Money(needed))
                    .arg("balance", Arg::Money(available)),
            )]),
            Err(JobError::TooManyActiveJobs { limit }) => Ok(vec![Reply::text(
                Text::key("too-many-jobs").arg("limit", Arg::Number(i64::from(limit))),
            )]),
            Err(JobError::PriceChanged { .. }) => {
                let mut replies = say("price-changed");
                replies.extend(self.draft(user, draft.spec, stored).await?);
                Ok(replies)
            }
            Err(JobError::Banned(_)) => Ok(say("banned")),
            Err(e) => Err(e.into()),
        }
    }
}
