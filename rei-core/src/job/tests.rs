//! Job state machine and `JobService` tests.

use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::ids::{IdempotencyKey, JobId, ProviderTaskId, ReservationId, UserId};
use crate::job::service::JobError;
use crate::ledger::{EntryKind, NewEntry, RefType, ReservationState, Settlement};
use crate::memory::{ManualClock, MemoryQueue, MemoryStore, RecordingNotifier, SequentialIds};
use crate::money::Money;
use crate::ports::{
    JobQueue, LedgerStore, MockJobQueue, MockJobStore, MockNotifier, MockUserStore, Notice,
    NotifyError, QueueError, StoreError, UserStore,
};
use crate::pricing::{PriceList, Product, Quote};
use crate::time::Timestamp;
use crate::user::{Language, UserProfile};

fn m(k: i64) -> Money {
    Money::from_kopecks(k).unwrap()
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn image_spec() -> JobSpec {
    JobSpec::ImageGeneration {
        prompt: Prompt::parse("a fox").unwrap(),
    }
}

fn pending_job() -> Job {
    NewJob {
        id: JobId::from_uuid(Uuid::from_u128(1)),
        user_id: UserId::new(1).unwrap(),
        spec: image_spec(),
        quote: Quote {
            product: Product::ImageGeneration,
            amount: m(5_000),
        },
        reservation_id: ReservationId::from_uuid(Uuid::from_u128(2)),
        idempotency_key: IdempotencyKey::new("k").unwrap(),
        created_at: t(0),
    }
    .pending()
}

fn failed_reason() -> FailureReason {
    FailureReason::ProviderFailed {
        detail: "boom".into(),
    }
}

fn step(job: &Job, ev: JobEvent) -> JobTransition {
    job.apply(ev, t(100)).unwrap()
}

// ---- state machine ----

#[test]
fn start_moves_pending_to_processing_at_ten_percent() {
    let tr = step(&pending_job(), JobEvent::Started);
    assert_eq!(
        (tr.after.state, tr.after.progress, tr.after.attempts),
        (JobState::Processing, Progress::Started, 1)
    );
    assert_eq!(tr.after.started_at, Some(t(100)));
    assert_eq!(tr.after.version, 1);
    assert_eq!(tr.settlement, None);
}

#[test]
fn resuming_a_processing_job_counts_an_attempt_and_keeps_progress() {
    let p = step(&pending_job(), JobEvent::Started).after;
    let g = step(&p, JobEvent::Generating).after;
    let resumed = step(&g, JobEvent::Started).after;
    assert_eq!(
        (resumed.attempts, resumed.progress),
        (2, Progress::Generating)
    );
    assert_eq!(resumed.started_at, Some(t(100)));
}

#[test]
fn success_captures_the_actual_cost() {
    let p = step(&pending_job(), JobEvent::Started).after;
    let tr = step(
        &p,
        JobEvent::Succeeded {
            result: AssetRef::new("r.png"),
            actual_cost: m(4_000),
        },
    );
    assert_eq!(
        (tr.after.state, tr.after.progress),
        (JobState::Completed, Progress::Done)
    );
    assert_eq!(
        tr.settlement,
        Some(Settlement::Capture { actual: m(4_000) })
    );
    assert_eq!(tr.after.cost_actual, Some(m(4_000)));
}

#[test]
fn success_above_the_quote_is_illegal() {
    let p = step(&pending_job(), JobEvent::Started).after;
    assert!(
        p.apply(
            JobEvent::Succeeded {
                result: AssetRef::new("r"),
                actual_cost: m(5_001)
            },
            t(1)
        )
        .is_err()
    );
}

#[test]
fn failure_and_cancel_release() {
    let p = step(&pending_job(), JobEvent::Started).after;
    assert_eq!(
        step(
            &p,
            JobEvent::Failed {
                reason: failed_reason()
            }
        )
        .settlement,
        Some(Settlement::Release)
    );
    assert_eq!(
        step(
            &p,
            JobEvent::Cancelled {
                by: CancelledBy::User
            }
        )
        .settlement,
        Some(Settlement::Release)
    );
    assert_eq!(
        step(
            &pending_job(),
            JobEvent::Cancelled {
                by: CancelledBy::User
            }
        )
        .settlement,
        Some(Settlement::Release)
    );
}

#[test]
fn repeated_final_events_change_nothing() {
    let p = step(&pending_job(), JobEvent::Started).after;
    let done_ev = JobEvent::Succeeded {
        result: AssetRef::new("r"),
        actual_cost: m(5_000),
    };
    let done = step(&p, done_ev.clone()).after;
    let again = step(&done, done_ev);
    assert!(!again.changed());
    assert_eq!(again.settlement, None);
    let failed = step(
        &p,
        JobEvent::Failed {
            reason: failed_reason(),
        },
    )
    .after;
    assert!(
        !step(
            &failed,
            JobEvent::Failed {
                reason: failed_reason()
            }
        )
        .changed()
    );
    let cancelled = step(
        &p,
        JobEvent::Cancelled {
            by: CancelledBy::User,
        },
    )
    .after;
    assert!(
        !step(
            &cancelled,
            JobEvent::Cancelled {
                by: CancelledBy::User
            }
        )
        .changed()
    );
}

#[test]
fn provider_task_id_is_set_once() {
    let p = step(&pending_job(), JobEvent::Started).after;
    let task = ProviderTaskId::new("t1").unwrap();
    let with = step(
        &p,
        JobEvent::ProviderTaskCreated {
            task_id: task.clone(),
        },
    )
    .after;
    assert_eq!(with.progress, Progress::Generating);
    assert!(!step(&with, JobEvent::ProviderTaskCreated { task_id: task }).changed());
    assert!(
        with.apply(
            JobEvent::ProviderTaskCreated {
                task_id: ProviderTaskId::new("t2").unwrap()
            },
            t(1)
        )
        .is_err()
    );
}

#[test]
fn illegal_moves_are_rejected_with_their_names() {
    let pending = pending_job();
    let processing = step(&pending, JobEvent::Started).after;
    let completed = step(
        &processing,
        JobEvent::Succeeded {
            result: AssetRef::new("r"),
            actual_cost: m(1),
        },
    )
    .after;
    let failed = step(
        &processing,
        JobEvent::Failed {
            reason: failed_reason(),
        },
    )
    .after;
    let cancelled = step(
        &pending,
        JobEvent::Cancelled {
            by: CancelledBy::User,
        },
    )
    .after;
    let cases: Vec<(&Job, JobEvent)> = vec![
        (&pending, JobEvent::Generating),
        (
            &pending,
            JobEvent::Failed {
                reason: failed_reason(),
            },
        ),
        (
            &pending,
            JobEvent::Succeeded {
                result: AssetRef::new("r"),
                actual_cost: m(1),
            },
        ),
        (&pending, JobEvent::Requeued),
        (&completed, JobEvent::Started),
        (
            &completed,
            JobEvent::Failed {
                reason: failed_reason(),
            },
        ),
        (
            &completed,
            JobEvent::Cancelled {
                by: CancelledBy::User,
            },
        ),
        (
            &completed,
            JobEvent::Succeeded {
                result: AssetRef::new("other"),
                actual_cost: m(1),
            },
        ),
        (
            &failed,
            JobEvent::Succeeded {
                result: AssetRef::new("r"),
                actual_cost: m(1),
            },
        ),
        (
            &failed,
            JobEvent::Cancelled {
                by: CancelledBy::User,
            },
        ),
        (&cancelled, JobEvent::Started),
        (
            &cancelled,
            JobEvent::Failed {
                reason: failed_reason(),
            },
        ),
    ];
    for (job, ev) in cases {
        let name = ev.name();
        let err = job.apply(ev, t(1)).expect_err(name);
        assert_eq!((err.from, err.event), (job.state, name));
    }
}

#[test]
fn requeue_returns_processing_to_pending() {
    let p = step(&pending_job(), JobEvent::Started).after;
    let back = step(&p, JobEvent::Requeued).after;
    assert_eq!(
        (back.state, back.progress, back.attempts),
        (JobState::Pending, Progress::Queued, 1)
    );
}

#[test]
fn states_progress_and_specs_have_stable_codes() {
    for s in JobState::ALL {
        assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
    }
    assert_eq!(serde_json::to_string(&Progress::Generating).unwrap(), "50");
    assert!(serde_json::from_str::<Progress>("42").is_err());
    let spec = JobSpec::Video {
        mode: VideoMode::ImageToVideo,
        model: "kling-v2-6".into(),
        duration: crate::pricing::VideoDuration::Ten,
        prompt: Prompt::parse("go").unwrap(),
        input: Some(AssetRef::new("inputs/1.jpg")),
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

// ---- service over memory adapters ----

struct World {
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    notifier: Arc<RecordingNotifier>,
    jobs: JobService,
    user: UserId,
}

async fn world(balance: i64) -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(t(1_000)));
    let queue = Arc::new(MemoryQueue::new(clock.clone()));
    let notifier = Arc::new(RecordingNotifier::default());
    let user = UserId::new(42).unwrap();
    store
        .register(
            UserProfile {
                id: user,
                username: None,
                first_name: None,
                language: Language::Ru,
            },
            t(0),
        )
        .await
        .unwrap();
    if balance > 0 {
        let e = NewEntry {
            user_id: user,
            kind: EntryKind::Credit,
            amount: m(balance),
            ref_type: RefType::Admin,
            ref_id: "test".into(),
            description: "seed".into(),
            idempotency_key: IdempotencyKey::new("seed").unwrap(),
            created_at: t(0),
        };
        store.post(e, None).await.unwrap();
    }
    let limits = JobLimits {
        max_active_per_user: 2,
        max_attempts: 2,
    };
    let jobs = JobService::new(
        store.clone(),
        store.clone(),
        queue.clone(),
        notifier.clone(),
        clock,
        Arc::new(SequentialIds::default()),
        PriceList::seed_defaults(),
        limits,
    );
    World {
        store,
        queue,
        notifier,
        jobs,
        user,
    }
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

async fn confirm(w: &World, k: &str) -> Result<Job, JobError> {
    let spec = image_spec();
    let quote = w.jobs.quote(&spec);
    w.jobs.create(w.user, spec, quote, key(k)).await
}

async fn available(w: &World) -> i64 {
    w.store.balance(w.user).await.unwrap().available.kopecks()
}

#[tokio::test]
async fn confirming_reserves_the_quote_and_queues_the_job() {
    let w = world(10_000).await;
    let job = confirm(&w, "c1").await.unwrap();
    assert_eq!(job.quote.amount, m(5_000));
    assert_eq!(available(&w).await, 5_000);
    assert_eq!(w.queue.depth().await.unwrap(), 1);
    let again = confirm(&w, "c1").await.unwrap();
    assert_eq!(again.id, job.id, "a double tap on Confirm makes one job");
    assert_eq!(available(&w).await, 5_000);
    assert_eq!(w.queue.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn confirming_without_money_offers_nothing_and_holds_nothing() {
    let w = world(4_999).await;
    match confirm(&w, "c1").await {
        Err(JobError::InsufficientFunds { needed, available }) => {
            assert_eq!((needed, available), (m(5_000), m(4_999)))
        }
        other => panic!("expected InsufficientFunds, got {other:?}"),
    }
    assert_eq!(available(&w).await, 4_999);
    assert_eq!(w.queue.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn the_active_job_cap_applies() {
    let w = world(100_000).await;
    confirm(&w, "a").await.unwrap();
    confirm(&w, "b").await.unwrap();
    assert!(matches!(
        confirm(&w, "c").await,
        Err(JobError::TooManyActiveJobs { limit: 2 })
    ));
}

#[tokio::test]
async fn a_stale_quote_for_another_product_is_refused() {
    let w = world(100_000).await;
    let quote = w.jobs.quote(&JobSpec::ImageEdit {
        prompt: Prompt::parse("x").unwrap(),
        image: AssetRef::new("a"),
    });
    let r = w.jobs.create(w.user, image_spec(), quote, key("k")).await;
    assert!(matches!(r, Err(JobError::QuoteMismatch)));
}

#[tokio::test]
async fn quotes_survive_price_changes() {
    let w = world(100_000).await;
    let spec = image_spec();
    let quote = w.jobs.quote(&spec);
    w.jobs
        .set_prices(PriceList::new(m(9_900), m(1), m(1), 2).unwrap());
    let job = w.jobs.create(w.user, spec, quote, key("k")).await.unwrap();
    assert_eq!(job.quote.amount, m(5_000));
    assert_eq!(w.jobs.quote(&image_spec()).amount, m(9_900));
}

#[tokio::test]
async fn a_full_successful_run_captures_and_notifies_in_order() {
    let w = world(10_000).await;
    let job = confirm(&w, "c").await.unwrap();
    w.jobs.start(job.id).await.unwrap();
    w.jobs.generating(job.id).await.unwrap();
    let done = w
        .jobs
        .complete(job.id, AssetRef::new("results/x.png"), m(5_000))
        .await
        .unwrap();
    assert!(done.changed);
    assert_eq!(done.job.state, JobState::Completed);
    assert_eq!(available(&w).await, 5_000);
    assert_eq!(
        w.store
            .reservation(job.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Captured
    );
    let progress: Vec<String> = w
        .notifier
        .notices()
        .into_iter()
        .map(|(_, n)| match n {
            Notice::JobProgress { progress, .. } => format!("{}%", progress.percent()),
            Notice::JobCompleted { .. } => "done".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(progress, vec!["10%", "50%", "done"]);
    // A retried worker reporting success again changes and charges nothing.
    let again = w
        .jobs
        .complete(job.id, AssetRef::new("results/x.png"), m(5_000))
        .await
        .unwrap();
    assert!(!again.changed);
    assert_eq!(w.notifier.notices().len(), 3);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_content_refusal_refunds_and_tells_the_reason() {
    let w = world(10_000).await;
    let job = confirm(&w, "c").await.unwrap();
    w.jobs.start(job.id).await.unwrap();
    let reason = FailureReason::ContentRefused {
        detail: "PROHIBITED_CONTENT".into(),
    };
    w.jobs.fail(job.id, reason.clone()).await.unwrap();
    assert_eq!(available(&w).await, 10_000);
    let last = w.notifier.notices().pop().unwrap().1;
    assert_eq!(
        last,
        Notice::JobFailed {
            job_id: job.id,
            reason,
            refunded: m(5_000)
        }
    );
    // Success arriving after the failure (a late callback) is refused.
    assert!(matches!(
        w.jobs.complete(job.id, AssetRef::new("r"), m(1)).await,
        Err(JobError::Transition(_))
    ));
    assert_eq!(available(&w).await, 10_000);
}

#[tokio::test]
async fn cancelling_releases_and_finished_jobs_cannot_be_cancelled() {
    let w = world(10_000).await;
    let job = confirm(&w, "c").await.unwrap();
    w.jobs.cancel(job.id, CancelledBy::User).await.unwrap();
    assert_eq!(available(&w).await, 10_000);
    let again = w.jobs.cancel(job.id, CancelledBy::User).await.unwrap();
    assert!(!again.changed);
    let other = confirm(&w, "d").await.unwrap();
    w.jobs.start(other.id).await.unwrap();
    w.jobs
        .complete(other.id, AssetRef::new("r"), m(5_000))
        .await
        .unwrap();
    assert!(matches!(
        w.jobs.cancel(other.id, CancelledBy::User).await,
        Err(JobError::Transition(_))
    ));
}

#[tokio::test]
async fn crashed_workers_use_up_attempts_then_the_job_is_refunded() {
    let w = world(10_000).await;
    let job = confirm(&w, "c").await.unwrap();
    assert_eq!(
        w.jobs.start(job.id).await.unwrap().job.state,
        JobState::Processing
    );
    // The worker dies; another resumes.
    assert_eq!(w.jobs.start(job.id).await.unwrap().job.attempts, 2);
    // The third start exceeds max_attempts = 2: failed for good, money back.
    let last = w.jobs.start(job.id).await.unwrap();
    assert_eq!(last.job.state, JobState::Failed);
    assert_eq!(
        last.job.failure,
        Some(FailureReason::TooManyAttempts { attempts: 2 })
    );
    assert_eq!(available(&w).await, 10_000);
}

#[tokio::test]
async fn recovery_requeues_pending_jobs_idempotently() {
    let w = world(10_000).await;
    confirm(&w, "a").await.unwrap();
    assert_eq!(w.jobs.recover().await.unwrap(), 1);
    assert_eq!(w.jobs.recover().await.unwrap(), 1);
    assert_eq!(w.queue.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn unknown_jobs_and_users_are_reported() {
    let w = world(0).await;
    let ghost = JobId::from_uuid(Uuid::from_u128(77));
    assert!(matches!(w.jobs.start(ghost).await, Err(JobError::UnknownJob(id)) if id == ghost));
    let stranger = UserId::new(999).unwrap();
    let spec = image_spec();
    let q = w.jobs.quote(&spec);
    assert!(matches!(
        w.jobs.create(stranger, spec, q, key("k")).await,
        Err(JobError::UnknownUser(_))
    ));
}

// ---- failure branches with mocks ----

fn mocked(
    users: MockUserStore,
    jobs: MockJobStore,
    queue: MockJobQueue,
    notifier: MockNotifier,
) -> JobService {
    JobService::new(
        Arc::new(users),
        Arc::new(jobs),
        Arc::new(queue),
        Arc::new(notifier),
        Arc::new(ManualClock::new(t(5))),
        Arc::new(SequentialIds::default()),
        PriceList::seed_defaults(),
        JobLimits::default(),
    )
}

fn known_user() -> MockUserStore {
    let mut users = MockUserStore::new();
    users.expect_user().returning(|id| {
        Ok(Some(crate::user::User {
            id,
            username: None,
            first_name: None,
            language: Language::Ru,
            is_banned: false,
            ban_notified: false,
            balance: Money::ZERO,
            created_at: t(0),
        }))
    });
    users
}

fn io_error() -> StoreError {
    StoreError::Unavailable(Box::new(std::io::Error::other("disk on fire")))
}

#[tokio::test]
async fn a_store_outage_at_creation_is_reported_and_nothing_is_queued() {
    let mut jobs = MockJobStore::new();
    jobs.expect_create_job()
        .times(1)
        .returning(|_, _| Err(io_error()));
    let mut queue = MockJobQueue::new();
    queue.expect_enqueue().never();
    let svc = mocked(known_user(), jobs, queue, MockNotifier::new());
    let spec = image_spec();
    let q = svc.quote(&spec);
    let r = svc.create(UserId::new(1).unwrap(), spec, q, key("k")).await;
    assert!(
        matches!(r, Err(JobError::Store(StoreError::Unavailable(_)))),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_queue_outage_after_creation_says_the_job_exists() {
    let mut jobs = MockJobStore::new();
    jobs.expect_create_job()
        .returning(|new, _| Ok(new.pending()));
    let mut queue = MockJobQueue::new();
    queue.expect_enqueue().times(1).returning(|_| {
        Err(QueueError::Unavailable(Box::new(std::io::Error::other(
            "redis down",
        ))))
    });
    let svc = mocked(known_user(), jobs, queue, MockNotifier::new());
    let spec = image_spec();
    let q = svc.quote(&spec);
    let r = svc.create(UserId::new(1).unwrap(), spec, q, key("k")).await;
    assert!(matches!(r, Err(JobError::NotQueued { .. })), "{r:?}");
}

#[tokio::test]
async fn a_banned_user_cannot_order() {
    let mut users = MockUserStore::new();
    users.expect_user().returning(|id| {
        Ok(Some(crate::user::User {
            id,
            username: None,
            first_name: None,
            language: Language::Ru,
            is_banned: true,
            ban_notified: true,
            balance: m(1_000_000),
            created_at: t(0),
        }))
    });
    let mut jobs = MockJobStore::new();
    jobs.expect_create_job().never();
    let svc = mocked(users, jobs, MockJobQueue::new(), MockNotifier::new());
    let spec = image_spec();
    let q = svc.quote(&spec);
    assert!(matches!(
        svc.create(UserId::new(1).unwrap(), spec, q, key("k")).await,
        Err(JobError::Banned(_))
    ));
}

#[tokio::test]
async fn a_concurrent_writer_is_retried_from_a_fresh_read() {
    let job = pending_job();
    let mut jobs = MockJobStore::new();
    let mut reads = mockall::Sequence::new();
    let first = job.clone();
    jobs.expect_job()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some(first.clone())));
    // Another worker started it meanwhile.
    let moved = step(&job, JobEvent::Started).after;
    let moved2 = moved.clone();
    jobs.expect_job()
        .times(1)
        .in_sequence(&mut reads)
        .returning(move |_| Ok(Some(moved2.clone())));
    let mut saves = 0;
    jobs.expect_save_transition().times(2).returning(move |tr| {
        saves += 1;
        if saves == 1 {
            Err(StoreError::Conflict {
                what: "job",
                id: tr.before.id.to_string(),
            })
        } else {
            Ok(tr.after.clone())
        }
    });
    let svc = mocked(
        MockUserStore::new(),
        jobs,
        MockJobQueue::new(),
        MockNotifier::new(),
    );
    let r = svc
        .apply(
            job.id,
            JobEvent::Cancelled {
                by: CancelledBy::User,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.job.state, JobState::Cancelled);
    assert_eq!(
        r.job.attempts, 1,
        "the retry applied the event to the fresh state"
    );
}

#[tokio::test]
async fn an_unreachable_user_does_not_undo_the_refund() {
    let job = step(&pending_job(), JobEvent::Started).after;
    let mut jobs = MockJobStore::new();
    let j = job.clone();
    jobs.expect_job().returning(move |_| Ok(Some(j.clone())));
    jobs.expect_save_transition().times(1).returning(|tr| {
        assert_eq!(
            tr.settlement,
            Some(Settlement::Release),
            "the refund is written with the failure"
        );
        Ok(tr.after.clone())
    });
    let mut notifier = MockNotifier::new();
    notifier
        .expect_notify()
        .times(1)
        .returning(|u, _| Err(NotifyError::Unreachable(u)));
    let svc = mocked(MockUserStore::new(), jobs, MockJobQueue::new(), notifier);
    let r = svc.fail(job.id, failed_reason()).await.unwrap();
    assert_eq!(r.job.state, JobState::Failed);
}

#[tokio::test]
async fn a_store_outage_during_a_transition_is_surfaced_not_swallowed() {
    let job = step(&pending_job(), JobEvent::Started).after;
    let mut jobs = MockJobStore::new();
    let j = job.clone();
    jobs.expect_job().returning(move |_| Ok(Some(j.clone())));
    jobs.expect_save_transition()
        .times(1)
        .returning(|_| Err(io_error()));
    let mut notifier = MockNotifier::new();
    notifier.expect_notify().never();
    let svc = mocked(MockUserStore::new(), jobs, MockJobQueue::new(), notifier);
    assert!(matches!(
        svc.complete(job.id, AssetRef::new("r"), m(1)).await,
        Err(JobError::Store(_))
    ));
}

#[tokio::test]
async fn a_redelivered_finished_job_is_left_alone() {
    let w = world(10_000).await;
    let job = confirm(&w, "c").await.unwrap();
    w.jobs.start(job.id).await.unwrap();
    w.jobs
        .complete(job.id, AssetRef::new("r.png"), m(5_000))
        .await
        .unwrap();
    let again = w.jobs.start(job.id).await.unwrap();
    assert!(!again.changed);
    assert_eq!(
        (again.job.state, again.job.attempts),
        (JobState::Completed, 1)
    );
}

#[tokio::test]
async fn recovery_requeues_processing_jobs_whose_queue_entry_was_lost() {
    let w = world(10_000).await;
    let job = confirm(&w, "c").await.unwrap();
    let lease = w
        .queue
        .claim("w1", std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    w.jobs.start(job.id).await.unwrap();
    w.queue.ack(&lease).await.unwrap(); // the entry is gone, the job still processing
    assert_eq!(w.queue.depth().await.unwrap(), 0);
    assert_eq!(w.jobs.recover().await.unwrap(), 1);
    assert_eq!(w.queue.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn keys_in_reserved_namespaces_are_refused() {
    let w = world(10_000).await;
    let spec = image_spec();
    let quote = w.jobs.quote(&spec);
    let key =
        IdempotencyKey::new("reservation:00000000-0000-0000-0000-000000000001:release").unwrap();
    assert!(matches!(
        w.jobs.create(w.user, spec, quote, key).await,
        Err(JobError::DuplicateKey)
    ));
    assert_eq!(available(&w).await, 10_000);
}
