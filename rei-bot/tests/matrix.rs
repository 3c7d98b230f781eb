//! The fault matrix across processes (issue [prove], first rows): two `rei-bot run`
//! processes in webhook mode behind one (simulated) load balancer and two `rei-bot
//! worker` processes, on one PostgreSQL database and a Redis server of the cluster's
//! own, with fakes of Telegram, YooKassa and Gemini that speak their wire formats. Each
//! row drives real flows, injects its fault, and ends with the money checks: the ledger
//! verifies, every paid top-up is credited exactly once, every job is settled once.
//! Rows repeat with several seeds; a failure names its seed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rei_adapters::app::backends::BackendsConfig;
use rei_adapters::outbound::sql::{DatabaseTarget, Stores};
use rei_core::payment::{PaymentFilter, PaymentService, PaymentState};
use rei_core::prelude::*;
use rei_tests::fakes::gemini::FakeGemini;
use rei_tests::fakes::kling::FakeKling;
use rei_tests::fakes::telegram::FakeTelegram;
use rei_tests::fakes::yookassa::FakeYooKassa;
use rei_tests::process::{Forwarder, bot_command, listening_addr};
use serde_json::Value;
use tokio::process::Child;

/// A YooKassa address (their published range): what the load balancer forwards.
const YOOKASSA_IP: &str = "185.71.76.5";
const SEEDS: [u64; 3] = [11, 22, 33];

/// Seeded choices, the same on every run of a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// A bot process and where it listens.
struct Node {
    process: Child,
    http: String,
    log: std::path::PathBuf,
}

struct Cluster {
    seed: u64,
    /// What the processes use (through the proxy, if any).
    database: String,
    redis: String,
    stores: Stores,
    /// Jobs created as the bot creates them (handed to the cluster's Redis).
    jobs: JobService,
    telegram: FakeTelegram,
    yookassa: FakeYooKassa,
    gemini: FakeGemini,
    kling: FakeKling,
    payments: PaymentService,
    nodes: Vec<std::sync::Mutex<Option<Node>>>,
    workers: std::sync::Mutex<Vec<Child>>,
    dir: tempfile::TempDir,
    client: reqwest::Client,
    /// The Redis server [`Cluster::start`] started for it (stopped with it).
    own_redis: Option<OwnRedis>,
    /// Settings of this cluster's rows on top of the shared ones.
    extra_env: Vec<(String, String)>,
}

async fn eventually<F, Fut>(seed: u64, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    rei_tests::eventually(
        &format!("seed {seed}: {what}"),
        Duration::from_secs(30),
        check,
    )
    .await;
}

impl Cluster {
    /// A cluster on a Redis server of its own: clusters running at the same time must
    /// not take each other's queue entries (REI's Redis keys have one fixed prefix).
    async fn start(seed: u64) -> Self {
        Self::start_env(seed, &[]).await
    }

    /// [`Cluster::start`] with `env` set in every process on top of the shared settings.
    async fn start_env(seed: u64, env: &[(&str, &str)]) -> Self {
        let redis = OwnRedis::start().await;
        let mut cluster = Self::start_full(seed, redis.url(), None, env).await;
        cluster.own_redis = Some(redis);
        cluster
    }

    /// A cluster on the Redis at `redis`; its processes reach PostgreSQL through
    /// `db_proxy` when given (so that a test can cut their connections).
    async fn start_with(seed: u64, redis: String, db_proxy: Option<&Forwarder>) -> Self {
        Self::start_full(seed, redis, db_proxy, &[]).await
    }

