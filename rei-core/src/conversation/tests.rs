//! The conversation engine, flow by flow, on memory adapters: no network.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::job::{JobFilter, JobLimits, JobPorts, JobSpec, StoreQueue, VideoMode};
use crate::ledger::LedgerService;
use crate::memory::{ManualClock, MemoryAssets, MemoryStore, RecordingNotifier, SequentialIds};
use crate::payment::{PaymentConfig, PaymentPorts, PaymentService};
use crate::ports::{
    Assets, CreatePayment, DialogueStore, GatewayPayment, GatewayStatus, JobStore, LedgerStore,
    LimiterError, MediaError, MediaFetcher, MessageRef, MockPaymentGateway, Notice, RateDecision,
    RateLimiter, UserStore,
};
use crate::pricing::PriceList;
use crate::time::Timestamp;
use crate::user::{AdminPorts, AdminService, UserService};
use crate::{IdempotencyKey, JobService, UserId};

const ADMIN: i64 = 1;
const ANNA: i64 = 42;

/// Stores what it is asked to fetch (as `MemoryAssets`), and counts the calls.
#[derive(Default)]
struct FakeMedia {
    assets: Arc<MemoryAssets>,
    fetched: Mutex<Vec<String>>,
}

#[async_trait]
impl MediaFetcher for FakeMedia {
    async fn fetch(&self, media: &Media, key: &str) -> Result<crate::job::AssetRef, MediaError> {
        self.fetched.lock().unwrap().push(media.reference.clone());
        self.assets
            .write(key, media.reference.as_bytes())
            .await
            .map_err(|e| MediaError::Unavailable(Box::new(e)))
    }

    fn max_bytes(&self) -> u64 {
        20 * 1024 * 1024
    }
}

/// A line as a front end with `/name args` commands reads it.
fn line(text: &str) -> Input {
    match text.strip_prefix('/') {
        Some(command) => {
            let mut words = command.split_whitespace().map(str::to_owned);
            Input::Command {
                name: words.next().unwrap_or_default(),
                args: words.collect(),
            }
        }
        None => Input::Text(text.into()),
    }
}

/// A limiter the test switches.
#[derive(Default)]
struct Switch {
    limited: Mutex<Option<Duration>>,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl RateLimiter for Switch {
    async fn check(&self, _: UserId) -> Result<RateDecision, LimiterError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(LimiterError("redis is down".into()));
        }
        Ok(match *self.limited.lock().unwrap() {
            Some(retry_after) => RateDecision::Limited { retry_after },
            None => RateDecision::Allowed,
        })
    }
}

struct World {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    media: Arc<FakeMedia>,
    limiter: Arc<Switch>,
    jobs: Arc<JobService>,
    ports: ConversationPorts,
    chat: Conversation,
    notifier: Arc<RecordingNotifier>,
    next_update: Mutex<u64>,
}

fn config(video_to_video: bool) -> ConversationConfig {
    ConversationConfig {
        admins: vec![UserId::new(ADMIN).unwrap()],
        topup_amounts: vec!["100".parse().unwrap(), "300".parse().unwrap()],
        images: true,
        videos: true,
        video_models: vec![
            VideoModel {
                api_name: "kling-v2-6".into(),
                label: "Kling 2.6".into(),
                text_to_video: true,
                image_to_video: true,
            },
            VideoModel {
                api_name: "kling-v1-5".into(),
                label: "Kling 1.5".into(),
                text_to_video: false,
                image_to_video: true,
            },
        ],
        omni_model: "kling-v3-omni".into(),
        video_to_video,
        draft_ttl: Duration::from_secs(3600),
        signup_bonus: Money::ZERO,
        result_link_ttl: Duration::from_secs(7 * 24 * 3600),
        web_admin_login: Some("https://admin.test/admin/login".into()),
    }
}

fn world_with(config: ConversationConfig, gateway: Option<MockPaymentGateway>) -> World {
    world_paying(config, gateway, None)
}

fn world_paying(
    config: ConversationConfig,
    gateway: Option<MockPaymentGateway>,
    stars_rate: Option<Money>,
) -> World {
    world_full(config, gateway, stars_rate, false)
}

fn world_full(
    config: ConversationConfig,
    gateway: Option<MockPaymentGateway>,
    stars_rate: Option<Money>,
    receipts: bool,
) -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
    let ids = Arc::new(SequentialIds::default());
    let queue = Arc::new(StoreQueue::new(store.clone()));
    let notifier = Arc::new(RecordingNotifier::default());
    let jobs = Arc::new(JobService::new(
        JobPorts {
            users: store.clone(),
            jobs: store.clone(),
            queue: queue.clone(),
            clock: clock.clone(),
            ids: ids.clone(),
        },
        PriceList::seed_defaults()
            .with_resolution_percent(crate::pricing::Resolution::TwoK, 150)
            .unwrap()
            .with_resolution_percent(crate::pricing::Resolution::FourK, 200)
            .unwrap(),
        JobLimits::default(),
    ));
    let payments = (gateway.is_some() || stars_rate.is_some()).then(|| {
        Arc::new(
            PaymentService::new(
                PaymentPorts {
                    users: store.clone(),
                    payments: store.clone(),
                    gateway: gateway.map(|g| Arc::new(g) as Arc<dyn crate::ports::PaymentGateway>),
                    stars: None,
                    notifier: notifier.clone(),
                    clock: clock.clone(),
                    ids: ids.clone(),
                },
                PaymentConfig {
                    return_url: "https://t.me/rei_bot".into(),
                    stars_rate,
                    receipts,
                    ..PaymentConfig::default()
                },
            )
            .with_referrals(store.clone(), 10),
        )
    });
    let media = Arc::new(FakeMedia::default());
    let limiter = Arc::new(Switch::default());
    let ports = ConversationPorts {
        users: UserService::new(store.clone(), clock.clone()),
        ledger: LedgerService::new(store.clone()),
        jobs: jobs.clone(),
        payments,
        admin: AdminService::new(AdminPorts {
            users: store.clone(),
            ledger: store.clone(),
            queue,
            clock: clock.clone(),
        }),
        promos: crate::promo::PromoService::new(store.clone(), clock.clone()),
        referrals: crate::referral::ReferralService::new(
            store.clone(),
            store.clone(),
            clock.clone(),
            ids.clone(),
        ),
        broadcasts: crate::broadcast::BroadcastService::new(
            store.clone(),
            UserService::new(store.clone(), clock.clone()),
            clock.clone(),
        ),
        web: crate::web::WebAdminService::new(
            store.clone(),
            vec![UserId::new(ADMIN).unwrap()],
            clock.clone(),
            ids.clone(),
        ),
        prices: crate::prices::PriceService::new(
            store.clone(),
            jobs.clone(),
            jobs.prices().as_ref().clone(),
            vec!["kling-v2-6".into(), "kling-v1-5".into()],
            clock.clone(),
        ),
        dialogues: store.clone(),
        limiter: limiter.clone(),
        media: media.clone(),
        notifier: notifier.clone(),
        assets: media.assets.clone(),
        clock: clock.clone(),
        ids,
    };
    let chat = Conversation::new(ports.clone(), config);
    World {
        ports,
        store,
        clock,
        media,
        limiter,
        jobs,
        chat,
        notifier,
        next_update: Mutex::new(0),
    }
}

fn world() -> World {
    world_with(config(false), None)
}

fn sender(id: i64) -> Sender {
    Sender {
        id: UserId::new(id).unwrap(),
        username: None,
        first_name: Some("Anna".into()),
        language_code: Some("ru".into()),
    }
}

impl World {
    async fn send(&self, user: i64, input: Input) -> Vec<Reply> {
        let key = {
            let mut n = self.next_update.lock().unwrap();
            *n += 1;
            format!("tg:{n}")
        };
        self.chat.handle(&sender(user), input, &key).await.unwrap()
    }

    async fn say(&self, user: i64, text: &str) -> Vec<Reply> {
        self.send(user, line(text)).await
    }

    async fn press(&self, user: i64, action: Action) -> Vec<Reply> {
        self.send(user, Input::Button(action)).await
    }

    async fn send_photo(&self, user: i64, media: Media, caption: Option<&str>) -> Vec<Reply> {
        let caption = caption.map(str::to_owned);
        self.send(user, Input::Photo { media, caption }).await
    }

    async fn send_video(&self, user: i64, media: Media, caption: &str) -> Vec<Reply> {
        let caption = Some(caption.to_owned());
        self.send(user, Input::Video { media, caption }).await
    }

    /// The stored user, if registered.
    async fn user(&self, id: i64) -> Option<crate::user::User> {
        self.store.user(UserId::new(id).unwrap()).await.unwrap()
    }

    /// Registers `user` and credits `rubles`.
    async fn user_with(&self, user: i64, rubles: &str) {
        self.say(user, "/start").await;
        if rubles != "0" {
            self.store
                .post(
                    crate::ledger::NewEntry {
                        user_id: UserId::new(user).unwrap(),
                        kind: crate::ledger::EntryKind::Credit,
                        amount: rubles.parse().unwrap(),
                        ref_type: crate::ledger::RefType::Admin,
                        ref_id: "test".into(),
                        description: "test".into(),
                        idempotency_key: IdempotencyKey::new(format!("seed-{user}")).unwrap(),
                        created_at: Timestamp::from_millis(0),
                    },
                    None,
                )
                .await
                .unwrap();
        }
    }

    /// `/video`, then a model and a length by button.
    async fn choose_video(&self, user: i64, model: &str, duration: VideoDuration) -> Vec<Reply> {
        self.say(user, "/video").await;
        self.press(user, Action::VideoModel(model.into())).await;
        self.press(user, Action::VideoDuration(duration)).await
    }

    async fn available(&self, user: i64) -> Money {
        self.store
            .balance(UserId::new(user).unwrap())
            .await
            .unwrap()
            .available
    }

    async fn jobs_of(&self, user: i64) -> Vec<crate::job::Job> {
        self.store
            .jobs(JobFilter {
                user_id: Some(UserId::new(user).unwrap()),
                ..JobFilter::default()
            })
            .await
            .unwrap()
    }
}

fn keys(replies: &[Reply]) -> Vec<&'static str> {
    replies.iter().map(|r| r.text.key).collect()
}

fn arg<'a>(reply: &'a Reply, name: &str) -> &'a Arg {
    &reply
        .text
        .args
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no arg {name} in {reply:?}"))
        .1
}

fn money(s: &str) -> Money {
    s.parse().unwrap()
}

fn arg_of<'a>(text: &'a Text, name: &str) -> &'a Arg {
    &text
        .args
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no arg {name} in {text:?}"))
        .1
}

fn rub(s: &str) -> Arg {
    Arg::Money(s.parse().unwrap())
}

