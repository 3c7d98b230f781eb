//! Job pipeline benchmark: jobs per second through the queue and the real worker loop
//! with an instant image provider and an instant notifier, and the queue's overhead per
//! job (the time a claim takes). Every job is created first (hold + queue entry), then
//! timed while it is claimed, generated, captured and delivered (four store writes and
//! the claim); the ledger is verified after the run.
//!
//! ```text
//! cargo run --release -p rei-tests --bin rei-bench-jobs -- [--jobs N] [--slots S] [--queue database|redis]
//! ```
//! The database is a new SQLite file, and also a new PostgreSQL database when
//! `REI_BENCH_POSTGRES_URL` (or `REI_TEST_POSTGRES_URL`) names a server. `--queue redis`
//! needs `REI_BENCH_REDIS_URL` (or `REI_TEST_REDIS_URL`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use rei_adapters::app::backends::{BackendsConfig, connect};
use rei_adapters::inbound::worker::{Worker, WorkerConfig};
use rei_adapters::outbound::sql::DatabaseTarget;
use rei_adapters::outbound::system::{RandomIds, SystemClock};
use rei_core::job::{
    Job, JobLease, JobLimits, JobPorts, JobRunner, JobService, JobSpec, Prompt, RunnerConfig,
    RunnerPorts,
};
use rei_core::memory::MemoryAssets;
use rei_core::ports::{
    AdminAlert, Clock, GeneratedImage, ImageGenerator, ImageRequest, JobQueue, MessageRef, Notice,
    Notifier, NotifyError, ProviderError, QueueError,
};
use rei_core::prelude::*;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, PartialEq, Eq)]
enum QueueKind {
    Database,
    Redis,
}

struct Args {
    jobs: u32,
    slots: usize,
    queue: QueueKind,
    write: Option<rei_adapters::outbound::sql::WriteMode>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        jobs: 2_000,
        slots: 8,
        queue: QueueKind::Database,
        write: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--jobs" => a.jobs = value.parse()?,
            "--slots" => a.slots = value.parse()?,
            "--write" => a.write = rei_tests::write_mode(&value)?,
            "--queue" => {
                a.queue = match value.as_str() {
                    "database" => QueueKind::Database,
                    "redis" => QueueKind::Redis,
                    other => anyhow::bail!("--queue database|redis, not {other}"),
                }
            }
            other => anyhow::bail!(
                "unknown flag {other} (use --jobs N --slots S --queue database|redis --write default|direct|batched)"
            ),
        }
    }
    Ok(a)
}

/// Draws at once.
struct InstantImages;

#[async_trait]
impl ImageGenerator for InstantImages {
    async fn generate(&self, _: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        Ok(GeneratedImage {
            bytes: vec![0x89, b'P', b'N', b'G', 0, 0, 0, 0],
            mime_type: "image/png".into(),
            caption: None,
        })
    }
}

/// Delivers at once and counts deliveries.
#[derive(Default)]
struct CountingNotifier {
    delivered: AtomicU64,
}

