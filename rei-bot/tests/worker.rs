//! The real `rei-bot worker` process against fake Kling and Telegram servers and a real
//! database: SIGKILLed inside every step of a paid video job, then restarted, the job
//! ends delivered and charged once, Kling saw exactly one create, and the ledger
//! verifies. On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use rei_adapters::outbound::sql::{DatabaseTarget, Stores, connect};
use rei_core::job::{Delivery, Job, JobLimits, JobSpec, JobState, Prompt, VideoMode};
use rei_core::prelude::*;
use rei_tests::eventually;
use rei_tests::fakes::kling::{FakeKling, Hang};
use rei_tests::fakes::telegram::FakeTelegram;
use rei_tests::process::{bot_command, listening_addr};
use tokio::process::Child;

const USER: i64 = 4242;

/// Where a worker is killed.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Claimed, telling the user it started (before any provider call).
    AfterClaim,
    /// Kling accepted the task; its id never reached our database.
    AfterProviderAccepted,
    /// The task id is stored; the worker is polling.
    WhilePolling,
    /// The video is ready; the worker is downloading it, before the capture.
    BeforeCapture,
    /// Captured; the worker is sending the video to the user.
    DuringDelivery,
}

const STEPS: [Step; 5] = [
    Step::AfterClaim,
    Step::AfterProviderAccepted,
    Step::WhilePolling,
    Step::BeforeCapture,
    Step::DuringDelivery,
];

struct World {
    target: DatabaseTarget,
    stores: Stores,
    jobs: JobService,
    kling: FakeKling,
    telegram: FakeTelegram,
    assets: tempfile::TempDir,
}

async fn world(target: DatabaseTarget) -> World {
    let stores = connect(&target).await.unwrap();
    let jobs = rei_tests::job_service(&stores, JobLimits::default());
    rei_tests::funded_user(&stores, USER, "500".parse().unwrap())
        .await
        .unwrap();
    World {
        target,
        stores,
        jobs,
        kling: FakeKling::start(2).await.unwrap(),
        telegram: FakeTelegram::start().await.unwrap(),
        assets: tempfile::tempdir().unwrap(),
    }
}

impl World {
    fn worker(&self) -> Child {
        self.worker_in(self.assets.path())
    }

    /// A worker whose `ASSET_DIR` is `assets` (another host's disk).
    fn worker_in(&self, assets: &std::path::Path) -> Child {
        self.process("worker", assets, &[])
    }

