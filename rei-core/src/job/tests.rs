//! Job state machine, `JobService` and `JobRunner` tests.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::ids::{IdempotencyKey, JobId, ProviderTaskId, ReservationId, UserId};
use crate::ledger::{EntryKind, NewEntry, RefType, ReservationState, Settlement};
use crate::memory::{
    Failure, ManualClock, MemoryAssets, MemoryStore, RecordingNotifier, SequentialIds,
};
use crate::money::Money;
use crate::ports::{
    Assets, Clock, DownloadedAsset, GeneratedImage, JobQueue, JobStore, LedgerStore,
    MockImageGenerator, MockVideoGenerator, Notice, ProviderError, UserStore, VideoTaskStatus,
};
use crate::pricing::{PriceList, Product, Quote};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, Language, UserProfile};

fn m(k: i64) -> Money {
    Money::from_kopecks(k).unwrap()
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn image_spec() -> JobSpec {
    JobSpec::image(Prompt::parse("a fox").unwrap())
}

fn pending_job() -> Job {
    NewJob::new(
        JobId::from_uuid(Uuid::from_u128(1)),
        UserId::new(1).unwrap(),
        image_spec(),
        Quote::new(Product::image_generation(), m(5_000)),
        ReservationId::from_uuid(Uuid::from_u128(2)),
        IdempotencyKey::new("k").unwrap(),
        t(0),
    )
    .pending()
}

fn lease(token: &str, until: i64) -> JobLease {
    JobLease::new(LeaseToken::new(token), t(until))
}

fn mine() -> JobGuard {
    JobGuard::Lease(LeaseToken::new("w1"))
}

fn failed_reason() -> FailureReason {
    FailureReason::ProviderFailed {
        detail: "boom".into(),
    }
}

/// The provider's result `result`, charged `cost` kopecks.
fn succeeded(result: &str, cost: i64) -> JobEvent {
    JobEvent::Succeeded {
        result: AssetRef::new(result),
        actual_cost: m(cost),
        result_url: None,
    }
}

fn failed() -> JobEvent {
    JobEvent::Failed {
        reason: failed_reason(),
    }
}

/// Applies an event at 100 ms; panics when refused.
fn step(job: &Job, ev: JobEvent, guard: &JobGuard) -> JobTransition {
    job.apply(&ev, guard, t(100)).unwrap()
}

fn claimed() -> Job {
    step(
        &pending_job(),
        JobEvent::Claimed {
            lease: lease("w1", 10_000),
        },
        &JobGuard::Unleased,
    )
    .after
}

fn done(job: &Job) -> Job {
    step(job, succeeded("results/1.png", 5_000), &mine()).after
}

/// A claimed job whose provider failed.
fn failed_job() -> Job {
    step(&claimed(), failed(), &mine()).after
}

// ---- state machine ----

#[test]
fn a_claim_moves_pending_to_processing_at_ten_percent_under_a_lease() {
    let job = claimed();
    assert_eq!(
        (job.state, job.progress, job.deliveries, job.attempts),
        (JobState::Processing, Progress::Started, 1, 0)
    );
    assert_eq!(job.lease, Some(lease("w1", 10_000)));
    assert_eq!((job.started_at, job.version), (Some(t(100)), 1));
    assert!(!job.is_claimable(t(9_999)));
    assert!(job.is_claimable(t(10_000)), "an expired lease frees it");
}

#[test]
fn a_live_lease_refuses_other_claims_and_an_expired_one_passes_on() {
    let job = claimed();
    let other = JobEvent::Claimed {
        lease: lease("w2", 20_000),
    };
    assert_eq!(
        job.apply(&other, &JobGuard::Unleased, t(9_999)),
        Err(ApplyError::NotClaimable { job_id: job.id })
    );
    let taken = job
        .apply(&other, &JobGuard::Unleased, t(10_000))
        .unwrap()
        .after;
    assert_eq!(
        (taken.deliveries, taken.attempts),
        (2, 0),
        "a restart is not an attempt"
    );
    assert_eq!(
        taken.apply(&JobEvent::Generating, &mine(), t(10_001)),
        Err(ApplyError::LeaseLost { job_id: job.id }),
        "the first worker's lease is gone"
    );
}

#[test]
fn worker_events_need_the_live_lease() {
    let job = claimed();
    for guard in [JobGuard::Unleased, JobGuard::Lease(LeaseToken::new("w2"))] {
        assert_eq!(
            job.apply(&JobEvent::CallStarted, &guard, t(100)),
            Err(ApplyError::LeaseLost { job_id: job.id })
        );
    }
    assert_eq!(
        job.apply(&JobEvent::CallStarted, &mine(), t(10_000)),
        Err(ApplyError::LeaseLost { job_id: job.id }),
        "expired"
    );
    let extended = step(&job, JobEvent::LeaseExtended { until: t(30_000) }, &mine()).after;
    assert!(
        extended
            .apply(&JobEvent::CallStarted, &mine(), t(20_000))
            .is_ok()
    );
}

#[test]
fn success_captures_the_actual_cost_and_waits_for_delivery() {
    let tr = step(&claimed(), succeeded("results/1.png", 4_000), &mine());
    assert_eq!(
        tr.settlement(),
        Some(Settlement::Capture { actual: m(4_000) })
    );
    let job = tr.after();
    assert_eq!(
        (job.state, job.progress, job.cost_actual),
        (JobState::Completed, Progress::Done, Some(m(4_000)))
    );
    assert_eq!(
        (job.delivery, job.run_after),
        (Delivery::Pending, Some(t(100)))
    );
    assert!(job.lease.is_some(), "the same worker delivers");
}

#[test]
fn success_above_the_quote_is_illegal() {
    let r = claimed().apply(&succeeded("r", 5_001), &mine(), t(100));
    assert!(matches!(r, Err(ApplyError::Transition(_))));
}

#[test]
fn failure_releases_and_a_user_cancel_of_a_pending_job_needs_no_notice() {
    let tr = step(&claimed(), failed(), &mine());
    assert_eq!(tr.settlement(), Some(Settlement::Release));
    assert_eq!(tr.after().delivery, Delivery::Pending);
    let by_user = step(
        &pending_job(),
        JobEvent::Cancelled {
            by: CancelledBy::User,
        },
        &JobGuard::Unleased,
    );
    assert_eq!(by_user.settlement, Some(Settlement::Release));
    assert_eq!(
        (by_user.after.delivery, by_user.after.run_after),
        (Delivery::Skipped, None)
    );
    let by_admin = step(
        &pending_job(),
        JobEvent::Cancelled {
            by: CancelledBy::Admin("cli:root".into()),
        },
        &JobGuard::Unleased,
    );
    assert_eq!(
        by_admin.after.delivery,
        Delivery::Pending,
        "the worker tells the user"
    );
}

#[test]
fn a_users_cancel_stops_a_job_only_before_its_call_went_out() {
    let cancel = JobEvent::Cancelled {
        by: CancelledBy::User,
    };
    // Claimed, no call yet: released at once, whoever holds the lease.
    let before = step(&claimed(), cancel.clone(), &JobGuard::Unleased);
    assert_eq!(before.settlement(), Some(Settlement::Release));
    assert_eq!(
        (before.after().state, before.after().delivery),
        (JobState::Cancelled, Delivery::Skipped)
    );
    // The worker's call then never goes out: its record of the call is refused.
    assert!(
        before
            .after()
            .apply(&JobEvent::CallStarted, &mine(), t(1))
            .is_err()
    );
    // After the call went out: it is already being made.
    let calling = step(&claimed(), JobEvent::CallStarted, &mine()).into_after();
    assert!(matches!(
        calling.apply(&cancel, &JobGuard::Unleased, t(1)),
        Err(ApplyError::AlreadyBeingMade { .. })
    ));
    let done = step(&calling, succeeded("r", 5_000), &mine());
    assert_eq!(
        (done.after().state, done.settlement()),
        (
            JobState::Completed,
            Some(Settlement::Capture { actual: m(5_000) })
        ),
        "delivered and charged as usual"
    );
}

#[test]
fn an_admins_cancel_releases_at_once_and_a_late_result_is_delivered_free() {
    let cancel = JobEvent::Cancelled {
        by: CancelledBy::Admin("cli:root".into()),
    };
    // No call out: released, nothing to watch.
    let idle = step(&claimed(), cancel.clone(), &JobGuard::Unleased);
    assert_eq!(idle.settlement(), Some(Settlement::Release));
    assert_eq!(idle.after().watch_until, None);
    // The call is out: released at once all the same, and its result watched for.
    let calling = step(&claimed(), JobEvent::CallStarted, &mine()).into_after();
    let cancelled = step(&calling, cancel, &JobGuard::Unleased);
    assert_eq!(cancelled.settlement(), Some(Settlement::Release));
    let cancelled = cancelled.into_after();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.watch_until, Some(t(100).plus(LATE_WATCH)));
    assert!(
        cancelled.lease.is_some(),
        "the worker that made the call keeps it"
    );
    // The worker's result comes: kept, delivered free, no money moves.
    let late = step(&cancelled, succeeded("r", 5_000), &mine());
    assert_eq!(late.settlement(), None);
    let late = late.into_after();
    assert_eq!(
        (
            late.state,
            late.result.clone(),
            late.cost_actual,
            late.delivery,
            late.watch_until
        ),
        (
            JobState::Cancelled,
            Some(AssetRef::new("r")),
            None,
            Delivery::Pending,
            None
        )
    );
    let delivered = step(&late, JobEvent::Delivered, &mine()).into_after();
    assert_eq!(delivered.run_after, None, "nothing left to do");
}

