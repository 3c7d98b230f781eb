//! Bot benchmark: N simulated users talking to the real `rei-bot run` through the fake
//! Telegram Bot API, with `TELEGRAM_SEND_RATE=0`. Prints updates per second and the
//! latency from an update being available to the bot's reply (p50 / p99) for `/start`,
//! `/balance` and a text → draft, the bots' RSS at idle and at its peak under load, and
//! the fake's own ceiling (a bare responder hammered directly).
//!
//! By default one process on a new SQLite file takes updates by long polling. With
//! `--processes N` (or `--webhook`) the processes run in webhook mode and the bench is
//! Telegram and the load balancer: it posts each user's updates to process
//! `user mod N`, at most 40 requests at once (Telegram's default `max_connections`).
//! `--database URL` (an empty PostgreSQL database) and `--redis URL` put
//! them on shared services, as a scaled-out deployment runs.
//!
//! ```text
//! cargo build --release -p rei-bot
//! cargo run --release -p rei-tests --bin rei-bench-bot -- [--users N] [--rate R]
//!     [--processes N] [--webhook] [--database postgres://…] [--redis redis://…]
//!     [--bot target/release/rei-bot]
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rei_tests::fakes::telegram::FakeTelegram;

struct Args {
    users: i64,
    bot: String,
    rate: u32,
    processes: usize,
    webhook: bool,
    database: Option<String>,
    redis: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        users: 1_000,
        bot: "target/release/rei-bot".into(),
        rate: 500,
        processes: 1,
        webhook: false,
        database: None,
        redis: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--webhook" {
            a.webhook = true;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--users" => a.users = value.parse()?,
            "--bot" => a.bot = value,
            "--rate" => a.rate = value.parse()?,
            "--processes" => a.processes = value.parse()?,
            "--database" => a.database = Some(value),
            "--redis" => a.redis = Some(value),
            other => bail!(
                "unknown flag {other} (use --users N --rate R --processes N --webhook \
                 --database URL --redis URL --bot PATH)"
            ),
        }
    }
    if a.processes == 0 {
        bail!("--processes must be at least 1");
    }
    if a.processes > 1 {
        a.webhook = true;
        if a.database.is_none() {
            bail!("--processes {} needs a shared --database", a.processes);
        }
    }
    Ok(a)
}

/// Resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Phase {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Where updates go: the fake's queue (long polling), or posted to the webhook of one of
/// the processes (the bench is Telegram and the load balancer).
struct Front {
    webhooks: Vec<String>,
    client: reqwest::Client,
    /// Telegram's `max_connections` of a webhook (default 40): requests in flight at once,
    /// over the load balancer to all processes.
    connections: Arc<tokio::sync::Semaphore>,
}

impl Front {
    /// Hands what `fake` queued for `user` over (a no-op with long polling).
    fn deliver(&self, fake: &FakeTelegram, user: i64) {
        if self.webhooks.is_empty() {
            return;
        }
        let n = usize::try_from(user).unwrap_or_default() % self.webhooks.len();
        let url = self.webhooks[n].clone();
        for update in fake.take_updates() {
            let client = self.client.clone();
            let url = url.clone();
            let connections = self.connections.clone();
            tokio::spawn(async move {
                let Ok(_slot) = connections.acquire_owned().await else {
                    return;
                };
                let sent = client
                    .post(&url)
                    .header("x-telegram-bot-api-secret-token", SECRET)
                    .json(&update)
                    .send()
                    .await;
                if let Err(e) = sent.and_then(reqwest::Response::error_for_status) {
                    eprintln!("webhook post failed: {e}");
                }
            });
        }
    }
}

const SECRET: &str = "bench-webhook-secret";
/// Telegram's default `max_connections` of a webhook (REI does not change it).
const TELEGRAM_MAX_CONNECTIONS: usize = 40;