/// The action of the button labelled `key` in the first reply.
fn button(replies: &[Reply], key: &str) -> Action {
    replies
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .find(|b| b.label.key == key)
        .and_then(|b| match &b.target {
            ButtonTarget::Action(a) => Some(a.clone()),
            ButtonTarget::Url(_) => None,
        })
        .unwrap_or_else(|| panic!("no button {key} in {replies:?}"))
}

fn photo(file: &str, size: u64) -> Media {
    Media {
        reference: file.into(),
        size: Some(size),
        width: Some(1280),
        height: Some(960),
        duration_secs: None,
        mime_type: None,
    }
}

fn clip(file: &str, secs: u32) -> Media {
    Media {
        reference: file.into(),
        size: Some(5_000_000),
        width: Some(1280),
        height: Some(720),
        duration_secs: Some(secs),
        mime_type: Some("video/mp4".into()),
    }
}

// ---- registration, help, balance, language ----

#[tokio::test]
async fn start_registers_and_shows_the_balance() {
    let w = world();
    let replies = w.say(ANNA, "/start").await;
    assert_eq!(keys(&replies), ["welcome"]);
    assert_eq!(arg(&replies[0], "balance"), &rub("0"));
    assert_eq!(w.user(ANNA).await.unwrap().language, Language::Ru);
    let mut english = sender(7);
    english.language_code = Some("en-US".into());
    w.chat
        .handle(&english, line("/start"), "tg:x")
        .await
        .unwrap();
    assert_eq!(
        w.user(7).await.unwrap().language,
        Language::En,
        "the messenger's language is the default"
    );
}

#[tokio::test]
async fn a_first_message_without_start_registers_the_user_and_is_served() {
    let w = world();
    let mut english = sender(ANNA);
    english.language_code = Some("en-GB".into());
    let replies = w
        .chat
        .handle(&english, Input::Text("a fox".into()), "tg:1")
        .await
        .unwrap();
    assert_eq!(keys(&replies), ["draft-image", "draft-short-of-money"]);
    let user = w.user(ANNA).await.expect("registered on first contact");
    assert_eq!(user.language, Language::En, "the update's language");
    // The draft was kept: Confirm finds it (and is refused only for want of money).
    let refused = w.press(ANNA, button(&replies, "button-confirm")).await;
    assert_eq!(keys(&refused), ["insufficient-funds"]);
}

#[tokio::test]
async fn an_admin_who_never_sent_start_can_credit_at_once() {
    let w = world();
    w.user_with(ANNA, "0").await;
    let replies = w.say(ADMIN, "/add 42 100 gift").await;
    assert_eq!(keys(&replies), ["admin-added"]);
    assert_eq!(w.available(ANNA).await, money("100"));
}

#[tokio::test]
async fn start_shows_the_main_menu_of_what_is_enabled() {
    let labels = |replies: &[Reply]| -> Vec<&'static str> {
        replies[0]
            .buttons
            .iter()
            .flatten()
            .map(|b| b.label.key)
            .collect()
    };
    let w = world();
    let everything_but_payments = labels(&w.say(ANNA, "/start").await);
    assert_eq!(
        everything_but_payments,
        [
            "menu-image",
            "menu-video",
            "menu-balance",
            "menu-history",
            "menu-language",
            "menu-help"
        ],
        "no top-up without a payment provider"
    );
    let mut bare = config(false);
    bare.videos = false;
    bare.images = false;
    let w = world_paying(bare, None, Some(money("1.5")));
    assert_eq!(
        labels(&w.say(ANNA, "/start").await),
        [
            "menu-balance",
            "menu-topup",
            "menu-history",
            "menu-language",
            "menu-help"
        ],
        "no image or video button without their providers; Stars alone can top up"
    );
}

#[tokio::test]
async fn main_menu_buttons_do_what_their_commands_do() {
    let w = world_paying(config(false), None, Some(money("1.5")));
    w.user_with(ANNA, "120").await;
    for (item, command) in [
        (MenuItem::Balance, "/balance"),
        (MenuItem::History, "/history"),
        (MenuItem::Language, "/lang"),
        (MenuItem::Help, "/help"),
        (MenuItem::TopUp, "/pay"),
        (MenuItem::Video, "/video"),
    ] {
        let by_button = w.press(ANNA, Action::Menu(item)).await;
        w.say(ANNA, "/cancel").await;
        let by_command = w.say(ANNA, command).await;
        w.say(ANNA, "/cancel").await;
        assert_eq!(by_button, by_command, "{item:?}");
    }
    // The video button leaves the dialogue where /video does: a model is chosen next.
    w.press(ANNA, Action::Menu(MenuItem::Video)).await;
    let durations = w.press(ANNA, Action::VideoModel("kling-v2-6".into())).await;
    assert_eq!(keys(&durations), ["video-choose-duration"]);
    // The image button ends any dialogue and asks for a description.
    assert_eq!(
        keys(&w.press(ANNA, Action::Menu(MenuItem::Image)).await),
        ["menu-image-ask"]
    );
    let draft = w.say(ANNA, "a red fox").await;
    assert_eq!(keys(&draft), ["draft-image"]);
    let mut no_images = config(false);
    no_images.images = false;
    let w = world_with(no_images, None);
    w.user_with(ANNA, "0").await;
    assert_eq!(
        keys(&w.press(ANNA, Action::Menu(MenuItem::Image)).await),
        ["images-unavailable"]
    );
}

#[tokio::test]
async fn help_balance_and_unknown_input() {
    let w = world();
    w.user_with(ANNA, "120").await;
    assert_eq!(keys(&w.say(ANNA, "/help").await), ["help"]);
    let b = w.say(ANNA, "/balance").await;
    assert_eq!(
        (arg(&b[0], "available"), arg(&b[0], "held")),
        (&rub("120"), &rub("0"))
    );
    assert_eq!(keys(&w.send(ANNA, Input::Other).await), ["unknown-input"]);
    assert_eq!(keys(&w.say(ANNA, "/nonsense").await), ["unknown-command"]);
    assert_eq!(
        keys(&w.send(ANNA, Input::StaleButton).await),
        ["button-expired"]
    );
}

#[tokio::test]
async fn lang_switches_the_language() {
    let w = world();
    w.user_with(ANNA, "0").await;
    let r = w.say(ANNA, "/lang").await;
    assert_eq!(button(&r, "lang-en"), Action::SetLanguage(Language::En));
    assert_eq!(
        keys(&w.press(ANNA, Action::SetLanguage(Language::En)).await),
        ["lang-set"]
    );
    assert_eq!(w.user(ANNA).await.unwrap().language, Language::En);
}

// ---- image drafts ----

#[tokio::test]
async fn text_makes_a_priced_draft_and_confirm_queues_one_job() {
    let w = world();
    w.user_with(ANNA, "120").await;
    let draft = w.say(ANNA, "a red fox").await;
    assert_eq!(keys(&draft), ["draft-image"]);
    assert_eq!(
        (arg(&draft[0], "price"), arg(&draft[0], "balance")),
        (&rub("50"), &rub("120"))
    );
    let confirm = button(&draft, "button-confirm");
    let queued = w.press(ANNA, confirm.clone()).await;
    assert!(
        queued.is_empty(),
        "the status message is the answer: {queued:?}"
    );
    let jobs = w.jobs_of(ANNA).await;
    assert_eq!(jobs.len(), 1);
    // The notifier, the status message's one writer, started it; it is kept with the job.
    assert_eq!(
        w.notifier.notices(),
        [(
            UserId::new(ANNA).unwrap(),
            Notice::JobQueued {
                job_id: jobs[0].id,
                price: money("50")
            }
        )]
    );
    assert_eq!(
        jobs[0].status_message,
        Some(MessageRef::new(format!("status-{}", jobs[0].id))),
        "the worker edits this message"
    );
    assert_eq!(w.available(ANNA).await, "70".parse().unwrap());
    // Pressed again (or the update delivered twice): the same job, no second hold.
    assert_eq!(
        keys(&w.press(ANNA, confirm).await),
        ["draft-already-confirmed"]
    );
    assert_eq!(w.jobs_of(ANNA).await.len(), 1);
    assert_eq!(w.available(ANNA).await, "70".parse().unwrap());
}

#[tokio::test]
async fn a_draft_survives_a_restart_of_the_front_end() {
    let w = world();
    w.user_with(ANNA, "120").await;
    let draft = w.say(ANNA, "a red fox").await;
    // A new engine over the same store: the dialogue state is stored, not in memory.
    let restarted = Conversation::new(w.ports.clone(), config(false));
    let confirm = Input::Button(button(&draft, "button-confirm"));
    let queued = restarted
        .handle(&sender(ANNA), confirm, "tg:after-restart")
        .await
        .unwrap();
    assert!(queued.is_empty(), "{queued:?}");
    assert_eq!(w.jobs_of(ANNA).await.len(), 1);
}

#[tokio::test]
async fn without_money_the_confirm_offers_pay_and_holds_nothing() {
    let w = world();
    w.user_with(ANNA, "20").await;
    let draft = w.say(ANNA, "a red fox").await;
    assert_eq!(keys(&draft), ["draft-image", "draft-short-of-money"]);
    let r = w.press(ANNA, button(&draft, "button-confirm")).await;
    assert_eq!(keys(&r), ["insufficient-funds"]);
    assert_eq!(
        (arg(&r[0], "price"), arg(&r[0], "balance")),
        (&rub("50"), &rub("20"))
    );
    assert!(w.jobs_of(ANNA).await.is_empty());
    assert_eq!(w.available(ANNA).await, "20".parse().unwrap());
}

#[tokio::test]
async fn cancelled_expired_and_stale_drafts_charge_nothing() {
    let w = world();
    w.user_with(ANNA, "500").await;
    let draft = w.say(ANNA, "a red fox").await;
    assert_eq!(
        keys(&w.press(ANNA, button(&draft, "button-cancel")).await),
        ["draft-cancelled"]
    );
    assert_eq!(
        keys(&w.press(ANNA, button(&draft, "button-confirm")).await),
        ["button-expired"]
    );
    let old = w.say(ANNA, "a slow fox").await;
    w.clock.advance(Duration::from_secs(3601));
    let again = w.press(ANNA, button(&old, "button-confirm")).await;
    assert_eq!(keys(&again), ["draft-expired", "draft-image"]);
    assert!(w.jobs_of(ANNA).await.is_empty());
    // The old draft's buttons are gone with it.
    assert_eq!(
        keys(&w.press(ANNA, button(&old, "button-confirm")).await),
        ["button-expired"]
    );
    assert!(w.jobs_of(ANNA).await.is_empty());
    assert_eq!(w.available(ANNA).await, "500".parse().unwrap());
    assert_eq!(keys(&w.say(ANNA, "   ").await), ["prompt-empty"]);
    assert_eq!(
        keys(&w.say(ANNA, &"x".repeat(2501)).await),
        ["prompt-too-long"]
    );
}

