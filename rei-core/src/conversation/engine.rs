//! [`Conversation::handle`]: one input of one user in, the replies out.

use std::sync::Arc;
use std::time::Duration;

use super::command::{AdminCommand, Command, CommandError};
use super::state::{self, DialogueState, Draft, DraftId, Stored};
use super::{
    Action, Arg, Button, ButtonTarget, Input, Invoice, Media, MenuItem, Reply, Sender, Text,
    invoice_payload, payment_of_payload,
};
use crate::ids::{IdempotencyKey, UserId};
use crate::job::{JobError, JobService, JobSpec, Prompt, PromptError, VideoMode};
use crate::ledger::LedgerService;
use crate::money::Money;
use crate::payment::{PaymentError, PaymentService, PaymentState};
use crate::ports::{
    Clock, DialogueStore, IdGenerator, MediaError, MediaFetcher, RateDecision, RateLimiter,
    StoreError,
};
use crate::pricing::VideoDuration;
use crate::user::{
    Access, Actor, AdminService, Email, Language, UserError, UserProfile, UserService,
};

/// Bots may download files up to this size (Telegram Bot API: 20 MB).
pub const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;
/// Kling takes images up to 10 MB …
const MAX_KLING_IMAGE_BYTES: u64 = 10 * 1024 * 1024;
/// … with both sides at least 300 px.
const MIN_KLING_IMAGE_SIDE: u32 = 300;
/// Kling edits source videos of 3 to 10 seconds.
const VIDEO_SOURCE_SECS: std::ops::RangeInclusive<u32> = 3..=10;
/// Recently confirmed drafts remembered (a second press finds its job).
const CONFIRMED_KEPT: usize = 8;

/// A video model in the `/video` menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoModel {
    /// The provider's name (`kling-v2-6`).
    pub api_name: String,
    /// The label shown (`Kling 2.6`).
    pub label: String,
    /// Can make a video from text.
    pub text_to_video: bool,
    /// Can animate a photo.
    pub image_to_video: bool,
}

/// What the conversation offers.
#[derive(Clone, Debug)]
pub struct ConversationConfig {
    /// `ADMIN_IDS`.
    pub admins: Vec<UserId>,
    /// `TOPUP_AMOUNTS`.
    pub topup_amounts: Vec<Money>,
    /// Image generation is configured.
    pub images: bool,
    /// Video generation is configured.
    pub videos: bool,
    /// The `/video` menu, in order.
    pub video_models: Vec<VideoModel>,
    /// The model of video→video (`KLING_OMNI_MODEL`).
    pub omni_model: String,
    /// Video→video is possible (the provider fetches the source from `PUBLIC_URL`).
    pub video_to_video: bool,
    /// A draft older than this must be made again.
    pub draft_ttl: Duration,
    /// How long a result's download link works after its job finished
    /// (`ASSET_LINK_TTL`); `/history` lists the links still valid.
    pub result_link_ttl: Duration,
}

/// The services and ports the conversation uses.
#[derive(Clone)]
pub struct ConversationPorts {
    /// Registration, access, language.
    pub users: UserService,
    /// Balances and history.
    pub ledger: LedgerService,
    /// Quotes and jobs.
    pub jobs: Arc<JobService>,
    /// Top-ups; `None` without a payment provider.
    pub payments: Option<Arc<PaymentService>>,
    /// Admin operations.
    pub admin: AdminService,
    /// Dialogue state.
    pub dialogues: Arc<dyn DialogueStore>,
    /// `RATE_LIMIT_PER_MINUTE`.
    pub limiter: Arc<dyn RateLimiter>,
    /// Users' files.
    pub media: Arc<dyn MediaFetcher>,
    /// Results, for their download links in `/history`.
    pub assets: Arc<dyn crate::ports::Assets>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Draft ids.
    pub ids: Arc<dyn IdGenerator>,
}

impl std::fmt::Debug for ConversationPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConversationPorts")
    }
}