#[test]
fn a_failed_attempt_counts_and_hands_the_job_back() {
    let job = step(
        &claimed(),
        JobEvent::AttemptFailed { retry_at: t(5_000) },
        &mine(),
    )
    .after;
    assert_eq!(
        (job.attempts, &job.lease, job.run_after),
        (1, &None, Some(t(5_000)))
    );
    assert!(!job.is_claimable(t(4_999)));
    assert!(job.is_claimable(t(5_000)));
}

#[test]
fn delivery_is_recorded_once_and_ends_the_queue_entry() {
    let job = done(&claimed());
    let retry = step(&job, JobEvent::DeliveryFailed { retry_at: t(900) }, &mine()).after;
    assert_eq!((retry.delivery_attempts, &retry.lease), (1, &None));
    let again = retry
        .apply(
            &JobEvent::Claimed {
                lease: lease("w1", 20_000),
            },
            &JobGuard::Unleased,
            t(900),
        )
        .unwrap();
    assert_eq!(
        again.after().state,
        JobState::Completed,
        "claiming a finished job keeps it"
    );
    let delivered = step(again.after(), JobEvent::Delivered, &mine()).after;
    assert_eq!(
        (
            delivered.delivery,
            delivered.delivered_at,
            delivered.run_after,
            &delivered.lease
        ),
        (Delivery::Delivered, Some(t(100)), None, &None)
    );
    assert!(!delivered.is_claimable(t(1_000_000)));
    let blocked = step(&job, JobEvent::Undeliverable, &mine()).after;
    assert_eq!(
        (blocked.delivery, blocked.state),
        (Delivery::Unreachable, JobState::Completed)
    );
}

/// [growth] "Send again": only a delivered, completed result goes out once more (and is
/// claimable for it); one being sent, a failed job, or a job still running is left as
/// it is. No money moves.
#[test]
fn send_again_queues_a_delivered_result_once_more_and_nothing_else() {
    let job = done(&claimed());
    let delivered = step(&job, JobEvent::Delivered, &mine()).after;
    let again = step(&delivered, JobEvent::SendAgain, &JobGuard::Unleased);
    assert!(again.settlement.is_none(), "no money moves");
    let again = again.after;
    assert_eq!(
        (
            again.state,
            again.delivery,
            again.redelivery,
            again.delivery_attempts
        ),
        (JobState::Completed, Delivery::Pending, true, 0)
    );
    assert!(again.is_claimable(t(100)));
    assert_eq!(again.cost_actual, delivered.cost_actual);
    // A second press while it is on its way changes nothing.
    assert_eq!(
        step(&again, JobEvent::SendAgain, &JobGuard::Unleased).after,
        again
    );
    // Delivered again: the note is for that delivery only.
    let resent = step(
        &step(
            &again,
            JobEvent::Claimed {
                lease: lease("w1", 20_000),
            },
            &JobGuard::Unleased,
        )
        .after,
        JobEvent::Delivered,
        &mine(),
    )
    .after;
    assert_eq!(
        (resent.delivery, resent.redelivery),
        (Delivery::Delivered, false)
    );
    for unchanged in [job.clone(), failed_job(), claimed(), pending_job()] {
        assert_eq!(
            step(&unchanged, JobEvent::SendAgain, &JobGuard::Unleased).after,
            unchanged,
            "{unchanged:?}"
        );
    }
}