#[tokio::test]
async fn an_expired_draft_is_priced_again_at_todays_price_and_asked_again() {
    let w = world();
    w.user_with(ANNA, "500").await;
    let draft = w.say(ANNA, "a red fox").await;
    assert_eq!(arg(&draft[0], "price"), &rub("50"));
    image_price_now_70(&w);
    w.clock.advance(Duration::from_secs(3601));
    let again = w.press(ANNA, button(&draft, "button-confirm")).await;
    assert_eq!(keys(&again), ["draft-expired", "draft-image"]);
    assert_eq!(arg(&again[1], "price"), &rub("70"));
    assert!(
        w.jobs_of(ANNA).await.is_empty(),
        "nothing made before asking"
    );
    assert_eq!(w.available(ANNA).await, "500".parse().unwrap());
    w.press(ANNA, button(&again, "button-confirm")).await;
    let jobs = w.jobs_of(ANNA).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].quote.amount, "70".parse().unwrap());
    let JobSpec::ImageGeneration { prompt, .. } = &jobs[0].spec else {
        panic!("{jobs:?}")
    };
    assert_eq!(prompt.as_str(), "a red fox", "the same request");
}

/// The prices change: an image costs 70 ₽ from now on.
fn image_price_now_70(w: &World) {
    w.jobs.set_prices(
        PriceList::new(
            "70".parse().unwrap(),
            "30".parse().unwrap(),
            "100".parse().unwrap(),
            2,
        )
        .unwrap(),
    );
}

/// [growth] A live price change does not touch a draft already shown: it is made at
/// the price it quoted, until it expires; the next draft shows the new price.
#[tokio::test]
async fn a_price_change_after_the_draft_keeps_its_quoted_price_until_it_expires() {
    let w = world();
    w.user_with(ANNA, "500").await;
    let draft = w.say(ANNA, "a red fox").await;
    w.clock.advance(Duration::from_secs(60));
    image_price_now_70(&w);
    w.clock.advance(Duration::from_secs(60));
    let r = w.press(ANNA, button(&draft, "button-confirm")).await;
    assert!(r.is_empty(), "{r:?}");
    assert_eq!(w.jobs_of(ANNA).await[0].quote.amount, "50".parse().unwrap());
    assert_eq!(w.available(ANNA).await, "450".parse().unwrap());
    let next = w.say(ANNA, "a blue fox").await;
    assert_eq!(arg(&next[0], "price"), &rub("70"));
}

#[tokio::test]
async fn a_photo_with_a_caption_is_an_edit_draft_and_limits_are_checked_first() {
    let w = world();
    w.user_with(ANNA, "500").await;
    let no_caption = w.send_photo(ANNA, photo("f1", 1_000), None).await;
    assert_eq!(keys(&no_caption), ["photo-needs-caption"]);
    let huge = w
        .send_photo(ANNA, photo("f2", 21 * 1024 * 1024), Some("anime"))
        .await;
    assert_eq!(keys(&huge), ["file-too-large"]);
    assert!(
        w.media.fetched.lock().unwrap().is_empty(),
        "nothing downloaded"
    );
    let draft = w
        .send_photo(ANNA, photo("f3", 100_000), Some("anime style"))
        .await;
    assert_eq!(keys(&draft), ["draft-edit"]);
    assert_eq!(arg(&draft[0], "price"), &rub("30"));
    w.press(ANNA, button(&draft, "button-confirm")).await;
    let job = &w.jobs_of(ANNA).await[0];
    let JobSpec::ImageEdit { image, .. } = &job.spec else {
        panic!("{job:?}")
    };
    assert_eq!(w.media.assets.read(image).await.unwrap(), b"f3");
}

/// [edge] A file is downloaded only for a draft the user can pay for: a photo (or a
/// video) from someone short of money is refused before anything reaches the disk.
#[tokio::test]
async fn nothing_is_downloaded_for_a_draft_the_user_cannot_afford() {
    let w = world();
    w.user_with(ANNA, "29.99").await;
    let refused = w
        .send_photo(ANNA, photo("f1", 100_000), Some("anime style"))
        .await;
    assert_eq!(keys(&refused), ["insufficient-funds"]);
    assert_eq!(
        (arg(&refused[0], "price"), arg(&refused[0], "balance")),
        (&rub("30"), &rub("29.99"))
    );
    assert!(
        w.media.fetched.lock().unwrap().is_empty(),
        "nothing downloaded"
    );
    w.user_with(7, "30").await;
    let draft = w
        .send_photo(7, photo("f2", 100_000), Some("anime style"))
        .await;
    assert_eq!(keys(&draft), ["draft-edit"]);
    assert_eq!(*w.media.fetched.lock().unwrap(), ["f2"]);
}

/// [edge] A draft's file does not outlive the draft: replaced by another draft or
/// cancelled, its input is deleted; confirmed, it stays for the job.
#[tokio::test]
async fn a_superseded_drafts_input_is_deleted_and_a_confirmed_ones_kept() {
    let w = world();
    w.user_with(ANNA, "500").await;
    let first = w.send_photo(ANNA, photo("f1", 1_000), Some("anime")).await;
    assert_eq!(keys(&first), ["draft-edit"]);
    assert_eq!(w.media.assets.keys().len(), 1);
    let second = w.send_photo(ANNA, photo("f2", 1_000), Some("noir")).await;
    let inputs = w.media.assets.keys();
    assert_eq!(
        inputs.len(),
        1,
        "the first draft's photo is gone: {inputs:?}"
    );
    assert_eq!(
        w.media
            .assets
            .read(&crate::job::AssetRef::new(&inputs[0]))
            .await
            .unwrap(),
        b"f2"
    );
    w.press(ANNA, button(&second, "button-cancel")).await;
    assert!(
        w.media.assets.keys().is_empty(),
        "cancelled: its photo is gone"
    );
    let third = w.send_photo(ANNA, photo("f3", 1_000), Some("pastel")).await;
    w.press(ANNA, button(&third, "button-confirm")).await;
    w.say(ANNA, "a fox").await;
    let job = &w.jobs_of(ANNA).await[0];
    let input = job.spec.input().unwrap();
    assert_eq!(
        w.media.assets.read(input).await.unwrap(),
        b"f3",
        "the job keeps its input"
    );
}

/// A media fetcher whose asset store is at its cap.
struct FullStore;

#[async_trait]
impl MediaFetcher for FullStore {
    async fn fetch(&self, _: &Media, _: &str) -> Result<crate::job::AssetRef, MediaError> {
        Err(MediaError::StorageFull)
    }

    fn max_bytes(&self) -> u64 {
        20 * 1024 * 1024
    }
}

/// [edge] At `ASSET_DIR_MAX_BYTES` an upload is refused with a clear message, the admins
/// are told, and nothing is charged or held.
#[tokio::test]
async fn at_the_storage_cap_an_upload_is_refused_and_the_admins_told() {
    let w = world();
    w.user_with(ANNA, "500").await;
    let full = Conversation::new(
        ConversationPorts {
            media: Arc::new(FullStore),
            ..w.ports.clone()
        },
        config(false),
    );
    let refused = full
        .handle(
            &sender(ANNA),
            Input::Photo {
                media: photo("f1", 1_000),
                caption: Some("anime".into()),
            },
            "tg:full",
        )
        .await
        .unwrap();
    assert_eq!(keys(&refused), ["storage-full"]);
    let alerts = w.notifier.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].provider, "asset_dir");
    assert_eq!(w.available(ANNA).await, money("500"), "nothing held");
}

// ---- video ----

#[tokio::test]
async fn the_video_flow_prices_by_model_and_length() {
    let w = world();
    w.user_with(ANNA, "1000").await;
    let models = w.say(ANNA, "/video").await;
    assert_eq!(keys(&models), ["video-choose-model"]);
    assert_eq!(models[0].buttons.len(), 2);
    let durations = w.press(ANNA, Action::VideoModel("kling-v2-6".into())).await;
    assert_eq!(keys(&durations), ["video-choose-duration"]);
    let ten = &durations[0].buttons[0][1];
    assert_eq!(
        ten.target,
        ButtonTarget::Action(Action::VideoDuration(VideoDuration::Ten))
    );
    assert!(ten.label.args.contains(&("price", rub("200"))), "{ten:?}");
    assert_eq!(keys(&w.say(ANNA, "a fox").await), ["video-use-buttons"]);
    assert_eq!(
        keys(
            &w.press(ANNA, Action::VideoDuration(VideoDuration::Ten))
                .await
        ),
        ["video-send-any"]
    );
    let draft = w.say(ANNA, "a fox running").await;
    assert_eq!(keys(&draft), ["draft-text-video"]);
    assert_eq!(arg(&draft[0], "price"), &rub("200"));
    w.press(ANNA, button(&draft, "button-confirm")).await;
    let job = &w.jobs_of(ANNA).await[0];
    assert!(
        matches!(&job.spec, JobSpec::Video { mode: VideoMode::TextToVideo, model, duration: VideoDuration::Ten, .. } if model == "kling-v2-6")
    );
}

#[tokio::test]
async fn a_model_without_text_to_video_refuses_text_and_names_the_ones_that_can() {
    let w = world();
    w.user_with(ANNA, "1000").await;
    w.say(ANNA, "/video").await;
    w.press(ANNA, Action::VideoModel("kling-v1-5".into())).await;
    assert_eq!(
        keys(
            &w.press(ANNA, Action::VideoDuration(VideoDuration::Five))
                .await
        ),
        ["video-send-photo"]
    );
    let r = w.say(ANNA, "a fox").await;
    assert_eq!(keys(&r), ["video-mode-unsupported"]);
    assert_eq!(arg(&r[0], "models"), &Arg::Text("Kling 2.6".into()));
    let small = Media {
        width: Some(200),
        ..photo("p", 1_000)
    };
    let r = w.send_photo(ANNA, small, Some("go")).await;
    assert_eq!(keys(&r), ["image-too-small"]);
    let r = w
        .send_photo(ANNA, photo("p2", 11 * 1024 * 1024), Some("go"))
        .await;
    assert_eq!(
        keys(&r),
        ["file-too-large"],
        "Kling takes images up to 10 MB"
    );
    let draft = w.send_photo(ANNA, photo("p3", 1_000), Some("go")).await;
    assert_eq!(keys(&draft), ["draft-image-video"]);
    assert!(
        w.jobs_of(ANNA).await.is_empty(),
        "nothing reserved by a draft"
    );
}