    async fn start_full(
        seed: u64,
        redis: String,
        db_proxy: Option<&Forwarder>,
        env: &[(&str, &str)],
    ) -> Self {
        let database = rei_tests::postgres_url().await.unwrap();
        let process_database = match db_proxy {
            None => database.clone(),
            Some(proxy) => {
                let mut direct = url::Url::parse(&database).unwrap();
                let server = format!(
                    "{}:{}",
                    direct.host_str().unwrap(),
                    direct.port().unwrap_or(5432)
                );
                proxy.point_at(server.parse().unwrap());
                direct.set_port(Some(proxy.addr.port())).unwrap();
                direct.to_string()
            }
        };
        // The test's own view of the database and the queue: new jobs go to the cluster's
        // Redis, as the bot hands them over.
        let backends = rei_adapters::app::backends::connect(&BackendsConfig {
            database: DatabaseTarget::from_config(Some(&database), "").unwrap(),
            redis_url: Some(redis.parse().unwrap()),
            rate_limit_per_minute: 1_000,
            lease_for: Duration::from_secs(2),
            write_mode: None,
        })
        .await
        .unwrap();
        let stores = backends.stores.clone();
        let jobs =
            rei_tests::job_service_on(&stores, backends.queue, rei_core::job::JobLimits::default());
        let telegram = FakeTelegram::start().await.unwrap();
        let yookassa = FakeYooKassa::start().await.unwrap();
        let gemini = FakeGemini::start().await.unwrap();
        let kling = FakeKling::start(2).await.unwrap();
        let payments = rei_tests::yookassa_payments(&stores, &yookassa.url).unwrap();
        let cluster = Self {
            seed,
            database: process_database,
            redis,
            stores,
            jobs,
            telegram,
            yookassa,
            gemini,
            kling,
            payments,
            nodes: vec![std::sync::Mutex::new(None), std::sync::Mutex::new(None)],
            workers: std::sync::Mutex::new(Vec::new()),
            dir: tempfile::tempdir().unwrap(),
            client: reqwest::Client::new(),
            own_redis: None,
            extra_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        for i in 0..2 {
            cluster.start_node(i).await;
            cluster.start_worker(i);
        }
        cluster
    }

    /// The environment every process of the cluster shares.
    fn shared_env(&self, command: &mut tokio::process::Command) {
        command
            .env("TELEGRAM_API_URL", &self.telegram.url)
            .env("NANO_BANANA_API_KEY", "test-key")
            .env("NANO_BANANA_API_URL", &self.gemini.url)
            // A call that hangs is given up after 3 s (answers come in 300 ms at most).
            .env("NANO_BANANA_TIMEOUT_SECS", "3")
            .env("KLING_API_KEY", "ak-test:sk-test")
            .env("KLING_API_URL", &self.kling.url)
            .env("KLING_TIMEOUT_SECS", "2")
            .env("VIDEO_POLL_INTERVAL_MS", "100")
            .env("MAX_ACTIVE_JOBS_PER_USER", "10")
            // A job held by a process that lost it is taken over after 2 s.
            .env("WORKER_LEASE_SECS", "2")
            .env("ASSET_DIR", self.dir.path())
            .env("DATABASE_URL", &self.database)
            .env("REDIS_URL", &self.redis);
        for (name, value) in &self.extra_env {
            command.env(name, value);
        }
    }

    /// SIGKILL of `rei-bot worker` number `i`, and a new one in its place.
    async fn kill_worker(&self, i: usize) {
        let mut victim = {
            let mut workers = self.workers.lock().unwrap();
            workers.remove(i)
        };
        victim.start_kill().unwrap();
        victim.wait().await.unwrap();
    }

    /// `rei-bot <subcommand>` with the cluster's environment, logging to a new file in
    /// the cluster's directory: the command and the log's path.
    fn command(&self, subcommand: &str, i: usize) -> (tokio::process::Command, std::path::PathBuf) {
        let log = self
            .dir
            .path()
            .join(format!("{subcommand}-{i}-{}.log", rand_suffix()));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = bot_command(env!("CARGO_BIN_EXE_rei-bot"), subcommand, Stdio::from(file));
        self.shared_env(&mut command);
        (command, log)
    }

    /// Starts `rei-bot worker` number `i`.
    fn start_worker(&self, i: usize) {
        let (mut command, _) = self.command("worker", i);
        self.workers
            .lock()
            .unwrap()
            .push(command.spawn().expect("start rei-bot worker"));
    }

    /// Starts (or restarts) bot process `i`.
    async fn start_node(&self, i: usize) {
        let (mut command, log) = self.command("run", i);
        command
            .env("TELEGRAM_MODE", "webhook")
            .env("PUBLIC_URL", "https://bot.example.com")
            .env("TELEGRAM_WEBHOOK_SECRET", "matrix-secret")
            .env("YOOKASSA_SHOP_ID", "123456")
            .env("YOOKASSA_SECRET_KEY", "test_secret")
            .env("YOOKASSA_API_URL", &self.yookassa.url)
            .env("YOOKASSA_RETURN_URL", "https://t.me/rei_test_bot")
            // Behind the load balancer (the loopback): the forwarded address decides,
            // checked against YooKassa's published ranges (the default allow-list).
            .env("TRUSTED_PROXIES", "127.0.0.1/32")
            .env("RATE_LIMIT_PER_MINUTE", "1000")
            // A notice claimed by a process that died is sent by another after this.
            .env("OUTBOX_HOLD_SECS", "2")
            .env("HTTP_ADDR", "127.0.0.1:0");
        let process = command.spawn().expect("start rei-bot");
        let http = listening_addr(&log, 0, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("seed {}: bot {i}: {e}", self.seed))
            .to_string();
        let url = format!("http://{http}/healthz");
        *self.nodes[i].lock().unwrap() = Some(Node { process, http, log });
        let client = self.client.clone();
        eventually(self.seed, "the HTTP server", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await;
    }

    /// SIGKILL of bot process `i`.
    async fn kill_node(&self, i: usize) {
        let node = self.nodes[i].lock().unwrap().take();
        if let Some(mut node) = node {
            node.process.start_kill().unwrap();
            node.process.wait().await.unwrap();
            if std::env::var("TEST_LOG").is_ok() {
                eprintln!(
                    "---- bot {i} ----\n{}",
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                );
            }
        }
    }

    /// Posts a notification to bot `i` as the load balancer forwards it from `from`;
    /// `None` when the process is not there (connection refused or cut).
    async fn notify(&self, i: usize, body: &Value, from: &str) -> Option<u16> {
        let http = self.nodes[i].lock().unwrap().as_ref()?.http.clone();
        let sent = self
            .client
            .post(format!("http://{http}/webhooks/yookassa"))
            .header("content-type", "application/json")
            .header("x-forwarded-for", from)
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        Some(sent.status().as_u16())
    }

    /// YooKassa's delivery of one notification: to either process (the balancer picks),
    /// again until one answers 200, as YooKassa retries.
    async fn deliver(&self, pick: usize, body: &Value) {
        for attempt in 0..200 {
            let i = (pick + attempt) % self.nodes.len();
            if self.notify(i, body, YOOKASSA_IP).await == Some(200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("seed {}: a notification was never accepted", self.seed);
    }

    /// User `1_000 + n`, registered, with a YooKassa top-up of 100 ₽ created (not yet
    /// paid): the user and the provider's payment id.
    async fn unpaid_topup(&self, n: i64) -> (UserId, String) {
        let user = UserId::new(1_000 + n).unwrap();
        UserService::new(
            self.stores.users.clone(),
            Arc::new(rei_adapters::outbound::system::SystemClock),
        )
        .register(rei_tests::profile(user))
        .await
        .unwrap();
        let p = self
            .payments
            .create_topup(user, "100".parse().unwrap(), None)
            .await
            .unwrap();
        (user, p.provider_payment_id.unwrap())
    }

    /// `n` users, each with a top-up of 100 ₽ created and paid at YooKassa.
    async fn paid_topups(&self, n: i64) -> Vec<(UserId, String)> {
        let mut out = Vec::new();
        for id in 1..=n {
            let topup = self.unpaid_topup(id).await;
            self.yookassa.pay(&topup.1);
            out.push(topup);
        }
        out
    }

    /// YooKassa notifies each of `topups` paid, twice (to either process), over 400 ms;
    /// a process picked by `rng` is killed in the middle of them, YooKassa's retries
    /// reach the other, and the killed one comes back.
    async fn credits_notified_with_a_kill(&self, rng: &mut Rng, topups: &[(UserId, String)]) {
        let victim = usize::try_from(rng.below(2)).unwrap();
        let kill_after = Duration::from_millis(100 + rng.below(200));
        let bodies: Vec<(Duration, usize, Value)> = topups
            .iter()
            .flat_map(|(_, provider)| {
                let body = self
                    .yookassa
                    .notification("payment.succeeded", provider, None);
                [0, 1].map(|i| (Duration::from_millis(rng.below(400)), i, body.clone()))
            })
            .collect();
        // YooKassa delivers each notification until one process answers 200.
        let deliveries = futures::future::join_all(bodies.iter().map(|(at, i, body)| async {
            tokio::time::sleep(*at).await;
            self.deliver(*i, body).await;
        }));
        let kill = async {
            tokio::time::sleep(kill_after).await;
            self.kill_node(victim).await;
        };
        tokio::join!(deliveries, kill);
        self.start_node(victim).await;
    }

    /// YooKassa sends each refund's `refund.succeeded` `copies` times over both
    /// processes at once while a process picked by `rng` is killed; it comes back.
    async fn refunds_notified_with_a_kill(&self, rng: &mut Rng, refunds: &[String], copies: usize) {
        let victim = usize::try_from(rng.below(2)).unwrap();
        let deliveries = futures::future::join_all(refunds.iter().flat_map(|id| {
            let body = self.yookassa.refund_notification(id);
            (0..copies).map(move |k| {
                let body = body.clone();
                async move { self.deliver(k % 2, &body).await }
            })
        }));
        let kill = async {
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            self.kill_node(victim).await;
        };
        tokio::join!(deliveries, kill);
        self.start_node(victim).await;
    }

    /// `jobs` as stored now.
    async fn reread(&self, jobs: &[Job]) -> Vec<Job> {
        let mut now = Vec::new();
        for job in jobs {
            now.push(self.stores.jobs.job(job.id).await.unwrap().unwrap());
        }
        now
    }

    /// The jobs of `user`.
    async fn jobs_of(&self, user: UserId) -> Vec<Job> {
        self.stores
            .jobs
            .jobs(rei_core::job::JobFilter {
                user_id: Some(user),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// `per_user` image jobs for each of `users` new users (ids from `first`), each
    /// funded with 1,000 ₽, created as the bot creates them.
    async fn image_jobs(&self, first: i64, users: i64, per_user: usize, tag: &str) -> Vec<Job> {
        self.jobs_for(first, users, per_user, tag, || {
            JobSpec::image(Prompt::parse("a red fox").unwrap())
        })
        .await
    }

    /// [`Self::image_jobs`] with 5 s text-to-video jobs on Kling.
    async fn video_jobs(&self, first: i64, users: i64, per_user: usize, tag: &str) -> Vec<Job> {
        self.jobs_for(first, users, per_user, tag, || JobSpec::Video {
            mode: rei_core::job::VideoMode::TextToVideo,
            model: "kling-v2-6".into(),
            duration: VideoDuration::Five,
            prompt: Prompt::parse("a fox in the snow").unwrap(),
            input: None,
            aspect: None,
        })
        .await
    }

    async fn jobs_for(
        &self,
        first: i64,
        users: i64,
        per_user: usize,
        tag: &str,
        spec: impl Fn() -> JobSpec,
    ) -> Vec<Job> {
        let jobs = &self.jobs;
        let mut created = Vec::new();
        for u in 0..users {
            let user = rei_tests::funded_user(&self.stores, first + u, "1000".parse().unwrap())
                .await
                .unwrap();
            for k in 0..per_user {
                let spec = spec();
                let quote = jobs.quote(&spec);
                let key = IdempotencyKey::new(format!("{tag}-{u}-{k}")).unwrap();
                created.push(jobs.create(user, spec, &quote, key).await.unwrap());
            }
        }
        created
    }

    /// Hands the update the fake Telegram queued last to bot process `i`, as Telegram
    /// posts it to the webhook (the balancer picked `i`).
    async fn push_last_update(&self, i: usize) -> Option<u16> {
        let update = self.telegram.pending_updates().pop()?;
        self.post_update(i, &update).await
    }

    /// Each of `users` sends `text`; each update is delivered to both processes (Telegram
    /// redelivers what was not acknowledged), all at once, while a process picked by
    /// `rng` is killed; it is started again once every update was acknowledged.
    async fn everyone_says_twice_with_a_kill(&self, rng: &mut Rng, users: &[UserId], text: &str) {
        let seed = self.seed;
        let mut sends = Vec::new();
        for user in users {
            self.telegram.send_text(user.get(), text);
            let update = self.telegram.pending_updates().pop().unwrap();
            let first = usize::try_from(rng.below(2)).unwrap();
            sends.push((first, update.clone()));
            sends.push((1 - first, update));
        }
        let victim = usize::try_from(rng.below(2)).unwrap();
        let deliveries = futures::future::join_all(sends.iter().map(|(pick, update)| async move {
            for attempt in 0..200 {
                if self.post_update((pick + attempt) % 2, update).await == Some(200) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("seed {seed}: an update was never acknowledged");
        }));
        let kill = async {
            tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
            self.kill_node(victim).await;
        };
        tokio::join!(deliveries, kill);
        self.start_node(victim).await;
    }

    /// Posts `update` to bot process `i`'s Telegram webhook with the secret.
    async fn post_update(&self, i: usize, update: &Value) -> Option<u16> {
        let http = self.nodes[i].lock().unwrap().as_ref()?.http.clone();
        let sent = self
            .client
            .post(format!("http://{http}/webhooks/telegram"))
            .header("content-type", "application/json")
            .header("x-telegram-bot-api-secret-token", "matrix-secret")
            .body(update.to_string())
            .send()
            .await
            .ok()?;
        Some(sent.status().as_u16())
    }

    /// `user` says `text` through process `i`; the bot's answer: its first message
    /// from now on that holds `expect` (replies to earlier presses may still come in).
    async fn say(
        &self,
        i: usize,
        user: UserId,
        text: &str,
        expect: &str,
    ) -> rei_tests::fakes::telegram::Call {
        let before = self.telegram.calls_to("sendMessage", user.get()).len();
        self.telegram.send_text(user.get(), text);
        assert_eq!(self.push_last_update(i).await, Some(200));
        let mut got = None;
        eventually(self.seed, "a reply", || {
            got = self
                .telegram
                .calls_to("sendMessage", user.get())
                .into_iter()
                .skip(before)
                .find(|c| c.text.as_deref().is_some_and(|t| t.contains(expect)));
            std::future::ready(got.is_some())
        })
        .await;
        got.unwrap()
    }

    /// User `id` starts the bot and is credited 1,000 ₽.
    async fn customer(&self, id: i64) -> UserId {
        let user = UserId::new(id).unwrap();
        self.say(0, user, "/start", "Баланс").await;
        rei_tests::funded_user(&self.stores, id, "1000".parse().unwrap())
            .await
            .unwrap();
        user
    }

    /// `user` orders image `n`: the prompt through one bot process, Confirm through
    /// the other.
    async fn order_image(&self, user: UserId, n: usize) {
        let draft = self
            .say(n % 2, user, &format!("a red fox {n}"), "Цена: ")
            .await;
        let confirm = draft.button_data("Запустить");
        self.telegram
            .press(user.get(), draft.message_id.unwrap_or(1), &confirm);
        assert_eq!(self.push_last_update((n + 1) % 2).await, Some(200));
    }

    fn credit_notices(&self, user: UserId) -> usize {
        self.told(user, "Баланс пополнен")
    }

    /// How many messages sent to `user` hold `text`.
    fn told(&self, user: UserId, text: &str) -> usize {
        self.telegram
            .calls_to("sendMessage", user.get())
            .iter()
            .filter(|c| c.text.as_deref().unwrap_or_default().contains(text))
            .count()
    }

    /// The ledger verifies; `what` names the row and seed on failure.
    async fn verify(&self, what: &str) {
        let report = self.stores.ledger.verify().await.unwrap();
        assert!(report.is_ok(), "{what}: {:?}", report.violations);
    }

    /// The money checks of every row: the ledger verifies; each top-up is paid and
    /// credited exactly once; each user is told, exactly once unless `kills` processes
    /// were killed: a notice sent to Telegram by a process killed before it recorded
    /// the send is sent again by another (at-least-once), so each kill may repeat one
    /// notice — never more.
    async fn check(&self, topups: &[(UserId, String)], kills: usize) {
        let seed = self.seed;
        self.verify(&format!("seed {seed}")).await;
        let all = self
            .stores
            .payments
            .payments(PaymentFilter::default())
            .await
            .unwrap();
        for (user, _) in topups {
            let theirs: Vec<_> = all.iter().filter(|p| p.user_id == *user).collect();
            assert_eq!(theirs.len(), 1, "seed {seed}: {user}");
            assert_eq!(theirs[0].state, PaymentState::Paid, "seed {seed}: {user}");
            let balance = self.stores.ledger.balance(*user).await.unwrap();
            assert_eq!(
                balance.available,
                "100".parse::<Money>().unwrap(),
                "seed {seed}: {user} credited once"
            );
        }
        for (user, _) in topups {
            eventually(seed, "the credit notice", || {
                std::future::ready(self.credit_notices(*user) >= 1)
            })
            .await;
        }
        // Longer than the outbox hold: a notice left claimed would be sent again by now.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let mut repeated = 0;
        for (user, _) in topups {
            let told = self.credit_notices(*user);
            assert!(
                (1..=2).contains(&told),
                "seed {seed}: {user} told {told} times"
            );
            repeated += told - 1;
        }
        assert!(
            repeated <= kills,
            "seed {seed}: {repeated} notices repeated after {kills} kill(s)"
        );
    }
}

/// Polls `read` every 100 ms until `done` holds for the jobs it read; those jobs.
/// Fails after `limit`, naming `what` and the jobs last read.
async fn jobs_when<R, Fut>(
    what: &str,
    limit: Duration,
    mut read: R,
    done: impl Fn(&[Job]) -> bool,
) -> Vec<Job>
where
    R: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<Job>>,
{
    let start = Instant::now();
    loop {
        let jobs = read().await;
        if done(&jobs) {
            return jobs;
        }
        assert!(start.elapsed() < limit, "{what}: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many of `jobs` were made, and what they were charged in kopecks.
fn made_and_charged<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> (usize, i64) {
    jobs.into_iter()
        .filter(|j| j.state == JobState::Completed)
        .fold((0, 0), |(n, k), j| (n + 1, k + j.quote.amount.kopecks()))
}

fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(std::process::id()) ^ u64::from(nanos)
}

/// Row: 50 identical notifications of each top-up, spread over both bot processes at
/// random, all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_notifications_over_two_processes_credit_once() {
    for seed in SEEDS {
        let cluster = Cluster::start(seed).await;
        let topups = cluster.paid_topups(4).await;
        let mut rng = Rng(seed);
        let mut sends = Vec::new();
        for (_, provider) in &topups {
            let body = cluster
                .yookassa
                .notification("payment.succeeded", provider, None);
            for _ in 0..50 {
                let pick = usize::try_from(rng.below(2)).unwrap();
                sends.push((pick, body.clone()));
            }
        }
        let replies = futures::future::join_all(
            sends
                .iter()
                .map(|(i, body)| cluster.notify(*i, body, YOOKASSA_IP)),
        )
        .await;
        assert!(
            replies.iter().all(|s| *s == Some(200)),
            "seed {seed}: {replies:?}"
        );
        cluster.check(&topups, 0).await;
    }
}

/// Row: a forged notification (the API says the payment is pending) and notifications
/// from outside YooKassa's ranges, to either process: nothing is credited; the genuine
/// one afterwards credits once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_foreign_notifications_to_either_process_credit_nothing() {
    let cluster = Cluster::start(1).await;
    let (user, provider) = cluster.unpaid_topup(1).await;
    // The body says succeeded; YooKassa's API says pending.
    let forged = cluster
        .yookassa
        .notification("payment.succeeded", &provider, Some("succeeded"));
    for i in 0..2 {
        assert_eq!(cluster.notify(i, &forged, YOOKASSA_IP).await, Some(200));
        assert_eq!(cluster.notify(i, &forged, "203.0.113.7").await, Some(403));
    }
    cluster.yookassa.pay(&provider);
    let genuine = cluster
        .yookassa
        .notification("payment.succeeded", &provider, None);
    for i in 0..2 {
        assert_eq!(
            cluster.notify(i, &genuine, "203.0.113.7").await,
            Some(403),
            "not from YooKassa"
        );
    }
    assert_eq!(
        cluster.stores.ledger.balance(user).await.unwrap().available,
        Money::ZERO
    );
    assert_eq!(cluster.credit_notices(user), 0);
    cluster.deliver(1, &genuine).await;
    cluster.check(&[(user, provider)], 0).await;
}

/// Row: SIGKILL of a bot process while it credits. Notifications stream to both
/// processes; one is killed at a random moment, YooKassa's retries reach the other,
/// and the killed one comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_killed_while_crediting_loses_and_doubles_nothing() {
    for seed in SEEDS {
        let cluster = Cluster::start(seed).await;
        let topups = cluster.paid_topups(12).await;
        let mut rng = Rng(seed);
        cluster
            .credits_notified_with_a_kill(&mut rng, &topups)
            .await;
        cluster.check(&topups, 1).await;
    }
}

/// Row: one balance spent through both processes at once. A user with money for ten
/// images makes ten drafts one after the other; each draft's Confirm is pressed ten
/// times at once, the presses spread over both processes at random (double taps,
/// Telegram's redeliveries, the balancer): exactly one job per draft, never an
/// overdraft; the two workers make and deliver each image once, and the balance pays
/// for exactly ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presses_of_one_confirm_over_two_processes_spend_once() {
    for seed in SEEDS {
        let cluster = Cluster::start(seed).await;
        let mut rng = Rng(seed);
        let user = UserId::new(2_001).unwrap();
        cluster.say(0, user, "/start", "Баланс").await;
        let draft = cluster.say(1, user, "a red fox", "Цена: ").await;
        let price: Money = draft
            .text
            .as_deref()
            .and_then(|t| t.split("Цена: ").nth(1))
            .and_then(|t| t.split(' ').next())
            .unwrap_or_else(|| panic!("seed {seed}: no price in {draft:?}"))
            .parse()
            .unwrap();
        rei_tests::funded_user(&cluster.stores, user.get(), price.checked_mul(10).unwrap())
            .await
            .unwrap();
        for round in 0..10 {
            let draft = if round == 0 {
                draft.clone()
            } else {
                cluster
                    .say(
                        usize::try_from(rng.below(2)).unwrap(),
                        user,
                        &format!("a red fox, take {round}"),
                        "Цена: ",
                    )
                    .await
            };
            let confirm = draft.button_data("Запустить");
            let mut presses = Vec::new();
            for _ in 0..10 {
                cluster
                    .telegram
                    .press(user.get(), draft.message_id.unwrap_or(1), &confirm);
                presses.push(cluster.telegram.pending_updates().pop().unwrap());
            }
            let replies =
                futures::future::join_all(presses.iter().map(|update| {
                    cluster.post_update(usize::try_from(rng.below(2)).unwrap(), update)
                }))
                .await;
            assert!(
                replies.iter().all(|r| *r == Some(200)),
                "seed {seed}: {replies:?}"
            );
            let cluster = &cluster;
            eventually(seed, "the job of this draft", || async move {
                cluster.jobs_of(user).await.len() == round + 1
            })
            .await;
        }
        // The two workers make and deliver every image; every press has been handled.
        eventually(seed, "ten images delivered", || {
            std::future::ready(cluster.telegram.calls_to("sendPhoto", user.get()).len() >= 10)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            cluster.telegram.calls_to("sendPhoto", user.get()).len(),
            10,
            "seed {seed}: each image delivered once"
        );
        let all = cluster.jobs_of(user).await;
        assert_eq!(all.len(), 10, "seed {seed}: one job per draft");
        let balance = cluster.stores.ledger.balance(user).await.unwrap();
        assert_eq!(
            balance,
            Balance {
                available: Money::ZERO,
                held: Money::ZERO
            },
            "seed {seed}: ten images paid, each once"
        );
        assert!(
            all.iter().all(|j| j.state == JobState::Completed),
            "seed {seed}: {all:?}"
        );
        cluster.verify(&format!("seed {seed}")).await;
    }
}

/// Row: SIGKILL of a worker while image calls are out (Gemini answers after 1.5 s), with
/// Telegram answering 429 with `retry_after` to some sends and one user who blocked the
/// bot. The other worker takes the jobs over once the lease runs out, a new worker
/// starts, and every job ends once: made and delivered (or recorded unreachable) and
/// charged, or, when its billed call was lost with the killed worker, refunded and the
/// user told. A result may reach Telegram twice only if its sender was killed between
/// Telegram's answer and our record of it: at most once per kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_calls_leaves_every_job_settled_once() {
    use rei_core::job::Delivery;
    let mut refunded = 0;
    for seed in SEEDS {
        let cluster = Cluster::start(seed).await;
        let mut rng = Rng(seed);
        cluster.gemini.answer_after(Duration::from_millis(1_500));
        let created = cluster
            .image_jobs(3_001, 4, 3, &format!("matrix-{seed}"))
            .await;
        let blocked = UserId::new(3_004).unwrap();
        cluster.telegram.block(blocked.get());
        cluster.telegram.too_many_requests(3);
        tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
        let victim = usize::try_from(rng.below(2)).unwrap();
        cluster.kill_worker(victim).await;
        cluster.start_worker(victim);

        let settled = |job: &Job| {
            job.state.is_final()
                && matches!(job.delivery, Delivery::Delivered | Delivery::Unreachable)
        };
        let last = jobs_when(
            &format!("seed {seed}: jobs not settled"),
            Duration::from_secs(60),
            || cluster.reread(&created),
            |jobs| jobs.iter().all(settled),
        )
        .await;
        let mut repeated = 0;
        for u in 0..4_i64 {
            let user = UserId::new(3_001 + u).unwrap();
            let theirs: Vec<&Job> = last.iter().filter(|j| j.user_id == user).collect();
            let (made, charged) = made_and_charged(theirs.iter().copied());
            let balance = cluster.stores.ledger.balance(user).await.unwrap();
            assert_eq!(
                balance.held,
                Money::ZERO,
                "seed {seed}: {user}: nothing left held"
            );
            assert_eq!(
                balance.available.kopecks(),
                100_000 - charged,
                "seed {seed}: {user}: charged exactly for what was made"
            );
            let photos = cluster.telegram.calls_to("sendPhoto", user.get()).len();
            if user == blocked {
                assert!(
                    theirs
                        .iter()
                        .all(|j| j.state != JobState::Completed
                            || j.delivery == Delivery::Unreachable),
                    "seed {seed}: {theirs:?}"
                );
            } else {
                assert!(
                    photos >= made,
                    "seed {seed}: {user}: {photos} photos for {made} images"
                );
                repeated += photos - made;
            }
        }
        assert!(
            repeated <= 1,
            "seed {seed}: {repeated} results sent twice after one kill"
        );
        refunded += last.iter().filter(|j| j.state == JobState::Failed).count();
        cluster.verify(&format!("seed {seed}")).await;
    }
    // The kills landed on calls in flight: their jobs were refunded, not retried.
    assert!(refunded > 0, "no call was in flight at any kill");
    eprintln!("jobs refunded after their call was lost with a killed worker: {refunded}");
}

/// A Redis server of the test's own, which it can stop and start again on the same port.
struct OwnRedis {
    port: u16,
    process: Option<Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            process: None,
        };
        redis.up().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn up(&mut self) {
        let process = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (scripts/services.sh installs it)");
        self.process = Some(process);
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn down(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.start_kill().unwrap();
            process.wait().await.unwrap();
        }
    }
}

/// Row: Redis stopped, then started again (empty: it keeps nothing on disk). Images
/// ordered through the bot before, during and after the outage are all made and
/// delivered once, and paid once: the queue runs on the database while Redis is away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_started_again_doubles_and_loses_nothing() {
    for seed in SEEDS {
        redis_stopped_and_started_again(seed).await;
    }
}

async fn redis_stopped_and_started_again(seed: u64) {
    let mut rng = Rng(seed);
    let mut redis = OwnRedis::start().await;
    let cluster = Cluster::start_with(seed, redis.url(), None).await;
    let user = cluster.customer(4_001).await;
    let mut ordered = 0;
    let order = |n: usize| cluster.order_image(user, n);
    let delivered = |n: usize| {
        let cluster = &cluster;
        async move {
            eventually(seed, "the images so far", || {
                std::future::ready(cluster.telegram.calls_to("sendPhoto", user.get()).len() >= n)
            })
            .await;
        }
    };
    for _ in 0..2 {
        order(ordered).await;
        ordered += 1;
    }
    delivered(ordered).await;
    tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
    redis.down().await;
    for _ in 0..2 {
        order(ordered).await;
        ordered += 1;
    }
    delivered(ordered).await;
    tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
    redis.up().await;
    for _ in 0..2 {
        order(ordered).await;
        ordered += 1;
    }
    delivered(ordered).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        cluster.telegram.calls_to("sendPhoto", user.get()).len(),
        ordered,
        "seed {seed}: each image once"
    );
    let jobs = cluster.jobs_of(user).await;
    assert_eq!(jobs.len(), ordered, "seed {seed}");
    assert!(
        jobs.iter().all(|j| j.state == JobState::Completed),
        "seed {seed}: {jobs:?}"
    );
    let paid: i64 = jobs.iter().map(|j| j.quote.amount.kopecks()).sum();
    let balance = cluster.stores.ledger.balance(user).await.unwrap();
    assert_eq!(
        balance.available.kopecks(),
        100_000 - paid,
        "seed {seed}: paid once each"
    );
    assert_eq!(balance.held, Money::ZERO);
    cluster.verify(&format!("seed {seed}")).await;
}

/// Row: PostgreSQL restarted mid-flow: every connection of every process drops and new
/// ones are refused for 1.5–2.5 s (by seed), while images are being made and YooKassa notifies
/// three top-ups (answered 503 until the database is back, and retried). Work resumes:
/// each top-up credited once; each image made, delivered and charged once: a render
/// stored while its record could not be written is found and recorded by the next
/// step, not refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_flow_loses_and_doubles_nothing() {
    for seed in SEEDS {
        postgres_restarted_mid_flow(seed).await;
    }
}

async fn postgres_restarted_mid_flow(seed: u64) {
    let mut rng = Rng(seed);
    let proxy = Forwarder::start().await.unwrap();
    let redis = OwnRedis::start().await;
    let cluster = Cluster::start_with(seed, redis.url(), Some(&proxy)).await;
    let user = cluster.customer(5_001).await;
    cluster.gemini.answer_after(Duration::from_millis(300));
    for n in 0..3 {
        cluster.order_image(user, n).await;
    }
    let topups = cluster.paid_topups(3).await;
    // The images are being made: the database goes away under them.
    tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
    proxy.cut();
    let outage = Duration::from_millis(1_500 + rng.below(1_000));
    let restore = async {
        tokio::time::sleep(outage).await;
        let direct = url::Url::parse(&rei_tests::postgres_admin_url()).unwrap();
        let server = format!(
            "{}:{}",
            direct.host_str().unwrap(),
            direct.port().unwrap_or(5432)
        );
        proxy.point_at(server.parse().unwrap());
    };
    let notify = futures::future::join_all(topups.iter().enumerate().map(|(n, (_, provider))| {
        let body = cluster
            .yookassa
            .notification("payment.succeeded", provider, None);
        let cluster = &cluster;
        async move { cluster.deliver(n % 2, &body).await }
    }));
    tokio::join!(restore, notify);
    let settled = |job: &Job| {
        job.state.is_final() && matches!(job.delivery, rei_core::job::Delivery::Delivered)
    };
    let jobs = jobs_when(
        &format!("seed {seed}: jobs not settled"),
        Duration::from_secs(60),
        || cluster.jobs_of(user),
        |jobs| jobs.len() == 3 && jobs.iter().all(settled),
    )
    .await;
    let (made, charged) = made_and_charged(&jobs);
    let balance = cluster.stores.ledger.balance(user).await.unwrap();
    assert_eq!(
        balance.available.kopecks(),
        100_000 - charged,
        "charged for what was made"
    );
    assert_eq!(balance.held, Money::ZERO);
    // A result whose delivery could not be recorded (the database was away) may be
    // sent again, never more than that.
    let photos = cluster.telegram.calls_to("sendPhoto", user.get()).len();
    assert!(
        (made..=2 * made).contains(&photos),
        "{photos} photos for {made} images"
    );
    // Renders stored before the database went away are recorded by the next step
    // (the processes share ASSET_DIR): none is refunded while its file exists.
    assert_eq!(made, 3, "seed {seed}: every render kept: {jobs:?}");
    cluster.check(&topups, 0).await;
}

/// What Gemini does wrong in a provider row.
#[derive(Clone, Copy, Debug)]
enum GeminiFault {
    /// The safety filter blocks every prompt (HTTP 200, no image).
    Refusal,
    /// Every call is taken, then the connection breaks before the answer.
    LostAnswer,
    /// Every call gets 429 `RESOURCE_EXHAUSTED` with a retry delay.
    RateLimited,
    /// Every call is taken and never answered (`NANO_BANANA_TIMEOUT_SECS` gives up).
    Hang,
    /// The first calls get 503 `UNAVAILABLE` (nothing generated): sent again, made.
    Unavailable,
}

/// Rows: Gemini refusing, losing its answers, rate limiting, or never answering every
/// call, or overloaded (503) for a few, while the cluster's workers run 6 image jobs.
/// Every job ends once: refunded and its user told, or (after the 503s) made, delivered
/// and charged; a refused, lost or timed-out call is never sent again (it may have been
/// billed); a rate-limited one is retried a bounded number of times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_faults_end_every_job_once() {
    use rei_core::job::{Delivery, JobLimits};
    for (n, fault) in [
        GeminiFault::Refusal,
        GeminiFault::LostAnswer,
        GeminiFault::RateLimited,
        GeminiFault::Hang,
        GeminiFault::Unavailable,
    ]
    .into_iter()
    .enumerate()
    {
        let cluster = Cluster::start(100 + n as u64).await;
        let seed = cluster.seed;
        match fault {
            GeminiFault::Refusal => cluster.gemini.refuse(),
            GeminiFault::LostAnswer => cluster.gemini.drop_answers(),
            GeminiFault::RateLimited => cluster.gemini.rate_limit(),
            GeminiFault::Hang => cluster.gemini.answer_after(Duration::from_secs(3_600)),
            GeminiFault::Unavailable => cluster.gemini.unavailable(3),
        }
        let limits = JobLimits::default();
        let created = cluster
            .image_jobs(6_001, 3, 2, &format!("gemini-{n}"))
            .await;
        let done = jobs_when(
            &format!("{fault:?}: not settled"),
            Duration::from_secs(90),
            || cluster.reread(&created),
            |jobs| {
                jobs.iter()
                    .all(|j| j.state.is_final() && j.delivery == Delivery::Delivered)
            },
        )
        .await;
        let made = matches!(fault, GeminiFault::Unavailable);
        let expected = if made {
            JobState::Completed
        } else {
            JobState::Failed
        };
        assert!(
            done.iter().all(|j| j.state == expected),
            "{fault:?}: {done:?}"
        );
        for u in 0..3_i64 {
            let user = UserId::new(6_001 + u).unwrap();
            let theirs: Vec<&Job> = done.iter().filter(|j| j.user_id == user).collect();
            let (images, charged) = made_and_charged(theirs.iter().copied());
            let balance = cluster.stores.ledger.balance(user).await.unwrap();
            assert_eq!(
                (balance.available.kopecks(), balance.held),
                (100_000 - charged, Money::ZERO),
                "seed {seed} {fault:?}: {user} charged for what was made, the rest refunded"
            );
            assert_eq!(
                cluster.telegram.calls_to("sendPhoto", user.get()).len(),
                images,
                "seed {seed} {fault:?}: {user}: each image once"
            );
        }
        let calls = usize::try_from(cluster.gemini.calls()).unwrap();
        match fault {
            GeminiFault::Refusal | GeminiFault::LostAnswer | GeminiFault::Hang => {
                assert_eq!(
                    calls,
                    created.len(),
                    "{fault:?}: each call sent once, never again"
                );
            }
            GeminiFault::RateLimited => {
                // Each job's attempts, each retried by the client after the 429's delay:
                // 3 job attempts × 3 client attempts, then refunded.
                let per_job = usize::try_from(limits.max_attempts).unwrap() * 3;
                assert_eq!(calls, created.len() * per_job, "{fault:?}: bounded retries");
            }
            GeminiFault::Unavailable => {
                // Nothing was generated by a 503: those calls are sent again.
                assert_eq!(calls, created.len() + 3, "{fault:?}: the 503s sent again");
            }
        }
        cluster.verify(&format!("{fault:?}")).await;
    }
}

/// Row: SIGKILL of a bot process during confirms. Five drafts; each Confirm is pressed
/// four times at once over both processes; during the third round one process is
/// killed (Telegram redelivers what it did not acknowledge to the other) and then
/// comes back. One job per draft, each image made and delivered once, paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_killed_during_confirms_loses_and_doubles_nothing() {
    for seed in SEEDS {
        let cluster = Cluster::start(seed).await;
        let mut rng = Rng(seed);
        let user = cluster.customer(7_001).await;
        let victim = usize::try_from(rng.below(2)).unwrap();
        let survivor = 1 - victim;
        for round in 0..5_usize {
            let via = if round >= 2 { survivor } else { round % 2 };
            let draft = cluster
                .say(via, user, &format!("a red fox {round}"), "Цена: ")
                .await;
            let confirm = draft.button_data("Запустить");
            let mut presses = Vec::new();
            for _ in 0..4 {
                cluster
                    .telegram
                    .press(user.get(), draft.message_id.unwrap_or(1), &confirm);
                let update = cluster.telegram.pending_updates().pop().unwrap();
                presses.push((usize::try_from(rng.below(2)).unwrap(), update));
            }
            // Telegram redelivers an update until a process acknowledges it.
            let deliveries = futures::future::join_all(presses.iter().map(|(pick, update)| {
                let cluster = &cluster;
                async move {
                    for attempt in 0..200 {
                        let i = (pick + attempt) % 2;
                        if cluster.post_update(i, update).await == Some(200) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    panic!("seed {seed}: an update was never acknowledged");
                }
            }));
            let kill = async {
                if round == 2 {
                    tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
                    cluster.kill_node(victim).await;
                }
            };
            tokio::join!(deliveries, kill);
            let cluster = &cluster;
            eventually(seed, "the job of this draft", || async move {
                cluster.jobs_of(user).await.len() == round + 1
            })
            .await;
        }
        cluster.start_node(victim).await;
        // Every job ends. Under load the victim's own worker may be in the middle of a
        // Gemini call for an earlier round's job when it is killed: that call may have
        // been billed, so it is never sent again — the job is refunded (the designed
        // outcome, as in the worker-kill row), not made. Every other job is made and its
        // image delivered exactly once.
        let jobs = jobs_when(
            &format!("seed {seed}: every job final"),
            Duration::from_secs(60),
            || cluster.jobs_of(user),
            |jobs| jobs.len() == 5 && jobs.iter().all(|j| j.state.is_final()),
        )
        .await;
        assert_eq!(jobs.len(), 5, "seed {seed}: one job per draft");
        let (made, charged) = made_and_charged(&jobs);
        for job in jobs.iter().filter(|j| j.state != JobState::Completed) {
            let lost = matches!(
                &job.failure,
                Some(rei_core::job::FailureReason::ProviderFailed { detail })
                    if detail.contains("billed call was lost")
            );
            assert!(
                lost,
                "seed {seed}: only a call cut off by the kill is refunded: {job:?}"
            );
        }
        if made < 5 {
            eprintln!(
                "seed {seed}: {} job(s) refunded: the kill cut off their Gemini call",
                5 - made
            );
        }
        // Drafts 3 and 4 come after the kill: nothing can cut their calls off.
        for late in ["a red fox 3", "a red fox 4"] {
            let job = jobs
                .iter()
                .find(|j| j.spec.prompt().as_str() == late)
                .unwrap();
            assert_eq!(job.state, JobState::Completed, "seed {seed}: {job:?}");
        }
        eventually(seed, "each made image delivered", || {
            std::future::ready(cluster.telegram.calls_to("sendPhoto", user.get()).len() >= made)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            cluster.telegram.calls_to("sendPhoto", user.get()).len(),
            made,
            "seed {seed}: each image once"
        );
        let balance = cluster.stores.ledger.balance(user).await.unwrap();
        assert_eq!(
            balance.available.kopecks(),
            100_000 - charged,
            "seed {seed}"
        );
        assert_eq!(balance.held, Money::ZERO, "seed {seed}");
        cluster.verify(&format!("seed {seed}")).await;
    }
}

/// Where, inside a video job, the workers are killed.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The hold is taken and the job claimed; the start notice is being sent, no
    /// provider call yet.
    AfterHold,
    /// Kling accepted the task; its answer (the task id) never came back.
    AfterProviderCall,
    /// The task id is stored; a status query is out.
    WhilePolling,
    /// The video is ready and being downloaded: not captured yet.
    BeforeCapture,
    /// Captured (charged); the video is being sent to the user.
    DuringDelivery,
}

/// Row: SIGKILL of every process that runs workers (both `rei-bot worker`s and both
/// `rei-bot run`s, which embed workers) inside each step of two video jobs (a step's
/// call is made to hang until the kill), then all four again. Each job ends made, delivered and
/// charged once; Kling got one create per job; a video may reach the user twice only
/// when its sender was killed between Telegram's answer and our record of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_each_step_of_a_video_leave_it_made_and_paid_once() {
    use rei_core::job::Delivery;
    use rei_tests::fakes::kling::Hang;
    for seed in SEEDS {
        let cluster = Cluster::start(seed).await;
        let mut rng = Rng(seed);
        for (n, step) in [
            Step::AfterHold,
            Step::AfterProviderCall,
            Step::WhilePolling,
            Step::BeforeCapture,
            Step::DuringDelivery,
        ]
        .into_iter()
        .enumerate()
        {
            let first = 10_001 + 10 * i64::try_from(n).unwrap();
            let user = UserId::new(first).unwrap();
            match step {
                Step::AfterHold => cluster.telegram.hang("sendMessage"),
                Step::AfterProviderCall => cluster.kling.hang(Hang::CreateAfterAccept),
                Step::WhilePolling => cluster.kling.hang(Hang::Status),
                Step::BeforeCapture => cluster.kling.hang(Hang::Download),
                Step::DuringDelivery => cluster.telegram.hang("sendVideo"),
            }
            let downloads = cluster.kling.downloads();
            let created = cluster
                .video_jobs(first, 1, 2, &format!("step-{seed}-{n}"))
                .await;
            let externals: Vec<String> = created.iter().map(|j| j.id.to_string()).collect();
            let what = format!("seed {seed}: both jobs inside {step:?}");
            let kling = &cluster.kling;
            let telegram = &cluster.telegram;
            let reread = || cluster.reread(&created);
            match step {
                Step::AfterHold => {
                    let jobs = jobs_when(&what, Duration::from_secs(30), reread, |jobs| {
                        jobs.iter().all(|j| j.state == JobState::Processing)
                    })
                    .await;
                    assert!(kling.creates().is_empty(), "{what}: no call yet: {jobs:?}");
                }
                Step::AfterProviderCall => {
                    eventually(seed, &what, || {
                        let creates = kling.creates();
                        std::future::ready(externals.iter().all(|e| creates.contains(e)))
                    })
                    .await;
                }
                Step::WhilePolling => {
                    eventually(seed, &what, || {
                        std::future::ready(externals.iter().all(|e| kling.polls(e) > 0))
                    })
                    .await;
                }
                Step::BeforeCapture => {
                    eventually(seed, &what, || {
                        std::future::ready(kling.downloads() >= downloads + 2)
                    })
                    .await;
                    let jobs = reread().await;
                    assert!(
                        jobs.iter().all(|j| j.state == JobState::Processing),
                        "{what}: not captured yet: {jobs:?}"
                    );
                }
                Step::DuringDelivery => {
                    eventually(seed, &what, || {
                        std::future::ready(telegram.calls_to("sendVideo", user.get()).len() >= 2)
                    })
                    .await;
                    let jobs = reread().await;
                    assert!(
                        jobs.iter().all(|j| j.state == JobState::Completed),
                        "{what}: captured before delivery: {jobs:?}"
                    );
                }
            }
            // `rei-bot run` embeds workers too: every process that may hold a job is
            // killed, in a seeded order, a little apart.
            let mut victims = vec![(false, 0), (false, 1), (true, 0), (true, 1)];
            for k in (1..victims.len()).rev() {
                victims.swap(k, usize::try_from(rng.below(k as u64 + 1)).unwrap());
            }
            for (node, i) in victims {
                if node {
                    cluster.kill_node(i).await;
                } else {
                    let left = cluster.workers.lock().unwrap().len();
                    cluster.kill_worker(i.min(left - 1)).await;
                }
                tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
            }
            cluster.kling.hang(Hang::Never);
            cluster.telegram.release();
            for i in 0..2 {
                cluster.start_node(i).await;
                cluster.start_worker(i);
            }
            let jobs = jobs_when(
                &format!("seed {seed}: {step:?}: jobs not settled"),
                Duration::from_secs(60),
                reread,
                |jobs| {
                    jobs.iter()
                        .all(|j| j.state.is_final() && j.delivery != Delivery::Pending)
                },
            )
            .await;
            assert!(
                jobs.iter()
                    .all(|j| (j.state, j.delivery) == (JobState::Completed, Delivery::Delivered)),
                "seed {seed}: {step:?}: {jobs:?}"
            );
            let creates = kling.creates();
            for external in &externals {
                assert_eq!(
                    creates.iter().filter(|c| *c == external).count(),
                    1,
                    "seed {seed}: {step:?}: Kling paid once for {external}"
                );
            }
            let (made, charged) = made_and_charged(&jobs);
            let balance = cluster.stores.ledger.balance(user).await.unwrap();
            assert_eq!(
                (balance.available.kopecks(), balance.held),
                (100_000 - charged, Money::ZERO),
                "seed {seed}: {step:?}: charged once each"
            );
            let videos = telegram.calls_to("sendVideo", user.get()).len();
            let resent = if matches!(step, Step::DuringDelivery) {
                2
            } else {
                0
            };
            assert!(
                (made..=made + resent).contains(&videos),
                "seed {seed}: {step:?}: {videos} videos for {made}"
            );
        }
        cluster.verify(&format!("seed {seed}")).await;
    }
}

