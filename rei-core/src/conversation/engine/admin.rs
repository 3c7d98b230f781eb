//! Admin commands: audited credits and debits, bans, statistics.

use super::*;

/// The reply to `/add` or `/sub`.
fn adjusted(
    posted: Result<crate::ledger::Posted, UserError>,
    done: Text,
    target: UserId,
    amount: Money,
) -> Replies {
    match posted {
        Ok(posted) => Ok(vec![Reply::text(
            done.arg("user", Arg::Number(target.get()))
                .arg("amount", Arg::Money(amount))
                .arg("balance", Arg::Money(posted.balance)),
        )]),
        Err(UserError::UnknownUser(_)) => Ok(unknown_target(target)),
        Err(UserError::InsufficientFunds { available, .. }) => Ok(vec![Reply::text(
            Text::key("admin-sub-too-much")
                .arg("user", Arg::Number(target.get()))
                .arg("balance", Arg::Money(available)),
        )]),
        Err(UserError::ReasonTooLong { .. }) => Ok(say("admin-reason-too-long")),
        Err(e) => Err(e.into()),
    }
}

/// A promo code in one line: code, amount, uses (of the limit), expiry, on or off.
fn promo_line(key: &'static str, p: &crate::promo::Promo) -> Text {
    let limit = p.max_uses.map_or(Arg::Key("admin-promo-no-limit"), |max| {
        Arg::Number(i64::from(max))
    });
    let expires = p
        .expires_at
        .map_or(Arg::Key("admin-promo-no-expiry"), |at| {
            Arg::Date(at.minus(std::time::Duration::from_millis(1)))
        });
    Text::key(key)
        .arg("code", Arg::Text(p.code.to_string()))
        .arg("amount", Arg::Money(p.amount))
        .arg("used", Arg::Number(i64::from(p.used)))
        .arg("limit", limit)
        .arg("expires", expires)
        .arg(
            "state",
            Arg::Key(if p.disabled {
                "admin-promo-off"
            } else {
                "admin-promo-on"
            }),
        )
}

/// A broadcast draft: its preview and reach, segment buttons, Start and Cancel.
fn broadcast_draft(b: &crate::broadcast::Broadcast, reach: u32) -> Vec<Reply> {
    use crate::broadcast::Segment;
    use crate::user::Language;
    let choices = [
        ("broadcast-segment-all", Segment::All),
        ("broadcast-segment-paid", Segment::Paid),
        ("broadcast-segment-active", Segment::Active { days: 30 }),
        ("broadcast-segment-ru", Segment::Language(Language::Ru)),
        ("broadcast-segment-en", Segment::Language(Language::En)),
    ];
    let segments = choices
        .into_iter()
        .map(|(key, s)| {
            super::drafts::choice(
                Arg::Key(key),
                s == b.segment,
                Action::BroadcastSegment(b.id, s),
            )
        })
        .collect();
    vec![Reply::with_buttons(
        Text::key("admin-broadcast-draft")
            .arg("id", Arg::Number(b.id))
            .arg("text", Arg::Text(b.text.clone()))
            .arg(
                "button",
                Arg::Text(
                    b.button
                        .as_ref()
                        .map(|x| format!("[{}] {}", x.label, x.url))
                        .unwrap_or_default(),
                ),
            )
            .arg("segment", Arg::Text(b.segment.name()))
            .arg("reach", Arg::Number(i64::from(reach)))
            .arg(
                "photo",
                if b.photo.is_some() {
                    Arg::Key("admin-broadcast-photo")
                } else {
                    Arg::Text(String::new())
                },
            ),
        vec![
            segments,
            vec![
                Button::action(Text::key("broadcast-start"), Action::BroadcastStart(b.id)),
                Button::action(Text::key("broadcast-cancel"), Action::BroadcastCancel(b.id)),
            ],
        ],
    )]
}

/// A broadcast's progress, with what can be done next.
fn broadcast_progress(b: &crate::broadcast::Broadcast) -> Vec<Reply> {
    use crate::broadcast::BroadcastState;
    let mut buttons = Vec::new();
    match b.state {
        BroadcastState::Running => buttons.push(Button::action(
            Text::key("broadcast-pause"),
            Action::BroadcastPause(b.id),
        )),
        BroadcastState::Paused => buttons.push(Button::action(
            Text::key("broadcast-start"),
            Action::BroadcastStart(b.id),
        )),
        _ => {}
    }
    if matches!(b.state, BroadcastState::Running | BroadcastState::Paused) {
        buttons.push(Button::action(
            Text::key("broadcast-cancel"),
            Action::BroadcastCancel(b.id),
        ));
    }
    buttons.push(Button::action(
        Text::key("broadcast-progress"),
        Action::BroadcastProgress(b.id),
    ));
    let n = |v: u32| Arg::Number(i64::from(v));
    vec![Reply::with_buttons(
        Text::key("admin-broadcast-progress")
            .arg("id", Arg::Number(b.id))
            .arg("state", Arg::Text(b.state.as_str().to_owned()))
            .arg("recipients", n(b.recipients))
            .arg("sent", n(b.sent))
            .arg("blocked", n(b.blocked))
            .arg("failed", n(b.failed))
            .arg("unknown", n(b.unknown))
            .arg("pending", n(b.pending())),
        vec![buttons],
    )]
}