#[test]
fn repeated_final_events_change_nothing() {
    let job = done(&claimed());
    let again = step(&job, succeeded("results/1.png", 5_000), &mine());
    assert!(!again.changed());
    assert_eq!(again.settlement(), None);
    assert!(!step(&failed_job(), failed(), &mine()).changed());
}

#[test]
fn provider_task_id_is_set_once() {
    let a = ProviderTaskId::new("a").unwrap();
    let job = step(
        &claimed(),
        JobEvent::ProviderTaskCreated { task_id: a.clone() },
        &mine(),
    )
    .after;
    assert_eq!(job.progress, Progress::Generating);
    assert!(!step(&job, JobEvent::ProviderTaskCreated { task_id: a }, &mine()).changed());
    let b = ProviderTaskId::new("b").unwrap();
    assert!(matches!(
        job.apply(
            &JobEvent::ProviderTaskCreated { task_id: b },
            &mine(),
            t(100)
        ),
        Err(ApplyError::Transition(_))
    ));
}

#[test]
fn illegal_moves_are_rejected_with_their_names() {
    let completed = done(&claimed());
    let check = |job: &Job, ev: JobEvent| {
        let name = ev.name();
        match job.apply(&ev, &mine(), t(100)) {
            Err(ApplyError::Transition(e)) => {
                assert_eq!((e.from, e.event), (job.state, name));
            }
            other => panic!("{name} on {}: {other:?}", job.state),
        }
    };
    check(&completed, failed());
    check(&completed, JobEvent::Generating);
    check(&completed, JobEvent::CallStarted);
    check(
        &completed,
        JobEvent::Cancelled {
            by: CancelledBy::User,
        },
    );
    check(&failed_job(), succeeded("r", 1));
    check(&claimed(), JobEvent::Delivered);
    check(&claimed(), JobEvent::Undeliverable);
}

#[test]
fn states_progress_delivery_and_specs_have_stable_codes() {
    for s in JobState::ALL {
        assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
    }
    for d in [
        Delivery::NotYet,
        Delivery::Pending,
        Delivery::Delivered,
        Delivery::Unreachable,
        Delivery::Skipped,
    ] {
        assert_eq!(d.as_str().parse::<Delivery>(), Ok(d));
    }
    assert_eq!(serde_json::to_string(&Progress::Generating).unwrap(), "50");
    assert!(serde_json::from_str::<Progress>("42").is_err());
    let spec = JobSpec::Video {
        mode: VideoMode::ImageToVideo,
        model: "kling-v2-6".into(),
        duration: crate::pricing::VideoDuration::Ten,
        prompt: Prompt::parse("go").unwrap(),
        input: Some(AssetRef::new("inputs/1.jpg")),
        aspect: None,
    };
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<JobSpec>(&json).unwrap(), spec);
    assert_eq!(spec.kind(), JobKind::VideoGeneration);
}

#[test]
fn prompts_are_bounded() {
    assert_eq!(Prompt::parse("   "), Err(PromptError::Empty));
    assert!(Prompt::parse(&"я".repeat(2500)).is_ok());
    assert_eq!(
        Prompt::parse(&"я".repeat(2501)),
        Err(PromptError::TooLong {
            len: 2501,
            max: 2500
        })
    );
    assert_eq!(Prompt::parse("  hi ").unwrap().as_str(), "hi");
}

// ---- service and runner over memory adapters ----

struct World {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    notifier: Arc<RecordingNotifier>,
    assets: Arc<MemoryAssets>,
    jobs: Arc<JobService>,
    user: UserId,
}

const LIMITS: JobLimits = JobLimits {
    max_active_per_user: 2,
    max_attempts: 3,
    max_deliveries: 10,
};

async fn world(balance: i64) -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(t(1_000)));
    let user = UserId::new(42).unwrap();
    let profile = UserProfile {
        id: user,
        username: None,
        first_name: None,
        language: Language::Ru,
    };
    store.register(profile, t(0)).await.unwrap();
    let ports = JobPorts {
        users: store.clone(),
        jobs: store.clone(),
        queue: Arc::new(StoreQueue::new(store.clone())),
        clock: clock.clone(),
        ids: Arc::new(SequentialIds::default()),
    };
    let jobs = Arc::new(JobService::new(ports, PriceList::seed_defaults(), LIMITS));
    let w = World {
        store,
        clock,
        notifier: Arc::new(RecordingNotifier::default()),
        assets: Arc::new(MemoryAssets::with_public_urls()),
        jobs,
        user,
    };
    if balance > 0 {
        w.post(EntryKind::Credit, balance, "seed", t(0)).await;
    }
    w
}

impl World {
    fn runner(&self, images: MockImageGenerator, videos: MockVideoGenerator) -> JobRunner {
        JobRunner::new(
            RunnerPorts {
                jobs: self.jobs.clone(),
                images: Some(Arc::new(images)),
                videos: Some(Arc::new(videos)),
                assets: self.assets.clone(),
                notifier: self.notifier.clone(),
                clock: self.clock.clone(),
            },
            RunnerConfig::default(),
        )
    }

    /// A runner whose image generator is called `times` times and answers `answer`
    /// each time; no video is expected.
    fn image_runner(
        &self,
        times: usize,
        answer: Result<GeneratedImage, ProviderError>,
    ) -> JobRunner {
        let mut images = MockImageGenerator::new();
        images
            .expect_generate()
            .times(times)
            .returning(move |_| answer.clone());
        self.runner(images, MockVideoGenerator::new())
    }

    /// A runner over the given Kling; no image is expected.
    fn video_runner(&self, videos: MockVideoGenerator) -> JobRunner {
        self.runner(MockImageGenerator::new(), videos)
    }

    async fn claim(&self) -> Option<Job> {
        self.jobs.claim("w", Duration::from_secs(60)).await.unwrap()
    }