/// What Kling does wrong in a provider row, and how the two jobs of the row end.
#[derive(Clone, Copy, Debug)]
enum KlingFault {
    /// Creates answered 429 code 1303 (no task made): backed off and sent again.
    CreateRateLimited,
    /// Creates answered 500 (no task made): looked up by job id, found missing, sent
    /// again.
    CreateServerError,
    /// Creates taken, then the connection breaks: looked up, found, not sent again.
    CreateLost,
    /// Creates never answered (`KLING_TIMEOUT_SECS`): looked up, found, not sent again.
    CreateHangs,
    /// The prompt refused (400 code 1301): refunded, the user told.
    CreateRefused,
    /// Status queries answered 429 code 1302, 500, or cut off: asked again.
    PollFaults,
    /// Status queries never answered for a while: given up after the timeout, asked
    /// again.
    PollHangs,
    /// The task ends `failed` (the output refused): refunded, the user told.
    TaskFailed,
}

/// Rows: Kling rate limiting, failing, losing answers, hanging and refusing, on submit
/// and on poll, with two video jobs per fault over the cluster's workers. Every job
/// ends once: made, delivered and charged, with exactly one task at Kling; or, when
/// Kling refused, refunded in full with no video and no task billed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kling_faults_on_submit_and_poll_end_every_job_once() {
    use rei_core::job::Delivery;
    use rei_tests::fakes::kling::{CreateFault, Hang, PollFault};
    let cluster = Cluster::start(200).await;
    let seed = cluster.seed;
    for (n, fault) in [
        KlingFault::CreateRateLimited,
        KlingFault::CreateServerError,
        KlingFault::CreateLost,
        KlingFault::CreateHangs,
        KlingFault::CreateRefused,
        KlingFault::PollFaults,
        KlingFault::PollHangs,
        KlingFault::TaskFailed,
    ]
    .into_iter()
    .enumerate()
    {
        let kling = &cluster.kling;
        match fault {
            KlingFault::CreateRateLimited => kling.fault_creates([CreateFault::RateLimited; 3]),
            KlingFault::CreateServerError => kling.fault_creates([CreateFault::ServerError; 2]),
            KlingFault::CreateLost => kling.fault_creates([CreateFault::LostAfterAccept; 2]),
            KlingFault::CreateHangs => kling.hang(Hang::CreateAfterAccept),
            KlingFault::CreateRefused => kling.fault_creates([CreateFault::Refused; 2]),
            KlingFault::PollFaults => kling.fault_polls([
                PollFault::RateLimited,
                PollFault::ServerError,
                PollFault::Lost,
                PollFault::RateLimited,
                PollFault::Lost,
            ]),
            KlingFault::PollHangs => kling.hang(Hang::Status),
            KlingFault::TaskFailed => kling.fail_tasks(),
        }
        let first = 20_001 + 10 * i64::try_from(n).unwrap();
        let user = UserId::new(first).unwrap();
        let created = cluster.video_jobs(first, 1, 2, &format!("kling-{n}")).await;
        if matches!(fault, KlingFault::PollHangs) {
            // Both jobs' polls time out at least once, then Kling answers again.
            let externals: Vec<String> = created.iter().map(|j| j.id.to_string()).collect();
            eventually(seed, "polls out", || {
                std::future::ready(externals.iter().all(|e| kling.polls(e) > 0))
            })
            .await;
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            kling.hang(Hang::Never);
        }
        let jobs = jobs_when(
            &format!("{fault:?}: not settled"),
            Duration::from_secs(60),
            || cluster.reread(&created),
            |jobs| {
                jobs.iter()
                    .all(|j| j.state.is_final() && j.delivery == Delivery::Delivered)
            },
        )
        .await;
        kling.hang(Hang::Never);
        let refused = matches!(fault, KlingFault::CreateRefused | KlingFault::TaskFailed);
        let expected = if refused {
            JobState::Failed
        } else {
            JobState::Completed
        };
        assert!(
            jobs.iter().all(|j| j.state == expected),
            "{fault:?}: {jobs:?}"
        );
        for job in &jobs {
            let tasks = kling.tasks_of(&job.id.to_string());
            let billed = usize::from(!matches!(fault, KlingFault::CreateRefused));
            assert_eq!(tasks, billed, "{fault:?}: tasks at Kling for {}", job.id);
        }
        let (made, charged) = made_and_charged(&jobs);
        let balance = cluster.stores.ledger.balance(user).await.unwrap();
        assert_eq!(
            (balance.available.kopecks(), balance.held),
            (100_000 - charged, Money::ZERO),
            "{fault:?}: charged for what was made"
        );
        let videos = cluster.telegram.calls_to("sendVideo", user.get()).len();
        assert_eq!(videos, made, "{fault:?}: each video once");
        if refused {
            assert_eq!(charged, 0, "{fault:?}: refunded in full");
            let told = cluster.told(user, "Деньги вернулись");
            assert!(told >= 2, "{fault:?}: each refund told ({told})");
        }
    }
    cluster.verify(&format!("seed {seed}")).await;
}

