//! Webhook ingest benchmark: YooKassa notifications per second through the real HTTP
//! adapter (`POST /webhooks/yookassa`: allow-list, parse, re-read from the API, apply
//! through the payment service and store), with the API re-read answered by the local
//! YooKassa fake. Every payment is notified `--dup` times (one credit, the rest
//! duplicates) by `--concurrency` senders at once; afterwards each payment must be paid,
//! credited exactly once, and the ledger sound. The fake's own ceiling (re-reads per
//! second with nothing else) is measured and printed beside it.
//!
//! ```text
//! cargo run --release -p rei-tests --bin rei-bench-webhooks -- [--payments N] [--dup D] [--concurrency C]
//! ```
//! The database is a new SQLite file, and also a new PostgreSQL database when
//! `REI_BENCH_POSTGRES_URL` (or `REI_TEST_POSTGRES_URL`) names a server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use rei_adapters::app::backends::{BackendsConfig, connect};
use rei_adapters::inbound::http::{IpList, WebState};
use rei_adapters::outbound::sql::DatabaseTarget;
use rei_adapters::outbound::system::{RandomIds, SystemClock};
use rei_adapters::outbound::yookassa::{YooKassaClient, YooKassaConfig};
use rei_core::memory::RecordingNotifier;
use rei_core::payment::{PaymentConfig, PaymentFilter, PaymentPorts, PaymentService, PaymentState};
use rei_core::prelude::*;
use rei_tests::fakes::yookassa::FakeYooKassa;
use tokio_util::sync::CancellationToken;

struct Args {
    payments: u32,
    dup: u32,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        payments: 2_000,
        dup: 2,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--payments" => a.payments = value.parse()?,
            "--dup" => a.dup = value.parse::<u32>()?.max(1),
            "--concurrency" => a.concurrency = value.parse::<usize>()?.max(1),
            other => {
                anyhow::bail!("unknown flag {other} (use --payments N --dup D --concurrency C)")
            }
        }
    }
    Ok(a)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[allow(clippy::cast_precision_loss)]
fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Fires `bodies` at `url` with `concurrency` senders; returns the wall time and every
/// request's latency, and fails on any status but 200.
async fn fire(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let start = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(bodies)
        .map(|body| async move {
            let sent = Instant::now();
            let status = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?
                .status();
            anyhow::ensure!(status == 200, "the webhook answered {status}");
            Ok(sent.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = start.elapsed();
    let mut latencies = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    latencies.sort();
    Ok((wall, latencies))
}

async fn run(label: &str, database: DatabaseTarget, a: &Args) -> anyhow::Result<()> {
    let fake = FakeYooKassa::start().await?;
    let backends = connect(&BackendsConfig {
        database,
        redis_url: None,
        rate_limit_per_minute: 1_000_000,
        lease_for: Duration::from_secs(60),
        write_mode: None,
    })
    .await?;
    let stores = backends.stores.clone();
    let mut config = YooKassaConfig::new("123456", secrecy::SecretString::from("bench"));
    config.base_url.clone_from(&fake.url);
    let gateway = Arc::new(YooKassaClient::new(config)?);
    let notifier = Arc::new(RecordingNotifier::default());
    let payments = Arc::new(PaymentService::new(
        PaymentPorts {
            users: stores.users.clone(),
            payments: stores.payments.clone(),
            gateway: Some(gateway),
            stars: None,
            notifier: notifier.clone(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
        },
        PaymentConfig {
            return_url: "https://t.me/rei_bench_bot".into(),
            ..PaymentConfig::default()
        },
    ));
    // Users and their pending payments (created at the fake), then paid there.
    let users = 100_i64;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let registry = UserService::new(stores.users.clone(), clock);
    for id in 1..=users {
        registry
            .register(UserProfile {
                id: UserId::new(id)?,
                username: None,
                first_name: None,
                language: Language::Ru,
            })
            .await?;
    }
    let amount: Money = "100".parse()?;
    let created: Vec<String> = futures::stream::iter(0..a.payments)
        .map(|n| {
            let payments = payments.clone();
            async move {
                let user = UserId::new(1 + i64::from(n) % users)?;
                let p = payments.create_topup(user, amount, None).await?;
                p.provider_payment_id
                    .context("the fake names every payment")
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    for id in &created {
        fake.pay(id);
    }

    let mut state = WebState::new(backends);
    state.payments = Some(payments);
    state.yookassa_ips = "127.0.0.1/32".parse::<IpList>()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(rei_adapters::inbound::http::serve(
        listener,
        state,
        rei_adapters::inbound::http::ServerLimits::default(),
        shutdown.clone(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;

    // The fake's ceiling: the same re-reads with nothing else in the way.
    let reads: Vec<String> = created
        .iter()
        .map(|id| format!("{}/payments/{id}", fake.url))
        .collect();
    let start = Instant::now();
    let ok = futures::stream::iter(reads)
        .map(|url| {
            let client = &client;
            async move {
                client
                    .get(url)
                    .basic_auth("123456", Some("bench"))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
            }
        })
        .buffer_unordered(a.concurrency)
        .filter(|r| std::future::ready(matches!(r, Ok(true))))
        .count()
        .await;
    let ceiling = per_second(ok, start.elapsed());

    let mut bodies = Vec::new();
    for round in 0..a.dup {
        for (i, id) in created.iter().enumerate() {
            // Duplicates interleave with first deliveries, as retries do.
            let event = if (i + round as usize) % 7 == 0 {
                "payment.waiting_for_capture"
            } else {
                "payment.succeeded"
            };
            bodies.push(fake.notification(event, id, None).to_string());
        }
    }
    let total = bodies.len();
    let url = format!("http://{addr}/webhooks/yookassa");
    let (wall, latencies) = fire(&client, &url, bodies, a.concurrency).await?;
    shutdown.cancel();
    server.await??;

    // Exactly once: every payment paid, one credit each, one notice each.
    let all = stores
        .payments
        .payments(PaymentFilter {
            limit: a.payments.saturating_add(10),
            ..PaymentFilter::default()
        })
        .await?;
    let paid = all.iter().filter(|p| p.state == PaymentState::Paid).count();
    anyhow::ensure!(
        paid == created.len(),
        "{paid} of {} payments paid",
        created.len()
    );
    let mut credited = 0_i64;
    for id in 1..=users {
        credited += stores
            .ledger
            .balance(UserId::new(id)?)
            .await?
            .available
            .kopecks();
    }
    let expected = amount.kopecks() * i64::from(a.payments);
    anyhow::ensure!(
        credited == expected,
        "credited {credited} kopecks, expected {expected}"
    );
    let notices = notifier.notices().len();
    anyhow::ensure!(
        notices == created.len(),
        "{notices} credit notices for {} payments",
        created.len()
    );
    let report = stores.ledger.verify().await?;
    anyhow::ensure!(report.is_ok(), "ledger violations: {:?}", report.violations);

    println!(
        "{label}: {total} notifications ({} payments × {}) with {} senders in {:.2} s: {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms; fake YooKassa alone {ceiling:.0} reads/s; exactly once: {paid} paid, {} ₽ credited, {notices} notices, ledger sound",
        a.payments,
        a.dup,
        a.concurrency,
        wall.as_secs_f64(),
        per_second(total, wall),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        credited / 100,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db").to_string_lossy().into_owned();
    run("sqlite", DatabaseTarget::SqlitePath(path), &a).await?;
    let pg = std::env::var("REI_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("REI_TEST_POSTGRES_URL"))
        .ok();
    if let Some(admin) = pg {
        let name = format!("rei_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let mut url = url::Url::parse(&admin)?;
        url.set_path(&name);
        run("postgres", DatabaseTarget::Postgres(url.to_string()), &a).await?;
    } else {
        println!("postgres: skipped (set REI_BENCH_POSTGRES_URL)");
    }
    Ok(())
}