/// What went wrong that the user cannot fix: the front end logs it and says "something
/// went wrong, try again".
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A user operation failed.
    #[error(transparent)]
    User(#[from] UserError),
    /// A job operation failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// A payment operation failed.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// Another update of the same user changed the dialogue meanwhile; this one's state
    /// change was not kept (the user may repeat it).
    #[error("the dialogue was changed by another update meanwhile")]
    Concurrent,
    /// Admins had to be told something and could not be.
    #[error("the admins could not be told")]
    Alert(#[from] crate::ports::NotifyError),
    /// The stored dialogue state is unreadable.
    #[error("stored dialogue state is unreadable: {0}")]
    State(String),
}

/// The dialogue engine.
#[derive(Debug)]
pub struct Conversation {
    ports: ConversationPorts,
    config: ConversationConfig,
}

type Replies = Result<Vec<Reply>, ConversationError>;

fn say(key: &'static str) -> Vec<Reply> {
    vec![Reply::text(Text::key(key))]
}

impl Conversation {
    /// An engine over its ports.
    #[must_use]
    pub const fn new(ports: ConversationPorts, config: ConversationConfig) -> Self {
        Self { ports, config }
    }

    /// Handles one input of `sender`. `update_key` names the messenger's update (e.g.
    /// `tg:<update_id>`): a redelivered update makes no second admin credit or job.
    ///
    /// # Errors
    /// [`ConversationError`] for failures the user cannot fix (storage down).
    pub async fn handle(&self, sender: &Sender, input: Input, update_key: &str) -> Replies {
        let user = sender.id;
        let now = self.ports.clock.now();
        let mut stored = self.load(user).await?;
        let loaded = stored.clone();
        match self.ports.limiter.check(user).await {
            Ok(RateDecision::Limited { retry_after }) => {
                if stored.limited_until.is_some_and(|until| until > now) {
                    return Ok(Vec::new());
                }
                stored.limited_until = Some(now.plus(retry_after));
                self.save(user, &mut stored).await?;
                let secs = i64::try_from(retry_after.as_secs().max(1)).unwrap_or(i64::MAX);
                return Ok(vec![Reply::text(
                    Text::key("rate-limited").arg("seconds", Arg::Number(secs)),
                )]);
            }
            // A limiter that cannot answer lets the user through (fail open).
            Ok(RateDecision::Allowed) | Err(_) => {}
        }
        let is_admin = self.config.admins.contains(&user);
        let command = match &input {
            Input::Text(text) => Command::parse(text, is_admin),
            _ => None,
        };
        if command == Some(Ok(Command::Start)) {
            return self.start(sender, &mut stored).await;
        }
        match self.ports.users.access(user).await? {
            Access::Allowed => {}
            Access::Back => self.came_back(user).await?,
            // First contact without /start (a shared link, a forward, a cleared chat):
            // registered now, then served as usual.
            Access::Unknown => {
                let (registered, _) = self.ports.users.register(profile(sender)).await?;
                if registered.is_banned {
                    return self.handle_banned(user).await;
                }
            }
            Access::Banned { notify: true } => return Ok(say("banned")),
            Access::Banned { notify: false } => return Ok(Vec::new()),
        }
        let replies = match (command, input) {
            (Some(Ok(command)), _) => {
                self.command(sender, command, &mut stored, update_key)
                    .await?
            }
            (Some(Err(CommandError::Unknown)), _) => say("unknown-command"),
            (Some(Err(CommandError::Usage(key))), _) => say(key),
            (None, Input::Text(text)) => self.text(user, &text, &mut stored).await?,
            (None, Input::Photo { media, caption }) => {
                self.photo(user, &media, caption.as_deref(), &mut stored)
                    .await?
            }
            (None, Input::Video { media, caption }) => {
                self.video(user, &media, caption.as_deref(), &mut stored)
                    .await?
            }
            (None, Input::Button(action)) => self.button(sender, action, &mut stored).await?,
            (None, Input::StaleButton) => say("button-expired"),
            (None, Input::Other) => say("unknown-input"),
        };
        // Most inputs (balance, help, history) change nothing: no write for them.
        if stored != loaded {
            self.save(user, &mut stored).await?;
        }
        Ok(replies)
    }

    async fn load(&self, user: UserId) -> Result<Stored, ConversationError> {
        let Some(record) = self.ports.dialogues.load_dialogue(user).await? else {
            return Ok(Stored::default());
        };
        // A state from another schema version is dropped: the user starts over.
        let mut stored = match serde_json::from_str::<Stored>(&record.state) {
            Ok(stored) if stored.v == state::VERSION => stored,
            _ => Stored::default(),
        };
        stored.revision = Some(record.version);
        Ok(stored)
    }

    /// Saves the state if nobody saved since it was loaded (compare-and-set on the
    /// stored version); a concurrent update of the same user is refused, not merged.
    async fn save(&self, user: UserId, stored: &mut Stored) -> Result<(), ConversationError> {
        let mut record = stored.clone();
        record.v = state::VERSION;
        record.revision = None;
        let text =
            serde_json::to_string(&record).map_err(|e| ConversationError::State(e.to_string()))?;
        match self
            .ports
            .dialogues
            .save_dialogue(user, &text, stored.revision, self.ports.clock.now())
            .await
        {
            Ok(version) => {
                stored.revision = Some(version);
                Ok(())
            }
            // Not registered (yet): nothing to keep.
            Err(StoreError::NotFound(_)) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(ConversationError::Concurrent),
            Err(e) => Err(e.into()),
        }
    }

    async fn start(&self, sender: &Sender, stored: &mut Stored) -> Replies {
        let (user, _) = self.ports.users.register(profile(sender)).await?;
        if user.is_banned {
            return self.handle_banned(sender.id).await;
        }
        if user.unreachable_since.is_some()
            && self.ports.users.access(sender.id).await? == Access::Back
        {
            self.came_back(sender.id).await?;
        }
        stored.state = DialogueState::Idle;
        self.save(sender.id, stored).await?;
        let balance = self.ports.ledger.balance(sender.id).await?;
        let name = sender.first_name.clone().unwrap_or_default();
        Ok(vec![Reply::with_buttons(
            Text::key("welcome")
                .arg("name", Arg::Text(name))
                .arg("balance", Arg::Money(balance.available)),
            self.main_menu(),
        )])
    }

    /// The main menu under the welcome: one button per action that is enabled now.
    fn main_menu(&self) -> Vec<Vec<Button>> {
        let payments = self
            .ports
            .payments
            .as_ref()
            .is_some_and(|p| p.has_gateway() || p.config().stars_rate.is_some());
        let items: Vec<MenuItem> = [
            (MenuItem::Image, self.config.images),
            (MenuItem::Video, self.videos_enabled()),
            (MenuItem::Balance, true),
            (MenuItem::TopUp, payments),
            (MenuItem::History, true),
            (MenuItem::Language, true),
            (MenuItem::Help, true),
        ]
        .into_iter()
        .filter_map(|(item, enabled)| enabled.then_some(item))
        .collect();
        items
            .chunks(2)
            .map(|row| {
                row.iter()
                    .map(|item| Button::action(Text::key(item.label_key()), Action::Menu(*item)))
                    .collect()
            })
            .collect()
    }

    fn videos_enabled(&self) -> bool {
        self.config.videos && !self.config.video_models.is_empty()
    }

    /// A main-menu button: exactly what its command does.
    async fn menu(&self, sender: &Sender, item: MenuItem, stored: &mut Stored) -> Replies {
        let command = match item {
            MenuItem::Image => {
                if !self.config.images {
                    return Ok(say("images-unavailable"));
                }
                stored.state = DialogueState::Idle;
                return Ok(say("menu-image-ask"));
            }
            MenuItem::Video => Command::Video,
            MenuItem::Balance => Command::Balance,
            MenuItem::TopUp => Command::Pay,
            MenuItem::History => Command::History,
            MenuItem::Language => Command::Lang,
            MenuItem::Help => Command::Help,
        };
        // Menu buttons never carry an admin command: no update key is needed.
        self.command(sender, command, stored, "menu").await
    }

    /// A user who could not be reached (blocked the bot) writes again: every paid
    /// result they did not get is sent again, once.
    async fn came_back(&self, user: UserId) -> Result<(), ConversationError> {
        self.ports.jobs.redeliver_to(user).await?;
        Ok(())
    }

    async fn handle_banned(&self, user: UserId) -> Replies {
        Ok(match self.ports.users.access(user).await? {
            Access::Banned { notify: true } => say("banned"),
            _ => Vec::new(),
        })
    }

    async fn command(
        &self,
        sender: &Sender,
        command: Command,
        stored: &mut Stored,
        update_key: &str,
    ) -> Replies {
        let user = sender.id;
        match command {
            Command::Start => self.start(sender, stored).await,
            Command::Help => Ok(say("help")),
            Command::Balance => {
                let b = self.ports.ledger.balance(user).await?;
                Ok(vec![Reply::text(
                    Text::key("balance")
                        .arg("available", Arg::Money(b.available))
                        .arg("held", Arg::Money(b.held)),
                )])
            }
            Command::History => self.history(user).await,
            Command::Lang => Ok(vec![Reply::with_buttons(
                Text::key("lang-choose"),
                vec![vec![
                    Button::action(Text::key("lang-ru"), Action::SetLanguage(Language::Ru)),
                    Button::action(Text::key("lang-en"), Action::SetLanguage(Language::En)),
                ]],
            )]),
            Command::Cancel => {
                let had = !matches!(stored.state, DialogueState::Idle);
                stored.state = DialogueState::Idle;
                Ok(say(if had {
                    "cancelled"
                } else {
                    "nothing-to-cancel"
                }))
            }
            Command::Video => Ok(self.video_menu(stored)),
            Command::Pay => Ok(self.pay_menu()),
            Command::Admin(command) => self.admin(user, command, update_key).await,
        }
    }

    async fn history(&self, user: UserId) -> Replies {
        let entries = self.ports.ledger.history(user, 10).await?;
        let jobs = self.ports.jobs.history(user, 5).await?;
        // Jobs of the v2.0 bot fill the list when there are few newer ones.
        let older = u32::try_from(5_usize.saturating_sub(jobs.len())).unwrap_or(0);
        let legacy = if older > 0 {
            self.ports.jobs.legacy_history(user, older).await?
        } else {
            Vec::new()
        };
        if entries.is_empty() && jobs.is_empty() && legacy.is_empty() {
            return Ok(say("history-empty"));
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
        let job_lines = jobs
            .iter()
            .map(|j| {
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
        Ok(vec![Reply::text(
            Text::key("history")
                .arg("entries", Arg::List(entry_lines))
                .arg("jobs", Arg::List(job_lines)),
        )])
    }

    fn video_menu(&self, stored: &mut Stored) -> Vec<Reply> {
        if !self.videos_enabled() {
            return say("video-unavailable");
        }
        stored.state = DialogueState::VideoModel;
        let buttons = self
            .config
            .video_models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let index = u8::try_from(i).ok()?;
                Some(vec![Button::action(
                    Text::key("video-model").arg("label", Arg::Text(m.label.clone())),
                    Action::VideoModel(index),
                )])
            })
            .collect();
        vec![Reply::with_buttons(
            Text::key("video-choose-model"),
            buttons,
        )]
    }

    fn pay_menu(&self) -> Vec<Reply> {
        let Some(payments) = &self.ports.payments else {
            return say("pay-unavailable");
        };
        let indexed = || {
            self.config
                .topup_amounts
                .iter()
                .enumerate()
                .filter_map(|(i, amount)| Some((u8::try_from(i).ok()?, *amount)))
        };
        let mut buttons: Vec<Vec<Button>> = Vec::new();
        if payments.has_gateway() {
            let cards: Vec<Button> = indexed()
                .map(|(index, amount)| {
                    Button::action(
                        Text::key("pay-amount").arg("amount", Arg::Money(amount)),
                        Action::TopUp(index),
                    )
                })
                .collect();
            buttons.extend(cards.chunks(2).map(<[Button]>::to_vec));
        }
        let stars: Vec<Button> = indexed()
            .filter_map(|(index, amount)| {
                let stars = payments.stars_for(amount)?;
                Some(Button::action(
                    Text::key("pay-stars-amount")
                        .arg("stars", Arg::Number(i64::from(stars)))
                        .arg("amount", Arg::Money(amount)),
                    Action::TopUpStars(index),
                ))
            })
            .collect();
        buttons.extend(stars.chunks(2).map(<[Button]>::to_vec));
        if buttons.is_empty() {
            return say("pay-unavailable");
        }
        vec![Reply::with_buttons(Text::key("pay-choose"), buttons)]
    }

    /// A card top-up of `TOPUP_AMOUNTS[index]`: with receipts on, the payer's e-mail is
    /// asked once (and kept) before the payment is created.
    async fn top_up(
        &self,
        user: UserId,
        index: u8,
        typed_email: Option<Email>,
        stored: &mut Stored,
    ) -> Replies {
        let (Some(payments), Some(amount)) = (
            &self.ports.payments,
            self.config.topup_amounts.get(usize::from(index)),
        ) else {
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
                stored.state = DialogueState::AwaitingEmail { topup: index };
                return Ok(say("pay-email-ask"));
            };
            Some(email.as_str().to_owned())
        } else {
            None
        };
        match payments.create_topup(user, *amount, email).await {
            Ok(payment) => Ok(pay_link(&payment)),
            Err(PaymentError::MethodUnavailable) => Ok(say("pay-unavailable")),
            Err(PaymentError::AmountOutOfRange { .. }) => Ok(say("button-expired")),
            Err(PaymentError::Provider(_)) => Ok(say("pay-provider-down")),
            Err(e) => Err(e.into()),
        }
    }

    /// Telegram asks, before taking the Stars, whether the invoice may be paid: it must be
    /// one of ours, this user's, still open and for this many Stars. `Err` carries the
    /// words shown to the payer.
    pub async fn stars_checkout(
        &self,
        sender: &Sender,
        payload: &str,
        currency: &str,
        stars: u32,
    ) -> Result<(), Text> {
        let (Some(payments), Some(id), "XTR") =
            (&self.ports.payments, payment_of_payload(payload), currency)
        else {
            return Err(Text::key("stars-invoice-expired"));
        };
        match payments.stars_checkout(id, sender.id, stars).await {
            Ok(_) => Ok(()),
            Err(PaymentError::Store(_)) => Err(Text::key("stars-checkout-unavailable")),
            Err(_) => Err(Text::key("stars-invoice-expired")),
        }
    }

    /// Telegram took the Stars (`successful_payment`): credit exactly once by the
    /// charge id, whatever the rate limit, a ban or the dialogue say. A payment that
    /// cannot be credited (another sum, not our invoice) is told to the admins.
    ///
    /// # Errors
    /// [`ConversationError::Payment`] when the store fails (Telegram does not resend
    /// `successful_payment`: the admins are told to credit it by hand).
    pub async fn stars_paid(
        &self,
        sender: &Sender,
        payload: &str,
        currency: &str,
        stars: u32,
        charge_id: &str,
    ) -> Replies {
        let Some(payments) = &self.ports.payments else {
            return Ok(say("stars-payment-problem"));
        };
        let Some(id) = payment_of_payload(payload).filter(|_| currency == "XTR") else {
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

    async fn admin(&self, admin: UserId, command: AdminCommand, update_key: &str) -> Replies {
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

    async fn stats(&self) -> Replies {
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
                .arg("jobs", Arg::List(jobs)),
        )])
    }
}

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

fn unknown_target(target: UserId) -> Vec<Reply> {
    vec![Reply::text(
        Text::key("admin-unknown-user").arg("user", Arg::Number(target.get())),
    )]
}

impl Conversation {
    /// Text outside a command: a prompt.
    async fn text(&self, user: UserId, text: &str, stored: &mut Stored) -> Replies {
        match stored.state.clone() {
            DialogueState::Idle | DialogueState::Draft(_) => {
                if !self.config.images {
                    return Ok(say("images-unavailable"));
                }
                let prompt = match Prompt::parse(text) {
                    Ok(p) => p,
                    Err(e) => return Ok(prompt_refused(&e)),
                };
                self.draft(user, JobSpec::ImageGeneration { prompt }, stored)
                    .await
            }
            DialogueState::VideoModel | DialogueState::VideoDuration { .. } => {
                Ok(say("video-use-buttons"))
            }
            DialogueState::AwaitingEmail { topup } => {
                let Ok(email) = Email::parse(text) else {
                    return Ok(say("pay-email-invalid"));
                };
                self.ports.users.set_receipt_email(user, &email).await?;
                stored.state = DialogueState::Idle;
                self.top_up(user, topup, Some(email), stored).await
            }
            DialogueState::VideoInput { model, duration } => {
                if let Err(refusal) = self.can(&model, |m| m.text_to_video, stored) {
                    return Ok(refusal);
                }
                let prompt = match Prompt::parse(text) {
                    Ok(p) => p,
                    Err(e) => return Ok(prompt_refused(&e)),
                };
                let spec = JobSpec::Video {
                    mode: VideoMode::TextToVideo,
                    model,
                    duration,
                    prompt,
                    input: None,
                };
                self.draft(user, spec, stored).await
            }
        }
    }

    fn model(&self, api_name: &str) -> Option<&VideoModel> {
        self.config
            .video_models
            .iter()
            .find(|m| m.api_name == api_name)
    }

    /// Whether the chosen model can take this input; the refusal to send otherwise (a
    /// model gone from the menu expires the dialogue).
    fn can(
        &self,
        model: &str,
        able: fn(&VideoModel) -> bool,
        stored: &mut Stored,
    ) -> Result<(), Vec<Reply>> {
        match self.model(model) {
            None => {
                stored.state = DialogueState::Idle;
                Err(say("button-expired"))
            }
            Some(m) if !able(m) => Err(self.unsupported(able)),
            Some(_) => Ok(()),
        }
    }

    /// "This model cannot do that; these can".
    fn unsupported(&self, can: impl Fn(&VideoModel) -> bool) -> Vec<Reply> {
        let able: Vec<String> = self
            .config
            .video_models
            .iter()
            .filter(|m| can(m))
            .map(|m| m.label.clone())
            .collect();
        vec![Reply::text(
            Text::key("video-mode-unsupported").arg("models", Arg::Text(able.join(", "))),
        )]
    }

    async fn photo(
        &self,
        user: UserId,
        media: &Media,
        caption: Option<&str>,
        stored: &mut Stored,
    ) -> Replies {
        let Some(caption) = caption.filter(|c| !c.trim().is_empty()) else {
            return Ok(say("photo-needs-caption"));
        };
        let prompt = match Prompt::parse(caption) {
            Ok(p) => p,
            Err(e) => return Ok(prompt_refused(&e)),
        };
        match stored.state.clone() {
            DialogueState::Idle | DialogueState::Draft(_) => {
                if !self.config.images {
                    return Ok(say("images-unavailable"));
                }
                if let Some(refusal) = too_large(media, MAX_DOWNLOAD_BYTES) {
                    return Ok(refusal);
                }
                let image = match self.fetch(media, "jpg").await {
                    Ok(asset) => asset,
                    Err(refusal) => return Ok(refusal),
                };
                self.draft(user, JobSpec::ImageEdit { prompt, image }, stored)
                    .await
            }
            DialogueState::VideoModel | DialogueState::VideoDuration { .. } => {
                Ok(say("video-use-buttons"))
            }
            DialogueState::AwaitingEmail { .. } => Ok(say("pay-email-invalid")),
            DialogueState::VideoInput { model, duration } => {
                if let Err(refusal) = self.can(&model, |m| m.image_to_video, stored) {
                    return Ok(refusal);
                }
                if let Some(refusal) = too_large(media, MAX_KLING_IMAGE_BYTES) {
                    return Ok(refusal);
                }
                let small = |side: Option<u32>| side.is_some_and(|s| s < MIN_KLING_IMAGE_SIDE);
                if small(media.width) || small(media.height) {
                    return Ok(vec![Reply::text(
                        Text::key("image-too-small")
                            .arg("pixels", Arg::Number(i64::from(MIN_KLING_IMAGE_SIDE))),
                    )]);
                }
                let image = match self.fetch(media, "jpg").await {
                    Ok(asset) => asset,
                    Err(refusal) => return Ok(refusal),
                };
                let spec = JobSpec::Video {
                    mode: VideoMode::ImageToVideo,
                    model,
                    duration,
                    prompt,
                    input: Some(image),
                };
                self.draft(user, spec, stored).await
            }
        }
    }

    async fn video(
        &self,
        user: UserId,
        media: &Media,
        caption: Option<&str>,
        stored: &mut Stored,
    ) -> Replies {
        let DialogueState::VideoInput { .. } = stored.state else {
            return Ok(say("video-start-with-command"));
        };
        if !self.config.video_to_video {
            return Ok(say("video-to-video-unavailable"));
        }
        let Some(caption) = caption.filter(|c| !c.trim().is_empty()) else {
            return Ok(say("video-needs-caption"));
        };
        let prompt = match Prompt::parse(caption) {
            Ok(p) => p,
            Err(e) => return Ok(prompt_refused(&e)),
        };
        let format_ok = media
            .mime_type
            .as_deref()
            .is_none_or(|m| matches!(m, "video/mp4" | "video/quicktime"));
        if !format_ok {
            return Ok(say("video-format"));
        }
        let Some(secs) = media
            .duration_secs
            .filter(|s| VIDEO_SOURCE_SECS.contains(s))
        else {
            return Ok(vec![Reply::text(
                Text::key("video-length")
                    .arg("min", Arg::Number(i64::from(*VIDEO_SOURCE_SECS.start())))
                    .arg("max", Arg::Number(i64::from(*VIDEO_SOURCE_SECS.end()))),
            )]);
        };
        if let Some(refusal) = too_large(media, MAX_DOWNLOAD_BYTES) {
            return Ok(refusal);
        }
        let source = match self.fetch(media, "mp4").await {
            Ok(asset) => asset,
            Err(refusal) => return Ok(refusal),
        };
        // The output is as long as the source: priced as 5 s up to 5 s, else as 10 s.
        let duration = if secs <= 5 {
            VideoDuration::Five
        } else {
            VideoDuration::Ten
        };
        let spec = JobSpec::Video {
            mode: VideoMode::VideoToVideo,
            model: self.config.omni_model.clone(),
            duration,
            prompt,
            input: Some(source),
        };
        self.draft(user, spec, stored).await
    }

    /// Downloads a user's file into the asset store (`inputs/<random>.<ext>`).
    async fn fetch(&self, media: &Media, ext: &str) -> Result<crate::job::AssetRef, Vec<Reply>> {
        let key = format!("inputs/{}.{ext}", self.ports.ids.job_id());
        match self.ports.media.fetch(media, &key).await {
            Ok(asset) => Ok(asset),
            Err(MediaError::TooLarge { limit_bytes }) => Err(size_refusal(limit_bytes)),
            Err(MediaError::Unavailable(_)) => Err(say("file-unavailable")),
        }
    }

    /// Shows a priced draft with Confirm / Cancel.
    async fn draft(&self, user: UserId, spec: JobSpec, stored: &mut Stored) -> Replies {
        let quote = self.ports.jobs.quote(&spec);
        let balance = self.ports.ledger.balance(user).await?.available;
        let id = DraftId(self.ports.ids.job_id().as_uuid().as_u64_pair().0);
        let text = match &spec {
            JobSpec::ImageGeneration { .. } => Text::key("draft-image"),
            JobSpec::ImageEdit { .. } => Text::key("draft-edit"),
            JobSpec::Video {
                mode,
                model,
                duration,
                ..
            } => {
                let label = self
                    .model(model)
                    .map_or_else(|| model.clone(), |m| m.label.clone());
                Text::key(match mode {
                    VideoMode::TextToVideo => "draft-text-video",
                    VideoMode::ImageToVideo => "draft-image-video",
                    VideoMode::VideoToVideo => "draft-video-video",
                })
                .arg("model", Arg::Text(label))
                .arg("seconds", Arg::Number(i64::from(duration.seconds())))
            }
        }
        .arg("price", Arg::Money(quote.amount))
        .arg("balance", Arg::Money(balance));
        let short = balance < quote.amount;
        stored.state = DialogueState::Draft(Draft {
            id,
            spec,
            quote,
            created_at: self.ports.clock.now(),
        });
        let mut replies = vec![Reply::with_buttons(
            text,
            vec![vec![
                Button::action(Text::key("button-confirm"), Action::Confirm(id)),
                Button::action(Text::key("button-cancel"), Action::Discard(id)),
            ]],
        )];
        if short {
            replies.push(Reply::text(Text::key("draft-short-of-money")));
        }
        Ok(replies)
    }

    async fn button(&self, sender: &Sender, action: Action, stored: &mut Stored) -> Replies {
        let user = sender.id;
        match action {
            Action::Confirm(id) => self.confirm(user, id, stored).await,
            Action::Discard(id) => Ok(match &stored.state {
                DialogueState::Draft(d) if d.id == id => {
                    stored.state = DialogueState::Idle;
                    say("draft-cancelled")
                }
                _ => say("button-expired"),
            }),
            Action::VideoModel(index) => {
                let Some(model) = self.config.video_models.get(usize::from(index)).cloned() else {
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
            Action::TopUp(index) => self.top_up(user, index, None, stored).await,
            Action::TopUpStars(index) => {
                let (Some(payments), Some(amount)) = (
                    &self.ports.payments,
                    self.config.topup_amounts.get(usize::from(index)),
                ) else {
                    return Ok(say("button-expired"));
                };
                let Some(stars) = payments.stars_for(*amount) else {
                    return Ok(say("pay-unavailable"));
                };
                match payments.create_stars_topup(user, stars).await {
                    Ok(payment) => Ok(vec![Reply {
                        invoice: Some(Invoice {
                            title: Text::key("stars-invoice-title")
                                .arg("amount", Arg::Money(payment.amount)),
                            payload: invoice_payload(payment.id),
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
                match payments.check(id).await {
                    Ok(applied) if applied.payment.user_id != user => Ok(say("button-expired")),
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
            Action::AdminStats => {
                if self.config.admins.contains(&user) {
                    self.stats().await
                } else {
                    Ok(say("button-expired"))
                }
            }
        }
    }

    /// Confirm: hold the price and queue the job; a second press finds the first job.
    async fn confirm(&self, user: UserId, id: DraftId, stored: &mut Stored) -> Replies {
        let draft = match &stored.state {
            DialogueState::Draft(d) if d.id == id => d.clone(),
            _ if stored.confirmed.contains(&id) => return Ok(say("draft-already-confirmed")),
            _ => return Ok(say("button-expired")),
        };
        let now = self.ports.clock.now();
        if now.since(draft.created_at) > self.config.draft_ttl {
            stored.state = DialogueState::Idle;
            return Ok(say("draft-expired"));
        }
        let Ok(key) = IdempotencyKey::new(format!("confirm:{}:{:016x}", user, id.0)) else {
            return Ok(say("button-expired"));
        };
        match self
            .ports
            .jobs
            .create(user, draft.spec.clone(), &draft.quote, key)
            .await
        {
            Ok(job) => {
                stored.state = DialogueState::Idle;
                stored.confirmed.insert(0, id);
                stored.confirmed.truncate(CONFIRMED_KEPT);
                Ok(vec![Reply {
                    status_of: Some(job.id),
                    ..Reply::text(
                        Text::key("job-queued").arg("price", Arg::Money(job.quote.amount)),
                    )
                }])
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

/// The user as the messenger describes them; the language from the messenger's code.
fn profile(sender: &Sender) -> UserProfile {
    let language = match sender.language_code.as_deref() {
        Some(code) if code.to_ascii_lowercase().starts_with("en") => Language::En,
        _ => Language::Ru,
    };
    UserProfile {
        id: sender.id,
        username: sender.username.clone(),
        first_name: sender.first_name.clone(),
        language,
    }
}

fn prompt_refused(e: &PromptError) -> Vec<Reply> {
    vec![match e {
        PromptError::Empty => Reply::text(Text::key("prompt-empty")),
        PromptError::TooLong { max, .. } => Reply::text(
            Text::key("prompt-too-long")
                .arg("max", Arg::Number(i64::try_from(*max).unwrap_or(i64::MAX))),
        ),
    }]
}

fn too_large(media: &Media, limit: u64) -> Option<Vec<Reply>> {
    media
        .size
        .filter(|size| *size > limit)
        .map(|_| size_refusal(limit))
}

fn size_refusal(limit_bytes: u64) -> Vec<Reply> {
    let megabytes = i64::try_from(limit_bytes / (1024 * 1024)).unwrap_or(i64::MAX);
    vec![Reply::text(
        Text::key("file-too-large").arg("megabytes", Arg::Number(megabytes)),
    )]
}

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