    /// Claims the next job and runs it until the worker lets go.
    async fn run_next(&self, runner: &JobRunner) -> StepOutcome {
        run(runner, self.claim().await.unwrap()).await
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Posts an admin entry to the user's balance; `k` is its key and description.
    async fn post(&self, kind: EntryKind, kopecks: i64, k: &str, at: Timestamp) {
        let entry = NewEntry {
            user_id: self.user,
            kind,
            amount: m(kopecks),
            ref_type: RefType::Admin,
            ref_id: "test".into(),
            description: k.into(),
            idempotency_key: key(k),
            created_at: at,
        };
        self.store.post(entry, None).await.unwrap();
    }

    async fn available(&self) -> i64 {
        self.store
            .balance(self.user)
            .await
            .unwrap()
            .available
            .kopecks()
    }

    async fn reservation_state(&self, job: &Job) -> ReservationState {
        self.store
            .reservation(job.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .state
    }

    async fn stored(&self, job: &Job) -> Job {
        self.store.job(job.id).await.unwrap().unwrap()
    }

    /// Every notice sent so far, without its addressee.
    fn notices(&self) -> Vec<Notice> {
        self.notifier
            .notices()
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }

    /// How many results were delivered so far.
    fn deliveries(&self) -> usize {
        self.notices()
            .iter()
            .filter(|n| matches!(n, Notice::JobCompleted { .. }))
            .count()
    }

    /// Stores what the (mocked) download of `job`'s video writes, and expects that
    /// download once.
    async fn expect_video_download(&self, videos: &mut MockVideoGenerator, job: &Job) {
        self.assets
            .write(&format!("results/{}.mp4", job.id), b"video")
            .await
            .unwrap();
        let job_id = job.id;
        videos.expect_download().times(1).returning(move |_, _| {
            Ok(DownloadedAsset {
                asset: AssetRef::new(format!("results/{job_id}.mp4")),
                bytes: 10,
            })
        });
    }
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

async fn confirm_spec(w: &World, spec: JobSpec, k: &str) -> Result<Job, JobError> {
    let quote = w.jobs.quote(&spec);
    w.jobs.create(w.user, spec, &quote, key(k)).await
}

async fn confirm(w: &World, k: &str) -> Result<Job, JobError> {
    confirm_spec(w, image_spec(), k).await
}

fn edit_spec(image: &str) -> JobSpec {
    JobSpec::ImageEdit {
        prompt: Prompt::parse("brighter").unwrap(),
        image: AssetRef::new(image),
        look: crate::job::ImageLook::default(),
    }
}

fn video_spec(mode: VideoMode, input: Option<&str>) -> JobSpec {
    JobSpec::Video {
        mode,
        model: "kling-v2-6".into(),
        duration: crate::pricing::VideoDuration::Five,
        prompt: Prompt::parse("a cat").unwrap(),
        input: input.map(AssetRef::new),
        aspect: None,
    }
}

fn task_1() -> ProviderTaskId {
    ProviderTaskId::new("task-1").unwrap()
}

/// A Kling that accepts one task (`task-1`).
fn kling_accepting() -> MockVideoGenerator {
    let mut videos = MockVideoGenerator::new();
    videos.expect_submit().times(1).returning(|_| Ok(task_1()));
    videos
}

/// A Kling that accepts one task (`task-1`) and reports it running `polls` times.
fn kling_running(polls: usize) -> MockVideoGenerator {
    let mut videos = kling_accepting();
    videos
        .expect_status()
        .times(polls)
        .returning(|_, _| Ok(VideoTaskStatus::Processing));
    videos
}

/// What Kling says of a finished 5 s video.
fn kling_done() -> VideoTaskStatus {
    VideoTaskStatus::Succeeded {
        url: "https://cdn.test/v.mp4".into(),
        duration_ms: Some(5_000),
    }
}

async fn order_video(w: &World) -> Job {
    confirm_spec(w, video_spec(VideoMode::TextToVideo, None), "v1")
        .await
        .unwrap()
}

/// A worker claims the job, records a billed call, and dies before the answer; its
/// lease then runs out.
async fn die_mid_call(w: &World, job: &Job) {
    let dead = w.claim().await.unwrap();
    let token = dead.lease.clone().unwrap().token;
    w.jobs
        .write(job.id, JobEvent::CallStarted, JobGuard::Lease(token))
        .await
        .unwrap();
    w.advance(61);
}

fn png() -> GeneratedImage {
    GeneratedImage {
        bytes: vec![0x89, b'P', b'N', b'G', 1, 2, 3],
        mime_type: "image/png".into(),
        caption: None,
    }
}

/// Gemini's refusal of the content.
fn unsafe_content() -> Result<GeneratedImage, ProviderError> {
    Err(ProviderError::Refused {
        reason: "unsafe".into(),
    })
}

/// The status message the (recording) notifier started for `job`.
fn status_of(job: &Job) -> crate::ports::MessageRef {
    crate::ports::MessageRef::new(format!("status-{}", job.id))
}

/// Runs steps until the worker lets go of the job; returns the last outcome.
async fn run(runner: &JobRunner, mut job: Job) -> StepOutcome {
    for _ in 0..20 {
        let out = runner.step(job).await.unwrap();
        match out.next {
            Next::Continue => job = out.job,
            Next::Wait(_) | Next::Released | Next::Finished => return out,
        }
    }
    panic!("the runner never let go of the job");
}

/// A job whose image came and was captured, but whose progress notice and first
/// delivery failed: the result is still to be delivered.
async fn captured_undelivered(w: &World, runner: &JobRunner, job: &Job) {
    w.notifier
        .fail_next([Failure::Unavailable, Failure::Unavailable]);
    w.run_next(runner).await;
    assert_eq!(w.stored(job).await.delivery, Delivery::Pending);
}

#[tokio::test]
async fn confirming_reserves_the_price_and_queues_the_job_in_one_write() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    assert_eq!((job.state, job.quote.amount), (JobState::Pending, m(5_000)));
    assert_eq!(job.run_after, Some(t(1_000)));
    assert_eq!(w.available().await, 5_000);
    assert_eq!(w.jobs.queue_depth().await.unwrap(), 1);
    let again = confirm(&w, "c1").await.unwrap();
    assert_eq!(again, job, "a second confirm is the same job");
    assert_eq!(w.available().await, 5_000);
    let claimed = w.claim().await.unwrap();
    assert_eq!((claimed.id, claimed.state), (job.id, JobState::Processing));
}

#[tokio::test]
async fn the_price_charged_is_the_price_list_not_the_callers() {
    // Gap 5: `create` used to charge whatever quote the caller passed.
    let w = world(10_000).await;
    let spec = image_spec();
    let forged = Quote::new(Product::image_generation(), m(1));
    let r = w
        .jobs
        .create(w.user, spec.clone(), &forged, key("c1"))
        .await;
    let Err(JobError::PriceChanged { current }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(current, w.jobs.quote(&spec));
    assert_eq!(w.available().await, 10_000, "nothing reserved");
    let other_product = Quote::new(Product::image_edit(), m(3_000));
    assert!(matches!(
        w.jobs.create(w.user, spec, &other_product, key("c2")).await,
        Err(JobError::PriceChanged { .. })
    ));
    assert!(w.store.jobs(JobFilter::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_price_change_between_draft_and_confirm_asks_again() {
    let w = world(100_000).await;
    let spec = image_spec();
    let shown = w.jobs.quote(&spec);
    w.jobs
        .set_prices(PriceList::new(m(7_000), m(3_000), m(10_000), 2).unwrap());
    let r = w.jobs.create(w.user, spec.clone(), &shown, key("c1")).await;
    assert!(matches!(r, Err(JobError::PriceChanged { current }) if current.amount == m(7_000)));
    let job = w
        .jobs
        .create(w.user, spec, &w.jobs.quote(&image_spec()), key("c1"))
        .await
        .unwrap();
    assert_eq!(job.quote.amount, m(7_000));
}

/// A draft quoted before a live price change is made at its price; a quote no list
/// in force since its time asked is refused, and so is one for another product.
#[tokio::test]
async fn a_quote_made_before_a_price_change_is_honoured() {
    let w = world(100_000).await;
    let spec = image_spec();
    let quoted_at = w.clock.now();
    let shown = w.jobs.quote(&spec);
    w.clock.advance(Duration::from_secs(5));
    assert!(
        w.jobs
            .set_prices(PriceList::new(m(7_000), m(3_000), m(10_000), 2).unwrap())
    );
    w.clock.advance(Duration::from_secs(5));
    let forged = Quote::new(Product::image_generation(), m(1));
    let r = w
        .jobs
        .create_quoted(w.user, spec.clone(), &forged, Some(quoted_at), key("c0"))
        .await;
    assert!(matches!(r, Err(JobError::PriceChanged { .. })), "{r:?}");
    let other = Quote::new(Product::image_edit(), m(3_000));
    let r = w
        .jobs
        .create_quoted(w.user, spec.clone(), &other, Some(quoted_at), key("c0"))
        .await;
    assert!(matches!(r, Err(JobError::PriceChanged { .. })), "{r:?}");
    // Quoted after the change: the old price is no longer honoured.
    let late = w.clock.now();
    let r = w
        .jobs
        .create_quoted(w.user, spec.clone(), &shown, Some(late), key("c0"))
        .await;
    assert!(matches!(r, Err(JobError::PriceChanged { .. })), "{r:?}");
    let job = w
        .jobs
        .create_quoted(w.user, spec, &shown, Some(quoted_at), key("c1"))
        .await
        .unwrap();
    assert_eq!(job.quote.amount, m(5_000));
    assert_eq!(w.available().await, 95_000);
}

#[tokio::test]
async fn refusals_at_creation_hold_nothing() {
    let w = world(4_999).await;
    assert!(matches!(
        confirm(&w, "c1").await,
        Err(JobError::InsufficientFunds { needed, .. }) if needed == m(5_000)
    ));
    let w = world(100_000).await;
    confirm(&w, "a").await.unwrap();
    confirm(&w, "b").await.unwrap();
    assert!(matches!(
        confirm(&w, "c").await,
        Err(JobError::TooManyActiveJobs { limit: 2 })
    ));
    assert!(matches!(
        w.jobs
            .create(
                w.user,
                image_spec(),
                &w.jobs.quote(&image_spec()),
                IdempotencyKey::derived("job", &1, "x")
            )
            .await,
        Err(JobError::DuplicateKey)
    ));
    let stranger = UserId::new(7).unwrap();
    assert!(matches!(
        w.jobs.create(stranger, image_spec(), &w.jobs.quote(&image_spec()), key("z")).await,
        Err(JobError::UnknownUser(u)) if u == stranger
    ));
    assert_eq!(w.available().await, 90_000);
}

#[tokio::test]
async fn an_image_job_runs_captures_and_is_delivered_once() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let out = w.run_next(&w.image_runner(1, Ok(png()))).await;
    assert_eq!(out.next, Next::Finished);
    let stored = w.stored(&job).await;
    assert_eq!(
        (stored.state, stored.delivery),
        (JobState::Completed, Delivery::Delivered)
    );
    assert_eq!(stored.delivered_at, Some(t(1_000)));
    assert_eq!(w.reservation_state(&job).await, ReservationState::Captured);
    assert_eq!(w.available().await, 5_000);
    let result = stored.result.clone().unwrap();
    assert_eq!(w.assets.read(&result).await.unwrap(), png().bytes);
    let link = format!("https://assets.test/{result}?exp=604801");
    assert_eq!(
        w.notices(),
        vec![
            Notice::JobProgress {
                job_id: job.id,
                progress: Progress::Started,
                status_message: None,
            },
            Notice::JobCompleted {
                job_id: job.id,
                kind: JobKind::ImageGeneration,
                result,
                charged: m(5_000),
                // Memory assets are public: every result also has its link.
                download_link: Some(link),
                resent: false,
                status_message: Some(status_of(&job)),
            },
        ]
    );
    assert_eq!(
        stored.status_message,
        Some(status_of(&job)),
        "the status message is kept"
    );
    assert_eq!(w.claim().await, None, "nothing left in the queue");
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_failed_delivery_is_retried_later_and_recorded_once() {
    // Gap 1: a notifier error after the capture used to lose the delivery.
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let runner = w.image_runner(1, Ok(png()));
    let first = runner.step(w.claim().await.unwrap()).await.unwrap();
    assert_eq!(first.job.state, JobState::Completed);
    w.notifier
        .fail_next([Failure::Unavailable, Failure::Unavailable]);
    let out = runner.step(first.job).await.unwrap();
    assert_eq!(out.next, Next::Released);
    assert_eq!(out.job.delivery_attempts, 1);
    assert!(matches!(
        out.notes.as_slice(),
        [StepNote::DeliveryFailed { .. }]
    ));
    assert_eq!(w.claim().await, None, "not before the backoff");
    w.advance(5);
    let out = w.run_next(&runner).await;
    assert_eq!((out.next, out.job.delivery_attempts), (Next::Released, 2));
    w.advance(10);
    let out = w.run_next(&runner).await;
    assert_eq!(out.next, Next::Finished);
    assert_eq!(w.stored(&job).await.delivery, Delivery::Delivered);
    assert_eq!(w.deliveries(), 1, "delivered exactly once");
    assert_eq!(w.available().await, 5_000, "charged once");
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_recorded_and_still_charged() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let runner = w.image_runner(1, Ok(png()));
    // The progress notice and then the result both meet the block.
    w.notifier
        .fail_next([Failure::Unreachable, Failure::Unreachable]);
    let out = w.run_next(&runner).await;
    assert_eq!(out.next, Next::Finished);
    let stored = w.stored(&job).await;
    assert_eq!(
        (stored.state, stored.delivery),
        (JobState::Completed, Delivery::Unreachable)
    );
    let user = UserStore::user(&*w.store, w.user).await.unwrap().unwrap();
    assert!(
        user.unreachable_since.is_some(),
        "core records the block (the notifier does not)"
    );
    assert_eq!(w.reservation_state(&job).await, ReservationState::Captured);
    assert_eq!(w.claim().await, None);
}

#[tokio::test]
async fn a_content_refusal_refunds_and_tells_the_reason() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let out = w.run_next(&w.image_runner(1, unsafe_content())).await;
    assert_eq!(out.next, Next::Finished);
    assert_eq!(w.available().await, 10_000);
    let reason = FailureReason::ContentRefused {
        detail: "unsafe".into(),
    };
    assert!(w.notifier.notices().contains(&(
        w.user,
        Notice::JobFailed {
            job_id: job.id,
            reason,
            refunded: m(5_000),
            status_message: Some(status_of(&job)),
        }
    )));
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_then_refunded() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let transient = Err(ProviderError::Transient {
        message: "503".into(),
    });
    let runner = w.image_runner(3, transient);
    let out = w.run_next(&runner).await;
    assert_eq!((out.next, out.job.attempts), (Next::Released, 1));
    w.advance(5);
    let out = w.run_next(&runner).await;
    assert_eq!((out.next, out.job.attempts), (Next::Released, 2));
    assert_eq!(w.claim().await, None, "the second wait is longer");
    w.advance(10);
    let out = w.run_next(&runner).await;
    assert_eq!(out.next, Next::Finished);
    assert_eq!(w.stored(&job).await.state, JobState::Failed);
    assert_eq!(w.available().await, 10_000);
}

/// [money] 5 / 12: a Gemini call whose worker died before the answer may have been
/// billed: it is never sent again; the job ends refunded, the loss is noted (counted on
/// a metric by the worker) and the admins are told.
#[tokio::test]
async fn a_gemini_call_cut_off_by_a_crash_is_never_sent_again_and_refunded() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    // A worker claims, records the call, and dies before the answer.
    die_mid_call(&w, &job).await;
    let runner = w.image_runner(0, Ok(png()));
    let out = runner.step(w.claim().await.unwrap()).await.unwrap();
    assert_eq!(out.notes, vec![StepNote::CallLost { provider: "gemini" }]);
    assert_eq!(out.job.state, JobState::Failed);
    assert_eq!(w.available().await, 10_000, "refunded");
    let alerts = w.notifier.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].message.contains("not sent again"), "{alerts:?}");
    run(&runner, out.job).await;
    let stored = w.stored(&job).await;
    assert_eq!(
        (stored.provider_calls, stored.delivery),
        (1, Delivery::Delivered)
    );
    assert!(w.store.verify().await.unwrap().is_ok());
}

/// [prove]: the render was stored but recording it failed (the database went away
/// under the worker): the next step finds the stored render and delivers it, charged
/// once, instead of refunding a result that exists. Gemini is not called again.
#[tokio::test]
async fn a_stored_render_whose_record_was_lost_is_delivered_not_refunded() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    die_mid_call(&w, &job).await;
    // The dead worker had stored the render before it could record it.
    w.assets
        .write(&format!("results/{}.png", job.id), &png().bytes)
        .await
        .unwrap();
    let runner = w.image_runner(0, Ok(png()));
    let out = runner.step(w.claim().await.unwrap()).await.unwrap();
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    run(&runner, out.job).await;
    let stored = w.stored(&job).await;
    assert_eq!(
        (stored.state, stored.delivery, stored.provider_calls),
        (JobState::Completed, Delivery::Delivered, 1)
    );
    assert_eq!(w.available().await, 5_000, "charged once");
    assert!(w.notifier.alerts().is_empty());
    assert!(w.store.verify().await.unwrap().is_ok());
}

/// [money] 5: Gemini took the request and the answer was lost (the connection broke):
/// the client says "unknown"; the job is not tried again.
#[tokio::test]
async fn a_gemini_answer_lost_after_sending_is_never_sent_again() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let lost = Err(ProviderError::Unknown {
        message: "the connection to Gemini broke after the request was sent".into(),
    });
    let out = w.run_next(&w.image_runner(1, lost)).await;
    assert_eq!(out.next, Next::Finished);
    let stored = w.stored(&job).await;
    assert_eq!((stored.state, stored.provider_calls), (JobState::Failed, 1));
    assert_eq!(w.available().await, 10_000);
    assert_eq!(w.claim().await, None, "nothing left to try");
    assert_eq!(w.notifier.alerts().len(), 1);
}