    /// `rei-bot <command>` on this world's database and fakes; `extra` variables win.
    fn process(&self, command: &str, assets: &std::path::Path, extra: &[(&str, &str)]) -> Child {
        let stderr = if std::env::var("TEST_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        self.command(command, assets, extra, stderr)
    }

    /// [`Self::process`] with its log written to `log`.
    fn process_logged(
        &self,
        command: &str,
        assets: &std::path::Path,
        extra: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Child {
        let file = std::fs::File::create(log).unwrap();
        self.command(command, assets, extra, Stdio::from(file))
    }

    fn command(
        &self,
        command: &str,
        assets: &std::path::Path,
        extra: &[(&str, &str)],
        stderr: Stdio,
    ) -> Child {
        let mut cmd = bot_command(env!("CARGO_BIN_EXE_rei-bot"), command, stderr);
        cmd.env("KLING_API_KEY", "ak-test:sk-test")
            .env("KLING_API_URL", &self.kling.url)
            .env("TELEGRAM_API_URL", &self.telegram.url)
            .env("ASSET_DIR", assets)
            .env("WORKER_CONCURRENCY", "1")
            .env("WORKER_LEASE_SECS", "2")
            .env("VIDEO_POLL_INTERVAL_MS", "100");
        match &self.target {
            DatabaseTarget::SqlitePath(p) => cmd.env("DATABASE_PATH", p),
            DatabaseTarget::SqliteUrl(u) | DatabaseTarget::Postgres(u) => {
                cmd.env("DATABASE_URL", u)
            }
        };
        for (name, value) in extra {
            cmd.env(name, value);
        }
        cmd.spawn().expect("start rei-bot")
    }

    async fn order_video(&self, key: &str) -> Job {
        let spec = JobSpec::Video {
            mode: VideoMode::TextToVideo,
            model: "kling-v2-6".into(),
            duration: VideoDuration::Five,
            prompt: Prompt::parse("a fox in the snow").unwrap(),
            input: None,
            aspect: None,
        };
        let quote = self.jobs.quote(&spec);
        self.jobs
            .create(
                UserId::new(USER).unwrap(),
                spec,
                &quote,
                IdempotencyKey::new(key).unwrap(),
            )
            .await
            .unwrap()
    }

    async fn job(&self, job: &Job) -> Job {
        self.stores.jobs.job(job.id).await.unwrap().unwrap()
    }

    async fn available(&self) -> i64 {
        self.stores
            .ledger
            .balance(UserId::new(USER).unwrap())
            .await
            .unwrap()
            .available
            .kopecks()
    }
}

/// Arms the fakes so the worker blocks inside `step`.
fn arm(w: &World, step: Step) {
    match step {
        Step::AfterClaim => w.telegram.hang("sendMessage"),
        Step::AfterProviderAccepted => w.kling.hang(Hang::CreateAfterAccept),
        Step::WhilePolling => w.kling.hang(Hang::Status),
        Step::BeforeCapture => w.kling.hang(Hang::Download),
        Step::DuringDelivery => w.telegram.hang("sendVideo"),
    }
}

/// Waits until the worker is inside `step`.
async fn reached(w: &World, step: Step, job: &Job) {
    let external = job.id.to_string();
    let limit = Duration::from_secs(30);
    match step {
        Step::AfterClaim => {
            // The progress notice; the credit notice of the test's funds (sent from the
            // outbox by the same process) is not it.
            eventually("the progress notice", limit, || async {
                w.telegram
                    .calls_to("sendMessage", USER)
                    .iter()
                    .any(|c| !c.text.as_deref().unwrap_or_default().contains("начислил"))
            })
            .await;
            assert_eq!(w.job(job).await.state, JobState::Processing);
            assert!(w.kling.creates().is_empty(), "no provider call yet");
        }
        Step::AfterProviderAccepted => {
            eventually("a create", limit, || async {
                w.kling.creates().contains(&external)
            })
            .await;
        }
        Step::WhilePolling => {
            eventually("a poll", limit, || async { w.kling.polls(&external) > 0 }).await;
            assert!(
                w.job(job).await.provider_task_id.is_some(),
                "the task id is stored before polling"
            );
        }
        Step::BeforeCapture => {
            eventually("a download", limit, || async { w.kling.downloads() > 0 }).await;
            assert_eq!(
                w.job(job).await.state,
                JobState::Processing,
                "not captured yet"
            );
        }
        Step::DuringDelivery => {
            eventually("sendVideo", limit, || async {
                !w.telegram.calls_to("sendVideo", USER).is_empty()
            })
            .await;
            assert_eq!(
                w.job(job).await.state,
                JobState::Completed,
                "captured before delivery"
            );
        }
    }
}

async fn crash_at_every_step(target: impl Fn() -> DatabaseTarget) {
    for step in STEPS {
        let w = world(target()).await;
        let before = w.available().await;
        let job = w.order_video(&format!("crash-{step:?}")).await;
        let price = job.quote.amount.kopecks();
        arm(&w, step);
        let mut first = w.worker();
        reached(&w, step, &job).await;
        first.kill().await.unwrap(); // SIGKILL
        w.kling.hang(Hang::Never);
        w.telegram.release();
        let mut second = w.worker();
        eventually(
            &format!("the job to finish after a kill {step:?}"),
            Duration::from_secs(60),
            || async {
                let j = w.job(&job).await;
                j.state.is_final() && j.delivery != Delivery::Pending
            },
        )
        .await;
        second.kill().await.unwrap();
        let done = w.job(&job).await;
        assert_eq!(
            (done.state, done.delivery),
            (JobState::Completed, Delivery::Delivered),
            "{step:?}: {done:?}"
        );
        assert_eq!(
            w.kling
                .creates()
                .iter()
                .filter(|c| **c == job.id.to_string())
                .count(),
            1,
            "{step:?}: Kling must be paid exactly once"
        );
        assert_eq!(
            w.available().await,
            before - price,
            "{step:?}: charged exactly once"
        );
        assert!(
            !w.telegram.calls_to("sendVideo", USER).is_empty(),
            "{step:?}: the video was sent"
        );
        let report = w.stores.ledger.verify().await.unwrap();
        assert!(report.is_ok(), "{step:?}: {:?}", report.violations);
        assert_eq!(
            w.stores.jobs.queue_depth().await.unwrap(),
            0,
            "{step:?}: nothing left queued"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_every_step_on_sqlite_loses_nothing() {
    crash_at_every_step(|| DatabaseTarget::SqlitePath(rei_tests::sqlite_path().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_every_step_on_postgres_loses_nothing() {
    let mut urls = Vec::new();
    for _ in STEPS {
        urls.push(rei_tests::postgres_url().await.unwrap());
    }
    let urls = std::sync::Mutex::new(urls);
    crash_at_every_step(|| DatabaseTarget::Postgres(urls.lock().unwrap().pop().unwrap())).await;
}

/// Runs one worker until `job` is settled (final and no delivery pending).
async fn run_until_settled(w: &World, job: &Job, limit: Duration) -> Job {
    let mut worker = w.worker();
    eventually("the job to settle", limit, || async {
        let j = w.job(job).await;
        j.state.is_final() && j.delivery != Delivery::Pending
    })
    .await;
    worker.kill().await.unwrap();
    w.job(job).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_refusing_the_delivery_is_retried_and_recorded_once() {
    let w = world(DatabaseTarget::SqlitePath(
        rei_tests::sqlite_path().unwrap(),
    ))
    .await;
    let job = w.order_video("late").await;
    // Progress (2) and status edit go through; then Telegram answers 429 for a while.
    w.telegram.hang("sendVideo");
    let mut worker = w.worker();
    eventually("the first send", Duration::from_secs(30), || async {
        !w.telegram.calls_to("sendVideo", USER).is_empty()
    })
    .await;
    worker.kill().await.unwrap();
    w.telegram.release();
    w.telegram.too_many_requests(3);
    let done = run_until_settled(&w, &job, Duration::from_secs(60)).await;
    assert_eq!(
        (done.state, done.delivery),
        (JobState::Completed, Delivery::Delivered)
    );
    assert!(done.delivery_attempts >= 1, "{done:?}");
    assert!(w.stores.ledger.verify().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_blocked_the_bot_is_recorded_completed_and_charged() {
    let w = world(DatabaseTarget::SqlitePath(
        rei_tests::sqlite_path().unwrap(),
    ))
    .await;
    let before = w.available().await;
    let job = w.order_video("blocked").await;
    w.telegram.block(USER);
    let done = run_until_settled(&w, &job, Duration::from_secs(60)).await;
    assert_eq!(
        (done.state, done.delivery),
        (JobState::Completed, Delivery::Unreachable)
    );
    assert_eq!(
        w.available().await,
        before - job.quote.amount.kopecks(),
        "charged: the video was made"
    );
    assert_eq!(w.kling.creates().len(), 1);
    assert!(w.stores.ledger.verify().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_jobs_and_survive_one_being_killed() {
    let w = world(DatabaseTarget::SqlitePath(
        rei_tests::sqlite_path().unwrap(),
    ))
    .await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(w.order_video(&format!("shared-{i}")).await);
    }
    // The first worker holds a job whose poll never answers; the second works beside it
    // (it cannot take the held job while the first keeps its lease), then the first dies.
    w.kling.hang(Hang::Status);
    let mut a = w.worker();
    eventually(
        "the first worker polling",
        Duration::from_secs(30),
        || async { jobs.iter().any(|j| w.kling.polls(&j.id.to_string()) > 0) },
    )
    .await;
    w.kling.hang(Hang::Never);
    let mut b = w.worker();
    eventually(
        "the second worker finishing the others",
        Duration::from_secs(60),
        || async {
            let mut settled = 0;
            for j in &jobs {
                let j = w.job(j).await;
                settled += usize::from(j.state.is_final() && j.delivery != Delivery::Pending);
            }
            settled == 2
        },
    )
    .await;
    a.kill().await.unwrap();
    eventually("every job to settle", Duration::from_secs(90), || async {
        let mut all = true;
        for j in &jobs {
            let j = w.job(j).await;
            all &= j.state.is_final() && j.delivery != Delivery::Pending;
        }
        all
    })
    .await;
    b.kill().await.unwrap();
    for j in &jobs {
        let done = w.job(j).await;
        assert_eq!(
            (done.state, done.delivery),
            (JobState::Completed, Delivery::Delivered)
        );
        let creates = w
            .kling
            .creates()
            .iter()
            .filter(|c| **c == j.id.to_string())
            .count();
        assert_eq!(creates, 1, "one task per job");
    }
    let price: i64 = jobs.iter().map(|j| j.quote.amount.kopecks()).sum();
    assert_eq!(w.available().await, 50_000 - price);
    assert!(w.stores.ledger.verify().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_running_job_back_at_once() {
    let w = world(DatabaseTarget::SqlitePath(
        rei_tests::sqlite_path().unwrap(),
    ))
    .await;
    w.kling.finish_after(u32::MAX);
    let job = w.order_video("term").await;
    let mut worker = w.worker();
    let external = job.id.to_string();
    eventually("polling", Duration::from_secs(30), || async {
        w.kling.polls(&external) > 2
    })
    .await;
    let pid = worker.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), worker.wait())
        .await
        .expect("the worker stops within seconds")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let handed = w.job(&job).await;
    assert_eq!(handed.state, JobState::Processing);
    assert_eq!(handed.lease, None, "handed back, not left to expire");
    assert!(handed.run_after.is_some() && handed.provider_task_id.is_some());
    w.kling.finish_after(0);
    let done = run_until_settled(&w, &job, Duration::from_secs(30)).await;
    assert_eq!(
        (done.state, done.delivery),
        (JobState::Completed, Delivery::Delivered)
    );
    assert_eq!(
        w.kling.creates().len(),
        1,
        "the next worker polls the same task"
    );
}

/// [money] 8: the worker that downloaded and captured a video dies while sending it; a
/// worker on another host (another `ASSET_DIR`, without the file) fetches the result
/// again from Kling's URL and delivers it — the user is not left charged with nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_stored_on_another_host_is_fetched_again_and_delivered() {
    let w = world(DatabaseTarget::SqlitePath(
        rei_tests::sqlite_path().unwrap(),
    ))
    .await;
    let before = w.available().await;
    let job = w.order_video("two-hosts").await;
    w.telegram.hang("sendVideo");
    let mut first = w.worker();
    reached(&w, Step::DuringDelivery, &job).await;
    first.kill().await.unwrap();
    w.telegram.release();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut second = w.worker_in(elsewhere.path());
    eventually(
        "the delivery from the other host",
        Duration::from_secs(60),
        || async { w.job(&job).await.delivery == Delivery::Delivered },
    )
    .await;
    second.kill().await.unwrap();
    assert_eq!(w.kling.downloads(), 2, "fetched again from Kling's URL");
    assert_eq!(w.kling.creates().len(), 1, "never made again");
    assert!(
        elsewhere
            .path()
            .join(format!("results/{}.mp4", job.id))
            .exists(),
        "stored on the second host"
    );
    let done = w.job(&job).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(
        w.available().await,
        before - done.quote.amount.kopecks(),
        "charged once"
    );
    assert!(w.stores.ledger.verify().await.unwrap().is_ok());
}

/// [money] 19: a Kling callback received by another process (the one with the HTTP
/// server) wakes the worker that owns the task, wherever it runs: it asks Kling at once
/// instead of at its next poll (a minute away here).
async fn a_callback_elsewhere_wakes_the_owner(redis: Option<String>) {
    let w = world(DatabaseTarget::SqlitePath(
        rei_tests::sqlite_path().unwrap(),
    ))
    .await;
    w.kling.finish_after(u32::MAX);
    let job = w.order_video("callback").await;
    // With Redis the wake must come through it: heartbeats are 10 s apart. Without it,
    // the job row carries the wake to the owner's next heartbeat (a second apart).
    let lease = if redis.is_some() { "30" } else { "3" };
    let mut common = vec![
        ("VIDEO_POLL_INTERVAL_MS", "60000"),
        ("WORKER_LEASE_SECS", lease),
    ];
    if let Some(url) = &redis {
        common.push(("REDIS_URL", url.as_str()));
    }
    let mut owner = w.process("worker", w.assets.path(), &common);
    let external = job.id.to_string();
    eventually("the first poll", Duration::from_secs(30), || async {
        w.kling.polls(&external) > 0
    })
    .await;
    let task = w.job(&job).await.provider_task_id.unwrap();
    w.kling.finish_after(0);
    // The receiving process logs where its HTTP server listens (a free port).
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("bot.log");
    let mut front = common.clone();
    front.push(("HTTP_ADDR", "127.0.0.1:0"));
    let mut receiver = w.process_logged("run", w.assets.path(), &front, &log_path);
    let http = listening_addr(&log_path, 0, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = reqwest::Client::new();
    // The URL Kling was given for this job (its token is derived from the Kling key).
    let key = rei_adapters::outbound::kling::KlingCredentials::from_combined(
        &secrecy::SecretString::from("ak-test:sk-test"),
    )
    .unwrap()
    .callback_key();
    let hook = key.url(&format!("http://{http}/webhooks/kling"), job.id);
    let callback = serde_json::json!({
        "task_id": task.as_str(),
        "task_status": "succeed",
        "task_info": {"external_task_id": external},
    });
    let started = Instant::now();
    eventually("the callback taken", Duration::from_secs(30), || async {
        client
            .post(&hook)
            .json(&callback)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    eventually(
        "the video, long before the next poll",
        Duration::from_secs(15),
        || async { w.job(&job).await.delivery == Delivery::Delivered },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    // Callbacks are hints: without this job's token refused before the body is read, an
    // unreadable one refused, one about another job ignored.
    let unsigned = client
        .post(format!("http://{http}/webhooks/kling?job={}&t=00", job.id))
        .json(&callback)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let post = |body: serde_json::Value| {
        let client = client.clone();
        let hook = hook.clone();
        async move {
            client
                .post(&hook)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(serde_json::json!({"nope": 1})).await, 400);
    let stranger = serde_json::json!({"task_id": "task-1", "task_status": "succeed",
        "task_info": {"external_task_id": "0192f0c4-8d4e-7c6b-9a53-6f1e2d3c4b5a"}});
    assert_eq!(post(stranger).await, 200);
    owner.kill().await.unwrap();
    receiver.kill().await.unwrap();
    assert_eq!(w.kling.creates().len(), 1);
    assert!(w.stores.ledger.verify().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kling_callback_received_elsewhere_wakes_the_owner_through_the_database() {
    a_callback_elsewhere_wakes_the_owner(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kling_callback_received_elsewhere_wakes_the_owner_through_redis() {
    a_callback_elsewhere_wakes_the_owner(Some(rei_tests::server_url("REI_TEST_REDIS_URL"))).await;
}
