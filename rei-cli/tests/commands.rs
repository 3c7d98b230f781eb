//! Every `rei-cli` command, the real binary, on SQLite and on PostgreSQL: `--json`
//! parsed, exit codes, and the ledger verified after each test. Payments against the
//! YooKassa and Telegram fakes (reconcile with each kind of difference, YooKassa and
//! Stars refunds); 50 concurrent debits on one balance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use rei_adapters::outbound::sql::{DatabaseTarget, Stores, connect};
use rei_adapters::outbound::system::{RandomIds, SystemClock};
use rei_adapters::outbound::yookassa::{YooKassaClient, YooKassaConfig};
use rei_core::job::{FailureReason, JobEvent, JobGuard, JobLimits, JobSpec, LeaseToken, Prompt};
use rei_core::memory::RecordingNotifier;
use rei_core::payment::{Payment, PaymentConfig, PaymentPorts, PaymentService};
use rei_core::prelude::*;
use rei_tests::fakes::telegram::FakeTelegram;
use rei_tests::fakes::yookassa::FakeYooKassa;
use serde_json::{Value, json};

const ANNA: i64 = 4242;

/// Reconciles the last day's payments and fixes what it can.
const RECONCILE_APPLY: &[&str] = &["payments", "reconcile", "--since", "1d", "--apply"];

/// A database (SQLite file or PostgreSQL) and an asset directory, for one test.
struct Env {
    database: DatabaseTarget,
    assets: tempfile::TempDir,
    stores: Stores,
    extra: Vec<(String, String)>,
}

async fn env(postgres: bool) -> Env {
    let database = if postgres {
        DatabaseTarget::Postgres(rei_tests::postgres_url().await.unwrap())
    } else {
        DatabaseTarget::SqlitePath(rei_tests::sqlite_path().unwrap())
    };
    let stores = connect(&database).await.unwrap();
    Env {
        database,
        assets: tempfile::tempdir().unwrap(),
        stores,
        extra: Vec::new(),
    }
}

fn command(e: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rei-cli"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("USER", "ops")
        .env("ASSET_DIR", e.assets.path());
    match &e.database {
        DatabaseTarget::SqlitePath(p) => c.env("DATABASE_PATH", p),
        DatabaseTarget::SqliteUrl(u) | DatabaseTarget::Postgres(u) => c.env("DATABASE_URL", u),
    };
    for (k, v) in &e.extra {
        c.env(k, v);
    }
    c
}

fn finish(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI (off the async runtime): exit code, stdout, stderr.
async fn cli(e: &Env, args: &[&str]) -> (i32, String, String) {
    let mut c = command(e, args);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    finish(&out)
}

/// Runs with `--json`, expects `code`, and parses the one JSON value printed.
async fn cli_json(e: &Env, code: i32, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (got, out, err) = cli(e, &all).await;
    assert_eq!(got, code, "{args:?}: {out}{err}");
    assert_eq!(out.trim().lines().count(), 1, "one JSON value: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|x| panic!("not JSON ({x}): {out}"))
}

async fn user(e: &Env, id: i64, rubles: &str) -> UserId {
    if rubles != "0" {
        return rei_tests::funded_user(&e.stores, id, rubles.parse().unwrap())
            .await
            .unwrap();
    }
    let user = UserId::new(id).unwrap();
    e.stores
        .users
        .register(
            UserProfile {
                id: user,
                username: Some("anna".into()),
                first_name: None,
                language: Language::Ru,
            },
            Timestamp::from_millis(0),
        )
        .await
        .unwrap();
    user
}

async fn balance(e: &Env, id: i64) -> i64 {
    e.stores
        .ledger
        .balance(UserId::new(id).unwrap())
        .await
        .unwrap()
        .available
        .kopecks()
}

async fn verified(e: &Env) {
    let report = e.stores.ledger.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::env(false).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::env(true).await).await;
            }
        }
    };
}

// ---- users, balances, ledger, stats ----

