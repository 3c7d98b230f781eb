//! `RedisQueue` and `RedisLimiter` against a real Redis.
//!
//! The server comes from `REI_TEST_REDIS_URL` (`scripts/test` starts one). When it is
//! unset these tests fail (never pass): leave them out knowingly with `--skip redis`.
//! Every test uses its own key prefix. The outage test runs a throwaway `redis-server`
//! of its own, which it stops and starts again on the same port.
#![cfg(feature = "redis")]
// Tests may unwrap (clippy.toml allows it in `#[test]` functions only; the helpers of
// this test binary are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::process::Stdio;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use rei_adapters::outbound::redis::{RedisLimiter, RedisQueue, RedisQueueConfig};
use rei_adapters::outbound::sql::SqlStore;
use rei_adapters::outbound::system::{RandomIds, SystemClock};
use rei_core::ids::{IdempotencyKey, JobId, UserId};
use rei_core::job::{
    Job, JobEvent, JobGuard, JobLease, JobLimits, JobPorts, JobService, JobSpec, LeaseToken,
    Prompt, StoreQueue,
};
use rei_core::ledger::{EntryKind, NewEntry, RefType};
use rei_core::money::Money;
use rei_core::ports::{Clock, JobQueue, LedgerStore, RateDecision, RateLimiter, UserStore};
use rei_core::pricing::PriceList;
use rei_core::time::Timestamp;
use rei_core::user::{Language, UserProfile};
use tempfile::TempDir;
use uuid::Uuid;

// ---- helpers ----

/// The test Redis URL. Panics when it is unset: a test never passes without its
/// server (leave them out knowingly with `cargo test -- --skip redis`).
fn redis_url() -> String {
    init_tracing();
    match std::env::var("REI_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "REI_TEST_REDIS_URL is not set: run the tests through scripts/test (which \
             starts Redis), or leave them out knowingly with `cargo test -- --skip redis`"
        ),
    }
}

/// Logs to the test output only with `TEST_LOG=1`.
fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
            tracing_subscriber::fmt()
                .with_env_filter("rei_adapters=debug")
                .with_test_writer()
                .init();
        }
    });
}

/// Log lines written while the guard lives (this thread only).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const OUTAGE: &str = "redis is unreachable";
const BACK: &str = "redis is reachable again";

fn prefix() -> String {
    format!("rei-test:{}:", Uuid::new_v4().simple())
}

fn now() -> Timestamp {
    SystemClock.now()
}

/// A queue configuration with short waits, for tests.
fn fast() -> RedisQueueConfig {
    RedisQueueConfig {
        block: Duration::from_millis(50),
        probe_every: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        ..RedisQueueConfig::default()
    }
}

fn lease_for(d: Duration) -> JobLease {
    JobLease::new(LeaseToken::new(Uuid::new_v4().to_string()), now().plus(d))
}

