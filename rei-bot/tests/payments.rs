//! Payments end to end: the real `rei-bot run` with its HTTP server, a fake Telegram Bot
//! API and a fake YooKassa that speaks its wire format. Webhooks duplicated, forged,
//! from the wrong address, out of order, or arriving while the database is down; lost
//! webhooks caught by the poller; refunds finished after a failed call; Telegram Stars;
//! Telegram webhook mode; `/metrics`. Every test ends with the ledger verified.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rei_adapters::outbound::sql::{DatabaseTarget, Stores, connect};
use rei_adapters::outbound::yookassa::{YooKassaClient, YooKassaConfig};
use rei_core::ledger::{EntryKind, NewEntry, RefType};
use rei_core::payment::{PaymentConfig, PaymentFilter, PaymentPorts, PaymentService, PaymentState};
use rei_core::prelude::*;
use rei_tests::fakes::telegram::{Call, FakeTelegram};
use rei_tests::fakes::yookassa::{FakeYooKassa, RefundAnswer};
use rei_tests::process::{bot_command, listening_addr};
use serde_json::{Value, json};
use tokio::process::Child;

const ANNA: i64 = 4242;
const LOOPBACK: &str = "127.0.0.1/32";

struct Bot {
    stores: Stores,
    database: DatabaseTarget,
    telegram: FakeTelegram,
    yookassa: FakeYooKassa,
    http: String,
    client: reqwest::Client,
    _process: Child,
    _assets: tempfile::TempDir,
}

enum Db {
    Sqlite,
    Postgres(String),
}

async fn bot(extra: &[(&str, &str)]) -> Bot {
    bot_on(Db::Sqlite, extra).await
}