async fn users_balances_ledger_and_stats(e: Env) {
    let migrated = cli_json(&e, 0, &["migrate"]).await;
    assert_eq!(migrated["migrated"], true);
    user(&e, ANNA, "0").await;
    let shown = cli_json(&e, 0, &["user", "show", "4242"]).await;
    assert_eq!(
        (shown["tg_id"].as_i64(), shown["banned"].as_bool()),
        (Some(ANNA), Some(false))
    );
    let added = cli_json(
        &e,
        0,
        &["balance", "add", "4242", "150.50", "--reason", "gift"],
    )
    .await;
    assert_eq!(added["balance_kopecks"], 15_050);
    assert_eq!(
        (added["notice"].as_str(), added["notices_sent"].as_u64()),
        (Some("queued"), Some(0)),
        "no BOT_TOKEN here: the notice waits in the outbox for the bot"
    );
    let key = added["idempotency_key"].as_str().unwrap().to_owned();
    // The printed key makes a retry safe.
    let again = cli_json(
        &e,
        0,
        &[
            "balance",
            "add",
            "4242",
            "150.50",
            "--reason",
            "gift",
            "--idempotency-key",
            &key,
        ],
    )
    .await;
    assert_eq!(
        (
            again["replayed"].as_bool(),
            again["balance_kopecks"].as_i64()
        ),
        (Some(true), Some(15_050))
    );
    // A failure names the key and how to retry with it.
    let (code, _, err) = cli(&e, &["balance", "sub", "4242", "500", "--reason", "x"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("--key"), "{err}");
    // The same adjustment run again without --key (a retry after a timeout) is refused,
    // naming the earlier key; nothing is credited twice.
    let (code, _, err) = cli(
        &e,
        &["balance", "add", "4242", "150.50", "--reason", "gift"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("identical adjustment") && err.contains(&format!("--key {key}")),
        "{err}"
    );
    assert_eq!(
        cli_json(&e, 0, &["user", "show", "4242"]).await["balance_kopecks"],
        15_050
    );
    // The key is printed before anything is written.
    let (code, out, err) = cli(
        &e,
        &["balance", "add", "4242", "1", "--reason", "tip", "--again"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let announced = err
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("idempotency key: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{err}"))
        .to_owned();
    assert!(out.contains(&announced), "{out}");
    let tip = cli_json(
        &e,
        0,
        &["balance", "sub", "4242", "1", "--reason", "tip", "--again"],
    )
    .await;
    assert_eq!(tip["balance_kopecks"], 15_050, "--again makes another one");
    let sub = cli_json(
        &e,
        0,
        &["balance", "sub", "4242", "50.50", "--reason", "fix"],
    )
    .await;
    assert_eq!(sub["balance_kopecks"], 10_000);
    let history = cli_json(&e, 0, &["ledger", "history", "4242"]).await;
    assert_eq!(
        history.as_array().unwrap().len(),
        4,
        "gift, tip in and out, fix: a replay or a refused repeat adds nothing: {history}"
    );
    let (code, table, _) = cli(&e, &["ledger", "history", "4242"]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains("150.50 ₽") && table.contains("fix"),
        "{table}"
    );
    let verify = cli_json(&e, 0, &["ledger", "verify"]).await;
    assert_eq!(verify["violations"], json!([]));
    let banned = cli_json(&e, 0, &["user", "ban", "4242"]).await;
    assert_eq!(banned["banned"], true);
    let unbanned = cli_json(&e, 0, &["user", "unban", "4242"]).await;
    assert_eq!(unbanned["banned"], false);
    let stats = cli_json(&e, 0, &["stats"]).await;
    assert_eq!(
        (
            stats["users"].as_u64(),
            stats["balances_total_kopecks"].as_i64(),
            stats["queue_depth"].as_u64()
        ),
        (Some(1), Some(10_000), Some(0))
    );
    let audit = e.stores.users.audit_log(20).await.unwrap();
    let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
    for action in ["balance_add", "balance_sub", "ban", "unban"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
    for a in audit
        .iter()
        .filter(|a| matches!(a.action.as_str(), "balance_sub" | "ban" | "unban"))
    {
        assert_eq!(a.actor.to_string(), "cli:ops");
    }
    verified(&e).await;
}
on_both!(users_balances_ledger_and_stats);

async fn bad_input_is_refused_with_one_line_and_changes_nothing(e: Env) {
    user(&e, ANNA, "10").await;
    for args in [
        vec!["balance", "add", "4242", "-5", "--reason", "x"],
        vec!["balance", "add", "4242", "1.005", "--reason", "x"],
        vec!["balance", "sub", "4242", "0", "--reason", "x"],
        vec!["balance", "add", "999", "5", "--reason", "x"],
        vec!["user", "show", "999"],
        vec!["jobs", "retry", "00000000-0000-0000-0000-000000000001"],
        vec!["jobs", "retry", "not-a-uuid"],
        vec![
            "payments",
            "refund",
            "00000000-0000-0000-0000-000000000001",
            "--reason",
            "x",
        ],
        vec!["payments", "reconcile"],
        vec!["assets", "cleanup", "--older-than", "soon"],
    ] {
        let (code, out, err) = cli(&e, &args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        // A balance command announces its key before it writes; the problem is one line.
        let problem: Vec<&str> = err
            .trim()
            .lines()
            .filter(|l| !l.starts_with("idempotency key: "))
            .collect();
        assert_eq!(problem.len(), 1, "one line naming the problem: {err}");
    }
    let (code, out, _) = cli(&e, &["--json", "payments", "reconcile"]).await;
    assert_eq!(code, 2);
    assert!(out.contains("YOOKASSA_SHOP_ID"), "{out}");
    assert_eq!(balance(&e, ANNA).await, 1_000);
    verified(&e).await;
}
on_both!(bad_input_is_refused_with_one_line_and_changes_nothing);

#[tokio::test]
async fn an_unreachable_database_is_an_operational_failure() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let e = env(false).await;
    let mut c = command(&e, &["stats"]);
    c.env(
        "DATABASE_URL",
        format!("postgres://rei@127.0.0.1:{port}/rei"),
    );
    let (code, _, err) = finish(&c.output().unwrap());
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    let mut c = command(&e, &["stats"]);
    c.env("DATABASE_URL", "mysql://nowhere/rei");
    let (code, _, err) = finish(&c.output().unwrap());
    assert_eq!(code, 2, "{err}");
}

// ---- jobs ----

/// Claims the next job as a worker would: the job and its lease token.
async fn claim_next(jobs: &JobService) -> (rei_core::job::Job, LeaseToken) {
    let claimed = jobs
        .claim("t", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let token = claimed.lease.clone().unwrap().token;
    (claimed, token)
}

/// Fails job `id` (leased under `token`) for a provider outage.
async fn provider_failed(jobs: &JobService, id: JobId, token: LeaseToken, detail: &str) {
    let reason = FailureReason::ProviderFailed {
        detail: detail.into(),
    };
    jobs.write(id, JobEvent::Failed { reason }, JobGuard::Lease(token))
        .await
        .unwrap();
}

async fn failed_job(e: &Env, user_id: UserId) -> rei_core::job::Job {
    let jobs = rei_tests::job_service(&e.stores, JobLimits::default());
    let spec = JobSpec::image(Prompt::parse("a red fox").unwrap());
    let quote = jobs.quote(&spec);
    let job = jobs
        .create(user_id, spec, &quote, IdempotencyKey::new("c-1").unwrap())
        .await
        .unwrap();
    let (_, token) = claim_next(&jobs).await;
    provider_failed(&jobs, job.id, token.clone(), "outage").await;
    // The user was told: the job leaves the queue, as a worker would finish it.
    jobs.write(job.id, JobEvent::Delivered, JobGuard::Lease(token))
        .await
        .unwrap();
    job
}

async fn jobs_list_retry_and_cancel(e: Env) {
    let anna = user(&e, ANNA, "80").await;
    let job = failed_job(&e, anna).await;
    assert_eq!(balance(&e, ANNA).await, 8_000, "refunded");
    let listed = cli_json(
        &e,
        0,
        &["jobs", "list", "--status", "failed", "--user", "4242"],
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let id = job.id.to_string();
    let retried = cli_json(&e, 0, &["jobs", "retry", &id, "--reason", "outage over"]).await;
    let new_id = retried["new_job_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(retried["held_kopecks"], 5_000);
    assert_eq!(
        balance(&e, ANNA).await,
        3_000,
        "a fresh hold at the quoted price"
    );
    assert_eq!(retried["retried_now"], true);
    let twice = cli_json(&e, 0, &["jobs", "retry", &id]).await;
    assert_eq!(
        twice["new_job_id"],
        new_id.as_str(),
        "one retry however often it runs"
    );
    assert_eq!(
        (
            twice["retried_now"].as_bool(),
            twice["held_kopecks"].as_i64()
        ),
        (Some(false), Some(0)),
        "it says it did nothing new"
    );
    let (code, said, _) = cli(&e, &["jobs", "retry", &id]).await;
    assert_eq!(code, 0);
    assert!(said.contains("retried before"), "{said}");
    assert_eq!(balance(&e, ANNA).await, 3_000);
    let (code, _, err) = cli(&e, &["jobs", "retry", &new_id]).await;
    assert_eq!(code, 2, "only failed jobs: {err}");
    assert!(err.contains("only failed jobs"), "{err}");
    let cancelled = cli_json(&e, 0, &["jobs", "cancel", &new_id]).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["refunded_kopecks"], 5_000);
    assert_eq!(balance(&e, ANNA).await, 8_000);
    // Again: nothing more is returned, and --json says so.
    let again = cli_json(&e, 0, &["jobs", "cancel", &new_id]).await;
    assert_eq!(
        (
            again["changed"].as_bool(),
            again["refunded_kopecks"].as_i64()
        ),
        (Some(false), Some(0))
    );
    assert_eq!(balance(&e, ANNA).await, 8_000);
    // Short of money: the retry of another failed job is refused, nothing held.
    let other = {
        let jobs = rei_tests::job_service(&e.stores, JobLimits::default());
        let spec = JobSpec::image(Prompt::parse("a blue fox").unwrap());
        let quote = jobs.quote(&spec);
        let j = jobs
            .create(anna, spec, &quote, IdempotencyKey::new("c-2").unwrap())
            .await
            .unwrap();
        // Earlier jobs still owe the user a notice: deliver those as a worker would.
        loop {
            let (claimed, token) = claim_next(&jobs).await;
            if claimed.id != j.id {
                jobs.write(claimed.id, JobEvent::Delivered, JobGuard::Lease(token))
                    .await
                    .unwrap();
                continue;
            }
            provider_failed(&jobs, j.id, token, "x").await;
            break;
        }
        j
    };
    cli_json(
        &e,
        0,
        &["balance", "sub", "4242", "40", "--reason", "spent"],
    )
    .await;
    let (code, _, err) = cli(&e, &["jobs", "retry", &other.id.to_string()]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("insufficient funds"), "{err}");
    assert_eq!(balance(&e, ANNA).await, 4_000);
    let audit = e.stores.users.audit_log(20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action.as_str() == "job_retry" && a.actor.to_string() == "cli:ops")
    );
    verified(&e).await;
}
on_both!(jobs_list_retry_and_cancel);

// ---- assets ----

async fn assets_cleanup_keeps_files_of_jobs_with_work_left(e: Env) {
    let anna = user(&e, ANNA, "100").await;
    let root = e.assets.path();
    let write = |key: &str| {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![7_u8; 2048]).unwrap();
    };
    // A running job's input, and two old files nobody needs.
    let jobs = rei_tests::job_service(&e.stores, JobLimits::default());
    let spec = JobSpec::ImageEdit {
        prompt: Prompt::parse("make it blue").unwrap(),
        image: rei_core::job::AssetRef::new("inputs/in-use.jpg"),
        look: rei_core::job::ImageLook::default(),
    };
    let quote = jobs.quote(&spec);
    jobs.create(anna, spec, &quote, IdempotencyKey::new("c-1").unwrap())
        .await
        .unwrap();
    for key in ["inputs/in-use.jpg", "inputs/old.jpg", "results/old.png"] {
        write(key);
    }
    let dry = cli_json(
        &e,
        0,
        &["assets", "cleanup", "--older-than", "0s", "--dry-run"],
    )
    .await;
    let listed: Vec<&str> = dry["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{dry}");
    assert!(!listed.contains(&"inputs/in-use.jpg"));
    assert!(
        root.join("inputs/old.jpg").exists(),
        "a dry run deletes nothing"
    );
    // A long age keeps everything.
    let none = cli_json(&e, 0, &["assets", "cleanup", "--older-than", "7d"]).await;
    assert_eq!(none["deleted"], 0);
    let done = cli_json(&e, 0, &["assets", "cleanup", "--older-than", "0s"]).await;
    assert_eq!(
        (done["deleted"].as_u64(), done["bytes"].as_u64()),
        (Some(2), Some(4096))
    );
    assert!(!root.join("inputs/old.jpg").exists());
    assert!(
        root.join("inputs/in-use.jpg").exists(),
        "never a running job's file"
    );
    let (code, text, _) = cli(&e, &["assets", "cleanup", "--older-than", "0s"]).await;
    assert_eq!(code, 0);
    assert!(text.contains("deleted 0 file(s)"), "{text}");
    verified(&e).await;
}
on_both!(assets_cleanup_keeps_files_of_jobs_with_work_left);

// ---- concurrency ----

async fn fifty_concurrent_debits_never_go_below_zero(e: Env) {
    user(&e, ANNA, "1000").await;
    let children: Vec<_> = (0..50)
        .map(|_| {
            command(
                &e,
                &[
                    "balance", "sub", "4242", "30", "--reason", "burst", "--again",
                ],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let codes = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap().status.code().unwrap_or(-1))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let ok = codes.iter().filter(|c| **c == 0).count();
    assert!(codes.iter().all(|c| *c == 0 || *c == 2), "{codes:?}");
    assert_eq!(
        ok, 33,
        "1000 ₽ pays for exactly 33 debits of 30 ₽: {codes:?}"
    );
    assert_eq!(balance(&e, ANNA).await, 100_000 - 33 * 3_000);
    verified(&e).await;
}
on_both!(fifty_concurrent_debits_never_go_below_zero);

// ---- payments ----

fn payments_service(e: &Env, yookassa: &FakeYooKassa) -> PaymentService {
    let mut config = YooKassaConfig::new("123456", secrecy::SecretString::from("test_secret"));
    config.base_url.clone_from(&yookassa.url);
    PaymentService::new(
        PaymentPorts {
            users: e.stores.users.clone(),
            payments: e.stores.payments.clone(),
            gateway: Some(Arc::new(YooKassaClient::new(config).unwrap())),
            stars: None,
            notifier: Arc::new(RecordingNotifier::default()),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
        },
        PaymentConfig {
            return_url: "https://t.me/rei_test_bot".into(),
            stars_rate: Some("2".parse().unwrap()),
            ..PaymentConfig::default()
        },
    )
}

fn with_yookassa(e: &mut Env, yookassa: &FakeYooKassa) {
    e.extra.extend([
        ("YOOKASSA_SHOP_ID".into(), "123456".into()),
        ("YOOKASSA_SECRET_KEY".into(), "test_secret".into()),
        ("YOOKASSA_API_URL".into(), yookassa.url.clone()),
    ]);
}

async fn topup(svc: &PaymentService, user: UserId, rubles: &str) -> Payment {
    svc.create_topup(user, rubles.parse().unwrap(), None)
        .await
        .unwrap()
}

fn provider_id(p: &Payment) -> String {
    p.provider_payment_id.clone().unwrap()
}

async fn reconcile_finds_each_kind_of_difference_and_fixes_what_it_can(mut e: Env) {
    let yookassa = FakeYooKassa::start().await.unwrap();
    with_yookassa(&mut e, &yookassa);
    let anna = user(&e, ANNA, "0").await;
    let svc = payments_service(&e, &yookassa);
    // In step: paid there and credited here.
    let fine = topup(&svc, anna, "100").await;
    yookassa.pay(&provider_id(&fine));
    svc.sync_provider_payment(&provider_id(&fine))
        .await
        .unwrap();
    // Paid there, the webhook lost.
    let lost = topup(&svc, anna, "200").await;
    yookassa.pay(&provider_id(&lost));
    // Cancelled there, pending here.
    let dropped = topup(&svc, anna, "300").await;
    yookassa.cancel(&provider_id(&dropped));
    // Credited here, pending there (the API said succeeded, then the record changed).
    let odd = topup(&svc, anna, "400").await;
    yookassa.pay(&provider_id(&odd));
    svc.sync_provider_payment(&provider_id(&odd)).await.unwrap();
    yookassa.set_amount(&provider_id(&odd), "400.00");
    // Another amount there.
    let other = topup(&svc, anna, "500").await;
    yookassa.set_amount(&provider_id(&other), "5000.00");
    yookassa.pay(&provider_id(&other));
    // Refunded in the dashboard.
    let refunded = topup(&svc, anna, "600").await;
    yookassa.pay(&provider_id(&refunded));
    svc.sync_provider_payment(&provider_id(&refunded))
        .await
        .unwrap();
    yookassa.refund_outside(&provider_id(&refunded), "600.00");
    // A payment of the shop that is not ours.
    yookassa.add_foreign("700.00");
    let before = balance(&e, ANNA).await;
    assert_eq!(before, 110_000);
    let listed = cli_json(&e, 0, &["payments", "list", "--since", "1d"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 6);
    let paid = cli_json(&e, 0, &["payments", "list", "--status", "paid"]).await;
    assert_eq!(paid.as_array().unwrap().len(), 3, "{paid}");

    let dry = cli_json(&e, 1, &["payments", "reconcile", "--since", "1d"]).await;
    let kinds = |v: &Value| {
        let mut k: Vec<(String, String)> = v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap().to_owned(),
                    d["resolution"]["resolution"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        k.sort();
        k
    };
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        kinds(&dry),
        vec![
            s("amount_mismatch", "needs_person"),
            s("cancelled_there_not_here", "fixable"),
            s("paid_there_not_here", "fixable"),
            s("refunded_there_not_here", "needs_person"),
            s("unknown_to_us", "needs_person"),
        ],
        "{dry}"
    );
    assert_eq!(dry["needs_person"], 3);
    assert_eq!(balance(&e, ANNA).await, before, "a dry run changes nothing");
    let applied = cli_json(&e, 1, RECONCILE_APPLY).await;
    assert!(
        kinds(&applied).contains(&s("paid_there_not_here", "fixed")),
        "{applied}"
    );
    assert_eq!(
        balance(&e, ANNA).await,
        before + 20_000,
        "the lost payment credited once"
    );
    let again = cli_json(&e, 1, RECONCILE_APPLY).await;
    assert_eq!(again["needs_person"], 3);
    assert_eq!(balance(&e, ANNA).await, before + 20_000, "never twice");
    // Each fix has its audit line (who, when, what, why); the repeat fixed nothing more.
    let audit = e.stores.users.audit_log(50).await.unwrap();
    let fixes: Vec<_> = audit
        .iter()
        .filter(|a| a.action.as_str() == "payment_reconcile")
        .collect();
    assert_eq!(fixes.len(), 2, "a credit and a cancel: {fixes:?}");
    assert!(
        fixes
            .iter()
            .all(|f| f.actor.to_string().starts_with("cli:") && f.reason.contains("payment ")),
        "{fixes:?}"
    );
    let credit = fixes
        .iter()
        .find(|f| f.reason.contains("paid at the provider, not here"))
        .unwrap();
    assert_eq!(credit.amount.map(|a| a.kopecks()), Some(20_000));
    assert!(
        credit.reason.contains("credited 200.00 ₽"),
        "{}",
        credit.reason
    );
    assert!(
        fixes
            .iter()
            .any(|f| f.reason.contains("cancelled at the provider") && f.amount.is_none()),
        "{fixes:?}"
    );
    // Credited here, not paid there.
    yookassa.cancel(&provider_id(&odd));
    let (code, table, _) = cli(&e, &["payments", "reconcile", "--since", "1d"]).await;
    assert_eq!(code, 1);
    assert!(
        table.contains("paid_here_not_there") && table.contains("needs a person"),
        "{table}"
    );
    verified(&e).await;
}
on_both!(reconcile_finds_each_kind_of_difference_and_fixes_what_it_can);

/// [money] 17: reconciliation reads the bot's Stars transactions (every page): a charge
/// whose update was lost is credited once with `--apply`; a credit without a charge, a
/// refund made outside the bot and a charge for no invoice of ours are listed.
async fn stars_are_reconciled_with_the_bots_transactions(mut e: Env) {
    let telegram = FakeTelegram::start().await.unwrap();
    e.extra.extend([
        ("BOT_TOKEN".into(), "123456:TEST".into()),
        ("TELEGRAM_API_URL".into(), telegram.url.clone()),
        ("STARS_RUB_RATE".into(), "2".into()),
    ]);
    let anna = user(&e, ANNA, "0").await;
    let yookassa = FakeYooKassa::start().await.unwrap();
    let svc = payments_service(&e, &yookassa);
    let payload = |p: &Payment| rei_adapters::outbound::telegram::invoice_payload(p.id);
    // Paid and credited.
    let fine = svc.create_stars_topup(anna, 50).await.unwrap();
    telegram.star_charge(ANNA, &payload(&fine), 50, "stxFine");
    svc.stars_paid(fine.id, "stxFine", 50).await.unwrap();
    // Charged, its update lost.
    let lost = svc.create_stars_topup(anna, 25).await.unwrap();
    telegram.star_charge(ANNA, &payload(&lost), 25, "stxLost");
    // Credited here, no such charge there.
    let ghost = svc.create_stars_topup(anna, 10).await.unwrap();
    svc.stars_paid(ghost.id, "stxGhost", 10).await.unwrap();
    // Refunded by someone else; and a charge for no invoice of ours.
    telegram.star_refund_elsewhere("stxFine");
    telegram.star_charge(ANNA, "someone-elses", 7, "stxStranger");
    // Many more transactions than one page holds.
    for n in 0..120 {
        telegram.star_charge(ANNA, "other-bot-product", 1, &format!("stxFill{n}"));
    }
    let before = balance(&e, ANNA).await;
    assert_eq!(before, 12_000, "50 and 10 Stars at 2 ₽");
    let kinds = |v: &serde_json::Value, provider: &str| -> Vec<(String, String)> {
        v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["provider"] == provider)
            .map(|d| {
                (
                    d["kind"].as_str().unwrap().to_owned(),
                    d["resolution"]["resolution"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    let dry = cli_json(&e, 1, &["payments", "reconcile", "--since", "1d"]).await;
    let found = kinds(&dry, "telegram_stars");
    for expected in [
        pair("paid_there_not_here", "fixable"),
        pair("paid_here_not_there", "needs_person"),
        pair("refunded_there_not_here", "needs_person"),
    ] {
        assert!(found.contains(&expected), "{expected:?} in {found:?}");
    }
    assert_eq!(
        found.iter().filter(|(k, _)| k == "unknown_to_us").count(),
        121,
        "every charge for no invoice of ours, across pages"
    );
    assert_eq!(balance(&e, ANNA).await, before, "a dry run changes nothing");
    let applied = cli_json(&e, 1, RECONCILE_APPLY).await;
    assert!(
        kinds(&applied, "telegram_stars").contains(&pair("paid_there_not_here", "fixed")),
        "{applied}"
    );
    assert_eq!(balance(&e, ANNA).await, before + 5_000, "credited once");
    cli_json(&e, 1, RECONCILE_APPLY).await;
    assert_eq!(balance(&e, ANNA).await, before + 5_000, "never twice");
    let audit = e.stores.users.audit_log(50).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action.as_str() == "payment_reconcile")
            .count(),
        1
    );
    verified(&e).await;
}
on_both!(stars_are_reconciled_with_the_bots_transactions);

async fn refunds_take_the_credit_back_first(mut e: Env) {
    let yookassa = FakeYooKassa::start().await.unwrap();
    with_yookassa(&mut e, &yookassa);
    let anna = user(&e, ANNA, "0").await;
    let svc = payments_service(&e, &yookassa);
    let p = topup(&svc, anna, "300").await;
    yookassa.pay(&provider_id(&p));
    svc.sync_provider_payment(&provider_id(&p)).await.unwrap();
    let id = p.id.to_string();
    // Spent part of it: the whole 300 cannot come back, nothing changes.
    cli_json(&e, 0, &["balance", "sub", "4242", "1", "--reason", "spent"]).await;
    let (code, _, err) = cli(&e, &["payments", "refund", &id, "--reason", "double"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot refund"), "{err}");
    assert!(yookassa.refunds().is_empty());
    // A part of it can.
    let part = cli_json(
        &e,
        0,
        &[
            "payments", "refund", &id, "--amount", "100", "--reason", "partly",
        ],
    )
    .await;
    assert_eq!(
        (
            part["refund"].as_str(),
            part["amount_kopecks"].as_i64(),
            part["refunded_total_kopecks"].as_i64(),
            part["status"].as_str()
        ),
        (Some("refunded"), Some(10_000), Some(10_000), Some("paid"))
    );
    assert_eq!(balance(&e, ANNA).await, 19_900);
    // Never more than is left.
    let (code, _, err) = cli(
        &e,
        &[
            "payments", "refund", &id, "--amount", "250", "--reason", "x",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("200.00 ₽ is refundable"), "{err}");
    cli_json(&e, 0, &["balance", "add", "4242", "1", "--reason", "back"]).await;
    let done = cli_json(
        &e,
        0,
        &["payments", "refund", &id, "--reason", "double payment"],
    )
    .await;
    assert_eq!(
        (
            done["refund"].as_str(),
            done["amount_kopecks"].as_i64(),
            done["status"].as_str()
        ),
        (Some("refunded"), Some(20_000), Some("refunded"))
    );
    assert_eq!(balance(&e, ANNA).await, 0);
    let amounts: Vec<String> = yookassa
        .refunds()
        .iter()
        .map(|r| r["amount"]["value"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(amounts.len(), 2, "{amounts:?}");
    assert!(
        amounts.contains(&"100.00".to_owned()) && amounts.contains(&"200.00".to_owned()),
        "{amounts:?}"
    );
    // Again: nothing more.
    let again = cli_json(
        &e,
        0,
        &["payments", "refund", &id, "--reason", "double payment"],
    )
    .await;
    assert_eq!(
        (again["refund"].as_str(), again["amount_kopecks"].as_i64()),
        (Some("refunded"), Some(0))
    );
    assert_eq!(yookassa.refunds().len(), 2);
    let audit = e.stores.users.audit_log(20).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action.as_str() == "payment_refund")
            .count(),
        2,
        "one audit line per refund"
    );

    // Stars: refunded through Telegram, the user told there.
    let telegram = FakeTelegram::start().await.unwrap();
    e.extra.extend([
        ("BOT_TOKEN".into(), "123456:TEST".into()),
        ("TELEGRAM_API_URL".into(), telegram.url.clone()),
        ("STARS_RUB_RATE".into(), "2".into()),
    ]);
    let stars = svc.create_stars_topup(anna, 50).await.unwrap();
    let stars_id = stars.id.to_string();
    svc.stars_paid(stars.id, "stxCharge1", 50).await.unwrap();
    assert_eq!(balance(&e, ANNA).await, 10_000);
    // Stars go back whole only.
    let (code, _, err) = cli(
        &e,
        &[
            "payments", "refund", &stars_id, "--amount", "50", "--reason", "half",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refunds only whole payments"), "{err}");
    assert!(telegram.calls_of("refundStarPayment").is_empty());
    // Telegram fails in a way that does not say whether the Stars went back: the amount
    // stays held: the Stars may have gone back.
    telegram.fail_next("refundStarPayment", 500, "Internal Server Error");
    let (code, _, err) = cli(&e, &["payments", "refund", &stars_id, "--reason", "asked"]).await;
    assert_eq!(code, 1, "{err}");
    let held = e.stores.ledger.balance(anna).await.unwrap();
    assert_eq!(
        (held.available.kopecks(), held.held.kopecks()),
        (0, 10_000),
        "kept on hold while unknown"
    );
    let done = cli_json(
        &e,
        0,
        &["payments", "refund", &stars_id, "--reason", "asked"],
    )
    .await;
    assert_eq!(
        (done["provider"].as_str(), done["refund"].as_str()),
        (Some("telegram_stars"), Some("refunded"))
    );
    let calls = telegram.calls_of("refundStarPayment");
    assert_eq!(
        calls.len(),
        2,
        "the unknown one, then the one that went through"
    );
    assert_eq!(calls[1].params["telegram_payment_charge_id"], "stxCharge1");
    assert!(
        telegram.calls_to("sendMessage", ANNA).iter().any(|c| c
            .text
            .as_deref()
            .is_some_and(|t| t.contains("Платёж возвращён: 100.00 ₽"))),
        "the user is told"
    );
    assert_eq!(balance(&e, ANNA).await, 0);
    // A manual credit is told too, now that BOT_TOKEN is set.
    let told = cli_json(&e, 0, &["balance", "add", "4242", "5", "--reason", "sorry"]).await;
    assert_eq!(
        (told["notice"].as_str(), told["notices_sent"].as_u64()),
        (Some("queued"), Some(1))
    );
    assert!(telegram.calls_to("sendMessage", ANNA).iter().any(|c| {
        c.text
            .as_deref()
            .is_some_and(|t| t.contains("начислил 5.00 ₽"))
    }));
    verified(&e).await;
}
on_both!(refunds_take_the_credit_back_first);

// ---- import-legacy ----

/// A v2.0 bot database (schema of the seed README), with the loose types the Python bot
/// wrote: real and text rubles, ISO and Unix times, debits stored negative (its balance
/// is `SUM(amount)`).
async fn legacy_file(dir: &std::path::Path, broken: bool) -> String {
    use sqlx::Connection;
    let path = dir.join(if broken { "broken.db" } else { "legacy.db" });
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut statements = vec![
        "CREATE TABLE users (tg_id INTEGER PRIMARY KEY, username TEXT, first_name TEXT, created_at TIMESTAMP, is_banned BOOLEAN DEFAULT 0)".to_owned(),
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER REFERENCES users(tg_id), type TEXT, amount REAL, ref_type TEXT, ref_id TEXT, description TEXT, created_at TIMESTAMP)".to_owned(),
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER, type TEXT, status TEXT, progress INTEGER, params TEXT, result_url TEXT, error_message TEXT, cost_estimate REAL, cost_actual REAL, created_at TIMESTAMP, started_at TIMESTAMP, completed_at TIMESTAMP)".to_owned(),
        "CREATE TABLE payments (id INTEGER PRIMARY KEY AUTOINCREMENT, provider_payment_id TEXT UNIQUE, user_id INTEGER, amount REAL, status TEXT, created_at TIMESTAMP, paid_at TIMESTAMP)".to_owned(),
        "INSERT INTO users VALUES (4242, 'anna', 'Anna', '2025-03-01 10:00:00', 0), (777, NULL, 'Boris', 1740823200, 1)".to_owned(),
        "INSERT INTO payments VALUES (1, '2f9e1c3a-000f-5000-9000-00000000a001', 4242, 300.0, 'paid', '2025-03-01 10:05:00', '2025-03-01 10:06:10.5'), (2, '2f9e1c3a-000f-5000-9000-00000000a002', 4242, 100, 'cancelled', '2025-03-02 09:00:00', NULL)".to_owned(),
        "INSERT INTO jobs VALUES (1, 4242, 'image_generation', 'completed', 100, '{\"prompt\":\"a fox\"}', 'https://old/1.png', NULL, 50.0, 50.0, '2025-03-01 11:00:00', '2025-03-01 11:00:01', '2025-03-01 11:00:30'), (2, 4242, 'video_generation', 'failed', 50, '{}', NULL, 'provider error', 100.0, NULL, '2025-03-01 12:00:00', NULL, '2025-03-01 12:05:00')".to_owned(),
        "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, created_at) VALUES \
         (4242, 'credit', 300.0, 'payment', '2f9e1c3a-000f-5000-9000-00000000a001', 'top-up', '2025-03-01 10:06:10'), \
         (4242, 'debit', -50.0, 'reservation', '1', 'image', '2025-03-01 11:00:00'), \
         (4242, 'debit', '-100.00', 'reservation', '2', 'video', '2025-03-01 12:00:00'), \
         (4242, 'refund', 100, 'job', '2', 'video failed', '2025-03-01 12:05:00'), \
         (777, 'credit', 12.34, 'admin', '1', 'welcome', 1740823300)".to_owned(),
    ];
    if broken {
        // Spends more than Anna ever had.
        statements.push("INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, created_at) VALUES (4242, 'debit', -400, 'admin', '1', 'oops', '2025-03-03 00:00:00')".to_owned());
    }
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    path.display().to_string()
}

async fn importing_a_legacy_file_twice_imports_it_once(e: Env) {
    let dir = tempfile::tempdir().unwrap();
    let broken = legacy_file(dir.path(), true).await;
    let (code, _, err) = cli(&e, &["import-legacy", &broken]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("nothing imported") && err.contains("ledger row 6 (user 4242)"),
        "says where: {err}"
    );
    assert_eq!(
        e.stores
            .users
            .user(UserId::new(ANNA).unwrap())
            .await
            .unwrap(),
        None,
        "nothing changed"
    );
    let (code, _, err) = cli(&e, &["import-legacy", "/nonexistent/bot.db"]).await;
    assert_eq!(code, 2, "{err}");
    // Debits stored both ways, and a reference to nothing: refused, rows named.
    let mixed_dir = tempfile::tempdir().unwrap();
    let mixed = legacy_file(mixed_dir.path(), false).await;
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{mixed}"))
            .await
            .unwrap();
        for sql in [
            "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, created_at) VALUES (4242, 'debit', 5, 'admin', '1', 'positive', '2025-03-04 00:00:00')",
            "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, created_at) VALUES (4242, 'credit', 5, 'payment', 'no-such-payment', 'x', '2025-03-04 00:00:00')",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }
    let (code, _, err) = cli(&e, &["import-legacy", &mixed]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("stored both negative (rows 2, 3) and positive (rows 6)")
            && err.contains("ledger row 7: ref_id `no-such-payment` names no payment"),
        "{err}"
    );
    let good = legacy_file(dir.path(), false).await;
    let first = cli_json(&e, 0, &["import-legacy", &good]).await;
    assert_eq!(
        (
            first["users_new"].as_u64(),
            first["entries_new"].as_u64(),
            first["payments_new"].as_u64(),
            first["jobs_new"].as_u64()
        ),
        (Some(2), Some(5), Some(2), Some(2)),
        "{first}"
    );
    assert_eq!(first["ledger_verified"], true);
    assert_eq!(first["balances_total_kopecks"], 26_234);
    let second = cli_json(&e, 0, &["import-legacy", &good]).await;
    assert_eq!(
        (
            second["users_new"].as_u64(),
            second["entries_new"].as_u64(),
            second["payments_new"].as_u64(),
            second["jobs_new"].as_u64()
        ),
        (Some(0), Some(0), Some(0), Some(0)),
        "{second}"
    );
    assert_eq!(balance(&e, ANNA).await, 25_000);
    assert_eq!(balance(&e, 777).await, 1_234);
    let boris = cli_json(&e, 0, &["user", "show", "777"]).await;
    assert_eq!(boris["banned"], true);
    // The old YooKassa payment is known by its id: a late webhook changes nothing.
    let old = e
        .stores
        .payments
        .payment_by_provider_id(
            rei_core::payment::PaymentProvider::Yookassa,
            "2f9e1c3a-000f-5000-9000-00000000a001",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (old.state, old.amount.kopecks()),
        (rei_core::payment::PaymentState::Paid, 30_000)
    );
    let (code, table, _) = cli(&e, &["import-legacy", &good]).await;
    assert_eq!(code, 0);
    assert!(table.contains("ledger verify: ok"), "{table}");
    verified(&e).await;
}
on_both!(importing_a_legacy_file_twice_imports_it_once);

// ---- [growth] promo codes ----

async fn promo_codes_are_created_listed_redeemed_and_disabled(e: Env) {
    let created = cli_json(
        &e,
        0,
        &[
            "promo",
            "create",
            "spring25",
            "--amount",
            "50",
            "--uses",
            "2",
            "--expires",
            "2099-01-31",
        ],
    )
    .await;
    assert_eq!(
        (
            created["code"].as_str(),
            created["amount_kopecks"].as_i64(),
            created["max_uses"].as_u64(),
            created["used"].as_u64()
        ),
        (Some("SPRING25"), Some(5_000), Some(2), Some(0)),
        "{created}"
    );
    // The last day works; the first moment after it does not.
    let expiry = chrono::NaiveDate::from_ymd_opt(2099, 2, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    assert_eq!(created["expires_at"].as_i64(), Some(expiry));
    // Refused, each with one line and exit 2: the same code, a bad code, nothing to
    // credit, no uses, an expiry already past.
    for args in [
        &["promo", "create", "SPRING25", "--amount", "10"][..],
        &["promo", "create", "no", "--amount", "10"],
        &["promo", "create", "FREE", "--amount", "0"],
        &["promo", "create", "FREE", "--amount", "10", "--uses", "0"],
        &[
            "promo",
            "create",
            "FREE",
            "--amount",
            "10",
            "--expires",
            "2020-01-01",
        ],
        &[
            "promo",
            "create",
            "FREE",
            "--amount",
            "10",
            "--expires",
            "31.01.2099",
        ],
        &["promo", "disable", "NOSUCH"],
    ] {
        let (code, _, err) = cli(&e, args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: a message");
    }
    cli_json(&e, 0, &["promo", "create", "OPEN", "--amount", "10"]).await;
    let list = cli_json(&e, 0, &["promo", "list"]).await;
    let codes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["OPEN", "SPRING25"],
        "only the two created, newest first"
    );
    // Redeemed through the service the bot uses: counted in the list.
    let anna = user(&e, ANNA, "0").await;
    let promos = rei_core::promo::PromoService::new(
        e.stores.promos.clone(),
        std::sync::Arc::new(rei_adapters::outbound::system::SystemClock),
    );
    let (_, done) = promos.redeem(anna, "spring25").await.unwrap();
    assert!(
        matches!(done, rei_core::promo::Redeemed::Credited(_)),
        "{done:?}"
    );
    assert_eq!(balance(&e, ANNA).await, 5_000);
    let list = cli_json(&e, 0, &["promo", "list"]).await;
    assert_eq!(list[1]["used"].as_u64(), Some(1), "{list}");
    let off = cli_json(&e, 0, &["promo", "disable", "SPRING25"]).await;
    assert_eq!(off["disabled"], true);
    let second = user(&e, 777, "0").await;
    let (_, refused) = promos.redeem(second, "SPRING25").await.unwrap();
    assert_eq!(refused, rei_core::promo::Redeemed::Disabled);
    let (code, table, _) = cli(&e, &["promo", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains("SPRING25") && table.contains("1/2") && table.contains("off"),
        "{table}"
    );
    // Each change is in the audit log, by the CLI's actor.
    let audit = e.stores.users.audit_log(20).await.unwrap();
    let promo_lines: Vec<_> = audit
        .iter()
        .filter(|a| a.reason == "SPRING25" || a.reason == "OPEN")
        .map(|a| (a.action, a.actor.to_string().starts_with("cli:")))
        .collect();
    assert_eq!(promo_lines.len(), 3, "{audit:?}");
    assert!(promo_lines.iter().all(|(_, cli)| *cli), "{audit:?}");
    verified(&e).await;
}
on_both!(promo_codes_are_created_listed_redeemed_and_disabled);

// ---- [growth] live prices ----

async fn prices_are_listed_and_set_live_with_an_audit_line(e: Env) {
    let list = cli_json(&e, 0, &["prices", "list"]).await;
    let price = |list: &serde_json::Value, product: &str| {
        list["prices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["product"] == product)
            .and_then(|p| p["amount_kopecks"].as_i64())
    };
    assert_eq!(price(&list, "image_generation"), Some(5_000), "{list}");
    assert_eq!(price(&list, "image_generation:4k"), Some(10_000), "{list}");
    assert_eq!(price(&list, "video:kling-v3:10s"), Some(20_000), "{list}");
    let set = cli_json(&e, 0, &["prices", "set", "image_generation:4k", "120"]).await;
    assert_eq!(
        (
            set["before_kopecks"].as_i64(),
            set["amount_kopecks"].as_i64()
        ),
        (Some(10_000), Some(12_000)),
        "{set}"
    );
    // Another invocation (another process) reads it from the database.
    let list = cli_json(&e, 0, &["prices", "list"]).await;
    assert_eq!(price(&list, "image_generation:4k"), Some(12_000), "{list}");
    assert_eq!(price(&list, "image_generation"), Some(5_000), "{list}");
    for args in [
        &["prices", "set", "image", "10"][..],
        &["prices", "set", "video:kling-v9:5s", "10"],
        &["prices", "set", "image_generation", "0"],
        &["prices", "set", "image_generation", "-5"],
    ] {
        let (code, _, err) = cli(&e, args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: a message");
    }
    // Models and top-up amounts are live too.
    let off = cli_json(&e, 0, &["prices", "set", "model:kling-v3", "off"]).await;
    assert_eq!(off["on"], false, "{off}");
    let topups = cli_json(&e, 0, &["prices", "set", "topups", "250,100"]).await;
    assert_eq!(
        topups["topup_amounts_kopecks"],
        serde_json::json!([10_000, 25_000]),
        "{topups}"
    );
    let list = cli_json(&e, 0, &["prices", "list"]).await;
    let models = list["models"].as_array().unwrap();
    assert!(
        models
            .iter()
            .any(|m| m["model"] == "kling-v3" && m["on"] == false),
        "{list}"
    );
    assert_eq!(
        list["topup_amounts_kopecks"],
        serde_json::json!([10_000, 25_000])
    );
    for args in [
        &["prices", "set", "model:kling-v9", "off"][..],
        &["prices", "set", "model:kling-v3", "maybe"],
        &["prices", "set", "topups", "0"],
        &["prices", "set", "topups", ""],
    ] {
        let (code, _, err) = cli(&e, args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: a message");
    }
    let (code, table, _) = cli(&e, &["prices", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains("image_generation:4k") && table.contains("120.00 ₽"),
        "{table}"
    );
    assert!(
        table.contains("model:kling-v3") && table.contains("off"),
        "{table}"
    );
    let audit = e.stores.users.audit_log(20).await.unwrap();
    let changes: Vec<_> = audit
        .iter()
        .filter(|a| a.action == rei_core::user::AuditAction::PriceSet)
        .collect();
    assert_eq!(changes.len(), 3, "a price, a model, the top-ups: {audit:?}");
    assert!(
        changes
            .iter()
            .all(|c| c.actor.to_string().starts_with("cli:"))
    );
    let reasons: Vec<&str> = changes.iter().map(|c| c.reason.as_str()).collect();
    for reason in [
        "image_generation:4k: 100.00 ₽ -> 120.00 ₽",
        "model:kling-v3: off",
        "topups: 100,250",
    ] {
        assert!(reasons.contains(&reason), "{reason}: {reasons:?}");
    }
    verified(&e).await;
}
on_both!(prices_are_listed_and_set_live_with_an_audit_line);

// ---- [growth] broadcasts ----

async fn broadcasts_are_composed_started_paused_and_cancelled(e: Env) {
    user(&e, ANNA, "0").await;
    user(&e, 777, "0").await;
    let photo = e.assets.path().join("news.png");
    std::fs::write(&photo, rei_tests::fakes::gemini::PNG).unwrap();
    let made = cli_json(
        &e,
        0,
        &[
            "broadcast",
            "create",
            "--text",
            "New: 4K images",
            "--photo",
            photo.to_str().unwrap(),
            "--button",
            "Try=https://t.me/rei_bot",
            "--segment",
            "lang:ru",
        ],
    )
    .await;
    assert_eq!(
        (
            made["state"].as_str(),
            made["reach"].as_u64(),
            made["segment"].as_str()
        ),
        (Some("draft"), Some(2), Some("lang:ru")),
        "{made}"
    );
    assert!(
        made["photo"].as_str().unwrap().starts_with("broadcasts/"),
        "{made}"
    );
    let id = made["id"].as_i64().unwrap().to_string();
    for args in [
        &["broadcast", "create", "--text", ""][..],
        &["broadcast", "create", "--text", "x", "--button", "no-url"],
        &[
            "broadcast",
            "create",
            "--text",
            "x",
            "--button",
            "a=http://plain",
        ],
        &[
            "broadcast",
            "create",
            "--text",
            "x",
            "--segment",
            "everyone",
        ],
        &[
            "broadcast",
            "create",
            "--text",
            "x",
            "--photo",
            "/nonexistent.png",
        ],
        &["broadcast", "pause", &id],
        &["broadcast", "start", "999"],
        &["broadcast", "status", "999"],
    ] {
        let (code, _, err) = cli(&e, args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: a message");
    }
    let started = cli_json(&e, 0, &["broadcast", "start", &id]).await;
    assert_eq!(
        (
            started["state"].as_str(),
            started["recipients"].as_u64(),
            started["pending"].as_u64()
        ),
        (Some("running"), Some(2), Some(2)),
        "{started}"
    );
    let paused = cli_json(&e, 0, &["broadcast", "pause", &id]).await;
    assert_eq!(paused["state"], "paused");
    let resumed = cli_json(&e, 0, &["broadcast", "start", &id]).await;
    assert_eq!(resumed["state"], "running");
    let (code, table, _) = cli(&e, &["broadcast", "status", &id]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains("running") && table.contains("lang:ru"),
        "{table}"
    );
    let cancelled = cli_json(&e, 0, &["broadcast", "cancel", &id]).await;
    assert_eq!(cancelled["state"], "cancelled");
    let (code, _, err) = cli(&e, &["broadcast", "start", &id]).await;
    assert_eq!(code, 2, "a cancelled broadcast stays cancelled: {err}");
    let audit = e.stores.users.audit_log(20).await.unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|a| a.action.as_str().starts_with("broadcast_"))
        .map(|a| a.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "broadcast_cancel",
            "broadcast_start",
            "broadcast_pause",
            "broadcast_start",
            "broadcast_create"
        ],
        "{audit:?}"
    );
    verified(&e).await;
}
on_both!(broadcasts_are_composed_started_paused_and_cancelled);