#[tokio::test]
async fn video_to_video_needs_a_public_url_and_a_source_of_3_to_10_seconds() {
    let w = world();
    w.user_with(ANNA, "1000").await;
    assert_eq!(
        keys(&w.send_video(ANNA, clip("v", 5), "x").await),
        ["video-start-with-command"]
    );
    w.choose_video(ANNA, "kling-v2-6", VideoDuration::Five)
        .await;
    let r = w.send_video(ANNA, clip("v", 5), "x").await;
    assert_eq!(keys(&r), ["video-to-video-unavailable"]);

    let w = world_with(config(true), None);
    w.user_with(ANNA, "1000").await;
    w.choose_video(ANNA, "kling-v2-6", VideoDuration::Five)
        .await;
    let long = w.send_video(ANNA, clip("v", 12), "x").await;
    assert_eq!(keys(&long), ["video-length"]);
    let draft = w.send_video(ANNA, clip("v7", 7), "watercolor").await;
    assert_eq!(keys(&draft), ["draft-video-video"]);
    assert_eq!(
        arg(&draft[0], "price"),
        &rub("200"),
        "a 7 s source is priced as 10 s"
    );
    w.press(ANNA, button(&draft, "button-confirm")).await;
    let job = &w.jobs_of(ANNA).await[0];
    assert!(
        matches!(&job.spec, JobSpec::Video { mode: VideoMode::VideoToVideo, model, .. } if model == "kling-v3-omni")
    );
}

#[tokio::test]
async fn cancel_leaves_the_dialogue() {
    let w = world();
    w.user_with(ANNA, "0").await;
    assert_eq!(keys(&w.say(ANNA, "/cancel").await), ["nothing-to-cancel"]);
    w.say(ANNA, "/video").await;
    assert_eq!(keys(&w.say(ANNA, "/cancel").await), ["cancelled"]);
    assert_eq!(
        keys(&w.press(ANNA, Action::VideoModel("kling-v2-6".into())).await),
        ["button-expired"]
    );
}

// ---- history, pay ----

#[tokio::test]
async fn history_lists_entries_and_jobs() {
    let w = world();
    w.user_with(ANNA, "0").await;
    assert_eq!(keys(&w.say(ANNA, "/history").await), ["history-empty"]);
    w.user_with(ANNA, "100").await;
    let draft = w.say(ANNA, "a fox").await;
    w.press(ANNA, button(&draft, "button-confirm")).await;
    let h = w.say(ANNA, "/history").await;
    let (Arg::List(entries), Arg::List(jobs)) = (arg(&h[0], "entries"), arg(&h[0], "jobs")) else {
        panic!("{h:?}")
    };
    assert_eq!(
        entries.iter().map(|t| t.key).collect::<Vec<_>>(),
        ["history-debit", "history-credit"]
    );
    assert_eq!(jobs.len(), 1);
}

/// The gateway's answer to a payment it created: pending, with its checkout page.
fn checkout(r: &CreatePayment) -> GatewayPayment {
    GatewayPayment {
        provider_payment_id: format!("yk-{}", r.payment_id),
        status: GatewayStatus::Pending,
        amount: r.amount,
        confirmation_url: Some("https://yoomoney.test/checkout".into()),
        payment_id: Some(r.payment_id),
        ..Default::default()
    }
}

#[tokio::test]
async fn pay_offers_amounts_then_a_link_and_a_check_button() {
    let w = world();
    w.user_with(ANNA, "0").await;
    assert_eq!(keys(&w.say(ANNA, "/pay").await), ["pay-unavailable"]);
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_create_payment().returning(|r| {
        Ok(GatewayPayment {
            provider_payment_id: "yk-1".into(),
            user_id: Some(r.user_id),
            test: true,
            ..checkout(r)
        })
    });
    // Asked once: for Anna's press, never for another user's.
    gateway.expect_get_payment().times(1).returning(|id| {
        Ok(GatewayPayment {
            provider_payment_id: id.into(),
            status: GatewayStatus::Pending,
            amount: "300".parse().unwrap(),
            confirmation_url: None,
            payment_id: None,
            user_id: None,
            created_at: None,
            test: true,
            ..Default::default()
        })
    });
    let w = world_with(config(false), Some(gateway));
    w.user_with(ANNA, "0").await;
    let menu = w.say(ANNA, "/pay").await;
    assert_eq!(keys(&menu), ["pay-choose"]);
    let link = w.press(ANNA, button(&menu, "pay-amount")).await;
    assert_eq!(keys(&link), ["pay-link"]);
    assert_eq!(arg(&link[0], "amount"), &rub("100"));
    assert_eq!(
        link[0].buttons[0][0].target,
        ButtonTarget::Url("https://yoomoney.test/checkout".into())
    );
    let check = button(&link, "pay-check");
    assert_eq!(
        keys(&w.press(ANNA, check.clone()).await),
        ["pay-check-pending"]
    );
    // Another user's button for this payment tells them nothing.
    w.user_with(7, "0").await;
    assert_eq!(keys(&w.press(7, check).await), ["button-expired"]);
    assert_eq!(
        keys(&w.press(ANNA, Action::TopUp(money("900"))).await),
        ["button-expired"]
    );
}

/// The actions of every button labelled `key`, in order.
fn buttons(replies: &[Reply], key: &str) -> Vec<Action> {
    replies
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .filter(|b| b.label.key == key)
        .filter_map(|b| match &b.target {
            ButtonTarget::Action(a) => Some(a.clone()),
            ButtonTarget::Url(_) => None,
        })
        .collect()
}

/// [shape] A button carries what it chooses: after the menus changed (amounts reordered,
/// a model removed), a button shown before picks what it showed, or is refused as
/// expired — never whatever sits at its old position now.
#[tokio::test]
async fn an_old_button_picks_what_it_showed_or_nothing() {
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_create_payment()
        .returning(|r| Ok(checkout(r)));
    let w = world_with(config(false), Some(gateway));
    w.user_with(ANNA, "0").await;
    let amounts = buttons(&w.say(ANNA, "/pay").await, "pay-amount");
    assert_eq!(amounts.len(), 2, "100 and 300");
    let models = buttons(&w.say(ANNA, "/video").await, "video-model");
    assert_eq!(models.len(), 2, "Kling 2.6 and Kling 1.5");
    // The operator changes the menus: 300 and 500 now, and Kling 2.6 is gone.
    let mut changed = config(false);
    changed.topup_amounts = vec![money("300"), money("500")];
    changed.video_models.remove(0);
    let chat = Conversation::new(w.ports.clone(), changed);
    let press = |action: Action, n: u32| {
        let chat = &chat;
        async move {
            chat.handle(&sender(ANNA), Input::Button(action), &format!("tg:old-{n}"))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        keys(&press(models[0].clone(), 1).await),
        ["button-expired"],
        "Kling 2.6 is not offered any more"
    );
    let link = press(amounts[1].clone(), 2).await;
    assert_eq!(keys(&link), ["pay-link"]);
    assert_eq!(arg(&link[0], "amount"), &rub("300"), "the 300 it showed");
    assert_eq!(
        keys(&press(amounts[0].clone(), 3).await),
        ["button-expired"],
        "100 is not offered any more"
    );
}

#[tokio::test]
async fn with_receipts_the_email_is_asked_once_then_kept() {
    let mut gateway = MockPaymentGateway::new();
    let emails = Arc::new(Mutex::new(Vec::new()));
    let seen = emails.clone();
    gateway
        .expect_create_payment()
        .times(2)
        .returning(move |r| {
            seen.lock().unwrap().push(r.receipt_email.clone());
            Ok(checkout(r))
        });
    let w = world_full(config(false), Some(gateway), None, true);
    w.user_with(ANNA, "0").await;
    let asked = w.press(ANNA, Action::TopUp(money("100"))).await;
    assert_eq!(keys(&asked), ["pay-email-ask"]);
    assert_eq!(
        keys(&w.say(ANNA, "not an address").await),
        ["pay-email-invalid"]
    );
    assert_eq!(keys(&w.say(ANNA, "anna@").await), ["pay-email-invalid"]);
    let link = w.say(ANNA, " anna@example.com ").await;
    assert_eq!(keys(&link), ["pay-link"]);
    // Kept: the next top-up does not ask again.
    assert_eq!(
        keys(&w.press(ANNA, Action::TopUp(money("300"))).await),
        ["pay-link"]
    );
    assert_eq!(
        *emails.lock().unwrap(),
        vec![Some("anna@example.com".to_owned()); 2]
    );
    // Text is a prompt again once the e-mail is in.
    assert_eq!(keys(&w.say(ANNA, "a cat").await)[0], "draft-image");
}

#[tokio::test]
async fn stars_are_offered_invoiced_checked_out_and_credited_once() {
    // Stars only (no card payments): 100 ₽ at 1.30 ₽ a Star is 77 Stars, 100.10 ₽.
    let w = world_paying(config(false), None, Some(money("1.30")));
    w.user_with(ANNA, "0").await;
    let menu = w.say(ANNA, "/pay").await;
    assert_eq!(keys(&menu), ["pay-choose"]);
    let labels: Vec<_> = menu[0]
        .buttons
        .iter()
        .flatten()
        .map(|b| b.label.key)
        .collect();
    assert_eq!(
        labels,
        ["pay-stars-amount", "pay-stars-amount"],
        "no card amounts"
    );
    let first = &menu[0].buttons[0][0];
    assert_eq!(
        (
            arg_of(&first.label, "stars"),
            arg_of(&first.label, "amount")
        ),
        (&Arg::Number(77), &rub("100"))
    );
    let invoice = w.press(ANNA, Action::TopUpStars(money("100"))).await;
    assert_eq!(keys(&invoice), ["stars-invoice-description"]);
    let Invoice {
        title,
        payment,
        stars,
    } = invoice[0].invoice.clone().unwrap();
    let ours = Some(payment);
    assert_eq!((title.key, stars), ("stars-invoice-title", 77));
    assert_eq!(arg_of(&title, "amount"), &rub("100.10"));
    let anna = sender(ANNA);
    w.chat.stars_checkout(&anna, ours, 77).await.unwrap();
    for (who, which, n) in [
        (sender(7), ours, 77),
        (sender(ANNA), None, 77),
        (sender(ANNA), ours, 76),
    ] {
        assert_eq!(
            w.chat.stars_checkout(&who, which, n).await.unwrap_err().key,
            "stars-invoice-expired"
        );
    }
    assert!(
        w.chat
            .stars_checkout(
                &anna,
                Some(crate::ids::PaymentId::from_uuid(uuid::Uuid::from_u128(7))),
                77
            )
            .await
            .is_err(),
        "a payment we do not have"
    );
    // Telegram may deliver successful_payment twice: one credit, told once (through the outbox).
    for _ in 0..2 {
        let replies = w.chat.stars_paid(&anna, ours, 77, "stx-1").await.unwrap();
        assert!(replies.is_empty());
    }
    assert_eq!(w.available(ANNA).await, money("100.10"));
    crate::notice::flush(w.store.clone(), w.notifier.clone(), w.clock.clone()).await;
    let credited = w
        .notifier
        .notices()
        .into_iter()
        .filter(|(_, n)| matches!(n, crate::ports::Notice::PaymentCredited { .. }))
        .count();
    assert_eq!(credited, 1);
    // Paid: the invoice is closed.
    assert!(w.chat.stars_checkout(&anna, ours, 77).await.is_err());
    // Money for an invoice we cannot match: nothing credited, admins told.
    let odd = w.chat.stars_paid(&anna, None, 5, "stx-2").await.unwrap();
    assert_eq!(keys(&odd), ["stars-payment-problem"]);
    let alerts = w.notifier.alerts();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].message.contains("stx-2"));
    assert_eq!(w.available(ANNA).await, money("100.10"));
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_banned_or_rate_limited_payer_is_still_credited_for_stars_taken() {
    let w = world_paying(config(false), None, Some(money("2")));
    w.user_with(ANNA, "0").await;
    let invoice = w.press(ANNA, Action::TopUpStars(money("300"))).await;
    let payment = invoice[0].invoice.clone().unwrap().payment;
    w.user_with(ADMIN, "0").await;
    w.say(ADMIN, &format!("/ban {ANNA}")).await;
    *w.limiter.limited.lock().unwrap() = Some(Duration::from_secs(30));
    w.chat
        .stars_paid(&sender(ANNA), Some(payment), 150, "stx-9")
        .await
        .unwrap();
    assert_eq!(w.available(ANNA).await, money("300"));
}