/// Row: the deadline passes while the task runs at Kling (a clock jump for the job:
/// `KLING_TASK_DEADLINE_SECS=3` and a task that does not finish), with both workers
/// killed around the deadline. Each job is refunded once and the user told; when the
/// video still comes later, it is delivered free: the refund stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_while_the_task_runs_refunds_once_and_a_late_video_is_free() {
    use rei_core::job::Delivery;
    for seed in SEEDS {
        let cluster = Cluster::start_env(seed, &[("KLING_TASK_DEADLINE_SECS", "3")]).await;
        let mut rng = Rng(seed);
        cluster.kling.finish_after(u32::MAX);
        let created = cluster
            .video_jobs(30_001, 1, 2, &format!("deadline-{seed}"))
            .await;
        let user = UserId::new(30_001).unwrap();
        tokio::time::sleep(Duration::from_millis(2_000 + rng.below(2_000))).await;
        let victim = usize::try_from(rng.below(2)).unwrap();
        cluster.kill_worker(victim).await;
        cluster.kill_worker(0).await;
        cluster.start_worker(0);
        cluster.start_worker(1);
        let jobs = jobs_when(
            &format!("seed {seed}: not refunded"),
            Duration::from_secs(60),
            || cluster.reread(&created),
            |jobs| {
                jobs.iter()
                    .all(|j| j.state == JobState::Failed && j.delivery == Delivery::Delivered)
            },
        )
        .await;
        let balance = cluster.stores.ledger.balance(user).await.unwrap();
        assert_eq!(
            (balance.available.kopecks(), balance.held),
            (100_000, Money::ZERO),
            "seed {seed}: refunded in full: {jobs:?}"
        );
        // Kling finishes after all: the videos are delivered, free.
        cluster.kling.finish_after(0);
        eventually(seed, "the late videos", || {
            std::future::ready(cluster.telegram.calls_to("sendVideo", user.get()).len() >= 2)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(
            cluster.telegram.calls_to("sendVideo", user.get()).len(),
            2,
            "seed {seed}: each late video once"
        );
        for job in &created {
            assert_eq!(
                cluster.kling.tasks_of(&job.id.to_string()),
                1,
                "seed {seed}"
            );
        }
        let balance = cluster.stores.ledger.balance(user).await.unwrap();
        assert_eq!(
            (balance.available.kopecks(), balance.held),
            (100_000, Money::ZERO),
            "seed {seed}: the late videos cost nothing"
        );
        cluster.verify(&format!("seed {seed}")).await;
    }
}

/// Row: SIGKILL of a bot process during refunds. Six paid top-ups are refunded by an
/// operator (YooKassa answers `pending`); YooKassa then finishes them, some succeeded
/// and some canceled, and sends each `refund.succeeded` notification ten times over
/// both processes at once while one of them is killed (and comes back). Each succeeded
/// refund takes its credit back once and tells the user; each canceled one gives the
/// held credit back; nothing stays held; the ledger verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_killed_during_refunds_takes_each_credit_back_once() {
    use rei_tests::fakes::yookassa::RefundAnswer;
    for seed in SEEDS {
        let cluster = Cluster::start_env(seed, &[("PAYMENT_POLL_INTERVAL_SECS", "1")]).await;
        let mut rng = Rng(seed);
        let topups = cluster.paid_topups(6).await;
        for (n, (_, provider)) in topups.iter().enumerate() {
            let body = cluster
                .yookassa
                .notification("payment.succeeded", provider, None);
            cluster.deliver(n % 2, &body).await;
        }
        cluster.check(&topups, 0).await;
        cluster.yookassa.answer_refunds([RefundAnswer::Pending; 6]);
        let all = cluster
            .stores
            .payments
            .payments(PaymentFilter::default())
            .await
            .unwrap();
        for payment in &all {
            cluster.payments.refund(payment.id, None).await.unwrap();
        }
        for (user, _) in &topups {
            let balance = cluster.stores.ledger.balance(*user).await.unwrap();
            assert_eq!(
                balance.held.kopecks(),
                10_000,
                "seed {seed}: held while pending"
            );
        }
        let refunds = cluster.yookassa.refunds();
        assert_eq!(refunds.len(), 6, "seed {seed}");
        let mut succeeded = Vec::new();
        for refund in &refunds {
            let id = refund["id"].as_str().unwrap().to_owned();
            let payment = refund["payment_id"].as_str().unwrap();
            let user = topups.iter().find(|(_, p)| p == payment).unwrap().0;
            let ok = rng.below(3) > 0;
            cluster.yookassa.finish_refund(&id, ok);
            if ok {
                succeeded.push((user, id));
            }
        }
        let ids: Vec<String> = succeeded.iter().map(|(_, id)| id.clone()).collect();
        cluster
            .refunds_notified_with_a_kill(&mut rng, &ids, 10)
            .await;
        let refunded_notices = |user: UserId| cluster.told(user, "Платёж возвращён");
        for (user, _) in &topups {
            let refunded = succeeded.iter().any(|(u, _)| u == user);
            let want = if refunded {
                PaymentState::Refunded
            } else {
                PaymentState::Paid
            };
            let cluster = &cluster;
            eventually(seed, "the refund settled", || async move {
                let payment = cluster
                    .stores
                    .payments
                    .payments(PaymentFilter::default())
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|p| p.user_id == *user)
                    .unwrap();
                let balance = cluster.stores.ledger.balance(*user).await.unwrap();
                payment.state == want && balance.held == Money::ZERO
            })
            .await;
            let balance = cluster.stores.ledger.balance(*user).await.unwrap();
            let left = if refunded { 0 } else { 10_000 };
            assert_eq!(
                balance.available.kopecks(),
                left,
                "seed {seed}: {user}: the credit taken back once (refunded: {refunded})"
            );
            if refunded {
                eventually(seed, "the refund notice", || {
                    std::future::ready(refunded_notices(*user) >= 1)
                })
                .await;
            }
        }
        // Longer than the outbox hold: a notice left claimed would be sent again by now.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let mut repeated = 0;
        for (user, _) in &topups {
            let refunded = succeeded.iter().any(|(u, _)| u == user);
            let told = refunded_notices(*user);
            if refunded {
                assert!(
                    (1..=2).contains(&told),
                    "seed {seed}: {user} told {told} times"
                );
                repeated += told - 1;
            } else {
                assert_eq!(
                    told, 0,
                    "seed {seed}: {user}: a canceled refund is no refund"
                );
            }
        }
        assert!(
            repeated <= 1,
            "seed {seed}: {repeated} notices repeated after one kill"
        );
        assert_eq!(
            cluster.yookassa.refunds().len(),
            6,
            "seed {seed}: no refund made twice"
        );
        cluster.verify(&format!("seed {seed}")).await;
    }
}

