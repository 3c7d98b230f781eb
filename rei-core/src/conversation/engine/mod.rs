//! [`Conversation::handle`]: one input of one user in, the replies out.

use std::sync::Arc;
use std::time::Duration;

use super::command::{AdminCommand, Command, CommandError};
use super::state::{self, DialogueState, Draft, DraftId, Stored};
use super::{
    Action, Arg, Button, ButtonTarget, Input, Invoice, Media, MenuItem, Reply, Sender, Text,
};
use crate::ids::{IdempotencyKey, PaymentId, UserId};
use crate::job::{JobError, JobService, JobSpec, Prompt, PromptError, VideoMode};
use crate::ledger::LedgerService;
use crate::money::Money;
use crate::payment::{PaymentError, PaymentService, PaymentState};
use crate::ports::{
    Clock, DialogueStore, IdGenerator, MediaError, MediaFetcher, Notice, Notifier, NotifyError,
    RateDecision, RateLimiter, StoreError,
};
use crate::pricing::VideoDuration;
use crate::user::{
    Access, Actor, AdminService, Email, Language, UserError, UserProfile, UserService,
};

mod admin;
mod buttons;
mod drafts;
mod payments;

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
    /// The signup bonus (`SIGNUP_BONUS`): credited once to each new user; zero = none.
    pub signup_bonus: Money,
    /// How long a draft keeps the price it quoted (`DRAFT_TTL_SECS`); Confirm on an
    /// older one prices it again and asks again.
    pub draft_ttl: Duration,
    /// How long a result's download link works after its job finished
    /// (`ASSET_LINK_TTL`); `/history` lists the links still valid.
    pub result_link_ttl: Duration,
    /// Where `/web`'s one-time links point (`…/admin/login`); `None`: the web admin is
    /// off (`ADMIN_WEB=0`).
    pub web_admin_login: Option<String>,
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
    /// Promo codes (`/promo`).
    pub promos: crate::promo::PromoService,
    /// Referral links and bindings (`/ref`, `/start ref_<code>`).
    pub referrals: crate::referral::ReferralService,
    /// Live prices (admin `/prices`, `/setprice`).
    pub prices: crate::prices::PriceService,
    /// Broadcasts (admin `/broadcast`).
    pub broadcasts: crate::broadcast::BroadcastService,
    /// Web admin sign-in links (`/web`).
    pub web: crate::web::WebAdminService,
    /// Dialogue state.
    pub dialogues: Arc<dyn DialogueStore>,
    /// `RATE_LIMIT_PER_MINUTE`.
    pub limiter: Arc<dyn RateLimiter>,
    /// Users' files.
    pub media: Arc<dyn MediaFetcher>,
    /// Tells users what happens outside their replies: here, a confirmed job's status
    /// message (the notifier is its one writer).
    pub notifier: Arc<dyn Notifier>,
    /// Results, for their download links in `/history`.
    pub assets: Arc<dyn crate::ports::Assets>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Draft ids.
    pub ids: Arc<dyn IdGenerator>,
}