// ---- admin, bans, rate limit ----

#[tokio::test]
async fn admin_commands_are_unknown_to_others_and_audited_for_admins() {
    let w = world();
    w.user_with(ADMIN, "0").await;
    w.user_with(ANNA, "0").await;
    assert_eq!(keys(&w.say(ANNA, "/add 42 100").await), ["unknown-command"]);
    assert_eq!(keys(&w.say(ANNA, "/stats").await), ["unknown-command"]);
    assert_eq!(w.available(ANNA).await, Money::ZERO);
    assert_eq!(keys(&w.say(ADMIN, "/add 42").await), ["admin-usage-add"]);
    assert_eq!(keys(&w.say(ADMIN, "/add 42 -5").await), ["admin-usage-add"]);
    let added = w.say(ADMIN, "/add 42 100 welcome gift").await;
    assert_eq!(keys(&added), ["admin-added"]);
    assert_eq!(arg(&added[0], "balance"), &rub("100"));
    let too_much = w.say(ADMIN, "/sub 42 150").await;
    assert_eq!(keys(&too_much), ["admin-sub-too-much"]);
    assert_eq!(
        keys(&w.say(ADMIN, "/sub 42 40").await),
        ["admin-subtracted"]
    );
    assert_eq!(w.available(ANNA).await, "60".parse().unwrap());
    assert_eq!(
        keys(&w.say(ADMIN, "/ban 999").await),
        ["admin-unknown-user"]
    );
    assert_eq!(keys(&w.say(ADMIN, "/admin").await), ["admin-menu"]);
    let stats = w.press(ADMIN, Action::AdminStats).await;
    assert_eq!(keys(&stats), ["admin-stats"]);
    assert_eq!(arg(&stats[0], "users"), &Arg::Number(2));
    assert_eq!(
        keys(&w.press(ANNA, Action::AdminStats).await),
        ["button-expired"]
    );
    let audit = w.store.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 2, "the credit and the debit are audited");
}

#[tokio::test]
async fn a_banned_user_gets_one_notice_then_silence() {
    let w = world();
    w.user_with(ADMIN, "0").await;
    w.user_with(ANNA, "100").await;
    assert_eq!(keys(&w.say(ADMIN, "/ban 42").await), ["admin-banned"]);
    assert_eq!(keys(&w.say(ANNA, "a fox").await), ["banned"]);
    assert!(w.say(ANNA, "a fox").await.is_empty());
    assert!(w.say(ANNA, "/start").await.is_empty());
    assert!(w.jobs_of(ANNA).await.is_empty());
    w.say(ADMIN, "/unban 42").await;
    assert_eq!(keys(&w.say(ANNA, "a fox").await), ["draft-image"]);
}

#[tokio::test]
async fn a_rate_limited_user_is_told_once_when_to_retry() {
    let w = world();
    w.user_with(ANNA, "100").await;
    *w.limiter.limited.lock().unwrap() = Some(Duration::from_secs(12));
    let r = w.say(ANNA, "a fox").await;
    assert_eq!(keys(&r), ["rate-limited"]);
    assert_eq!(arg(&r[0], "seconds"), &Arg::Number(12));
    assert!(w.say(ANNA, "a fox").await.is_empty(), "one notice");
    w.clock.advance(Duration::from_secs(13));
    assert_eq!(
        keys(&w.say(ANNA, "a fox").await),
        ["rate-limited"],
        "a new period, a new notice"
    );
    *w.limiter.limited.lock().unwrap() = None;
    assert_eq!(keys(&w.say(ANNA, "a fox").await), ["draft-image"]);
}

/// The limiter fails open: a limiter that cannot answer lets users through (its adapter
/// logs and counts the failure).
#[tokio::test]
async fn a_failing_rate_limiter_lets_users_through() {
    let w = world();
    w.user_with(ANNA, "100").await;
    w.limiter
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(keys(&w.say(ANNA, "a fox").await), ["draft-image"]);
}

#[test]
fn commands_parse_and_reject_bad_arguments() {
    let parse = |text: &str, is_admin: bool| {
        let Input::Command { name, args } = line(text) else {
            panic!("{text} is not a command");
        };
        Command::parse(&name, &args, is_admin)
    };
    assert_eq!(parse("/start", false), Ok(Command::Start(None)));
    assert_eq!(parse("/START", false), Ok(Command::Start(None)));
    assert_eq!(
        parse("/start ref_abcd1234", false),
        Ok(Command::Start(Some("ref_abcd1234".into())))
    );
    assert_eq!(parse("/ref", false), Ok(Command::Ref));
    assert_eq!(parse("/hello", false), Err(CommandError::Unknown));
    assert_eq!(parse("/add 1 2", false), Err(CommandError::Unknown));
    assert_eq!(
        parse("/ban", true),
        Err(CommandError::Usage("admin-usage-ban"))
    );
    assert_eq!(
        parse("/ban 0", true),
        Err(CommandError::Usage("admin-usage-ban"))
    );
    assert_eq!(
        parse("/sub 5 0", true),
        Err(CommandError::Usage("admin-usage-sub"))
    );
    assert_eq!(
        parse("/add 5 12,50 for the trouble", true),
        Ok(Command::Admin(AdminCommand::Add {
            target: UserId::new(5).unwrap(),
            amount: "12.50".parse().unwrap(),
            reason: "for the trouble".into(),
        }))
    );
}