fn lease() -> JobLease {
    lease_for(Duration::from_secs(600))
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Polls `f` until it returns `Some`, failing after `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A SQLite store on a new temp file, with one user who can pay for many jobs.
struct World {
    store: Arc<SqlStore>,
    user: UserId,
    _dir: TempDir,
}

/// A user without names, in Russian.
fn profile(id: UserId) -> UserProfile {
    UserProfile {
        id,
        username: None,
        first_name: None,
        language: Language::Ru,
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rei.db");
    let store = Arc::new(
        SqlStore::open_sqlite_path(path.to_str().unwrap())
            .await
            .unwrap(),
    );
    let user = UserId::new(42).unwrap();
    store.register(profile(user), now()).await.unwrap();
    store
        .post(
            NewEntry {
                user_id: user,
                kind: EntryKind::Credit,
                amount: Money::from_kopecks(100_000_000).unwrap(),
                ref_type: RefType::Admin,
                ref_id: "test".into(),
                description: "seed".into(),
                idempotency_key: IdempotencyKey::new("seed").unwrap(),
                created_at: now(),
            },
            None,
        )
        .await
        .unwrap();
    World {
        store,
        user,
        _dir: dir,
    }
}

impl World {
    /// Job creation telling `queue` (as the bot does).
    fn service(&self, queue: Arc<dyn JobQueue>) -> JobService {
        let ports = JobPorts {
            users: self.store.clone(),
            jobs: self.store.clone(),
            queue,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
        };
        let limits = JobLimits {
            max_active_per_user: 1000,
            ..JobLimits::default()
        };
        JobService::new(ports, PriceList::seed_defaults(), limits)
    }

    async fn queue(&self, url: &str, prefix: &str, config: RedisQueueConfig) -> Arc<RedisQueue> {
        Arc::new(
            RedisQueue::connect(url, prefix, self.store.clone(), config)
                .await
                .unwrap(),
        )
    }

    async fn create(&self, jobs: &JobService) -> JobId {
        let spec = JobSpec::image(Prompt::parse("a fox in the snow").unwrap());
        let quote = jobs.quote(&spec);
        let key = IdempotencyKey::new(Uuid::new_v4().to_string()).unwrap();
        jobs.create(self.user, spec, &quote, key).await.unwrap().id
    }
}

/// One job created through a fast queue on a fresh prefix, with what the tests look at.
struct OneJob {
    /// Kept for its store's temp dir.
    _world: World,
    q: Arc<RedisQueue>,
    jobs: JobService,
    conn: redis::aio::MultiplexedConnection,
    id: JobId,
}

async fn one_job() -> OneJob {
    let url = redis_url();
    let world = world().await;
    let q = world.queue(&url, &prefix(), fast()).await;
    let jobs = world.service(q.clone());
    let conn = raw(&url).await;
    let id = world.create(&jobs).await;
    OneJob {
        _world: world,
        q,
        jobs,
        conn,
        id,
    }
}

impl OneJob {
    /// Claims the job as `w1` and hands it back, as a worker does, to run ten minutes from
    /// now (without saying done); returns when it is to run.
    async fn hand_back(&self) -> Timestamp {
        let l = lease();
        let job = self.q.claim("w1", &l, now()).await.unwrap().unwrap();
        let later = now().plus(Duration::from_secs(600));
        let released = JobEvent::Released { run_after: later };
        self.jobs
            .write(job.id, released, JobGuard::Lease(l.token.clone()))
            .await
            .unwrap();
        later
    }

    /// The job's score in the delayed set (its run_after in ms), if it is there.
    async fn delayed_until(&mut self) -> Option<i64> {
        let key = self.q.delayed_key();
        self.conn.zscore(key, self.id.to_string()).await.unwrap()
    }
}

/// A plain connection for looking at the keys.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pending(conn: &mut redis::aio::MultiplexedConnection, q: &RedisQueue) -> usize {
    let reply: redis::streams::StreamPendingReply =
        conn.xpending(q.stream_key(), q.group()).await.unwrap();
    reply.count()
}

async fn xlen(conn: &mut redis::aio::MultiplexedConnection, q: &RedisQueue) -> usize {
    conn.xlen(q.stream_key()).await.unwrap()
}

/// `job` as a finished one looks: nothing left to do.
fn finished(job: &Job) -> Job {
    let mut j = job.clone();
    j.run_after = None;
    j.lease = None;
    j
}

// ---- queue ----

#[tokio::test]
async fn redis_enqueue_claim_done_leaves_nothing_pending() {
    let mut t = one_job().await;

    assert_eq!(
        xlen(&mut t.conn, &t.q).await,
        1,
        "creating the job added an entry"
    );

    let job = t.q.claim("w1", &lease(), now()).await.unwrap().unwrap();
    assert_eq!(job.id, t.id);
    assert_eq!(
        pending(&mut t.conn, &t.q).await,
        1,
        "the entry is pending until done"
    );
    assert!(t.q.claim("w1", &lease(), now()).await.unwrap().is_none());

    t.q.done(&finished(&job)).await.unwrap();
    assert_eq!(pending(&mut t.conn, &t.q).await, 0);
    assert_eq!(
        xlen(&mut t.conn, &t.q).await,
        0,
        "acknowledged entries are deleted"
    );
    assert_eq!(t.q.depth().await.unwrap(), 1, "depth is the database's");
}

#[tokio::test]
async fn redis_two_consumers_never_get_the_same_job() {
    let url = redis_url();
    let w = world().await;
    let p = prefix();
    // Two processes: two queues on one stream.
    let q1 = w.queue(&url, &p, fast()).await;
    let q2 = w.queue(&url, &p, fast()).await;
    let jobs = w.service(q1.clone());
    let mut ids = HashSet::new();
    for _ in 0..6 {
        let id = w.create(&jobs).await;
        // Duplicate entries (a sweep racing an enqueue) must not matter.
        q2.enqueue(id).await;
        ids.insert(id);
    }

    let got = Arc::new(Mutex::new(Vec::new()));
    // Two workers of one process (one blocks, the other reads without blocking) and a
    // worker of another process.
    let consumers = [(q1.clone(), "a1"), (q1.clone(), "a2"), (q2.clone(), "b")].map(|(q, name)| {
        let got = got.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && got.lock().unwrap().len() < 6 {
                if let Some(job) = q.claim(name, &lease(), now()).await.unwrap() {
                    got.lock().unwrap().push((name, job.id));
                }
            }
        })
    });
    for c in consumers {
        c.await.unwrap();
    }
    // Whatever is left are duplicates: neither consumer gets anything more.
    assert!(q1.claim("a1", &lease(), now()).await.unwrap().is_none());
    assert!(q2.claim("b", &lease(), now()).await.unwrap().is_none());

    let got = got.lock().unwrap().clone();
    let claimed: HashSet<JobId> = got.iter().map(|(_, id)| *id).collect();
    assert_eq!(got.len(), 6, "each job claimed once: {got:?}");
    assert_eq!(claimed, ids);
}

#[tokio::test]
async fn redis_the_entry_of_a_dead_worker_is_taken_over_after_min_idle_and_lease_expiry() {
    let url = redis_url();
    let w = world().await;
    let p = prefix();
    let short = Duration::from_millis(300);
    let config = RedisQueueConfig {
        min_idle: short,
        ..fast()
    };
    let dead = w.queue(&url, &p, config.clone()).await;
    let alive = w.queue(&url, &p, config).await;
    let jobs = w.service(dead.clone());
    let mut conn = raw(&url).await;
    let id = w.create(&jobs).await;

    let started = Instant::now();
    let first = dead
        .claim("dead", &lease_for(short), now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id, first.deliveries), (id, 1));
    // The worker dies: no heartbeat, no done.
    let again = eventually(Duration::from_secs(5), "the take-over", || async {
        let taken = alive.claim("alive", &lease(), now()).await.unwrap();
        assert!(
            taken.is_none() || started.elapsed() >= short,
            "a live lease and a fresh entry are not taken over"
        );
        taken
    })
    .await;
    assert_eq!((again.id, again.deliveries), (id, 2));

    alive.done(&finished(&again)).await.unwrap();
    assert_eq!(pending(&mut conn, &alive).await, 0);
    assert_eq!(xlen(&mut conn, &alive).await, 0);
}

#[tokio::test]
async fn redis_a_handed_back_job_comes_back_at_its_run_after() {
    let mut t = one_job().await;

    let later = t.hand_back().await;
    let handed_back = t.jobs.job(t.id).await.unwrap();
    t.q.done(&handed_back).await.unwrap();

    assert_eq!(pending(&mut t.conn, &t.q).await, 0);
    assert_eq!(xlen(&mut t.conn, &t.q).await, 0);
    let score = t.delayed_until().await;
    assert_eq!(score, Some(later.millis()), "delayed until its run_after");

    assert!(
        t.q.claim("w1", &lease(), now()).await.unwrap().is_none(),
        "not before"
    );
    let at = later.plus(Duration::from_millis(1));
    let back = t.q.claim("w2", &lease(), at).await.unwrap().unwrap();
    assert_eq!((back.id, back.deliveries), (t.id, 2));
    let score = t.delayed_until().await;
    assert_eq!(score, None, "moved back into the stream");
}

#[tokio::test]
async fn redis_an_entry_found_not_ready_waits_in_the_delayed_set() {
    let mut t = one_job().await;
    let later = t.hand_back().await;
    // The worker never said done (it died right after handing back), and something
    // enqueued the job again.
    t.q.enqueue(t.id).await;

    assert!(t.q.claim("w2", &lease(), now()).await.unwrap().is_none());
    let score = t.delayed_until().await;
    assert_eq!(score, Some(later.millis()));
    let back = t.q.claim("w2", &lease(), later).await.unwrap().unwrap();
    assert_eq!(back.id, t.id);
}

#[tokio::test]
async fn redis_the_sweep_adds_the_jobs_the_stream_is_missing() {
    let url = redis_url();
    let w = world().await;
    let q = w.queue(&url, &prefix(), fast()).await;
    // Created by a process that did not tell Redis.
    let jobs = w.service(Arc::new(StoreQueue::new(w.store.clone())));
    let mut conn = raw(&url).await;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        ids.insert(w.create(&jobs).await);
    }
    assert_eq!(xlen(&mut conn, &q).await, 0);

    assert_eq!(q.sweep(100).await.unwrap(), 3);
    assert_eq!(xlen(&mut conn, &q).await, 3);
    assert_eq!(
        q.sweep(100).await.unwrap(),
        0,
        "jobs in the stream are not added twice"
    );

    let mut claimed = HashSet::new();
    while let Some(job) = q.claim("w1", &lease(), now()).await.unwrap() {
        claimed.insert(job.id);
    }
    assert_eq!(claimed, ids);
    assert_eq!(
        q.sweep(100).await.unwrap(),
        0,
        "pending entries count as present"
    );
}

#[tokio::test]
async fn jobs_are_claimed_from_the_database_while_redis_is_unreachable() {
    let (logs, _guard) = Logs::capture();
    let w = world().await;
    let url = format!("redis://:s3cret@127.0.0.1:{}/", dead_port());
    // Every call probes Redis again (and fails again).
    let config = RedisQueueConfig {
        probe_every: Duration::ZERO,
        ..fast()
    };
    let q = w.queue(&url, &prefix(), config).await;
    let jobs = w.service(q.clone());
    let first = w.create(&jobs).await;
    let second = w.create(&jobs).await;

    let job = q.claim("w1", &lease(), now()).await.unwrap().unwrap();
    assert_eq!(job.id, first, "the database hands out the oldest ready job");
    q.done(&finished(&job)).await.unwrap();
    let job = q.claim("w1", &lease(), now()).await.unwrap().unwrap();
    assert_eq!(job.id, second);
    assert!(q.claim("w1", &lease(), now()).await.unwrap().is_none());
    assert_eq!(q.depth().await.unwrap(), 2);
    assert!(q.sweep(10).await.is_err(), "a sweep reports the outage");

    assert_eq!(
        logs.count(OUTAGE),
        1,
        "one warning per outage:\n{}",
        logs.text()
    );
    assert!(logs.text().contains(":***@"), "the URL is shown redacted");
    assert!(!logs.text().contains("s3cret"), "never the password");
}

#[tokio::test]
async fn a_bad_url_is_refused_and_never_shows_the_password() {
    let w = world().await;
    let err = RedisQueue::connect(
        "http://rei:s3cret@127.0.0.1/",
        &prefix(),
        w.store.clone(),
        fast(),
    )
    .await
    .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cret"), "{text}");
}

/// A throwaway `redis-server` that the test can stop and start again on one port.
struct OwnRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        let child = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        let server = Self {
            port,
            child: Some(child),
        };
        let url = server.url();
        eventually(
            Duration::from_secs(10),
            "redis-server to answer",
            || async {
                let client = redis::Client::open(url.as_str()).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            },
        )
        .await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

#[tokio::test]
async fn no_job_is_lost_when_redis_stops_and_starts_again() {
    redis_url();
    let (logs, _guard) = Logs::capture();
    let w = world().await;
    let mut server = OwnRedis::start(dead_port()).await;
    let url = server.url();
    let q = w.queue(&url, &prefix(), fast()).await;
    let jobs = w.service(q.clone());
    let mut claimed = Vec::new();

    let before = w.create(&jobs).await;
    server.stop().await;
    let during = w.create(&jobs).await;
    // Down: the database hands out the jobs, oldest first.
    for expected in [before, during] {
        let job = q.claim("w1", &lease(), now()).await.unwrap().unwrap();
        assert_eq!(job.id, expected);
        claimed.push(job.id);
    }
    let unclaimed = w.create(&jobs).await;

    let server = OwnRedis::start(server.port).await;
    let mut conn = raw(&server.url()).await;
    // Back: the queue finds Redis again (a sweep is what the worker loop runs).
    eventually(
        Duration::from_secs(10),
        "the queue to reach Redis",
        || async { q.sweep(100).await.ok() },
    )
    .await;
    assert!(
        xlen(&mut conn, &q).await >= 1,
        "the sweep refilled the new stream"
    );
    let job = q.claim("w2", &lease(), now()).await.unwrap().unwrap();
    assert_eq!(
        job.id, unclaimed,
        "the job created during the outage is not lost"
    );
    claimed.push(job.id);
    assert_eq!(
        pending(&mut conn, &q).await,
        1,
        "claimed through the stream"
    );

    let after = w.create(&jobs).await;
    let job = q.claim("w2", &lease(), now()).await.unwrap().unwrap();
    assert_eq!(job.id, after);
    claimed.push(job.id);
    assert_eq!(pending(&mut conn, &q).await, 2);

    let distinct: HashSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "{claimed:?}");
    assert!(q.claim("w2", &lease(), now()).await.unwrap().is_none());
    assert_eq!(
        (logs.count(OUTAGE), logs.count(BACK)),
        (1, 1),
        "the outage is logged once, and its end:\n{}",
        logs.text()
    );
    drop(server);
}

// ---- limiter ----

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

fn user(id: i64) -> UserId {
    UserId::new(id).unwrap()
}

#[tokio::test]
async fn the_redis_limiter_allows_n_then_limits_with_a_sane_retry_after() {
    let url = redis_url();
    let l = RedisLimiter::new(&url, &prefix(), n(3)).unwrap();
    for _ in 0..3 {
        assert_eq!(l.check(user(1)).await.unwrap(), RateDecision::Allowed);
    }
    let RateDecision::Limited { retry_after } = l.check(user(1)).await.unwrap() else {
        panic!("the fourth update within a minute is limited");
    };
    assert!(
        retry_after > Duration::from_secs(19) && retry_after <= Duration::from_secs(20),
        "one update comes back every 20 s: {retry_after:?}"
    );
    let ttl: i64 = raw(&url).await.pttl(l.key(user(1))).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "the state expires: {ttl}");
}

#[tokio::test]
async fn two_redis_limiters_share_one_budget() {
    let url = redis_url();
    let p = prefix();
    let a = RedisLimiter::new(&url, &p, n(4)).unwrap();
    let b = RedisLimiter::new(&url, &p, n(4)).unwrap();
    for l in [&a, &b, &a, &b] {
        assert_eq!(l.check(user(1)).await.unwrap(), RateDecision::Allowed);
    }
    for l in [&a, &b] {
        assert!(matches!(
            l.check(user(1)).await.unwrap(),
            RateDecision::Limited { .. }
        ));
    }
}

#[tokio::test]
async fn redis_limiter_users_have_separate_budgets() {
    let url = redis_url();
    let l = RedisLimiter::new(&url, &prefix(), n(1)).unwrap();
    assert_eq!(l.check(user(1)).await.unwrap(), RateDecision::Allowed);
    assert!(matches!(
        l.check(user(1)).await.unwrap(),
        RateDecision::Limited { .. }
    ));
    assert_eq!(l.check(user(2)).await.unwrap(), RateDecision::Allowed);
}

#[tokio::test]
async fn the_redis_budget_refills_with_time() {
    let url = redis_url();
    let period = Duration::from_millis(300);
    let l = RedisLimiter::with_period(&url, &prefix(), n(2), period).unwrap();
    assert_eq!(l.check(user(1)).await.unwrap(), RateDecision::Allowed);
    assert_eq!(l.check(user(1)).await.unwrap(), RateDecision::Allowed);
    let RateDecision::Limited { retry_after } = l.check(user(1)).await.unwrap() else {
        panic!("the budget is spent");
    };
    assert!(retry_after <= period / 2, "{retry_after:?}");
    eventually(Duration::from_secs(5), "the budget to refill", || async {
        (l.check(user(1)).await.unwrap() == RateDecision::Allowed).then_some(())
    })
    .await;
}

/// With Redis unreachable the limiter falls back to its in-process budget (same quota)
/// and answers at once while Redis is known to be down.
#[tokio::test]
async fn an_unreachable_redis_leaves_each_process_its_own_budget() {
    init_tracing();
    let url = format!("redis://127.0.0.1:{}/", dead_port());
    let l = RedisLimiter::new(&url, &prefix(), n(2)).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(l.check(user(1)).await.unwrap(), RateDecision::Allowed);
    }
    assert!(matches!(
        l.check(user(1)).await.unwrap(),
        RateDecision::Limited { .. }
    ));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answers at once while down"
    );
}