#[tokio::test]
async fn a_video_with_a_stored_task_resumes_polling_whatever_the_restarts() {
    // Gap 3: every restart used to count as an attempt and refund a running task.
    let w = world(100_000).await;
    let job = order_video(&w).await;
    let mut videos = kling_running(6);
    videos.expect_find_by_job().times(0);
    let runner = w.video_runner(videos);
    let out = w.run_next(&runner).await;
    assert!(matches!(out.next, Next::Wait(_)));
    assert_eq!(out.job.progress, Progress::Generating);
    // Five crashed workers in a row: each lease expires, the next one polls.
    for _ in 0..5 {
        w.advance(61);
        let out = w.run_next(&runner).await;
        assert!(matches!(out.next, Next::Wait(_)), "{out:?}");
    }
    let stored = w.stored(&job).await;
    assert_eq!(
        (stored.state, stored.deliveries, stored.attempts),
        (JobState::Processing, 6, 0)
    );
    assert_eq!(w.available().await, 90_000, "still held, not refunded");
}

#[tokio::test]
async fn a_video_create_whose_answer_was_lost_is_found_not_paid_again() {
    let w = world(100_000).await;
    let job = order_video(&w).await;
    let mut videos = MockVideoGenerator::new();
    w.expect_video_download(&mut videos, &job).await;
    die_mid_call(&w, &job).await;
    videos.expect_submit().times(0);
    videos
        .expect_find_by_job()
        .times(1)
        .returning(|_, _| Ok(Some(task_1())));
    videos
        .expect_status()
        .times(1)
        .returning(|_, _| Ok(kling_done()));
    let out = w.run_next(&w.video_runner(videos)).await;
    assert_eq!(out.next, Next::Finished);
    let stored = w.stored(&job).await;
    assert_eq!(stored.state, JobState::Completed);
    assert_eq!(stored.provider_task_id.unwrap().as_str(), "task-1");
    assert_eq!(w.available().await, 90_000);
}