#[test]
fn every_key_the_code_produces_is_listed() {
    let code = [
        include_str!("engine/mod.rs"),
        include_str!("engine/admin.rs"),
        include_str!("engine/buttons.rs"),
        include_str!("engine/drafts.rs"),
        include_str!("engine/payments.rs"),
        include_str!("command.rs"),
    ];
    let mut found = std::collections::BTreeSet::new();
    for source in code {
        for prefix in ["key(\"", "say(\"", "Key(\"", "Usage(\"", "=> \""] {
            for (at, _) in source.match_indices(prefix) {
                let rest = &source[at + prefix.len()..];
                let literal = &rest[..rest.find('"').unwrap()];
                if literal
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    found.insert(literal.to_owned());
                }
            }
        }
        for (at, _) in source.match_indices("\"admin-usage-") {
            let rest = &source[at + 1..];
            found.insert(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    // Command names and file extensions matched by `=> "…"` are not texts.
    let listed: std::collections::BTreeSet<String> =
        TEXT_KEYS.iter().map(|k| (*k).to_owned()).collect();
    let missing: Vec<&String> = found.iter().filter(|k| !listed.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "keys produced but not in TEXT_KEYS: {missing:?}"
    );
    assert!(found.len() >= 80, "the scan found {} keys", found.len());
}

/// A dialogue store where another update of the same user saves between this update's
/// load and its save.
struct Racing(Arc<MemoryStore>);

#[async_trait]
impl crate::ports::DialogueStore for Racing {
    async fn load_dialogue(
        &self,
        user: UserId,
    ) -> Result<Option<crate::ports::DialogueRecord>, crate::ports::StoreError> {
        let seen = self.0.load_dialogue(user).await?;
        if let Some(record) = &seen {
            self.0
                .save_dialogue(
                    user,
                    &record.state,
                    Some(record.version),
                    Timestamp::from_millis(1),
                )
                .await?;
        }
        Ok(seen)
    }

    async fn save_dialogue(
        &self,
        user: UserId,
        state: &str,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<u64, crate::ports::StoreError> {
        self.0.save_dialogue(user, state, expected, at).await
    }

    async fn clear_dialogue(&self, user: UserId) -> Result<(), crate::ports::StoreError> {
        self.0.clear_dialogue(user).await
    }
}

#[tokio::test]
async fn a_dialogue_changed_by_a_concurrent_update_is_not_overwritten() {
    let w = world();
    w.user_with(ANNA, "100").await;
    let racing = Conversation::new(
        ConversationPorts {
            dialogues: Arc::new(Racing(w.store.clone())),
            ..w.ports.clone()
        },
        config(false),
    );
    let r = racing
        .handle(&sender(ANNA), Input::Text("a fox".into()), "tg:race")
        .await;
    assert!(matches!(r, Err(ConversationError::Concurrent)), "{r:?}");
    let stored = w
        .store
        .load_dialogue(UserId::new(ANNA).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored.state.contains("draft"),
        "the other update's state is kept: {}",
        stored.state
    );
}

/// [money] 20: jobs imported from the v2.0 bot show in `/history`.
#[tokio::test]
async fn history_shows_the_jobs_of_the_old_bot() {
    let w = world();
    w.user_with(ANNA, "0").await;
    let old = crate::legacy::LegacyJob {
        id: 7,
        user_id: UserId::new(ANNA).unwrap(),
        kind: "image_generation".into(),
        status: "completed".into(),
        params: "{}".into(),
        result_url: None,
        error_message: None,
        cost_estimate: Some(money("50")),
        cost_actual: Some(money("50")),
        created_at: Timestamp::from_millis(1),
        completed_at: Some(Timestamp::from_millis(2)),
    };
    w.store.import_legacy_job(&old).await.unwrap();
    let replies = w.say(ANNA, "/history").await;
    assert_eq!(keys(&replies), ["history"]);
    let Arg::List(jobs) = arg(&replies[0], "jobs") else {
        panic!("{replies:?}")
    };
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].key, "history-legacy-job");
    assert_eq!(
        arg_of(&jobs[0], "what"),
        &Arg::Text("image_generation".into())
    );
    assert_eq!(arg_of(&jobs[0], "price"), &rub("50"));
}

/// [growth] 5: "Repeat" under `/history` makes a new draft of a finished job's request,
/// at today's price; only the owner's own finished jobs, and only while an input file
/// is still kept.
#[tokio::test]
async fn history_repeats_a_finished_request_as_a_new_draft_at_todays_price() {
    let w = world();
    w.user_with(ANNA, "500").await;
    w.user_with(ADMIN, "500").await;
    let anna = UserId::new(ANNA).unwrap();
    let draft = w.say(ANNA, "a red fox").await;
    w.press(ANNA, button(&draft, "button-confirm")).await;
    let first = w.jobs_of(ANNA).await[0].clone();
    // A job still running offers no Repeat.
    let running = w.say(ANNA, "/history").await;
    assert!(
        buttons(&running, "history-repeat").is_empty(),
        "{running:?}"
    );
    w.jobs
        .cancel(first.id, crate::user::Actor::User(anna), "changed my mind")
        .await
        .unwrap();
    let history = w.say(ANNA, "/history").await;
    assert_eq!(
        buttons(&history, "history-repeat"),
        [Action::Repeat(first.id)]
    );
    image_price_now_70(&w);
    let again = w.press(ANNA, button(&history, "history-repeat")).await;
    assert_eq!(keys(&again), ["draft-image"]);
    assert_eq!(arg(&again[0], "price"), &rub("70"));
    assert_eq!(
        w.jobs_of(ANNA).await.len(),
        1,
        "nothing made before Confirm"
    );
    w.press(ANNA, button(&again, "button-confirm")).await;
    let jobs = w.jobs_of(ANNA).await;
    assert_eq!(jobs.len(), 2);
    let repeated = jobs.iter().find(|j| j.id != first.id).unwrap();
    assert_eq!(repeated.spec, first.spec, "the same request");
    assert_eq!(repeated.quote.amount, money("70"), "at today's price");
    // Someone else's job, or one that does not exist: a stale button.
    assert_eq!(
        keys(&w.press(ADMIN, Action::Repeat(first.id)).await),
        ["button-expired"]
    );
    let nowhere = crate::ids::JobId::from_uuid(uuid::Uuid::from_u128(7));
    assert_eq!(
        keys(&w.press(ANNA, Action::Repeat(nowhere)).await),
        ["button-expired"]
    );
    assert_eq!(w.jobs_of(ADMIN).await.len(), 0);
    // An edit whose photo the retention sweep removed cannot be repeated.
    let edit = w
        .send_photo(ANNA, photo("f9", 100_000), Some("anime style"))
        .await;
    w.press(ANNA, button(&edit, "button-confirm")).await;
    let edit_job = w
        .jobs_of(ANNA)
        .await
        .into_iter()
        .find(|j| matches!(j.spec, JobSpec::ImageEdit { .. }))
        .unwrap();
    w.jobs
        .cancel(edit_job.id, crate::user::Actor::User(anna), "no")
        .await
        .unwrap();
    let JobSpec::ImageEdit { image, .. } = &edit_job.spec else {
        unreachable!()
    };
    w.media.assets.remove(image).await.unwrap();
    assert_eq!(
        keys(&w.press(ANNA, Action::Repeat(edit_job.id)).await),
        ["repeat-input-gone"]
    );
    assert_eq!(w.jobs_of(ANNA).await.len(), 3, "nothing more made");
}

/// [growth] 5: `/history` pages through the jobs, five a page, numbered and dated; the
/// page buttons lead to older and newer pages, and a page past the end is stale.
#[tokio::test]
async fn history_pages_through_the_jobs_numbered_and_dated() {
    let w = world();
    w.user_with(ANNA, "1000").await;
    let anna = UserId::new(ANNA).unwrap();
    for n in 0..7 {
        let draft = w.say(ANNA, &format!("fox {n}")).await;
        w.press(ANNA, button(&draft, "button-confirm")).await;
        let newest = w.jobs_of(ANNA).await[0].clone();
        w.jobs
            .cancel(newest.id, crate::user::Actor::User(anna), "next")
            .await
            .unwrap();
        w.clock.advance(Duration::from_secs(60));
    }
    let all = w.jobs_of(ANNA).await;
    assert_eq!(all.len(), 7);
    let numbers = |reply: &Reply| {
        let Arg::List(lines) = arg(reply, "jobs") else {
            panic!("{reply:?}")
        };
        lines
            .iter()
            .filter(|l| l.key == "history-job")
            .map(|l| (arg_of(l, "n").clone(), arg_of(l, "date").clone()))
            .collect::<Vec<_>>()
    };
    let first = w.say(ANNA, "/history").await;
    assert_eq!(keys(&first), ["history"]);
    let on_first = numbers(&first[0]);
    assert_eq!(
        on_first,
        (0..5)
            .map(|i| (
                Arg::Number(i + 1),
                Arg::Date(all[usize::try_from(i).unwrap()].created_at)
            ))
            .collect::<Vec<_>>(),
        "the newest five, numbered and dated"
    );
    assert_eq!(buttons(&first, "history-newer"), []);
    assert_eq!(buttons(&first, "history-older"), [Action::HistoryPage(1)]);
    assert_eq!(buttons(&first, "history-repeat").len(), 5);
    let second = w.press(ANNA, Action::HistoryPage(1)).await;
    assert_eq!(keys(&second), ["history-page"]);
    assert_eq!(arg(&second[0], "page"), &Arg::Number(2));
    assert_eq!(
        numbers(&second[0]),
        [
            (Arg::Number(6), Arg::Date(all[5].created_at)),
            (Arg::Number(7), Arg::Date(all[6].created_at))
        ]
    );
    assert_eq!(buttons(&second, "history-older"), []);
    assert_eq!(buttons(&second, "history-newer"), [Action::HistoryPage(0)]);
    // The repeat buttons of the second page are its own jobs'.
    assert_eq!(
        buttons(&second, "history-repeat"),
        [Action::Repeat(all[5].id), Action::Repeat(all[6].id)]
    );
    assert_eq!(
        keys(&w.press(ANNA, Action::HistoryPage(2)).await),
        ["button-expired"]
    );
    assert_eq!(
        keys(&w.press(ANNA, Action::HistoryPage(u32::MAX)).await),
        ["button-expired"]
    );
}

/// [growth] 1: the signup bonus is given once per user — on `/start` or on a first
/// message without it — never on a second `/start`, never to a user who came before it
/// was set; it is a ledger entry of its own kind, and `/stats` shows it apart.
#[tokio::test]
async fn the_signup_bonus_is_given_once_to_each_new_user() {
    let w = world_with(
        ConversationConfig {
            signup_bonus: money("25"),
            ..config(false)
        },
        None,
    );
    let first = w.say(ANNA, "/start").await;
    assert_eq!(keys(&first), ["signup-bonus", "welcome"]);
    assert_eq!(arg(&first[0], "amount"), &rub("25"));
    assert_eq!(arg(&first[1], "balance"), &rub("25"));
    assert_eq!(keys(&w.say(ANNA, "/start").await), ["welcome"]);
    assert_eq!(w.available(ANNA).await, money("25"));
    let entries = w
        .store
        .entries(UserId::new(ANNA).unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.ref_type, e.kind, e.amount))
            .collect::<Vec<_>>(),
        [(
            crate::ledger::RefType::Bonus,
            crate::ledger::EntryKind::Credit,
            money("25")
        )]
    );
    // A first message without /start (a shared link) gets it too, then its answer.
    let straight = w.say(7, "a red fox").await;
    assert_eq!(
        keys(&straight),
        ["signup-bonus", "draft-image", "draft-short-of-money"],
        "25 ₽ of 50"
    );
    assert_eq!(w.available(7).await, money("25"));
    // Someone who came long before the bonus was set gets nothing now.
    let old = world();
    old.say(8, "/start").await;
    old.clock.advance(Duration::from_secs(2 * 3600));
    let later = Conversation::new(
        old.ports.clone(),
        ConversationConfig {
            signup_bonus: money("25"),
            ..config(false)
        },
    );
    let r = later
        .handle(&sender(8), line("/start"), "tg:later")
        .await
        .unwrap();
    assert_eq!(keys(&r), ["welcome"]);
    assert_eq!(old.available(8).await, Money::ZERO);
    // Admins see bonuses apart from paid money.
    w.say(ADMIN, "/start").await;
    let stats = w.say(ADMIN, "/stats").await;
    assert_eq!(arg(&stats[0], "bonuses"), &rub("75"));
    assert_eq!(arg(&stats[0], "revenue"), &rub("0"));
}

/// [growth] 3: an admin creates promo codes from the bot (`/newpromo`) and lists them
/// (`/promos`); for anyone else both are unknown commands; bad arguments get the usage.
#[tokio::test]
async fn admins_create_and_list_promo_codes_in_the_bot() {
    let w = world();
    w.user_with(ADMIN, "0").await;
    w.user_with(ANNA, "0").await;
    assert_eq!(keys(&w.say(ADMIN, "/promos").await), ["admin-promos-empty"]);
    let created = w.say(ADMIN, "/newpromo spring 50 2 2099-01-31").await;
    assert_eq!(keys(&created), ["admin-promo-created"]);
    assert_eq!(arg(&created[0], "code"), &Arg::Text("SPRING".into()));
    assert_eq!(arg(&created[0], "limit"), &Arg::Number(2));
    assert_eq!(
        arg(&created[0], "expires"),
        &Arg::Date(
            Timestamp::after_day(2099, 1, 31)
                .unwrap()
                .minus(Duration::from_millis(1))
        )
    );
    let open = w.say(ADMIN, "/newpromo OPEN 10").await;
    assert_eq!(arg(&open[0], "limit"), &Arg::Key("admin-promo-no-limit"));
    assert_eq!(
        keys(&w.say(ADMIN, "/newpromo OPEN 10").await),
        ["admin-promo-exists"]
    );
    // The test clock starts on 1970-01-01 at 00:16:40 UTC: two days on, that day is past.
    w.clock.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(
        keys(&w.say(ADMIN, "/newpromo OLD 10 1970-01-01").await),
        ["admin-promo-past"]
    );
    assert_eq!(
        keys(&w.say(ADMIN, "/newpromo X! 10").await),
        ["promo-bad-code"]
    );
    for bad in [
        "/newpromo",
        "/newpromo CODE",
        "/newpromo CODE ten",
        "/newpromo CODE 10 0",
        "/newpromo CODE 10 2099-02-30",
        "/newpromo CODE 0",
    ] {
        assert_eq!(
            keys(&w.say(ADMIN, bad).await),
            ["admin-usage-newpromo"],
            "{bad}"
        );
    }
    let listed = w.say(ADMIN, "/promos").await;
    let Arg::List(lines) = arg(&listed[0], "promos") else {
        panic!("{listed:?}")
    };
    let codes: Vec<&Arg> = lines.iter().map(|l| arg_of(l, "code")).collect();
    assert_eq!(
        codes,
        [&Arg::Text("OPEN".into()), &Arg::Text("SPRING".into())]
    );
    // Anna redeems what the admin made; for her the admin commands do not exist.
    assert_eq!(
        keys(&w.say(ANNA, "/promo spring").await),
        ["promo-credited"]
    );
    assert_eq!(w.available(ANNA).await, money("50"));
    assert_eq!(
        keys(&w.say(ANNA, "/newpromo FREE 1000").await),
        ["unknown-command"]
    );
    assert_eq!(keys(&w.say(ANNA, "/promos").await), ["unknown-command"]);
    let audit = w.store.audit_log(10).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == crate::user::AuditAction::PromoCreate)
            .count(),
        2
    );
}

