//! The sandbox end to end (`SANDBOX=1`): the real `rei-bot run` with only a bot token
//! (and the fake Telegram's address) — no Kling, no Gemini, no YooKassa. A user tops up
//! on the bot's own checkout page, makes an image and a video, and every message says
//! "sandbox"; the play money is marked in the ledger, which verifies at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use rei_adapters::outbound::sandbox::SANDBOX_MP4;
use rei_adapters::outbound::sql::{DatabaseTarget, Stores, connect};
use rei_core::ledger::RefType;
use rei_core::payment::{PaymentFilter, PaymentProvider, PaymentState};
use rei_core::prelude::*;
use rei_tests::fakes::telegram::{Call, FakeTelegram};
use rei_tests::process::{bot_command, listening_addr};
use tokio::process::Child;

const ANNA: i64 = 4242;

struct Sandbox {
    stores: Stores,
    telegram: FakeTelegram,
    assets: tempfile::TempDir,
    http: reqwest::Client,
    _process: Child,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::env::var("TEST_LOG").is_ok() {
            let log = std::fs::read_to_string(self.assets.path().join("bot.log"));
            eprintln!("---- rei-bot log ----\n{}", log.unwrap_or_default());
        }
    }
}

/// `rei-bot run` with `SANDBOX=1`, the token, and nothing else of the providers.
fn sandbox_command(
    telegram: &str,
    database: &str,
    assets: &std::path::Path,
    log: std::fs::File,
) -> tokio::process::Command {
    let mut command = bot_command(env!("CARGO_BIN_EXE_rei-bot"), "run", Stdio::from(log));
    command
        // The newcomer has no admin id to give: the sandbox runs without one.
        .env_remove("ADMIN_IDS")
        .env("SANDBOX", "1")
        .env("TELEGRAM_API_URL", telegram)
        .env("DATABASE_PATH", database)
        .env("ASSET_DIR", assets)
        .env("VIDEO_POLL_INTERVAL_MS", "200")
        .env("RATE_LIMIT_PER_MINUTE", "1000")
        .env("HTTP_ADDR", "127.0.0.1:0");
    command
}