/// [money] 10: a Kling task keeps its job alive until the deadline of its model and
/// length (not a fixed 15 minutes); at the deadline the job is refunded, and a result
/// that still comes is delivered free and noted.
#[tokio::test]
async fn a_video_past_its_deadline_is_refunded_and_a_late_result_delivered_free() {
    let w = world(100_000).await;
    let job = order_video(&w).await;
    let mut videos = kling_accepting();
    w.expect_video_download(&mut videos, &job).await;
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = finished.clone();
    videos.expect_status().returning(move |_, _| {
        Ok(if f.load(std::sync::atomic::Ordering::SeqCst) {
            kling_done()
        } else {
            VideoTaskStatus::Processing
        })
    });
    let runner = w.video_runner(videos);
    w.run_next(&runner).await;
    // Still running after the old fixed 15 minutes: polled, not refunded.
    w.advance(15 * 60);
    let out = runner.step(w.claim().await.unwrap()).await.unwrap();
    assert_eq!(out.job.state, JobState::Processing);
    assert_eq!(w.available().await, 90_000);
    // The deadline of a 5 s video (KLING_TASK_DEADLINE_SECS, 3600 s): refunded.
    w.advance(45 * 60);
    let out = w.run_next(&runner).await;
    let stored = w.stored(&job).await;
    assert_eq!(
        (stored.state, stored.failure.clone()),
        (
            JobState::Failed,
            Some(FailureReason::DeadlineExceeded { after_secs: 3600 })
        )
    );
    assert!(stored.watch_until.is_some(), "still watched");
    assert_eq!(w.available().await, 100_000);
    assert_eq!(out.next, Next::Released, "asked again later");
    // Kling finishes after all: delivered free.
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    w.advance(61);
    let out = w.run_next(&runner).await;
    assert_eq!(out.next, Next::Finished);
    let stored = w.stored(&job).await;
    assert_eq!(
        (stored.state, stored.delivery, stored.watch_until),
        (JobState::Failed, Delivery::Delivered, None)
    );
    assert_eq!(w.available().await, 100_000, "free");
    let late: Vec<Notice> = w
        .notices()
        .into_iter()
        .filter(|n| matches!(n, Notice::JobLateResult { .. }))
        .collect();
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(w.store.verify().await.unwrap().is_ok());
}