/// Row (growth): the signup bonus over both processes. Twenty new users start the bot
/// at once, each `/start` delivered to both processes (Telegram redelivers what was not
/// acknowledged) while one process is killed and comes back. Each user gets the bonus
/// exactly once, as a `bonus` entry, and is told at most once; the ledger verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signup_bonus_over_two_processes_and_a_kill_is_given_once() {
    use rei_core::ledger::RefType;
    for seed in SEEDS {
        let cluster = Cluster::start_env(seed, &[("SIGNUP_BONUS", "25")]).await;
        let mut rng = Rng(seed);
        let users: Vec<UserId> = (0..20).map(|n| UserId::new(40_001 + n).unwrap()).collect();
        cluster
            .everyone_says_twice_with_a_kill(&mut rng, &users, "/start")
            .await;
        for user in &users {
            let cluster = &cluster;
            eventually(seed, "the bonus", || async move {
                cluster
                    .stores
                    .ledger
                    .balance(*user)
                    .await
                    .unwrap()
                    .available
                    .kopecks()
                    > 0
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for user in &users {
            let entries = cluster.stores.ledger.entries(*user, 10).await.unwrap();
            let bonuses: Vec<_> = entries
                .iter()
                .filter(|e| e.ref_type == RefType::Bonus)
                .collect();
            assert_eq!(bonuses.len(), 1, "seed {seed}: {user}: {entries:?}");
            assert_eq!(
                cluster
                    .stores
                    .ledger
                    .balance(*user)
                    .await
                    .unwrap()
                    .available
                    .kopecks(),
                2_500,
                "seed {seed}: {user}: given once"
            );
            // Told by the reply of the update that gave it: never twice.
            let told = cluster.told(*user, "подарок");
            assert!(told <= 1, "seed {seed}: {user}: told {told} times");
        }
        cluster.verify(&format!("seed {seed}")).await;
    }
}

/// Row (growth): a promo code of ten uses rushed over both processes. Thirty users send
/// `/promo RUSH` at once, each update delivered to both processes while one is killed
/// and comes back. Exactly ten users are credited, each once, as `promo` entries; the
/// ledger verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promo_rush_over_two_processes_and_a_kill_credits_its_uses_once() {
    use rei_core::ledger::RefType;
    for seed in SEEDS {
        let cluster = Cluster::start(seed).await;
        let mut rng = Rng(seed);
        rei_core::promo::PromoService::new(
            cluster.stores.promos.clone(),
            Arc::new(rei_adapters::outbound::system::SystemClock),
        )
        .create(
            rei_core::user::Actor::System,
            "RUSH",
            "10".parse().unwrap(),
            Some(10),
            None,
        )
        .await
        .unwrap();
        let users: Vec<UserId> = (0..30).map(|n| UserId::new(50_001 + n).unwrap()).collect();
        cluster
            .everyone_says_twice_with_a_kill(&mut rng, &users, "/promo RUSH")
            .await;
        let promos = cluster.stores.promos.clone();
        let code = rei_core::promo::PromoCode::parse("RUSH").unwrap();
        eventually(seed, "ten uses taken", || {
            let (promos, code) = (promos.clone(), code.clone());
            async move { promos.promo(&code).await.unwrap().unwrap().used == 10 }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut credited = 0;
        for user in &users {
            let entries = cluster.stores.ledger.entries(*user, 10).await.unwrap();
            let promo = entries
                .iter()
                .filter(|e| e.ref_type == RefType::Promo)
                .count();
            assert!(promo <= 1, "seed {seed}: {user}: {entries:?}");
            credited += promo;
        }
        assert_eq!(credited, 10, "seed {seed}: exactly the code's uses");
        cluster.verify(&format!("seed {seed}")).await;
    }
}

/// Row (growth): referral rewards over both processes and kills. Eight referred users
/// (four for each of two referrers) have their 100 ₽ top-ups paid while the
/// notifications, each twice, go to both processes and one is killed; then every top-up
/// is refunded by an operator, YooKassa finishes most of the refunds (the rest are
/// canceled) and sends each `refund.succeeded` four times over both processes while one
/// is killed again. Each referrer earns exactly 10 ₽ per paid top-up, as one `referral`
/// entry each, and loses exactly that per refunded one; the ledger verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referral_rewards_over_two_processes_and_kills_come_and_go_once() {
    use rei_core::ledger::RefType;
    use rei_tests::fakes::yookassa::RefundAnswer;
    for seed in SEEDS {
        let cluster = Cluster::start_env(
            seed,
            &[
                ("REFERRAL_PERCENT", "10"),
                ("PAYMENT_POLL_INTERVAL_SECS", "1"),
            ],
        )
        .await;
        let mut rng = Rng(seed);
        let users = UserService::new(
            cluster.stores.users.clone(),
            Arc::new(rei_adapters::outbound::system::SystemClock),
        );
        let referrers = [UserId::new(50_001).unwrap(), UserId::new(50_002).unwrap()];
        for referrer in referrers {
            users.register(rei_tests::profile(referrer)).await.unwrap();
        }
        let topups = cluster.paid_topups(8).await;
        let referrer_of = |n: usize| referrers[n % 2];
        for (n, (user, _)) in topups.iter().enumerate() {
            let bound = cluster
                .stores
                .referrals
                .bind_referrer(*user, referrer_of(n), Timestamp::from_millis(0))
                .await
                .unwrap();
            assert!(bound, "seed {seed}");
        }
        cluster
            .credits_notified_with_a_kill(&mut rng, &topups)
            .await;
        cluster.check(&topups, 1).await;
        let rewards = |referrer: UserId| {
            let cluster = &cluster;
            async move {
                let entries = cluster.stores.ledger.entries(referrer, 100).await.unwrap();
                let mine: Vec<_> = entries
                    .into_iter()
                    .filter(|e| e.ref_type == RefType::Referral)
                    .collect();
                mine
            }
        };
        for referrer in referrers {
            let mine = rewards(referrer).await;
            assert_eq!(mine.len(), 4, "seed {seed}: {referrer}: {mine:?}");
            assert!(
                mine.iter().all(|e| e.amount.kopecks() == 1_000),
                "seed {seed}"
            );
            let balance = cluster.stores.ledger.balance(referrer).await.unwrap();
            assert_eq!(
                balance.available.kopecks(),
                4_000,
                "seed {seed}: {referrer}"
            );
        }
        // The refunds, with another kill.
        cluster.yookassa.answer_refunds([RefundAnswer::Pending; 8]);
        let all = cluster
            .stores
            .payments
            .payments(PaymentFilter::default())
            .await
            .unwrap();
        for payment in &all {
            cluster.payments.refund(payment.id, None).await.unwrap();
        }
        let mut refunded = Vec::new();
        for refund in cluster.yookassa.refunds() {
            let id = refund["id"].as_str().unwrap().to_owned();
            let payment = refund["payment_id"].as_str().unwrap();
            let n = topups.iter().position(|(_, p)| p == payment).unwrap();
            let ok = rng.below(4) > 0;
            cluster.yookassa.finish_refund(&id, ok);
            if ok {
                refunded.push((n, id));
            }
        }
        let ids: Vec<String> = refunded.iter().map(|(_, id)| id.clone()).collect();
        cluster
            .refunds_notified_with_a_kill(&mut rng, &ids, 4)
            .await;
        // Canceled refunds are found by the poller; every hold ends.
        for (user, _) in &topups {
            let cluster = &cluster;
            eventually(seed, "the refunds settled", || async move {
                let balance = cluster.stores.ledger.balance(*user).await.unwrap();
                balance.held == Money::ZERO
            })
            .await;
        }
        for (r, referrer) in referrers.iter().enumerate() {
            let kept = (0..topups.len())
                .filter(|n| n % 2 == r && !refunded.iter().any(|(m, _)| m == n))
                .count();
            let balance = cluster.stores.ledger.balance(*referrer).await.unwrap();
            assert_eq!(
                balance.available.kopecks(),
                1_000 * i64::try_from(kept).unwrap(),
                "seed {seed}: {referrer}: each refunded top-up's reward taken back once"
            );
            let taken_back = rewards(*referrer)
                .await
                .iter()
                .filter(|e| e.kind == rei_core::ledger::EntryKind::Debit)
                .count();
            assert_eq!(taken_back, 4 - kept, "seed {seed}: {referrer}");
        }
        cluster.verify(&format!("seed {seed}")).await;
    }
}

/// [growth] A live price change (what `rei-cli prices set` does, from another process)
/// reaches both bot processes within `PRICES_REFRESH_SECS`, without a restart; a draft
/// shown before it and confirmed on the other process after it is made at the price it
/// quoted; the change is audited and the ledger verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_price_change_reaches_both_processes_and_a_shown_draft_keeps_its_price() {
    let seed = SEEDS[0];
    let cluster = Cluster::start_env(seed, &[("PRICES_REFRESH_SECS", "1")]).await;
    let anna = cluster.customer(60_001).await;
    let probe = cluster.customer(60_002).await;
    let shown = cluster.say(0, anna, "a red fox", "Цена: ").await;
    assert!(
        shown
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("Цена: 50.00 ₽"),
        "{shown:?}"
    );
    let prices = rei_core::prices::PriceService::new(
        cluster.stores.prices.clone(),
        Arc::new(rei_tests::job_service(
            &cluster.stores,
            rei_core::job::JobLimits::default(),
        )),
        PriceList::seed_defaults(),
        vec!["kling-v3".into(), "kling-v2-6".into(), "kling-v1-5".into()],
        Arc::new(rei_adapters::outbound::system::SystemClock),
    );
    let before = prices
        .set(
            Actor::Cli("ops".into()),
            "image_generation",
            "70".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(before, "50".parse().unwrap());
    let changed = Instant::now();
    for node in [0, 1] {
        let mut quoted = String::new();
        for n in 0..40 {
            let draft = cluster
                .say(node, probe, &format!("a probe {node} {n}"), "Цена: ")
                .await;
            quoted = draft.text.unwrap_or_default();
            if quoted.contains("Цена: 70.00 ₽") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(quoted.contains("Цена: 70.00 ₽"), "process {node}: {quoted}");
    }
    assert!(
        changed.elapsed() < Duration::from_secs(10),
        "in force everywhere within seconds: {:?}",
        changed.elapsed()
    );
    // Models and top-up amounts are live the same way: a model switched off and new
    // amounts reach both processes' menus within seconds.
    prices
        .set_value(Actor::Cli("ops".into()), "model:kling-v1-5", "off")
        .await
        .unwrap();
    prices
        .set_value(Actor::Cli("ops".into()), "topups", "250,750")
        .await
        .unwrap();
    let labels = |call: &rei_tests::fakes::telegram::Call| {
        call.reply_markup.clone().unwrap_or_default().to_string()
    };
    for node in [0, 1] {
        let mut menus = (String::new(), String::new());
        for _ in 0..40 {
            let video = cluster.say(node, probe, "/video", "Выберите модель").await;
            let pay = cluster.say(node, probe, "/pay", "Выберите сумму").await;
            menus = (labels(&video), labels(&pay));
            if !menus.0.contains("Kling 1.5") && menus.1.contains("250.00 ₽") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            !menus.0.contains("Kling 1.5") && menus.0.contains("Kling 2.6"),
            "process {node}: {}",
            menus.0
        );
        assert!(
            menus.1.contains("250.00 ₽")
                && menus.1.contains("750.00 ₽")
                && !menus.1.contains("300.00 ₽"),
            "process {node}: {}",
            menus.1
        );
    }
    // The draft shown at 50 ₽ is confirmed on the other process: made at 50 ₽.
    cluster.telegram.press(
        anna.get(),
        shown.message_id.unwrap_or(1),
        &shown.button_data("Запустить"),
    );
    assert_eq!(cluster.push_last_update(1).await, Some(200));
    let jobs = jobs_when(
        "the job",
        Duration::from_secs(30),
        || cluster.jobs_of(anna),
        |jobs| !jobs.is_empty(),
    )
    .await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].quote.amount, "50".parse().unwrap());
    let audit = cluster.stores.users.audit_log(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == rei_core::user::AuditAction::PriceSet
                && a.reason == "image_generation: 50.00 ₽ -> 70.00 ₽"),
        "{audit:?}"
    );
    cluster.verify("live prices").await;
}