crate::opaque_debug!(ConversationPorts);

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
    /// The asset store failed.
    #[error(transparent)]
    Assets(#[from] crate::ports::AssetError),
    /// A promo code could not be redeemed (storage).
    #[error(transparent)]
    Promo(#[from] crate::promo::PromoError),
    /// A referral operation failed (storage).
    #[error(transparent)]
    Referral(#[from] crate::referral::ReferralError),
    /// The live prices could not be read or written (storage).
    #[error(transparent)]
    Prices(#[from] crate::prices::PriceError),
    /// A broadcast could not be read or written (storage).
    #[error(transparent)]
    Broadcast(#[from] crate::broadcast::BroadcastError),
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
            // A limiter that cannot answer lets the user through (fails open): the bot
            // keeps serving, and every paid step is still bounded by the balance and
            // `MAX_ACTIVE_JOBS`. Adapters log and count their failures; REI's Redis
            // limiter falls back to an in-process one instead of failing.
            Ok(RateDecision::Allowed) | Err(_) => {}
        }
        let is_admin = self.config.admins.contains(&user);
        let command = match &input {
            Input::Command { name, args } => Some(Command::parse(name, args, is_admin)),
            _ => None,
        };
        if let Some(Ok(Command::Start(payload))) = &command {
            return self.start(sender, payload.as_deref(), &mut stored).await;
        }
        let mut bonus = None;
        match self.ports.users.access(user).await? {
            Access::Allowed => {}
            Access::Back => self.came_back(user).await?,
            // First contact without /start (a shared link, a forward, a cleared chat):
            // registered now, then served as usual.
            Access::Unknown => {
                let (registered, created) = self.ports.users.register(profile(sender)).await?;
                if registered.is_banned {
                    return self.handle_banned(user).await;
                }
                bonus = self.welcome_bonus(&registered, created).await?;
            }
            Access::Banned { notify: true } => return Ok(say("banned")),
            Access::Banned { notify: false } => return Ok(Vec::new()),
        }
        let replies: Vec<Reply> = match (command, input) {
            (Some(Ok(command)), _) => {
                self.command(sender, command, &mut stored, update_key)
                    .await?
            }
            (Some(Err(CommandError::Unknown)), _) => say("unknown-command"),
            (Some(Err(CommandError::Usage(key))), _) => say(key),
            (None, Input::Text(text)) => self.text(user, &text, &mut stored).await?,
            (None, Input::Command { .. }) => say("unknown-command"),
            // An admin's photo captioned `/broadcast TEXT [| label=url]`: a broadcast
            // with that photo.
            (None, Input::Photo { media, caption })
                if is_admin
                    && caption
                        .as_deref()
                        .is_some_and(|c| c.trim_start().starts_with("/broadcast")) =>
            {
                self.broadcast_photo(
                    user,
                    &media,
                    caption.as_deref().unwrap_or_default(),
                    update_key,
                )
                .await?
            }
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
            self.drop_superseded_input(&loaded, &stored).await;
        }
        Ok(bonus.into_iter().chain(replies).collect())
    }

    /// A draft replaced, cancelled or expired leaves its user's file behind: deleted once
    /// the new state is saved, unless the draft became a job (which needs it). A file that
    /// cannot be deleted now is left to the retention sweep. Says whether one was deleted.
    async fn drop_superseded_input(&self, before: &Stored, after: &Stored) -> bool {
        let DialogueState::Draft(old) = &before.state else {
            return false;
        };
        let still_shown = matches!(&after.state, DialogueState::Draft(d) if d.id == old.id);
        if still_shown || after.confirmed.contains(&old.id) {
            return false;
        }
        let Some(input) = old.spec.input() else {
            return false;
        };
        let reused =
            matches!(&after.state, DialogueState::Draft(d) if d.spec.input() == Some(input));
        // A failed delete is not worth failing the user's update over: the retention
        // sweep (ASSET_RETENTION_DAYS) removes the file later.
        !reused && self.ports.assets.remove(input).await.is_ok()
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

    /// The signup bonus for a user registered just now (or within the hour: a bonus cut
    /// off by a crash right after the registration is given on their next contact):
    /// the message that tells them, when it was given now.
    async fn welcome_bonus(
        &self,
        user: &crate::user::User,
        created: bool,
    ) -> Result<Option<Reply>, ConversationError> {
        let amount = self.config.signup_bonus;
        let recent = self.ports.clock.now().since(user.created_at) < Duration::from_secs(3600);
        if amount == Money::ZERO || !(created || recent) {
            return Ok(None);
        }
        Ok(self
            .ports
            .admin
            .signup_bonus(user.id, amount)
            .await?
            .map(|_| Reply::text(Text::key("signup-bonus").arg("amount", Arg::Money(amount)))))
    }

    async fn start(&self, sender: &Sender, payload: Option<&str>, stored: &mut Stored) -> Replies {
        let (user, created) = self.ports.users.register(profile(sender)).await?;
        if user.is_banned {
            return self.handle_banned(sender.id).await;
        }
        // A referral link binds a new user to its owner (once; the rules are the
        // service's); only a binding made now is worth a word.
        let mut replies = Vec::new();
        if let Some(code) = payload.and_then(|p| p.strip_prefix(crate::referral::START_PREFIX)) {
            if let crate::referral::Bind::Bound(_) =
                self.ports.referrals.bind(user.id, code).await?
            {
                replies.push(Reply::text(Text::key("ref-joined")));
            }
        }
        let bonus = self.welcome_bonus(&user, created).await?;
        if user.unreachable_since.is_some()
            && self.ports.users.access(sender.id).await? == Access::Back
        {
            self.came_back(sender.id).await?;
        }
        stored.state = DialogueState::Idle;
        self.save(sender.id, stored).await?;
        let balance = self.ports.ledger.balance(sender.id).await?;
        let name = sender.first_name.clone().unwrap_or_default();
        replies.extend(bonus);
        replies.push(Reply::with_buttons(
            Text::key("welcome")
                .arg("name", Arg::Text(name))
                .arg("balance", Arg::Money(balance.available)),
            self.main_menu(),
        ));
        Ok(replies)
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
        vec![
            items
                .into_iter()
                .map(|item| Button::action(Text::key(item.label_key()), Action::Menu(item)))
                .collect(),
        ]
    }

    fn videos_enabled(&self) -> bool {
        self.config.videos && self.models_on().next().is_some()
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
            Command::Start(payload) => self.start(sender, payload.as_deref(), stored).await,
            Command::Ref => self.referral(user).await,
            Command::Help => Ok(say("help")),
            Command::Balance => {
                let b = self.ports.ledger.balance(user).await?;
                Ok(vec![Reply::text(
                    Text::key("balance")
                        .arg("available", Arg::Money(b.available))
                        .arg("held", Arg::Money(b.held)),
                )])
            }
            Command::History => self.history(user, 0).await,
            Command::Promo(code) => self.promo(user, &code).await,
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