/// [money] 10: errors asking Kling about a running task back off and never end the job.
#[tokio::test]
async fn poll_errors_back_off_and_never_end_a_running_task() {
    let w = world(100_000).await;
    let job = order_video(&w).await;
    let mut videos = kling_accepting();
    videos.expect_status().returning(|_, _| {
        Err(ProviderError::Transient {
            message: "502".into(),
        })
    });
    let runner = w.video_runner(videos);
    w.run_next(&runner).await;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let Some(claimed) = w.claim().await else {
            w.advance(30 * 60);
            continue;
        };
        let out = run(&runner, claimed).await;
        assert_eq!(out.job.state, JobState::Processing);
        waits.push(out.job.run_after.unwrap().since(w.clock.now()).as_secs());
        w.advance(waits.last().copied().unwrap_or_default());
    }
    assert_eq!(w.stored(&job).await.state, JobState::Processing);
    assert!(
        waits.windows(2).all(|p| p[1] >= p[0]),
        "growing waits: {waits:?}"
    );
    assert_eq!(w.available().await, 90_000, "still held");
}

/// [money] 11: an admin's cancel while Kling works releases the hold at once (audited);
/// the video that still comes is delivered free.
#[tokio::test]
async fn an_admins_cancel_during_a_run_releases_at_once_and_the_late_video_is_free() {
    let w = world(100_000).await;
    let job = order_video(&w).await;
    let mut videos = kling_accepting();
    w.expect_video_download(&mut videos, &job).await;
    videos.expect_status().returning(|_, _| Ok(kling_done()));
    let runner = w.video_runner(videos);
    let claimed = w.claim().await.unwrap();
    // The task is created (the call went out) ...
    let out = runner.step(claimed).await.unwrap();
    assert!(out.job.provider_task_id.is_some());
    // ... and the admin cancels: released at once.
    let cancelled = w
        .jobs
        .cancel(job.id, Actor::Cli("root".into()), "user asked")
        .await
        .unwrap();
    assert_eq!(cancelled.job.state, JobState::Cancelled);
    assert_eq!(w.available().await, 100_000, "released at once");
    let audit = w.store.audit_log(10).await.unwrap();
    assert_eq!(
        (audit[0].action, audit[0].target_user),
        (AuditAction::JobCancel, Some(w.user))
    );
    // The worker goes on: the cancel is told, and the video that comes is free.
    let out = run(&runner, out.job).await;
    assert_eq!(out.next, Next::Finished);
    let stored = w.stored(&job).await;
    assert_eq!(
        (stored.state, stored.cost_actual, stored.delivery),
        (JobState::Cancelled, None, Delivery::Delivered)
    );
    assert_eq!(w.available().await, 100_000);
    let notices = w.notices();
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, Notice::JobLateResult { .. })),
        "{notices:?}"
    );
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn users_cancel_only_their_own_jobs() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let stranger = UserId::new(7).unwrap();
    assert!(matches!(
        w.jobs.cancel(job.id, Actor::User(stranger), "x").await,
        Err(JobError::UnknownJob(_))
    ));
    let done = w
        .jobs
        .cancel(job.id, Actor::User(w.user), "x")
        .await
        .unwrap();
    assert_eq!(
        (done.job.state, done.job.delivery),
        (JobState::Cancelled, Delivery::Skipped)
    );
    assert_eq!(w.available().await, 10_000);
    assert!(matches!(
        w.jobs
            .cancel(JobId::from_uuid(Uuid::from_u128(999)), Actor::System, "x")
            .await,
        Err(JobError::UnknownJob(_))
    ));
}

#[tokio::test]
async fn provider_auth_failures_alert_admins_and_refund() {
    let w = world(10_000).await;
    confirm(&w, "c1").await.unwrap();
    let out_of_funds = Err(ProviderError::OutOfFunds {
        message: "quota".into(),
    });
    let out = w.run_next(&w.image_runner(1, out_of_funds)).await;
    assert_eq!(out.next, Next::Finished);
    assert_eq!(w.notifier.alerts().len(), 1);
    assert_eq!(w.available().await, 10_000);
}

#[tokio::test]
async fn an_image_edit_whose_input_is_gone_fails_with_a_refund() {
    let w = world(10_000).await;
    let job = confirm_spec(&w, edit_spec("inputs/missing.jpg"), "e1")
        .await
        .unwrap();
    w.run_next(&w.image_runner(0, Ok(png()))).await;
    let stored = w.stored(&job).await;
    assert!(matches!(
        stored.failure,
        Some(FailureReason::BadInput { .. })
    ));
    assert_eq!(w.available().await, 10_000);
}