#[async_trait]
impl Notifier for CountingNotifier {
    async fn notify(&self, _: UserId, notice: Notice) -> Result<Option<MessageRef>, NotifyError> {
        if matches!(notice, Notice::JobCompleted { .. }) {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(None)
    }
    async fn alert_admins(&self, _: AdminAlert) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// Measures how long claims that found a job took.
struct TimedQueue {
    inner: Arc<dyn JobQueue>,
    claims: Mutex<Vec<Duration>>,
}

#[async_trait]
impl JobQueue for TimedQueue {
    async fn enqueue(&self, job: rei_core::JobId) {
        self.inner.enqueue(job).await;
    }
    async fn claim(
        &self,
        worker: &str,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, QueueError> {
        let started = Instant::now();
        let claimed = self.inner.claim(worker, lease, at).await?;
        if claimed.is_some() {
            self.claims
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(started.elapsed());
        }
        Ok(claimed)
    }
    async fn done(&self, job: &Job) -> Result<(), QueueError> {
        self.inner.done(job).await
    }
    async fn depth(&self) -> Result<u64, QueueError> {
        self.inner.depth().await
    }
    async fn wake(&self, job: rei_core::JobId, at: Timestamp) -> Result<(), QueueError> {
        self.inner.wake(job, at).await
    }
}

struct Figures {
    jobs_per_sec: f64,
    claim_mean: Duration,
    claim_p50: Duration,
    claim_p99: Duration,
    writes_per_commit: f64,
}

async fn run(
    database: DatabaseTarget,
    redis_url: Option<String>,
    args: &Args,
) -> anyhow::Result<Figures> {
    let backends = connect(&BackendsConfig {
        database,
        redis_url: redis_url.map(rei_adapters::outbound::secret_url::SecretUrl::new),
        rate_limit_per_minute: 10,
        lease_for: Duration::from_secs(60),
        write_mode: args.write,
    })
    .await?;
    let stores = backends.stores.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let timed = Arc::new(TimedQueue {
        inner: backends.queue.clone(),
        claims: Mutex::new(Vec::new()),
    });
    let jobs = Arc::new(JobService::new(
        JobPorts {
            users: stores.users.clone(),
            jobs: stores.jobs.clone(),
            queue: timed.clone(),
            clock: clock.clone(),
            ids: Arc::new(RandomIds),
        },
        PriceList::seed_defaults(),
        JobLimits {
            max_active_per_user: u32::MAX,
            ..JobLimits::default()
        },
    ));
    let user = rei_tests::funded_user(&stores, 1, Money::from_kopecks(1_000_000_000_000)?).await?;
    let spec = JobSpec::image(Prompt::parse("a fox")?);
    let quote = jobs.quote(&spec);
    let notifier = Arc::new(CountingNotifier::default());
    let runner = Arc::new(JobRunner::new(
        RunnerPorts {
            jobs: jobs.clone(),
            images: Some(Arc::new(InstantImages)),
            videos: None,
            assets: Arc::new(MemoryAssets::default()),
            notifier: notifier.clone(),
            clock: clock.clone(),
        },
        RunnerConfig::default(),
    ));
    let worker = Worker::new(
        jobs.clone(),
        runner,
        clock,
        WorkerConfig {
            name: "bench".into(),
            concurrency: args.slots,
            idle_poll: Duration::from_millis(2),
            grace: Duration::from_secs(5),
        },
    );
    // Every job is created (held and queued) first; the clock then measures the queue
    // and the workers alone.
    for i in 0..args.jobs {
        jobs.create(
            user,
            spec.clone(),
            &quote,
            IdempotencyKey::new(format!("bench-{i}"))?,
        )
        .await?;
    }
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let workers = tokio::spawn(worker.run(shutdown.clone()));
    while notifier.delivered.load(Ordering::Relaxed) < u64::from(args.jobs) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    workers.await?;
    let report = stores.ledger.verify().await?;
    anyhow::ensure!(report.is_ok(), "ledger violations: {:?}", report.violations);
    let balance = stores.ledger.balance(user).await?;
    anyhow::ensure!(
        balance.available.kopecks()
            == 1_000_000_000_000 - i64::from(args.jobs) * quote.amount.kopecks(),
        "every job charged exactly once"
    );
    let mut claims = timed
        .claims
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    anyhow::ensure!(
        claims.len() >= usize::try_from(args.jobs)?,
        "a claim per job"
    );
    claims.sort();
    let total: Duration = claims.iter().sum();
    let count = u32::try_from(claims.len())?;
    let pick = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((claims.len() - 1) as f64 * q) as usize;
        claims[i]
    };
    Ok(Figures {
        jobs_per_sec: f64::from(args.jobs) / elapsed.as_secs_f64(),
        claim_mean: total / count,
        claim_p50: pick(0.5),
        claim_p99: pick(0.99),
        writes_per_commit: {
            let stats = stores.sql.write_stats();
            #[allow(clippy::cast_precision_loss)]
            let ratio = stats.writes as f64 / stats.commits.max(1) as f64;
            ratio
        },
    })
}

fn print(backend: &str, args: &Args, f: &Figures) {
    println!(
        "{backend:<24} jobs {:>5}  slots {:>2}  {:>8.0} jobs/s  claim mean {:>7.3} ms  p50 {:>7.3} ms  p99 {:>7.3} ms  writes/commit {:>5.1}",
        args.jobs,
        args.slots,
        f.jobs_per_sec,
        f.claim_mean.as_secs_f64() * 1e3,
        f.claim_p50.as_secs_f64() * 1e3,
        f.claim_p99.as_secs_f64() * 1e3,
        f.writes_per_commit,
    );
}

fn env_url(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let redis = match args.queue {
        QueueKind::Database => None,
        QueueKind::Redis => Some(
            env_url(&["REI_BENCH_REDIS_URL", "REI_TEST_REDIS_URL"])
                .context("--queue redis needs REI_BENCH_REDIS_URL or REI_TEST_REDIS_URL")?,
        ),
    };
    let queue = if redis.is_some() { "redis" } else { "database" };
    let sqlite = DatabaseTarget::SqlitePath(rei_tests::sqlite_path()?);
    print(
        &format!("sqlite + {queue} queue"),
        &args,
        &run(sqlite, redis.clone(), &args).await?,
    );
    if env_url(&["REI_BENCH_POSTGRES_URL", "REI_TEST_POSTGRES_URL"]).is_some() {
        let pg = DatabaseTarget::Postgres(rei_tests::postgres_url().await?);
        print(
            &format!("postgres + {queue} queue"),
            &args,
            &run(pg, redis, &args).await?,
        );
    }
    Ok(())
}