async fn sandbox() -> Sandbox {
    let path = rei_tests::sqlite_path().unwrap();
    let stores = connect(&DatabaseTarget::SqlitePath(path.clone()))
        .await
        .unwrap();
    let telegram = FakeTelegram::start().await.unwrap();
    let assets = tempfile::tempdir().unwrap();
    let log_path = assets.path().join("bot.log");
    let log = std::fs::File::create(&log_path).unwrap();
    std::fs::write(assets.path().join("db-path"), &path).unwrap();
    let process = sandbox_command(&telegram.url, &path, assets.path(), log)
        .spawn()
        .expect("start rei-bot");
    listening_addr(&log_path, 0, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Sandbox {
        stores,
        telegram,
        assets,
        http: reqwest::Client::new(),
        _process: process,
    }
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text(call: &Call) -> &str {
    call.text.as_deref().unwrap_or_default()
}

impl Sandbox {
    fn sent(&self) -> Vec<Call> {
        self.telegram.calls_to("sendMessage", ANNA)
    }

    async fn next(&self, before: usize) -> Call {
        eventually("a reply", || self.sent().get(before).cloned()).await
    }

    async fn say(&self, words: &str) -> Call {
        let before = self.sent().len();
        self.telegram.send_text(ANNA, words);
        self.next(before).await
    }

    async fn press(&self, message: &Call, label: &str) -> Call {
        let before = self.sent().len();
        self.telegram.press(
            ANNA,
            message.message_id.unwrap_or(1),
            &message.button_data(label),
        );
        self.next(before).await
    }

    /// Anna's payments, newest first.
    async fn payments(&self) -> Vec<rei_core::payment::Payment> {
        self.stores
            .payments
            .payments(PaymentFilter {
                user_id: Some(UserId::new(ANNA).unwrap()),
                ..PaymentFilter::default()
            })
            .await
            .unwrap()
    }

    async fn balance(&self) -> Money {
        self.stores
            .ledger
            .balance(UserId::new(ANNA).unwrap())
            .await
            .unwrap()
            .available
    }

    /// The files the workers wrote as results, with this extension.
    fn results(&self, extension: &str) -> Vec<Vec<u8>> {
        let dir = self.assets.path().join("results");
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == extension))
                    .map(|e| std::fs::read(e.path()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// /pay, then `amount`: the checkout page's address, written in the message (a
    /// link to this machine cannot be a Telegram URL button).
    async fn checkout_link(&self, amount: &str) -> String {
        let amounts = self.say("/pay").await;
        let link = self.press(&amounts, amount).await;
        assert!(text(&link).contains("ПЕСОЧНИЦА"), "{link:?}");
        let url = text(&link)
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:") && w.contains("/sandbox/checkout/sbx-"))
            .unwrap_or_else(|| panic!("no checkout link in {link:?}"))
            .to_owned();
        let buttons = link.reply_markup.clone().unwrap_or_default().to_string();
        assert!(
            !buttons.contains("127.0.0.1"),
            "no URL button to this machine (Telegram refuses them): {buttons}"
        );
        url
    }

    async fn page(&self, url: &str) -> (u16, String) {
        let r = self.http.get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn click(&self, url: &str, action: &str) -> (u16, String) {
        let r = self
            .http
            .post(format!("{url}/{action}"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// PNG width and height from its header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_tops_up_makes_an_image_and_a_video_in_the_sandbox_with_only_a_token() {
    let bot = sandbox().await;
    let welcome = bot.say("/start").await;
    assert!(text(&welcome).starts_with("🧪 ПЕСОЧНИЦА"), "{welcome:?}");
    assert!(text(&welcome).contains("Баланс: 0.00 ₽"), "{welcome:?}");

    // Top-up: the checkout page of the bot's own server, paid on a click.
    let url = bot.checkout_link("300.00 ₽").await;
    let (status, page) = bot.page(&url).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("300.00 ₽") && page.contains("ПЕСОЧНИЦА"),
        "{page}"
    );
    assert!(
        page.contains("/pay\"") && page.contains("/cancel\""),
        "{page}"
    );
    assert_eq!(bot.balance().await, Money::ZERO, "nothing before the click");
    let before = bot.sent().len();
    let (status, paid) = bot.click(&url, "pay").await;
    assert_eq!(status, 200, "{paid}");
    assert!(paid.contains("Оплачено (песочница)"), "{paid}");
    let told = bot.next(before).await;
    assert!(text(&told).starts_with("🧪 ПЕСОЧНИЦА"), "{told:?}");
    assert!(
        text(&told).contains("Баланс пополнен на 300.00 ₽"),
        "{told:?}"
    );
    // A second click (a reload) credits nothing more.
    let (status, _) = bot.click(&url, "pay").await;
    assert_eq!(status, 200);
    assert_eq!(bot.balance().await, "300".parse().unwrap());

    // The play money is marked: the payment is the sandbox's, its credit says so.
    let user = UserId::new(ANNA).unwrap();
    let payments = bot.payments().await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].provider, PaymentProvider::Sandbox);
    assert_eq!(payments[0].state, PaymentState::Paid);
    let entries = bot.stores.ledger.entries(user, 50).await.unwrap();
    let credits: Vec<_> = entries
        .iter()
        .filter(|e| e.ref_type == RefType::Payment)
        .collect();
    assert_eq!(credits.len(), 1, "credited once: {entries:?}");
    assert!(
        credits[0].description.contains("sandbox") && credits[0].description.contains("play money"),
        "{:?}",
        credits[0]
    );

    // An image: drawn locally, in the shape asked for, showing the prompt.
    let draft = bot.say("кот в шляпе").await;
    assert!(text(&draft).contains("Цена: 50.00 ₽"), "{draft:?}");
    let wide = bot.press(&draft, "16:9").await;
    bot.press(&wide, "Запустить").await;
    let photo = eventually("the photo", || {
        bot.telegram.calls_to("sendPhoto", ANNA).into_iter().next()
    })
    .await;
    assert!(
        text(&photo).contains("ПЕСОЧНИЦА"),
        "the caption says so: {photo:?}"
    );
    let images = bot.results("png");
    assert_eq!(images.len(), 1);
    assert_eq!(png_size(&images[0]), (1024, 576), "16:9 at 1K");

    // A video: the bundled clip, after a moment of "rendering".
    let models = bot.say("/video").await;
    let durations = bot.press(&models, "Kling 2.6").await;
    bot.press(&durations, "5 с").await;
    let draft = bot.say("волна на закате").await;
    assert!(text(&draft).contains("Цена: 100.00 ₽"), "{draft:?}");
    let queued = bot.press(&draft, "Запустить").await;
    assert!(text(&queued).contains("Запущено"), "{queued:?}");
    let video = eventually("the video", || {
        bot.telegram.calls_to("sendVideo", ANNA).into_iter().next()
    })
    .await;
    assert!(text(&video).contains("ПЕСОЧНИЦА"), "{video:?}");
    assert_eq!(bot.results("mp4"), vec![SANDBOX_MP4.to_vec()]);
    assert_eq!(
        bot.balance().await,
        "150".parse().unwrap(),
        "300 − 50 − 100"
    );

    // A top-up cancelled on the page credits nothing and says so.
    let url = bot.checkout_link("100.00 ₽").await;
    let (status, cancelled) = bot.click(&url, "cancel").await;
    assert_eq!(status, 200, "{cancelled}");
    assert!(cancelled.contains("Платёж отменён"), "{cancelled}");
    let (_, after) = bot.click(&url, "pay").await;
    assert!(
        after.contains("Платёж отменён"),
        "pay after cancel pays nothing: {after}"
    );
    // The page answered after the payment service applied the click.
    let states: Vec<PaymentState> = bot.payments().await.iter().map(|p| p.state).collect();
    assert_eq!(states.len(), 2);
    assert!(states.contains(&PaymentState::Cancelled), "{states:?}");
    assert_eq!(bot.balance().await, "150".parse().unwrap());
    // A made-up page id names nothing.
    let (status, unknown) = bot.page(&url.replace("/sbx-", "/sbx-0000")).await;
    assert_eq!(status, 404, "{unknown}");

    // In English, the banner too.
    let lang = bot.say("/lang").await;
    let english = bot.press(&lang, "English").await;
    assert!(text(&english).starts_with("🧪 SANDBOX"), "{english:?}");
    let balance = bot.say("/balance").await;
    assert!(text(&balance).starts_with("🧪 SANDBOX"), "{balance:?}");

    assert!(bot.stores.ledger.verify().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_refuses_to_start_beside_real_yookassa_keys() {
    let telegram = FakeTelegram::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("rei.db").to_string_lossy().into_owned();
    let log_path = dir.path().join("bot.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut process = sandbox_command(&telegram.url, &database, dir.path(), log)
        .env("YOOKASSA_SHOP_ID", "123456")
        .env("YOOKASSA_SECRET_KEY", "live_secret")
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), process.wait())
        .await
        .expect("it stops at once")
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("SANDBOX=1 cannot run with real YooKassa keys"),
        "{log}"
    );
    assert!(
        !log.contains("live_secret"),
        "the key is never printed: {log}"
    );
    assert!(
        telegram.calls_of("getUpdates").is_empty(),
        "it never started polling"
    );
}

/// A sandbox database holds play money: started without `SANDBOX=1` it is refused, so
/// sandbox balances never pass for paid ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_sandbox_payments_is_refused_outside_the_sandbox() {
    let mut bot = sandbox().await;
    bot.say("/start").await;
    let url = bot.checkout_link("100.00 ₽").await;
    assert_eq!(bot.click(&url, "pay").await.0, 200);
    bot._process.kill().await.unwrap();
    let log_path = bot.assets.path().join("production.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let database = bot.assets.path().join("db-path");
    let database = std::fs::read_to_string(&database).unwrap();
    let mut process = sandbox_command(&bot.telegram.url, &database, bot.assets.path(), log)
        .env("SANDBOX", "0")
        .env("ADMIN_IDS", "1")
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), process.wait())
        .await
        .expect("it stops at once")
        .unwrap();
    assert!(!status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("database that holds sandbox payments"),
        "{log}"
    );
}