/// The `ref_<code>` payload of the link `/ref` shows `user`.
async fn referral_payload(w: &World, user: i64) -> String {
    let reply = w.say(user, "/ref").await;
    assert_eq!(keys(&reply), ["ref-info"]);
    match arg_of(&reply[0].text, "link") {
        Arg::StartLink(payload) => payload.clone(),
        other => panic!("not a start link: {other:?}"),
    }
}

#[tokio::test]
async fn a_friend_who_starts_through_the_link_earns_the_referrer_a_share_of_top_ups() {
    const BORIS: i64 = 43;
    const VERA: i64 = 44;
    let w = world_paying(config(false), None, Some(money("1.30")));
    w.user_with(ANNA, "0").await;
    let link = referral_payload(&w, ANNA).await;
    assert!(link.starts_with("ref_"), "{link}");
    assert_eq!(
        referral_payload(&w, ANNA).await,
        link,
        "the link stays the same"
    );
    // Boris comes through Anna's link: bound once, told once.
    let first = w.say(BORIS, &format!("/start {link}")).await;
    assert_eq!(keys(&first), ["ref-joined", "welcome"]);
    let again = w.say(BORIS, &format!("/start {link}")).await;
    assert_eq!(keys(&again), ["welcome"]);
    // Anna cannot refer herself, nor be referred by the friend she referred (a loop).
    let own = w.say(ANNA, &format!("/start {link}")).await;
    assert_eq!(keys(&own), ["welcome"]);
    let borises = referral_payload(&w, BORIS).await;
    let back = w.say(ANNA, &format!("/start {borises}")).await;
    assert_eq!(keys(&back), ["welcome"]);
    // A user who has made a job is too late to be referred; a made-up code binds nobody.
    w.user_with(VERA, "100").await;
    let draft = w.say(VERA, "a red fox").await;
    let Some(Action::Confirm(draft_id)) = draft[0].buttons.iter().flatten().find_map(|b| match &b
        .target
    {
        ButtonTarget::Action(a @ Action::Confirm(_)) => Some(a.clone()),
        _ => None,
    }) else {
        panic!("no confirm button: {draft:?}");
    };
    w.press(VERA, Action::Confirm(draft_id)).await;
    assert_eq!(
        keys(&w.say(VERA, &format!("/start {link}")).await),
        ["welcome"]
    );
    assert_eq!(keys(&w.say(VERA, "/start ref_zzzz9999").await), ["welcome"]);
    let summary = w.say(ANNA, "/ref").await;
    assert_eq!(arg_of(&summary[0].text, "invited"), &Arg::Number(1));
    assert_eq!(arg_of(&summary[0].text, "percent"), &Arg::Number(10));
    // Boris tops up 100.10 ₽ (77 Stars) with Stars: Anna gets 10% of it, as a referral
    // entry, told once.
    let invoice = w.press(BORIS, Action::TopUpStars(money("100"))).await;
    let payment = invoice[0].invoice.clone().unwrap().payment;
    let boris = sender(BORIS);
    for _ in 0..2 {
        w.chat
            .stars_paid(&boris, Some(payment), 77, "stx-ref")
            .await
            .unwrap();
    }
    assert_eq!(w.available(BORIS).await, money("100.10"));
    assert_eq!(w.available(ANNA).await, money("10.01"));
    let entries = w
        .store
        .entries(UserId::new(ANNA).unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].ref_type, crate::ledger::RefType::Referral);
    crate::notice::flush(w.store.clone(), w.notifier.clone(), w.clock.clone()).await;
    let told: Vec<_> = w
        .notifier
        .notices()
        .into_iter()
        .filter(|(_, n)| matches!(n, crate::ports::Notice::ReferralRewarded { .. }))
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].0, UserId::new(ANNA).unwrap());
    let summary = w.say(ANNA, "/ref").await;
    assert_eq!(arg_of(&summary[0].text, "earned"), &rub("10.01"));
    assert_eq!(w.store.verify().await.unwrap().violations, []);
}