#[tokio::test]
async fn a_stale_worker_is_stopped_by_its_lost_lease() {
    // Gap 2: two workers could both run a job whose lease expired.
    let w = world(10_000).await;
    confirm(&w, "c1").await.unwrap();
    let first = w.claim().await.unwrap();
    w.advance(61);
    let second = w.claim().await.unwrap();
    assert_eq!(second.deliveries, 2);
    let runner = w.image_runner(0, Ok(png()));
    assert!(matches!(
        runner.step(first).await,
        Err(JobError::LeaseLost(_))
    ));
    assert_eq!(w.stored(&second).await, second, "untouched");
}

/// Gap 2, where only the worker's own lease check helps: a stale worker whose next step
/// would tell the user (a result to deliver) must stop before sending anything — the
/// store would refuse its write only after the user got the result a second time.
#[tokio::test]
async fn a_stale_worker_never_delivers_a_result_twice() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let runner = w.image_runner(1, Ok(png()));
    // Captured; the progress notice and the first delivery fail for now.
    captured_undelivered(&w, &runner, &job).await;
    w.advance(60);
    let stale = w.claim().await.unwrap();
    w.advance(61);
    let owner = w.claim().await.unwrap();
    assert_eq!(owner.id, stale.id);
    let delivered_before = w.deliveries();
    assert!(matches!(
        runner.step(stale).await,
        Err(JobError::LeaseLost(_))
    ));
    assert_eq!(
        w.deliveries(),
        delivered_before,
        "nothing sent by the stale worker"
    );
}

#[tokio::test]
async fn the_queue_resync_names_every_job_with_work_left() {
    let w = world(100_000).await;
    confirm(&w, "a").await.unwrap();
    confirm(&w, "b").await.unwrap();
    assert_eq!(w.jobs.resync_queue(100).await.unwrap(), 2);
    let q = StoreQueue::new(w.store.clone());
    assert_eq!(q.depth().await.unwrap(), 2);
}

#[tokio::test]
async fn assets_in_use_are_those_of_jobs_with_work_left() {
    let w = world(100_000).await;
    let job = confirm_spec(&w, edit_spec("inputs/photo.jpg"), "e1")
        .await
        .unwrap();
    assert_eq!(
        w.jobs.assets_in_use(100).await.unwrap(),
        vec![AssetRef::new("inputs/photo.jpg")]
    );
    w.assets
        .write("inputs/photo.jpg", b"\xff\xd8jpeg")
        .await
        .unwrap();
    let runner = w.image_runner(1, Ok(png()));
    // Captured but not yet delivered: the result is still needed.
    captured_undelivered(&w, &runner, &job).await;
    let stored = w.stored(&job).await;
    let in_use = w.jobs.assets_in_use(100).await.unwrap();
    assert_eq!(
        in_use,
        vec![
            AssetRef::new("inputs/photo.jpg"),
            stored.result.clone().unwrap()
        ]
    );
    w.advance(5);
    w.run_next(&runner).await;
    assert!(
        w.jobs.assets_in_use(100).await.unwrap().is_empty(),
        "delivered: nothing held"
    );
}

#[tokio::test]
async fn the_confirmation_reply_becomes_the_status_message_the_worker_edits() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    let message = crate::ports::MessageRef::new("777");
    w.jobs
        .set_status_message(job.id, message.clone())
        .await
        .unwrap();
    w.run_next(&w.image_runner(1, Ok(png()))).await;
    let progress = w.notices().into_iter().find_map(|n| match n {
        Notice::JobProgress { status_message, .. } => Some(status_message),
        _ => None,
    });
    assert_eq!(
        progress,
        Some(Some(message.clone())),
        "the progress edits the reply"
    );
    assert_eq!(w.stored(&job).await.status_message, Some(message));
}

#[tokio::test]
async fn a_failed_job_is_retried_once_at_its_quoted_price_with_a_fresh_hold() {
    let w = world(7_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    assert!(
        matches!(
            w.jobs.retry(job.id, Actor::Cli("ops".into()), "x").await,
            Err(JobError::NotRetryable { .. })
        ),
        "a pending job is not retried"
    );
    w.run_next(&w.image_runner(1, unsafe_content())).await;
    assert_eq!(w.stored(&job).await.state, JobState::Failed);
    assert_eq!(w.available().await, 7_000, "refunded");
    let again = w
        .jobs
        .retry(job.id, Actor::Cli("ops".into()), "provider fixed")
        .await
        .unwrap();
    assert!(again.new, "says it retried it now");
    let again = again.job;
    assert_ne!(again.id, job.id);
    assert_eq!(
        (again.spec.clone(), again.quote.clone()),
        (job.spec.clone(), job.quote.clone())
    );
    assert_eq!(again.state, JobState::Pending);
    assert_eq!(w.reservation_state(&again).await, ReservationState::Held);
    assert_eq!(
        w.available().await,
        2_000,
        "a fresh hold of the quoted price"
    );
    // Run twice (an operator's retry after a lost answer): the same new job, one hold.
    let twice = w
        .jobs
        .retry(job.id, Actor::Cli("ops".into()), "provider fixed")
        .await
        .unwrap();
    assert!(!twice.new, "says it was retried before");
    assert_eq!(twice.job.id, again.id);
    assert_eq!(w.available().await, 2_000);
    let audit = w.store.audit_log(10).await.unwrap();
    let retries: Vec<_> = audit
        .iter()
        .filter(|a| a.action == AuditAction::JobRetry)
        .collect();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].actor, Actor::Cli("ops".into()));
    assert!(w.claim().await.is_some(), "queued");
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_retry_is_refused_when_the_balance_is_short() {
    let w = world(5_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    w.run_next(&w.image_runner(1, unsafe_content())).await;
    // Spend part of the refund elsewhere.
    w.post(EntryKind::Debit, 1_000, "spent", t(2_000)).await;
    assert!(matches!(
        w.jobs
            .retry(job.id, Actor::Cli("ops".into()), "again")
            .await,
        Err(JobError::InsufficientFunds { .. })
    ));
    assert_eq!(w.available().await, 4_000, "nothing held");
    assert!(matches!(
        w.jobs
            .retry(
                JobId::from_uuid(uuid::Uuid::from_u128(77)),
                Actor::Cli("ops".into()),
                "x"
            )
            .await,
        Err(JobError::UnknownJob(_))
    ));
}