async fn bot_on(db: Db, extra: &[(&str, &str)]) -> Bot {
    let database = match db {
        Db::Sqlite => DatabaseTarget::SqlitePath(rei_tests::sqlite_path().unwrap()),
        Db::Postgres(url) => DatabaseTarget::from_config(Some(&url), "").unwrap(),
    };
    let stores = connect(&database).await.unwrap();
    let telegram = FakeTelegram::start().await.unwrap();
    let yookassa = FakeYooKassa::start().await.unwrap();
    let assets = tempfile::tempdir().unwrap();
    let log_path = assets.path().join("bot.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = bot_command(env!("CARGO_BIN_EXE_rei-bot"), "run", Stdio::from(log));
    command
        .env("TELEGRAM_API_URL", &telegram.url)
        .env("YOOKASSA_SHOP_ID", "123456")
        .env("YOOKASSA_SECRET_KEY", "test_secret")
        .env("YOOKASSA_API_URL", &yookassa.url)
        .env("YOOKASSA_RETURN_URL", "https://t.me/rei_test_bot")
        .env("RATE_LIMIT_PER_MINUTE", "1000")
        .env("ASSET_DIR", assets.path())
        .env("HTTP_ADDR", "127.0.0.1:0");
    match &database {
        DatabaseTarget::SqlitePath(path) => command.env("DATABASE_PATH", path),
        DatabaseTarget::SqliteUrl(url) | DatabaseTarget::Postgres(url) => {
            command.env("DATABASE_URL", url)
        }
    };
    for (name, value) in extra {
        command.env(name, value);
    }
    let process = command.spawn().expect("start rei-bot");
    // The HTTP server picks a free port and says which in its log.
    let http = listening_addr(&log_path, 0, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let bot = Bot {
        stores,
        database,
        telegram,
        yookassa,
        http,
        client: reqwest::Client::new(),
        _process: process,
        _assets: assets,
    };
    eventually("the HTTP server", || async {
        bot.get("/healthz").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    bot
}

impl Drop for Bot {
    /// `TEST_LOG=1` prints the bot's log.
    fn drop(&mut self) {
        if std::env::var("TEST_LOG").is_ok() {
            let log = std::fs::read_to_string(self._assets.path().join("bot.log"));
            eprintln!("---- rei-bot log ----\n{}", log.unwrap_or_default());
        }
    }
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    rei_tests::eventually(what, Duration::from_secs(30), check).await;
}

fn text(call: &Call) -> &str {
    call.text.as_deref().unwrap_or_default()
}

impl Bot {
    fn user(&self) -> UserId {
        UserId::new(ANNA).unwrap()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = self
            .client
            .get(format!("http://{}{path}", self.http))
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    }

    async fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> u16 {
        let mut request = self
            .client
            .post(format!("http://{}{path}", self.http))
            .body(body.to_string())
            .header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.unwrap().status().as_u16()
    }

    async fn notify(&self, body: &Value) -> u16 {
        self.post("/webhooks/yookassa", body, &[]).await
    }

    fn sent(&self) -> Vec<Call> {
        self.telegram.calls_to("sendMessage", ANNA)
    }

    async fn next(&self, before: usize) -> Call {
        let mut got = None;
        eventually("a reply", || {
            got = self.sent().get(before).cloned();
            std::future::ready(got.is_some())
        })
        .await;
        got.unwrap()
    }

    async fn say(&self, text: &str) -> Call {
        let before = self.sent().len();
        self.telegram.send_text(ANNA, text);
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

    /// /start, /pay, 300 ₽: the YooKassa payment id.
    async fn top_up_300(&self) -> String {
        self.say("/start").await;
        let amounts = self.say("/pay").await;
        let link = self.press(&amounts, "300.00 ₽").await;
        assert!(text(&link).contains("300.00 ₽"), "{link:?}");
        let created = self.yookassa.payments();
        created.last().unwrap()["id"].as_str().unwrap().to_owned()
    }

    async fn balance(&self) -> Money {
        self.stores
            .ledger
            .balance(self.user())
            .await
            .unwrap()
            .available
    }

    fn credit_notices(&self) -> usize {
        self.sent()
            .iter()
            .filter(|c| text(c).contains("Баланс пополнен"))
            .count()
    }

    async fn payment_state(&self) -> PaymentState {
        let list = self
            .stores
            .payments
            .payments(PaymentFilter::default())
            .await
            .unwrap();
        list[0].state
    }

    /// The payment service an operator's `rei-cli` builds over this bot's database and
    /// YooKassa (`attempts` per YooKassa call, or the client's default).
    fn operator_payments(&self, attempts: Option<u32>) -> PaymentService {
        let mut config = YooKassaConfig::new("123456", secrecy::SecretString::from("test_secret"));
        config.base_url.clone_from(&self.yookassa.url);
        if let Some(attempts) = attempts {
            config.retry.max_attempts = attempts;
        }
        PaymentService::new(
            PaymentPorts {
                users: self.stores.users.clone(),
                payments: self.stores.payments.clone(),
                gateway: Some(Arc::new(YooKassaClient::new(config).unwrap())),
                stars: None,
                notifier: Arc::new(rei_core::memory::RecordingNotifier::default()),
                clock: Arc::new(rei_adapters::outbound::system::SystemClock),
                ids: Arc::new(rei_adapters::outbound::system::RandomIds),
            },
            PaymentConfig::default(),
        )
    }

    async fn verify(&self) {
        let report = self.stores.ledger.verify().await.unwrap();
        assert!(report.is_ok(), "{:?}", report.violations);
    }
}

fn rub(s: &str) -> Money {
    s.parse().unwrap()
}

async fn fifty_identical_notifications(db: Db) {
    let bot = bot_on(db, &[("YOOKASSA_WEBHOOK_ALLOWED_IPS", LOOPBACK)]).await;
    let id = bot.top_up_300().await;
    bot.yookassa.pay(&id);
    let body = bot.yookassa.notification("payment.succeeded", &id, None);
    let replies = futures::future::join_all((0..50).map(|_| bot.notify(&body))).await;
    assert!(replies.iter().all(|s| *s == 200), "{replies:?}");
    assert_eq!(bot.balance().await, rub("300"));
    eventually("the credit notice", || {
        std::future::ready(bot.credit_notices() == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bot.credit_notices(), 1, "told once");
    // /metrics counts what happened: one credit, 49 repeats.
    let (status, metrics) = bot.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    let samples = prometheus(&metrics);
    let webhooks = |outcome: &str| {
        sample(
            &samples,
            "payment_webhooks_total",
            &[("provider", "yookassa"), ("outcome", outcome)],
        )
    };
    assert_eq!(webhooks("credited"), Some(1.0));
    assert_eq!(webhooks("applied"), Some(49.0));
    assert_eq!(
        sample(&samples, "payments", &[("status", "paid")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "payments_amount_kopecks", &[("status", "paid")]),
        Some(30_000.0)
    );
    assert_eq!(
        sample(&samples, "ledger_balances_kopecks", &[]),
        Some(30_000.0)
    );
    assert_eq!(sample(&samples, "queue_depth", &[]), Some(0.0));
    // The credit notice went through the outbox, which is empty again.
    assert_eq!(sample(&samples, "notices_sent_total", &[]), Some(1.0));
    assert_eq!(sample(&samples, "outbox_depth", &[]), Some(0.0));
    assert!(
        sample(&samples, "telegram_updates_total", &[("kind", "message")])
            .is_some_and(|n| n >= 2.0),
        "updates are counted"
    );
    bot.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_notifications_credit_once_and_tell_once_on_sqlite() {
    fifty_identical_notifications(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_notifications_credit_once_and_tell_once_on_postgres() {
    let url = rei_tests::postgres_url().await.unwrap();
    fifty_identical_notifications(Db::Postgres(url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_notification_credits_nothing_and_bad_bodies_are_refused() {
    let bot = bot(&[("YOOKASSA_WEBHOOK_ALLOWED_IPS", LOOPBACK)]).await;
    let id = bot.top_up_300().await;
    // The body says succeeded; YooKassa's API says pending.
    let forged = bot
        .yookassa
        .notification("payment.succeeded", &id, Some("succeeded"));
    assert_eq!(bot.notify(&forged).await, 200);
    assert_eq!(bot.balance().await, Money::ZERO);
    assert_eq!(bot.payment_state().await, PaymentState::Pending);
    // Not ours at all: acknowledged, nothing happens.
    let stranger = json!({"type": "notification", "event": "payment.succeeded",
        "object": {"id": "2f9e1c3a-000f-5000-9000-ffffffffffff", "status": "succeeded"}});
    assert_eq!(bot.notify(&stranger).await, 200);
    assert_eq!(bot.notify(&json!({"hello": "world"})).await, 400);
    assert_eq!(
        bot.post("/webhooks/yookassa", &json!("x".repeat(70_000)), &[])
            .await,
        413,
        "bodies over 64 KiB are refused"
    );
    assert_eq!(bot.balance().await, Money::ZERO);
    bot.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_from_elsewhere_are_forbidden_even_with_a_spoofed_forwarded_for() {
    // The default allow-list (YooKassa's ranges) does not hold the loopback.
    let bot = bot(&[]).await;
    let id = bot.top_up_300().await;
    bot.yookassa.pay(&id);
    let body = bot.yookassa.notification("payment.succeeded", &id, None);
    assert_eq!(bot.notify(&body).await, 403);
    let spoofed = [("x-forwarded-for", "185.71.76.5")];
    assert_eq!(bot.post("/webhooks/yookassa", &body, &spoofed).await, 403);
    assert_eq!(bot.balance().await, Money::ZERO);
    bot.verify().await;

    // Behind a trusted proxy (here the loopback), the forwarded address decides.
    let proxied = bot_on(Db::Sqlite, &[("TRUSTED_PROXIES", LOOPBACK)]).await;
    let id = proxied.top_up_300().await;
    proxied.yookassa.pay(&id);
    let body = proxied
        .yookassa
        .notification("payment.succeeded", &id, None);
    let outsider = [("x-forwarded-for", "203.0.113.7")];
    assert_eq!(
        proxied.post("/webhooks/yookassa", &body, &outsider).await,
        403
    );
    let chain = [("x-forwarded-for", "203.0.113.7, 185.71.76.5")];
    assert_eq!(proxied.post("/webhooks/yookassa", &body, &chain).await, 200);
    assert_eq!(proxied.balance().await, rub("300"));
    proxied.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_out_of_order_leave_the_state_right() {
    let bot = bot(&[("YOOKASSA_WEBHOOK_ALLOWED_IPS", LOOPBACK)]).await;
    let id = bot.top_up_300().await;
    bot.yookassa.pay(&id);
    // A stale "canceled" arriving after the payment: the re-read says succeeded.
    let stale = bot
        .yookassa
        .notification("payment.canceled", &id, Some("canceled"));
    assert_eq!(bot.notify(&stale).await, 200);
    assert_eq!(bot.payment_state().await, PaymentState::Paid);
    let ok = bot.yookassa.notification("payment.succeeded", &id, None);
    assert_eq!(bot.notify(&ok).await, 200);
    assert_eq!(bot.notify(&stale).await, 200);
    assert_eq!(bot.notify(&ok).await, 200);
    assert_eq!(bot.payment_state().await, PaymentState::Paid);
    assert_eq!(bot.balance().await, rub("300"));
    // A payment really cancelled at YooKassa ends cancelled, whatever the order.
    let second = bot.top_up_300().await;
    bot.yookassa.cancel(&second);
    let cancelled = bot.yookassa.notification("payment.canceled", &second, None);
    assert_eq!(bot.notify(&cancelled).await, 200);
    let late_pending =
        bot.yookassa
            .notification("payment.waiting_for_capture", &second, Some("pending"));
    assert_eq!(bot.notify(&late_pending).await, 200);
    let states: Vec<PaymentState> = bot
        .stores
        .payments
        .payments(PaymentFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|p| p.state)
        .collect();
    assert_eq!(states, [PaymentState::Cancelled, PaymentState::Paid]);
    assert_eq!(bot.balance().await, rub("300"));
    bot.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_postgres_database_is_down_notifications_get_503_and_the_retry_credits_once() {
    let url = rei_tests::postgres_url().await.unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let admin = rei_tests::postgres_admin_url();
    let bot = bot_on(
        Db::Postgres(url),
        &[("YOOKASSA_WEBHOOK_ALLOWED_IPS", LOOPBACK)],
    )
    .await;
    let id = bot.top_up_300().await;
    bot.yookassa.pay(&id);
    let body = bot.yookassa.notification("payment.succeeded", &id, None);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    let sql = |s: String| sqlx::query(sqlx::AssertSqlSafe(s));
    sql(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .execute(&mut conn)
        .await
        .unwrap();
    sql(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(bot.notify(&body).await, 503, "YooKassa is asked to retry");
    assert_eq!(bot.get("/readyz").await.unwrap().0, 503);
    sql(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .execute(&mut conn)
        .await
        .unwrap();
    // YooKassa's retry, and a duplicate of it.
    eventually("the retry to be accepted", || async {
        bot.notify(&body).await == 200
    })
    .await;
    assert_eq!(bot.notify(&body).await, 200);
    // The test's own pool was cut off too: read through a fresh one.
    let stores = connect(&bot.database).await.unwrap();
    let balance = stores.ledger.balance(bot.user()).await.unwrap().available;
    assert_eq!(balance, rub("300"));
    eventually("the credit notice", || {
        std::future::ready(bot.credit_notices() == 1)
    })
    .await;
    assert!(stores.ledger.verify().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_webhook_is_credited_by_the_poller_once() {
    let bot = bot(&[("PAYMENT_POLL_INTERVAL_SECS", "1")]).await;
    let id = bot.top_up_300().await;
    bot.yookassa.pay(&id);
    // No notification ever comes.
    eventually("the poller's credit", || async {
        bot.balance().await == rub("300")
    })
    .await;
    eventually("the credit notice", || {
        std::future::ready(bot.credit_notices() == 1)
    })
    .await;
    let reads = bot.yookassa.hits("GET /payments/{id}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        bot.yookassa.hits("GET /payments/{id}"),
        reads,
        "a paid payment is not asked about again"
    );
    assert_eq!(bot.credit_notices(), 1);
    bot.verify().await;
}

/// [money] 13: a row the store cannot read (here an id that is not one) is skipped and
/// counted; the poller goes on to the payments after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_payment_row_does_not_stop_the_poller() {
    let bot = bot(&[("PAYMENT_POLL_INTERVAL_SECS", "1")]).await;
    let id = bot.top_up_300().await;
    let DatabaseTarget::SqlitePath(path) = &bot.database else {
        panic!("sqlite")
    };
    use sqlx::Connection;
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    // Older than the good one: the poller meets it first.
    sqlx::query(
        "INSERT INTO payments (id, provider, user_id, amount, status, version, created_at, updated_at) \
         VALUES ('not-a-payment-id', 'yookassa', $1, 100, 'pending', 0, 1, 1)",
    )
    .bind(ANNA)
    .execute(&mut db)
    .await
    .unwrap();
    bot.yookassa.pay(&id);
    eventually("the poller's credit", || async {
        bot.balance().await == rub("300")
    })
    .await;
    // The bad row is a person's to mend; without it the books are sound.
    sqlx::query("DELETE FROM payments WHERE id = 'not-a-payment-id'")
        .execute(&mut db)
        .await
        .unwrap();
    bot.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_whose_gateway_call_failed_is_finished_by_the_poller() {
    let bot = bot(&[
        ("PAYMENT_POLL_INTERVAL_SECS", "1"),
        ("YOOKASSA_WEBHOOK_ALLOWED_IPS", LOOPBACK),
    ])
    .await;
    let id = bot.top_up_300().await;
    bot.yookassa.pay(&id);
    let paid = bot.yookassa.notification("payment.succeeded", &id, None);
    assert_eq!(bot.notify(&paid).await, 200);
    assert_eq!(bot.balance().await, rub("300"));
    // An operator refunds it (as `rei-cli payments refund` does); YooKassa fails.
    bot.yookassa.answer_refunds([RefundAnswer::Fail]);
    let service = bot.operator_payments(Some(1));
    let ours = bot
        .stores
        .payments
        .payments(PaymentFilter::default())
        .await
        .unwrap()[0]
        .id;
    assert!(service.refund(ours, None).await.is_err());
    assert_eq!(bot.balance().await, Money::ZERO, "held while unknown");
    assert_eq!(bot.payment_state().await, PaymentState::Paid);
    // The bot's poller sends the same request again; this time it succeeds.
    eventually("the refund", || async {
        bot.payment_state().await == PaymentState::Refunded
    })
    .await;
    let refunds = bot.yookassa.refunds();
    assert_eq!(refunds.len(), 1, "one refund at YooKassa: {refunds:?}");
    assert_eq!(bot.yookassa.hits("POST /refunds"), 2);
    eventually("the refund notice", || {
        std::future::ready(
            bot.sent()
                .iter()
                .any(|c| text(c).contains("Платёж возвращён")),
        )
    })
    .await;
    assert_eq!(bot.balance().await, Money::ZERO);
    bot.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stars_invoice_checkout_and_a_payment_delivered_twice_credit_once() {
    let bot = bot(&[("STARS_RUB_RATE", "1.30")]).await;
    bot.say("/start").await;
    let menu = bot.say("/pay").await;
    let stars_button = menu.button_data("⭐ 77");
    let before = bot.telegram.calls_to("sendInvoice", ANNA).len();
    bot.telegram
        .press(ANNA, menu.message_id.unwrap_or(1), &stars_button);
    let mut invoices = Vec::new();
    eventually("the invoice", || {
        invoices = bot.telegram.calls_to("sendInvoice", ANNA);
        std::future::ready(invoices.len() > before)
    })
    .await;
    let invoice = &invoices[before].params;
    assert_eq!(invoice["currency"], "XTR");
    let prices: Value = match &invoice["prices"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    assert_eq!(prices[0]["amount"], 77);
    assert_eq!(prices.as_array().unwrap().len(), 1);
    assert!(invoice["title"].as_str().unwrap().contains("100.10 ₽"));
    let payload = invoice["payload"].as_str().unwrap().to_owned();

    let answers = |id: &str| {
        bot.telegram
            .calls_of("answerPreCheckoutQuery")
            .into_iter()
            .filter(|c| c.params["pre_checkout_query_id"] == id)
            .collect::<Vec<_>>()
    };
    let wrong = bot.telegram.pre_checkout(ANNA, &payload, 76);
    eventually("the refusal", || {
        std::future::ready(!answers(&wrong).is_empty())
    })
    .await;
    let refusal = &answers(&wrong)[0].params;
    assert!(
        matches!(&refusal["ok"], Value::Bool(false)) || refusal["ok"] == "false",
        "{refusal}"
    );
    assert!(
        refusal["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let right = bot.telegram.pre_checkout(ANNA, &payload, 77);
    eventually("the approval", || {
        std::future::ready(!answers(&right).is_empty())
    })
    .await;
    let approval = &answers(&right)[0].params;
    assert!(
        matches!(&approval["ok"], Value::Bool(true)) || approval["ok"] == "true",
        "{approval}"
    );

    bot.telegram
        .successful_payment(ANNA, &payload, 77, "stxAbC123");
    bot.telegram
        .successful_payment(ANNA, &payload, 77, "stxAbC123");
    eventually("the credit", || async {
        bot.balance().await == rub("100.10")
    })
    .await;
    eventually("the credit notice", || {
        std::future::ready(bot.credit_notices() == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bot.credit_notices(), 1);
    assert_eq!(bot.balance().await, rub("100.10"));
    let payment = &bot
        .stores
        .payments
        .payments(PaymentFilter::default())
        .await
        .unwrap()[0];
    assert_eq!(payment.provider_payment_id.as_deref(), Some("stxAbC123"));
    // The paid invoice cannot be paid again.
    let again = bot.telegram.pre_checkout(ANNA, &payload, 77);
    eventually("the refusal", || {
        std::future::ready(!answers(&again).is_empty())
    })
    .await;
    let refusal = &answers(&again)[0].params;
    assert!(matches!(&refusal["ok"], Value::Bool(false)) || refusal["ok"] == "false");
    bot.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_receipts_pay_asks_the_email_once_and_attaches_a_receipt() {
    let bot = bot(&[("YOOKASSA_RECEIPT_VAT_CODE", "1")]).await;
    bot.say("/start").await;
    let amounts = bot.say("/pay").await;
    let ask = bot.press(&amounts, "300.00 ₽").await;
    assert!(text(&ask).contains("e-mail"), "{ask:?}");
    assert!(
        bot.yookassa.payments().is_empty(),
        "no payment before the e-mail"
    );
    let again = bot.say("my email").await;
    assert!(text(&again).contains("name@example.com"), "{again:?}");
    let link = bot.say("anna@example.com").await;
    assert!(text(&link).contains("300.00 ₽"), "{link:?}");
    let sent = bot.yookassa.create_requests();
    assert_eq!(sent.len(), 1);
    let receipt = &sent[0]["receipt"];
    assert_eq!(receipt["customer"]["email"], "anna@example.com");
    assert_eq!(receipt["items"][0]["vat_code"], 1);
    assert_eq!(receipt["items"][0]["amount"]["value"], "300.00");
    // Asked once: the next top-up goes straight to the link.
    let amounts = bot.say("/pay").await;
    let link = bot.press(&amounts, "100.00 ₽").await;
    assert!(text(&link).contains("100.00 ₽"), "{link:?}");
    assert_eq!(bot.yookassa.create_requests().len(), 2);
    bot.verify().await;
}

/// A `/start` update as Telegram posts it to a webhook.
fn start_update(update_id: i64) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": 10 + update_id,
        "from": {"id": ANNA, "is_bot": false, "first_name": "Anna", "language_code": "ru"},
        "chat": {"id": ANNA, "type": "private", "first_name": "Anna"},
        "date": 1_764_000_000,
        "text": "/start",
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}]
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_sets_the_webhook_and_takes_updates_only_with_the_secret() {
    let bot = bot(&[
        ("TELEGRAM_MODE", "webhook"),
        ("PUBLIC_URL", "https://bot.example.com"),
        ("TELEGRAM_WEBHOOK_SECRET", "s3cret_token-42"),
        ("METRICS_ALLOWED_IPS", "10.0.0.0/8"),
    ])
    .await;
    let mut set = Vec::new();
    eventually("setWebhook", || {
        set = bot.telegram.calls_of("setWebhook");
        std::future::ready(!set.is_empty())
    })
    .await;
    assert_eq!(
        set[0].params["url"],
        "https://bot.example.com/webhooks/telegram"
    );
    assert_eq!(set[0].params["secret_token"], "s3cret_token-42");
    assert_eq!(bot.telegram.polls(), 0, "no long polling in webhook mode");
    let update = start_update(1);
    assert_eq!(bot.post("/webhooks/telegram", &update, &[]).await, 401);
    let wrong = [("x-telegram-bot-api-secret-token", "guess")];
    assert_eq!(bot.post("/webhooks/telegram", &update, &wrong).await, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(bot.sent().is_empty(), "nothing handled without the secret");
    let right = [("x-telegram-bot-api-secret-token", "s3cret_token-42")];
    assert_eq!(bot.post("/webhooks/telegram", &update, &right).await, 200);
    let welcome = bot.next(0).await;
    assert!(text(&welcome).contains("Баланс"), "{welcome:?}");
    // /metrics answers only the allow-list (here: not the loopback).
    assert_eq!(bot.get("/metrics").await.unwrap().0, 403);
    // Kling is not configured here: its callback route does not exist.
    assert_eq!(
        bot.post("/webhooks/kling", &json!({"nope": 1}), &[]).await,
        404
    );
    bot.verify().await;
}

// ---- Prometheus text ----

/// Parses the text exposition format strictly enough that a malformed line fails:
/// `# HELP`/`# TYPE` comments, then `name{label="value",…} number` samples.
/// One sample: its name, its labels and its value.
type Sample = (String, Vec<(String, String)>, f64);

fn prometheus(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let labels = body
                    .split("\",")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
        .reduce(|a, b| a + b)
}

/// [money] 19: two `rei-bot run` processes (webhook mode, one database): one of them runs
/// the payment poller; when it dies, the other takes over once its lease ran out, and a
/// paid top-up whose notification never came is credited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_poller_per_deployment_and_a_survivor_takes_over() {
    let database = DatabaseTarget::SqlitePath(rei_tests::sqlite_path().unwrap());
    let stores = connect(&database).await.unwrap();
    let telegram = FakeTelegram::start().await.unwrap();
    let yookassa = FakeYooKassa::start().await.unwrap();
    let DatabaseTarget::SqlitePath(path) = &database else {
        unreachable!()
    };
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let spawn = |dir: &tempfile::TempDir| {
        let log = std::fs::File::create(dir.path().join("bot.log")).unwrap();
        bot_command(env!("CARGO_BIN_EXE_rei-bot"), "run", Stdio::from(log))
            .env("TELEGRAM_API_URL", &telegram.url)
            .env("TELEGRAM_MODE", "webhook")
            // Telegram's webhook target; no update is pushed in this test.
            .env("PUBLIC_URL", "http://127.0.0.1/")
            .env("TELEGRAM_WEBHOOK_SECRET", "s3cret")
            .env("YOOKASSA_SHOP_ID", "123456")
            .env("YOOKASSA_SECRET_KEY", "test_secret")
            .env("YOOKASSA_API_URL", &yookassa.url)
            .env("YOOKASSA_RETURN_URL", "https://t.me/rei_test_bot")
            .env("PAYMENT_POLL_INTERVAL_SECS", "1")
            .env("DATABASE_PATH", path)
            .env("ASSET_DIR", dir.path().join("assets"))
            .env("HTTP_ADDR", "127.0.0.1:0")
            .spawn()
            .unwrap()
    };
    let mut processes: Vec<Child> = dirs.iter().map(spawn).collect();
    let runs_poller = |i: usize| {
        std::fs::read_to_string(dirs[i].path().join("bot.log"))
            .unwrap_or_default()
            .contains("this process runs the payment poller")
    };
    eventually("a poller", || {
        std::future::ready(runs_poller(0) || runs_poller(1))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        runs_poller(0) != runs_poller(1),
        "exactly one process polls: {} / {}",
        runs_poller(0),
        runs_poller(1)
    );
    let (holder, survivor) = if runs_poller(0) { (0, 1) } else { (1, 0) };
    processes[holder].kill().await.unwrap();
    // A top-up paid while only the survivor runs, its notification lost.
    rei_tests::funded_user(&stores, ANNA, rub("1"))
        .await
        .unwrap();
    let service = rei_tests::yookassa_payments(&stores, &yookassa.url).unwrap();
    let payment = service
        .create_topup(UserId::new(ANNA).unwrap(), rub("300"), None)
        .await
        .unwrap();
    yookassa.pay(payment.provider_payment_id.as_deref().unwrap());
    eventually("the survivor takes over", || {
        std::future::ready(runs_poller(survivor))
    })
    .await;
    eventually("the credit", || async {
        stores
            .ledger
            .balance(UserId::new(ANNA).unwrap())
            .await
            .unwrap()
            .available
            == rub("301")
    })
    .await;
    drop(processes);
    let report = stores.ledger.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

/// Boris invites Anna; her 300 ₽ top-up earns him 10% as a referral entry; he spends
/// 20 ₽ of it; then her top-up is refunded in full and the reward is taken back — the
/// 10 ₽ he still has, the other 20 ₽ recorded as unrecovered. Boris speaks English, Anna
/// Russian: both languages' texts are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_reward_comes_with_the_top_up_and_its_refund_takes_it_back() {
    const BORIS: i64 = 4343;
    let bot = bot(&[
        ("REFERRAL_PERCENT", "10"),
        ("YOOKASSA_WEBHOOK_ALLOWED_IPS", LOOPBACK),
    ])
    .await;
    let boris = UserId::new(BORIS).unwrap();
    let to_boris = || bot.telegram.calls_to("sendMessage", BORIS);
    let boris_says = |text: &str| {
        let before = to_boris().len();
        bot.telegram.send_text(BORIS, text);
        async move {
            let mut got = None;
            eventually("Boris's reply", || {
                got = to_boris().get(before).cloned();
                std::future::ready(got.is_some())
            })
            .await;
            got.unwrap()
        }
    };
    bot.telegram.user_language(BORIS, Some("en"));
    boris_says("/start").await;
    let info = boris_says("/ref").await;
    let info = text(&info).to_owned();
    assert!(info.contains("Invite friends with your link"), "{info}");
    assert!(info.contains("10%"), "{info}");
    let prefix = "https://t.me/rei_test_bot?start=";
    let at = info.find(prefix).expect("the link") + prefix.len();
    let payload: String = info[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert!(payload.starts_with("ref_"), "{info}");
    // Anna starts through the link (Telegram sends `/start <payload>`).
    let welcome = bot.say(&format!("/start {payload}")).await;
    let joined = bot.sent();
    assert!(
        joined
            .iter()
            .any(|c| text(c).contains("Вы пришли по приглашению друга")),
        "{joined:?} {welcome:?}"
    );
    // Her top-up is paid: Boris earns 30 ₽ and is told, in English.
    let id = bot.top_up_300().await;
    bot.yookassa.pay(&id);
    let paid = bot.yookassa.notification("payment.succeeded", &id, None);
    for _ in 0..3 {
        assert_eq!(bot.notify(&paid).await, 200);
    }
    let ledger = bot.stores.ledger.clone();
    let balance = |user| {
        let ledger = ledger.clone();
        async move { ledger.balance(user).await.unwrap().available }
    };
    assert_eq!(bot.balance().await, rub("300"));
    assert_eq!(balance(boris).await, rub("30"));
    eventually("Boris is told", || {
        std::future::ready(
            to_boris()
                .iter()
                .any(|c| text(c).contains("A friend you invited topped up: +30.00 ₽")),
        )
    })
    .await;
    let entries = bot.stores.ledger.entries(boris, 10).await.unwrap();
    assert_eq!(entries.len(), 1, "one reward for three notifications");
    assert_eq!(entries[0].ref_type, RefType::Referral);
    // Boris spends 20 ₽ of it.
    bot.stores
        .ledger
        .post(
            NewEntry {
                user_id: boris,
                kind: EntryKind::Debit,
                amount: rub("20"),
                ref_type: RefType::Admin,
                ref_id: "test".into(),
                description: "spent".into(),
                idempotency_key: IdempotencyKey::new("boris-spends").unwrap(),
                created_at: Timestamp::from_millis(0),
            },
            None,
        )
        .await
        .unwrap();
    // Anna's top-up is refunded (an operator starts it; YooKassa finishes it later
    // and tells the bot): the bot takes back what Boris has left.
    bot.yookassa.answer_refunds([RefundAnswer::Pending]);
    let service = bot.operator_payments(None);
    let ours = bot
        .stores
        .payments
        .payments(PaymentFilter::default())
        .await
        .unwrap()[0]
        .id;
    assert!(matches!(
        service.refund(ours, None).await.unwrap(),
        rei_core::payment::RefundOutcome::Pending(_)
    ));
    let refund_id = bot.yookassa.refunds()[0]["id"].as_str().unwrap().to_owned();
    bot.yookassa.finish_refund(&refund_id, true);
    let done = bot.yookassa.refund_notification(&refund_id);
    for _ in 0..3 {
        assert_eq!(bot.notify(&done).await, 200);
    }
    eventually("the refund", || async {
        bot.payment_state().await == PaymentState::Refunded
    })
    .await;
    assert_eq!(bot.balance().await, Money::ZERO);
    assert_eq!(balance(boris).await, Money::ZERO, "never below zero");
    let reward = bot
        .stores
        .referrals
        .referral_reward(ours)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (reward.reward, reward.taken_back, reward.unrecovered),
        (rub("30"), rub("10"), rub("20"))
    );
    let info = boris_says("/ref").await;
    assert!(
        text(&info).contains("Invited: 1. Earned: 20.00 ₽"),
        "{info:?}"
    );
    // Anna's own /ref, in Russian.
    let hers = bot.say("/ref").await;
    assert!(
        text(&hers).contains("Приглашайте друзей по вашей ссылке")
            && text(&hers).contains("Приглашено: 0"),
        "{hers:?}"
    );
    bot.verify().await;
}