/// Every action of a reply's buttons.
fn actions(reply: &Reply) -> Vec<Action> {
    reply
        .buttons
        .iter()
        .flatten()
        .filter_map(|b| match &b.target {
            ButtonTarget::Action(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// The draft id of a draft reply (its Confirm button).
fn draft_of(reply: &Reply) -> DraftId {
    actions(reply)
        .into_iter()
        .find_map(|a| match a {
            Action::Confirm(id) => Some(id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("not a draft: {reply:?}"))
}

/// The label key of the button that does `action`.
fn label_of(reply: &Reply, action: &Action) -> &'static str {
    reply
        .buttons
        .iter()
        .flatten()
        .find(|b| matches!(&b.target, ButtonTarget::Action(a) if a == action))
        .unwrap_or_else(|| panic!("no button {action:?} in {reply:?}"))
        .label
        .key
}

#[tokio::test]
async fn an_image_draft_chooses_its_shape_and_size_and_the_next_one_remembers() {
    use crate::pricing::{AspectRatio, Resolution};
    let w = world();
    w.user_with(ANNA, "500").await;
    let first = w.say(ANNA, "a red fox").await;
    let id = draft_of(&first[0]);
    let offered = actions(&first[0]);
    for aspect in AspectRatio::IMAGES {
        assert!(
            offered.contains(&Action::DraftAspect(id, aspect)),
            "{offered:?}"
        );
    }
    assert_eq!(
        label_of(&first[0], &Action::DraftResolution(id, Resolution::OneK)),
        "look-chosen"
    );
    assert_eq!(
        label_of(&first[0], &Action::DraftResolution(id, Resolution::FourK)),
        "look-choice"
    );
    assert_eq!(arg(&first[0], "price"), &rub("50"));
    // 16:9, then 4K: each a new draft of the same request, priced now.
    let wide = w
        .press(ANNA, Action::DraftAspect(id, AspectRatio::Wide16x9))
        .await;
    let wide_id = draft_of(&wide[0]);
    assert_ne!(wide_id, id);
    assert_eq!(
        label_of(
            &wide[0],
            &Action::DraftAspect(wide_id, AspectRatio::Wide16x9)
        ),
        "look-chosen"
    );
    let big = w
        .press(ANNA, Action::DraftResolution(wide_id, Resolution::FourK))
        .await;
    assert_eq!(arg(&big[0], "price"), &rub("100"));
    let Arg::List(look) = arg(&big[0], "look") else {
        panic!("{big:?}")
    };
    assert_eq!(arg_of(&look[0], "aspect"), &Arg::Text("16:9".into()));
    assert_eq!(arg_of(&look[0], "size"), &Arg::Text("4K".into()));
    // A button of a draft that was replaced is stale.
    let stale = w
        .press(ANNA, Action::DraftResolution(id, Resolution::TwoK))
        .await;
    assert_eq!(keys(&stale), ["button-expired"]);
    w.press(ANNA, Action::Confirm(draft_of(&big[0]))).await;
    let jobs = w.jobs_of(ANNA).await;
    assert_eq!(jobs.len(), 1);
    let JobSpec::ImageGeneration { look, .. } = &jobs[0].spec else {
        panic!("{jobs:?}")
    };
    assert_eq!(
        (look.aspect, look.resolution),
        (Some(AspectRatio::Wide16x9), Resolution::FourK)
    );
    assert_eq!(jobs[0].quote.amount, money("100"));
    // The next prompt starts where the last one ended.
    let next = w.say(ANNA, "a blue fox").await;
    assert_eq!(arg(&next[0], "price"), &rub("100"));
    let next_id = draft_of(&next[0]);
    assert_eq!(
        label_of(
            &next[0],
            &Action::DraftAspect(next_id, AspectRatio::Wide16x9)
        ),
        "look-chosen"
    );
    // A photo edit keeps its photo's shape, at the size chosen last.
    let edit = w
        .send_photo(ANNA, photo("f9", 100_000), Some("anime style"))
        .await;
    assert_eq!(keys(&edit), ["draft-edit"]);
    let Arg::List(look) = arg(&edit[0], "look") else {
        panic!("{edit:?}")
    };
    assert_eq!(arg_of(&look[0], "aspect"), &Arg::Key("look-auto"));
    assert_eq!(arg(&edit[0], "price"), &rub("60"));
}

#[tokio::test]
async fn a_text_video_draft_chooses_among_klings_shapes() {
    use crate::pricing::AspectRatio;
    let w = world_with(config(false), None);
    w.user_with(ANNA, "1000").await;
    w.choose_video(ANNA, "kling-v2-6", VideoDuration::Five)
        .await;
    let draft = w.say(ANNA, "a fox running").await;
    let id = draft_of(&draft[0]);
    let shapes: Vec<Action> = actions(&draft[0])
        .into_iter()
        .filter(|a| matches!(a, Action::DraftAspect(..)))
        .collect();
    assert_eq!(
        shapes,
        AspectRatio::VIDEOS
            .map(|a| Action::DraftAspect(id, a))
            .to_vec()
    );
    assert_eq!(arg(&draft[0], "aspect"), &Arg::Text("16:9".into()));
    assert!(
        !actions(&draft[0])
            .iter()
            .any(|a| matches!(a, Action::DraftResolution(..))),
        "videos have no size to choose"
    );
    // An image-only shape is refused for a video.
    let odd = w
        .press(ANNA, Action::DraftAspect(id, AspectRatio::Cinema21x9))
        .await;
    assert_eq!(keys(&odd), ["button-expired"]);
    let tall = w
        .press(ANNA, Action::DraftAspect(id, AspectRatio::Tall9x16))
        .await;
    assert_eq!(arg(&tall[0], "aspect"), &Arg::Text("9:16".into()));
    w.press(ANNA, Action::Confirm(draft_of(&tall[0]))).await;
    let jobs = w.jobs_of(ANNA).await;
    let JobSpec::Video { aspect, .. } = &jobs[0].spec else {
        panic!("{jobs:?}")
    };
    assert_eq!(*aspect, Some(AspectRatio::Tall9x16));
    // Remembered for the next text → video.
    w.choose_video(ANNA, "kling-v2-6", VideoDuration::Five)
        .await;
    let again = w.say(ANNA, "a fox sleeping").await;
    assert_eq!(arg(&again[0], "aspect"), &Arg::Text("9:16".into()));
}

/// [growth] Admins list and set live prices and switch promo codes off from the bot;
/// for everyone else these commands do not exist.
#[tokio::test]
async fn admins_set_prices_and_switch_promo_codes_off_from_the_bot() {
    let w = world();
    w.user_with(ADMIN, "0").await;
    w.user_with(ANNA, "500").await;
    for command in [
        "/prices",
        "/setprice image_generation 70",
        "/disablepromo OPEN",
    ] {
        assert_eq!(
            keys(&w.say(ANNA, command).await),
            ["unknown-command"],
            "{command}"
        );
    }
    let list = w.say(ADMIN, "/prices").await;
    assert_eq!(keys(&list), ["admin-prices"]);
    let Arg::List(lines) = arg(&list[0], "prices") else {
        panic!("{list:?}")
    };
    assert_eq!(lines.len(), 10, "6 image products and 2 models × 2 lengths");
    assert_eq!(
        arg_of(&lines[0], "product"),
        &Arg::Text("image_generation".into())
    );
    assert_eq!(arg_of(&lines[0], "price"), &rub("50"));
    let set = w.say(ADMIN, "/setprice image_generation 70").await;
    assert_eq!(keys(&set), ["admin-price-set"]);
    assert_eq!(arg(&set[0], "before"), &rub("50"));
    assert_eq!(arg(&w.say(ANNA, "a red fox").await[0], "price"), &rub("70"));
    for bad in [
        "/setprice",
        "/setprice image_generation",
        "/setprice image_generation 0",
        "/setprice image_generation x",
    ] {
        assert_eq!(
            keys(&w.say(ADMIN, bad).await),
            ["admin-usage-setprice"],
            "{bad}"
        );
    }
    assert_eq!(
        keys(&w.say(ADMIN, "/setprice video:kling-v9:5s 10").await),
        ["admin-price-unknown"]
    );
    let audit = w.store.audit_log(10).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == crate::user::AuditAction::PriceSet)
            .count(),
        1
    );
    // Promo codes: switched off from the bot, then refused.
    w.say(ADMIN, "/newpromo OPEN 10").await;
    let off = w.say(ADMIN, "/disablepromo open").await;
    assert_eq!(keys(&off), ["admin-promo-disabled"]);
    assert_eq!(keys(&w.say(ANNA, "/promo OPEN").await), ["promo-disabled"]);
    assert_eq!(
        keys(&w.say(ADMIN, "/disablepromo NOSUCH").await),
        ["promo-unknown"]
    );
    assert_eq!(
        keys(&w.say(ADMIN, "/disablepromo").await),
        ["admin-usage-disablepromo"]
    );
}

/// [admin-web] `/web` gives an admin a one-time sign-in link (a URL button), and says
/// so when the web admin is off; for anyone else it is an unknown command.
#[tokio::test]
async fn web_gives_an_admin_a_one_time_sign_in_link() {
    let w = world();
    w.user_with(ADMIN, "0").await;
    w.user_with(ANNA, "0").await;
    let replies = w.say(ADMIN, "/web").await;
    assert_eq!(keys(&replies), ["admin-web-link"]);
    let url = replies[0]
        .buttons
        .iter()
        .flatten()
        .find_map(|b| match &b.target {
            ButtonTarget::Url(url) => Some(url.clone()),
            ButtonTarget::Action(_) => None,
        })
        .unwrap();
    let token = url
        .strip_prefix("https://admin.test/admin/login?token=")
        .unwrap_or_else(|| panic!("{url}"));
    // The link signs in once.
    let signed = w
        .ports
        .web
        .sign_in(&crate::web::Secret::new(token))
        .await
        .unwrap();
    assert_eq!(signed.session.admin, UserId::new(ADMIN).unwrap());
    assert!(
        w.ports
            .web
            .sign_in(&crate::web::Secret::new(token))
            .await
            .is_err()
    );
    assert_eq!(keys(&w.say(ANNA, "/web").await), ["unknown-command"]);
    let off = Conversation::new(
        w.ports.clone(),
        ConversationConfig {
            web_admin_login: None,
            ..config(false)
        },
    );
    let replies = off
        .handle(
            &sender(ADMIN),
            Input::Command {
                name: "web".into(),
                args: Vec::new(),
            },
            "tg:web-off",
        )
        .await
        .unwrap();
    assert_eq!(keys(&replies), ["admin-web-off"]);
}

/// [growth] Models and top-up amounts are live like prices: an admin switches a model
/// off and sets the amounts from the bot; the menus follow at once, an old button for
/// what is gone has expired, every change is audited, and the last model stays on.
#[tokio::test]
async fn admins_switch_models_and_set_topup_amounts_live() {
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_create_payment()
        .returning(|r| Ok(checkout(r)));
    let w = world_with(config(false), Some(gateway));
    w.user_with(ADMIN, "0").await;
    w.user_with(ANNA, "500").await;
    let models = buttons(&w.say(ANNA, "/video").await, "video-model");
    assert_eq!(models.len(), 2);
    let amounts = buttons(&w.say(ANNA, "/pay").await, "pay-amount");
    assert_eq!(amounts.len(), 2, "the settings' 100 and 300");

    let off = w.say(ADMIN, "/setprice model:kling-v2-6 off").await;
    assert_eq!(keys(&off), ["admin-model-switched"]);
    assert_eq!(arg(&off[0], "state"), &Arg::Key("admin-model-off"));
    let now = buttons(&w.say(ANNA, "/video").await, "video-model");
    assert_eq!(now, vec![Action::VideoModel("kling-v1-5".into())]);
    assert_eq!(
        keys(&w.press(ANNA, models[0].clone()).await),
        ["button-expired"],
        "the old button for the model switched off"
    );
    assert_eq!(
        keys(&w.say(ADMIN, "/setprice model:kling-v1-5 off").await),
        ["admin-model-last"]
    );
    assert_eq!(
        keys(&w.say(ADMIN, "/setprice model:kling-v9 off").await),
        ["admin-model-unknown"]
    );
    assert_eq!(
        keys(&w.say(ADMIN, "/setprice model:kling-v1-5 maybe").await),
        ["admin-usage-setprice"]
    );

    let set = w.say(ADMIN, "/setprice topups 500,250,500").await;
    assert_eq!(keys(&set), ["admin-topups-set"]);
    assert_eq!(
        arg(&set[0], "topups"),
        &Arg::Text("250.00 ₽, 500.00 ₽".into())
    );
    let now = buttons(&w.say(ANNA, "/pay").await, "pay-amount");
    assert_eq!(
        now,
        vec![Action::TopUp(money("250")), Action::TopUp(money("500"))]
    );
    assert_eq!(
        keys(&w.press(ANNA, amounts[0].clone()).await),
        ["button-expired"],
        "100 is not offered any more"
    );
    for bad in [
        "/setprice topups 0",
        "/setprice topups x",
        "/setprice topups 1,2,3,4,5,6,7,8,9",
    ] {
        assert_eq!(
            keys(&w.say(ADMIN, bad).await),
            ["admin-usage-setprice"],
            "{bad}"
        );
    }
    let list = w.say(ADMIN, "/prices").await;
    let Arg::List(lines) = arg(&list[0], "models") else {
        panic!("{list:?}")
    };
    assert_eq!(lines.len(), 2, "every model, on or off");
    assert_eq!(
        arg(&list[0], "topups"),
        &Arg::Text("250.00 ₽, 500.00 ₽".into())
    );
    let audit = w.store.audit_log(10).await.unwrap();
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|a| a.action == crate::user::AuditAction::PriceSet)
        .map(|a| a.reason.as_str())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.contains(&"model:kling-v2-6: off"), "{reasons:?}");
    assert!(reasons.contains(&"topups: 250,500"), "{reasons:?}");
    assert_eq!(
        keys(&w.say(ANNA, "/setprice topups 100").await),
        ["unknown-command"],
        "admins only"
    );
}

/// [growth] An admin composes a broadcast in the bot: a preview with its reach and
/// segment buttons, a segment picked, started, paused, resumed and cancelled, each
/// answer showing its progress; for anyone else the buttons are stale.
#[tokio::test]
async fn admins_compose_and_control_a_broadcast_from_the_bot() {
    use crate::broadcast::{BroadcastState, Segment};
    let w = world();
    w.user_with(ADMIN, "0").await;
    w.user_with(ANNA, "0").await;
    w.store
        .set_language(UserId::new(ANNA).unwrap(), crate::user::Language::En)
        .await
        .unwrap();
    assert_eq!(
        keys(&w.say(ANNA, "/broadcast hi").await),
        ["unknown-command"]
    );
    assert_eq!(
        keys(&w.say(ADMIN, "/broadcast").await),
        ["admin-usage-broadcast"]
    );
    assert_eq!(
        keys(&w.say(ADMIN, "/broadcast hi | not a button").await),
        ["admin-usage-broadcast"]
    );
    let draft = w
        .say(
            ADMIN,
            "/broadcast Big news today | Try it=https://t.me/rei_bot",
        )
        .await;
    assert_eq!(keys(&draft), ["admin-broadcast-draft"]);
    assert_eq!(arg(&draft[0], "reach"), &Arg::Number(2));
    assert_eq!(arg(&draft[0], "text"), &Arg::Text("Big news today".into()));
    let Arg::Number(first) = arg(&draft[0], "id").clone() else {
        panic!("{draft:?}")
    };
    let english = Segment::Language(crate::user::Language::En);
    assert!(actions(&draft[0]).contains(&Action::BroadcastSegment(first, english)));
    // Not an admin: stale.
    assert_eq!(
        keys(&w.press(ANNA, Action::BroadcastStart(first)).await),
        ["button-expired"]
    );
    let en = w
        .press(ADMIN, Action::BroadcastSegment(first, english))
        .await;
    assert_eq!(keys(&en), ["admin-broadcast-draft"]);
    assert_eq!(arg(&en[0], "reach"), &Arg::Number(1));
    let Arg::Number(id) = arg(&en[0], "id").clone() else {
        panic!("{en:?}")
    };
    assert_ne!(id, first);
    let old = crate::broadcast::BroadcastStore::broadcast(w.store.as_ref(), first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.state, BroadcastState::Cancelled);
    let started = w.press(ADMIN, Action::BroadcastStart(id)).await;
    assert_eq!(keys(&started), ["admin-broadcast-progress"]);
    assert_eq!(arg(&started[0], "recipients"), &Arg::Number(1));
    assert!(actions(&started[0]).contains(&Action::BroadcastPause(id)));
    let paused = w.press(ADMIN, Action::BroadcastPause(id)).await;
    assert_eq!(arg(&paused[0], "state"), &Arg::Text("paused".into()));
    assert!(actions(&paused[0]).contains(&Action::BroadcastStart(id)));
    let again = w.press(ADMIN, Action::BroadcastStart(id)).await;
    assert_eq!(arg(&again[0], "state"), &Arg::Text("running".into()));
    let cancelled = w.press(ADMIN, Action::BroadcastCancel(id)).await;
    assert_eq!(arg(&cancelled[0], "state"), &Arg::Text("cancelled".into()));
    assert_eq!(
        keys(&w.press(ADMIN, Action::BroadcastStart(id)).await),
        ["admin-broadcast-wrong-state"]
    );
    assert_eq!(
        keys(&w.press(ADMIN, Action::BroadcastProgress(999)).await),
        ["admin-broadcast-unknown"]
    );
}