/// Injects `text` for every user — all at once (`rate` 0: the throughput under a burst),
/// or `rate` per second (latency below saturation) — and waits for one reply per user.
async fn phase(
    fake: &FakeTelegram,
    front: &Front,
    users: i64,
    text: &str,
    rate: u32,
) -> anyhow::Result<Phase> {
    let first = 1_000_000_i64;
    let before: HashMap<i64, usize> = {
        let mut counts = HashMap::new();
        for call in fake.calls_of("sendMessage") {
            *counts.entry(call.chat_id).or_insert(0) += 1;
        }
        counts
    };
    let started = Instant::now();
    let mut sent_at = HashMap::new();
    let mut pace = (rate > 0).then(|| {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        tick
    });
    for user in first..first + users {
        if let Some(tick) = pace.as_mut() {
            tick.tick().await;
        }
        fake.send_text(user, text);
        sent_at.insert(user, Instant::now());
        front.deliver(fake, user);
    }
    let deadline = started + Duration::from_secs(300);
    let replies = loop {
        let mut seen: HashMap<i64, usize> = HashMap::new();
        let mut replies = Vec::new();
        for call in fake.calls_of("sendMessage") {
            let n = seen.entry(call.chat_id).or_insert(0);
            *n += 1;
            if *n == before.get(&call.chat_id).copied().unwrap_or(0) + 1 {
                if let Some(at) = sent_at.get(&call.chat_id) {
                    replies.push(call.at.saturating_duration_since(*at));
                }
            }
        }
        if replies.len() >= usize::try_from(users)? {
            break replies;
        }
        if Instant::now() > deadline {
            bail!("only {} of {users} replies to {text:?}", replies.len());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = started.elapsed();
    let mut latencies = replies;
    latencies.sort();
    let pick = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((latencies.len() - 1) as f64 * q) as usize;
        latencies[i]
    };
    #[allow(clippy::cast_precision_loss)]
    let per_sec = users as f64 / elapsed.as_secs_f64();
    Ok(Phase {
        per_sec,
        p50: pick(0.5),
        p99: pick(0.99),
    })
}

/// The fake's ceiling: `sendMessage` answered as fast as a client can ask.
async fn fake_ceiling(fake: &FakeTelegram, requests: u64) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let url = format!("{}/bot123456:BENCH/sendMessage", fake.url);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.clone(), done.clone());
            tokio::spawn(async move {
                while done.fetch_add(1, Ordering::Relaxed) < requests {
                    let body = serde_json::json!({"chat_id": 7, "text": "ping"});
                    if client.post(&url).json(&body).send().await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let fake = FakeTelegram::start().await?;
    let dir = tempfile::tempdir()?;
    let mut bots = Vec::new();
    let mut webhooks = Vec::new();
    for i in 0..args.processes {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?;
        let http = free.local_addr()?.to_string();
        drop(free);
        let mut command = tokio::process::Command::new(&args.bot);
        command
            .arg("run")
            .env_clear()
            .env("BOT_TOKEN", "123456:BENCH")
            .env("ADMIN_IDS", "1")
            .env("ASSET_DIR", dir.path().join("assets"))
            .env("TELEGRAM_API_URL", &fake.url)
            .env("TELEGRAM_SEND_RATE", "0")
            .env("RATE_LIMIT_PER_MINUTE", "10000")
            // Drafts only: the image provider is configured but never called.
            .env("NANO_BANANA_API_KEY", "bench")
            .env("NANO_BANANA_API_URL", "http://127.0.0.1:9")
            .env("HTTP_ADDR", &http)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        match &args.database {
            Some(url) => command.env("DATABASE_URL", url),
            None => command.env("DATABASE_PATH", dir.path().join("rei.db")),
        };
        if let Some(url) = &args.redis {
            command.env("REDIS_URL", url);
        }
        if args.webhook {
            command
                .env("TELEGRAM_MODE", "webhook")
                .env("PUBLIC_URL", "https://bot.example.com")
                .env("TELEGRAM_WEBHOOK_SECRET", SECRET);
            webhooks.push(format!("http://{http}/webhooks/telegram"));
        }
        let bot = command.spawn().with_context(|| {
            format!(
                "start {} (build it with cargo build --release -p rei-bot)",
                args.bot
            )
        })?;
        bots.push(bot);
        if args.webhook {
            // One at a time: the first applies the migrations.
            let health = format!("http://{http}/healthz");
            let started = Instant::now();
            while reqwest::get(&health)
                .await
                .map_or(true, |r| !r.status().is_success())
            {
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("bot {i} did not start");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let pids: Vec<u32> = bots
        .iter()
        .map(|b| b.id().context("a bot exited"))
        .collect::<anyhow::Result<_>>()?;
    if !args.webhook {
        fake.until_polling().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = move || pids.iter().filter_map(|pid| rss_kib(*pid)).sum::<u64>();
    let idle = rss();
    let peak = Arc::new(AtomicU64::new(idle));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, rss) = (peak.clone(), sampling.clone(), rss.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let front = Front {
        webhooks,
        client: reqwest::Client::new(),
        connections: Arc::new(tokio::sync::Semaphore::new(TELEGRAM_MAX_CONNECTIONS)),
    };
    println!(
        "processes: {} ({}; {}{})",
        args.processes,
        if args.webhook {
            "webhook"
        } else {
            "long polling"
        },
        if args.database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if args.redis.is_some() { " + Redis" } else { "" }
    );
    println!(
        "users: {}; latency measured at {} updates/s",
        args.users, args.rate
    );
    for (name, text) in [
        ("/start", "/start"),
        ("/balance", "/balance"),
        ("text -> draft", "a red fox in the snow"),
    ] {
        let burst = phase(&fake, &front, args.users, text, 0).await?;
        let paced = phase(&fake, &front, args.users, text, args.rate).await?;
        println!(
            "{name:<14} burst {:>6.0} updates/s (p99 {:>6.1} ms)   at {}/s: p50 {:>6.2} ms  p99 {:>6.2} ms",
            burst.per_sec,
            burst.p99.as_secs_f64() * 1e3,
            args.rate,
            paced.p50.as_secs_f64() * 1e3,
            paced.p99.as_secs_f64() * 1e3
        );
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    println!(
        "rss (all processes): idle {:.1} MiB, peak under load {:.1} MiB",
        idle as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    for mut bot in bots {
        bot.kill().await?;
    }
    let ceiling = fake_ceiling(&fake, 20_000).await?;
    println!(
        "fake Bot API ceiling (bare sendMessage responder, 64 clients): {ceiling:.0} requests/s"
    );
    Ok(())
}