fn in_place(replies: Vec<Reply>) -> Vec<Reply> {
    replies.into_iter().map(Reply::in_place).collect()
}

fn unknown_target(target: UserId) -> Vec<Reply> {
    vec![Reply::text(
        Text::key("admin-unknown-user").arg("user", Arg::Number(target.get())),
    )]
}

impl Conversation {
    /// A broadcast draft from the bot: its preview, reach and segment buttons.
    async fn compose_broadcast(
        &self,
        actor: Actor,
        text: &str,
        photo: Option<String>,
        button: Option<&str>,
    ) -> Replies {
        use crate::broadcast::{BroadcastError, Segment};
        match self
            .ports
            .broadcasts
            .create(actor, text, photo, button, Segment::All)
            .await
        {
            Ok((draft, reach)) => Ok(broadcast_draft(&draft, reach)),
            Err(BroadcastError::BadText { .. } | BroadcastError::BadButton) => {
                Ok(say("admin-usage-broadcast"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An admin's photo captioned `/broadcast TEXT [| label=url]`: the photo is kept in
    /// the asset store (`broadcasts/…`) and the broadcast drafted with it.
    pub(super) async fn broadcast_photo(
        &self,
        admin: UserId,
        media: &Media,
        caption: &str,
        update_key: &str,
    ) -> Replies {
        let words: Vec<String> = caption
            .split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect();
        let Ok(Command::Admin(AdminCommand::Broadcast { text, button })) =
            Command::parse("broadcast", &words, true)
        else {
            return Ok(say("admin-usage-broadcast"));
        };
        if let Some(refusal) = super::drafts::too_large(media, self.ports.media.max_bytes()) {
            return Ok(refusal);
        }
        // One file per update: a redelivered update writes the same file again.
        let key: String = update_key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let photo = match self
            .ports
            .media
            .fetch(media, &format!("broadcasts/{key}.jpg"))
            .await
        {
            Ok(asset) => asset,
            Err(crate::ports::MediaError::TooLarge { limit_bytes }) => {
                return Ok(super::drafts::size_refusal(limit_bytes));
            }
            Err(_) => return Ok(say("file-unavailable")),
        };
        self.compose_broadcast(
            Actor::Admin(admin),
            &text,
            Some(photo.as_str().to_owned()),
            button.as_deref(),
        )
        .await
    }

    /// A broadcast button of an admin (anyone else: a stale button).
    pub(super) async fn broadcast_button(&self, admin: UserId, action: Action) -> Replies {
        use crate::broadcast::BroadcastError;
        if !self.config.admins.contains(&admin) {
            return Ok(say("button-expired"));
        }
        let actor = Actor::Admin(admin);
        let b = &self.ports.broadcasts;
        let done = match action {
            Action::BroadcastSegment(id, segment) => {
                return match b.resegment(actor, id, segment).await {
                    // The draft message itself shows the new segment and reach.
                    Ok((draft, reach)) => Ok(in_place(broadcast_draft(&draft, reach))),
                    Err(BroadcastError::WrongState { .. } | BroadcastError::Unknown(_)) => {
                        Ok(say("button-expired"))
                    }
                    Err(e) => Err(e.into()),
                };
            }
            Action::BroadcastStart(id) => b.start(actor, id).await,
            Action::BroadcastPause(id) => b.pause(actor, id).await,
            Action::BroadcastCancel(id) => b.cancel(actor, id).await,
            Action::BroadcastProgress(id) => b.status(id).await,
            _ => return Ok(say("button-expired")),
        };
        match done {
            // The message pressed is edited to show the progress (🔄 asks again).
            Ok(now) => Ok(in_place(broadcast_progress(&now))),
            Err(BroadcastError::WrongState { id, state, .. }) => Ok(vec![Reply::text(
                Text::key("admin-broadcast-wrong-state")
                    .arg("id", Arg::Number(id))
                    .arg("state", Arg::Text(state.as_str().to_owned())),
            )]),
            Err(BroadcastError::Unknown(id)) => Ok(vec![Reply::text(
                Text::key("admin-broadcast-unknown").arg("id", Arg::Number(id)),
            )]),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn admin(
        &self,
        admin: UserId,
        command: AdminCommand,
        update_key: &str,
    ) -> Replies {
        let actor = Actor::Admin(admin);
        let once = |what: &str| IdempotencyKey::new(format!("{what}:{update_key}"));
        match command {
            AdminCommand::Menu => Ok(vec![Reply::with_buttons(
                Text::key("admin-menu"),
                vec![vec![Button::action(
                    Text::key("admin-stats-button"),
                    Action::AdminStats,
                )]],
            )]),
            AdminCommand::Stats => self.stats().await,
            AdminCommand::NewPromo {
                code,
                amount,
                uses,
                expires_at,
            } => {
                use crate::promo::PromoError;
                let created = self
                    .ports
                    .promos
                    .create(actor, &code, amount, uses, expires_at)
                    .await;
                Ok(match created {
                    Ok(promo) => vec![Reply::text(promo_line("admin-promo-created", &promo))],
                    Err(PromoError::BadCode(_)) => say("promo-bad-code"),
                    Err(PromoError::Exists(code)) => vec![Reply::text(
                        Text::key("admin-promo-exists").arg("code", Arg::Text(code.to_string())),
                    )],
                    Err(PromoError::ExpiryPast) => say("admin-promo-past"),
                    Err(PromoError::ZeroAmount | PromoError::ZeroUses) => {
                        say("admin-usage-newpromo")
                    }
                    Err(e) => return Err(e.into()),
                })
            }
            AdminCommand::Promos => {
                let promos = self.ports.promos.list().await?;
                if promos.is_empty() {
                    return Ok(say("admin-promos-empty"));
                }
                let lines = promos
                    .iter()
                    .take(30)
                    .map(|p| promo_line("admin-promo-line", p))
                    .collect();
                Ok(vec![Reply::text(
                    Text::key("admin-promos").arg("promos", Arg::List(lines)),
                )])
            }
            AdminCommand::DisablePromo { code } => {
                use crate::promo::PromoError;
                Ok(match self.ports.promos.disable(actor, &code).await {
                    Ok(promo) => vec![Reply::text(promo_line("admin-promo-disabled", &promo))],
                    Err(PromoError::BadCode(_)) => say("promo-bad-code"),
                    Err(PromoError::Unknown(code)) => vec![Reply::text(
                        Text::key("promo-unknown").arg("code", Arg::Text(code.to_string())),
                    )],
                    Err(e) => return Err(e.into()),
                })
            }
            AdminCommand::Broadcast { text, button } => {
                self.compose_broadcast(actor, &text, None, button.as_deref())
                    .await
            }
            AdminCommand::Web => {
                let Some(login) = &self.config.web_admin_login else {
                    return Ok(say("admin-web-off"));
                };
                let token = match self.ports.web.issue_link(admin).await {
                    Ok(token) => token,
                    Err(crate::web::WebError::Store(e)) => return Err(e.into()),
                    Err(_) => return Ok(say("unknown-command")),
                };
                let link = format!("{login}?token={}", token.expose());
                Ok(vec![Reply::with_buttons(
                    Text::key("admin-web-link").arg("minutes", Arg::Number(5)),
                    vec![vec![Button {
                        label: Text::key("admin-web-open"),
                        target: ButtonTarget::Url(link),
                    }]],
                )])
            }
            AdminCommand::Prices => {
                let lines = self
                    .ports
                    .prices
                    .list()
                    .await?
                    .into_iter()
                    .map(|(product, price)| {
                        Text::key("admin-price-line")
                            .arg("product", Arg::Text(product.to_string()))
                            .arg("price", Arg::Money(price))
                    })
                    .collect();
                let offer = self.ports.prices.offer();
                let models = self
                    .config
                    .video_models
                    .iter()
                    .map(|m| {
                        Text::key("admin-model-line")
                            .arg("model", Arg::Text(m.api_name.clone()))
                            .arg(
                                "state",
                                Arg::Key(if offer.model_on(&m.api_name) {
                                    "admin-model-on"
                                } else {
                                    "admin-model-off"
                                }),
                            )
                    })
                    .collect();
                Ok(vec![Reply::text(
                    Text::key("admin-prices")
                        .arg("prices", Arg::List(lines))
                        .arg("models", Arg::List(models))
                        .arg("topups", Arg::Text(amounts_text(&self.topup_amounts()))),
                )])
            }
            AdminCommand::SetPrice { product, value } => {
                use crate::prices::{OfferChange, PriceError};
                let changed = self.ports.prices.set_value(actor, &product, &value).await;
                Ok(match changed {
                    Ok(OfferChange::Price { before, after }) => vec![Reply::text(
                        Text::key("admin-price-set")
                            .arg("product", Arg::Text(product))
                            .arg("before", Arg::Money(before))
                            .arg("price", Arg::Money(after)),
                    )],
                    Ok(OfferChange::Model { on }) => vec![Reply::text(
                        Text::key("admin-model-switched")
                            .arg(
                                "model",
                                Arg::Text(product.trim_start_matches("model:").to_owned()),
                            )
                            .arg(
                                "state",
                                Arg::Key(if on {
                                    "admin-model-on"
                                } else {
                                    "admin-model-off"
                                }),
                            ),
                    )],
                    Ok(OfferChange::TopUps(amounts)) => vec![Reply::text(
                        Text::key("admin-topups-set")
                            .arg("topups", Arg::Text(amounts_text(&amounts))),
                    )],
                    Err(PriceError::UnknownProduct(_)) => vec![Reply::text(
                        Text::key("admin-price-unknown").arg("product", Arg::Text(product)),
                    )],
                    Err(PriceError::UnknownModel(model)) => vec![Reply::text(
                        Text::key("admin-model-unknown").arg("model", Arg::Text(model)),
                    )],
                    Err(PriceError::LastModel) => say("admin-model-last"),
                    Err(
                        PriceError::ZeroPrice | PriceError::BadSwitch(_) | PriceError::BadTopUps(_),
                    ) => say("admin-usage-setprice"),
                    Err(e) => return Err(e.into()),
                })
            }
            AdminCommand::Add {
                target,
                amount,
                reason,
            } => {
                let posted = match once("admin-add") {
                    Ok(k) => {
                        self.ports
                            .admin
                            .credit(actor, target, amount, &reason, k)
                            .await
                    }
                    Err(_) => return Ok(say("admin-usage-add")),
                };
                adjusted(posted, Text::key("admin-added"), target, amount)
            }
            AdminCommand::Sub {
                target,
                amount,
                reason,
            } => {
                let posted = match once("admin-sub") {
                    Ok(k) => {
                        self.ports
                            .admin
                            .debit(actor, target, amount, &reason, k)
                            .await
                    }
                    Err(_) => return Ok(say("admin-usage-sub")),
                };
                adjusted(posted, Text::key("admin-subtracted"), target, amount)
            }
            AdminCommand::Ban { target } => match self.ports.admin.ban(actor, target).await {
                Ok(_) => Ok(vec![Reply::text(
                    Text::key("admin-banned").arg("user", Arg::Number(target.get())),
                )]),
                Err(UserError::UnknownUser(_)) => Ok(unknown_target(target)),
                Err(e) => Err(e.into()),
            },
            AdminCommand::Unban { target } => match self.ports.admin.unban(actor, target).await {
                Ok(_) => Ok(vec![Reply::text(
                    Text::key("admin-unbanned").arg("user", Arg::Number(target.get())),
                )]),
                Err(UserError::UnknownUser(_)) => Ok(unknown_target(target)),
                Err(e) => Err(e.into()),
            },
        }
    }

    pub(super) async fn stats(&self) -> Replies {
        let report = self.ports.admin.stats().await?;
        let s = &report.stats;
        let jobs = s
            .jobs_by_state
            .iter()
            .map(|(state, n)| {
                Text::key("admin-stats-jobs")
                    .arg("status", Arg::Text(state.as_str().to_owned()))
                    .arg("count", Arg::Number(i64::try_from(*n).unwrap_or(i64::MAX)))
            })
            .collect();
        let revenue = s
            .payments_by_state
            .iter()
            .filter(|(state, _, _)| *state == PaymentState::Paid)
            .map(|(_, _, sum)| *sum)
            .next()
            .unwrap_or(Money::ZERO);
        let count = |n: u64| Arg::Number(i64::try_from(n).unwrap_or(i64::MAX));
        Ok(vec![Reply::text(
            Text::key("admin-stats")
                .arg("users", count(s.users))
                .arg("banned", count(s.banned_users))
                .arg("balances", Arg::Money(s.balances_total))
                .arg("held", Arg::Money(s.held_total))
                .arg("revenue", Arg::Money(revenue))
                .arg("queue", count(report.queue_depth))
                .arg("active", count(s.active_since))
                .arg("failed", count(s.failed_since))
                .arg("unreachable", count(s.unreachable_users))
                .arg("bonuses", Arg::Money(s.bonuses_total))
                .arg("jobs", Arg::List(jobs)),
        )])
    }
}

/// `100.00 ₽, 300.00 ₽`.
fn amounts_text(amounts: &[Money]) -> String {
    amounts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
