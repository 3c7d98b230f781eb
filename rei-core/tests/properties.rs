//! Property tests: random sequences of money operations (credits, holds, captures,
//! releases, admin debits, jobs and their events, duplicate calls) never break the ledger.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use futures::executor::block_on;
use proptest::prelude::*;
use rei_core::job::{AssetRef, FailureReason, JobLimits, JobSpec, Prompt};
use rei_core::job::{JobEvent, JobGuard, JobLease, JobPorts, LeaseToken, StoreQueue};
use rei_core::ledger::{
    EntryKind, NewEntry, NewReservation, RefType, ReservationState, Settlement,
};
use rei_core::memory::{ManualClock, MemoryStore, SequentialIds};
use rei_core::ports::{ClaimTarget, JobStore};
use rei_core::ports::{LedgerStore, StoreError, UserStore};
use rei_core::prelude::*;
use rei_core::user::UserProfile;
use uuid::Uuid;

#[derive(Clone, Debug)]
enum Op {
    Credit { user: u8, kopecks: i64, key: u8 },
    Debit { user: u8, kopecks: i64, key: u8 },
    Reserve { user: u8, kopecks: i64, key: u8 },
    Capture { reservation: u8, percent: u8 },
    Release { reservation: u8 },
    Confirm { user: u8, key: u8 },
    JobStep { job: u8, step: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, 1..20_000i64, 0..12u8).prop_map(|(user, kopecks, key)| Op::Credit {
            user,
            kopecks,
            key
        }),
        (0..3u8, 1..20_000i64, 0..12u8).prop_map(|(user, kopecks, key)| Op::Debit {
            user,
            kopecks,
            key
        }),
        (0..3u8, 1..10_000i64, 0..12u8).prop_map(|(user, kopecks, key)| Op::Reserve {
            user,
            kopecks,
            key
        }),
        (0..12u8, 0..=120u8).prop_map(|(reservation, percent)| Op::Capture {
            reservation,
            percent
        }),
        (0..12u8).prop_map(|reservation| Op::Release { reservation }),
        (0..3u8, 0..8u8).prop_map(|(user, key)| Op::Confirm { user, key }),
        (0..8u8, 0..6u8).prop_map(|(job, step)| Op::JobStep { job, step }),
    ]
}

fn uid(n: u8) -> UserId {
    UserId::new(i64::from(n) + 1).unwrap()
}

fn m(k: i64) -> Money {
    Money::from_kopecks(k).unwrap()
}

fn entry(user: u8, kind: EntryKind, kopecks: i64, key: u8) -> NewEntry {
    NewEntry {
        user_id: uid(user),
        kind,
        amount: m(kopecks),
        ref_type: RefType::Admin,
        ref_id: "prop".into(),
        description: String::new(),
        // Credits and debits share the key space, so reuse across kinds must conflict.
        idempotency_key: IdempotencyKey::new(format!("adj-{user}-{key}")).unwrap(),
        created_at: Timestamp::from_millis(1),
    }
}

fn reservation_id(key: u8) -> ReservationId {
    ReservationId::from_uuid(Uuid::from_u128(900_000 + u128::from(key)))
}

struct World {
    store: Arc<MemoryStore>,
    jobs: JobService,
    created_jobs: Vec<JobId>,
}

/// Tight enough for the random ops to meet every cap.
const LIMITS: JobLimits = JobLimits {
    max_active_per_user: 3,
    max_attempts: 2,
    max_deliveries: 10,
};

impl World {
    /// Three registered users, no money, no jobs.
    async fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let ports = JobPorts {
            users: store.clone(),
            jobs: store.clone(),
            queue: Arc::new(StoreQueue::new(store.clone())),
            clock: Arc::new(ManualClock::new(Timestamp::from_millis(0))),
            ids: Arc::new(SequentialIds::default()),
        };
        let jobs = JobService::new(ports, PriceList::seed_defaults(), LIMITS);
        for u in 0..3 {
            store
                .register(
                    UserProfile {
                        id: uid(u),
                        username: None,
                        first_name: None,
                        language: Language::Ru,
                    },
                    Timestamp::from_millis(0),
                )
                .await
                .unwrap();
        }
        World {
            store,
            jobs,
            created_jobs: Vec::new(),
        }
    }
}

async fn entry_count(store: &MemoryStore) -> usize {
    let mut n = 0;
    for u in 0..3 {
        n += store.entries(uid(u), u32::MAX).await.unwrap().len();
    }
    n
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = World::new().await;
    let mut settled: HashMap<ReservationId, ReservationState> = HashMap::new();
    for op in ops {
        let before = entry_count(&w.store).await;
        let replay_expected = apply(&mut w, &op, &mut settled).await?;
        if replay_expected {
            prop_assert_eq!(
                entry_count(&w.store).await,
                before,
                "an idempotent repeat posted something: {:?}",
                op
            );
        }
        let report = w.store.verify().await.unwrap();
        prop_assert!(report.is_ok(), "after {:?}: {:?}", op, report.violations);
        for u in 0..3 {
            let b = w.store.balance(uid(u)).await.unwrap();
            let sum: i64 = w
                .store
                .entries(uid(u), u32::MAX)
                .await
                .unwrap()
                .iter()
                .map(|e| e.signed())
                .sum();
            prop_assert_eq!(
                b.available.kopecks(),
                sum,
                "balance must equal the sum of entries"
            );
            prop_assert!(sum >= 0);
        }
    }
    Ok(())
}

/// Applies one op; returns true when it was a repeat that must post nothing.
async fn apply(
    w: &mut World,
    op: &Op,
    settled: &mut HashMap<ReservationId, ReservationState>,
) -> Result<bool, TestCaseError> {
    let s = &w.store;
    Ok(match *op {
        Op::Credit { user, kopecks, key } => {
            post(s, entry(user, EntryKind::Credit, kopecks, key)).await?
        }
        Op::Debit { user, kopecks, key } => {
            post(s, entry(user, EntryKind::Debit, kopecks, key)).await?
        }
        Op::Reserve { user, kopecks, key } => {
            let r = NewReservation {
                id: reservation_id(key),
                user_id: uid(user),
                amount: m(kopecks),
                job_id: None,
                description: String::new(),
                idempotency_key: IdempotencyKey::new(format!("res-{key}")).unwrap(),
                created_at: Timestamp::from_millis(2),
            };
            let existed = s.reservation(r.id).await.unwrap().is_some();
            match s.reserve(r).await {
                Ok(_) => existed,
                Err(
                    StoreError::InsufficientFunds { .. } | StoreError::IdempotencyConflict { .. },
                ) => false,
                Err(e) => return Err(TestCaseError::fail(format!("reserve: {e}"))),
            }
        }
        Op::Capture {
            reservation,
            percent,
        } => {
            let id = reservation_id(reservation);
            let Some(r) = s.reservation(id).await.unwrap() else {
                return Ok(false);
            };
            let actual = m(r.amount.kopecks() * i64::from(percent) / 100);
            settle(s, id, Settlement::Capture { actual }, settled).await?
        }
        Op::Release { reservation } => {
            settle(s, reservation_id(reservation), Settlement::Release, settled).await?
        }
        Op::Confirm { user, key } => {
            let spec = JobSpec::image(Prompt::parse("p").unwrap());
            let quote = w.jobs.quote(&spec);
            let k = IdempotencyKey::new(format!("confirm-{user}-{key}")).unwrap();
            match w.jobs.create(uid(user), spec, &quote, k).await {
                Ok(job) => {
                    let repeat = w.created_jobs.contains(&job.id);
                    if !repeat {
                        w.created_jobs.push(job.id);
                    }
                    repeat
                }
                Err(_) => false,
            }
        }
        Op::JobStep { job, step } => {
            let Some(&id) = w.created_jobs.get(usize::from(job)) else {
                return Ok(false);
            };
            let lease = JobLease::new(LeaseToken::new("p"), Timestamp::from_millis(60_000));
            let worker = JobGuard::Lease(LeaseToken::new("p"));
            let event = match step {
                0 => {
                    let claimed = w
                        .store
                        .claim_job(ClaimTarget::Job(id), &lease, Timestamp::from_millis(0))
                        .await;
                    // A claim posts nothing, whether it succeeds or not.
                    return Ok(claimed.is_ok());
                }
                1 => JobEvent::Generating,
                2 => JobEvent::Succeeded {
                    result: AssetRef::new("r"),
                    actual_cost: m(4_000),
                    result_url: None,
                },
                3 => JobEvent::Failed {
                    reason: FailureReason::ProviderFailed { detail: "x".into() },
                },
                4 => {
                    let cancelled = w.jobs.cancel(id, Actor::System, "p").await;
                    return Ok(matches!(cancelled, Ok(a) if !a.changed));
                }
                _ => JobEvent::Succeeded {
                    result: AssetRef::new("r"),
                    actual_cost: m(5_000),
                    result_url: None,
                },
            };
            let written = w.jobs.write(id, event, worker).await;
            matches!(written, Ok(a) if !a.changed)
        }
    })
}

async fn post(s: &MemoryStore, e: NewEntry) -> Result<bool, TestCaseError> {
    match s.post(e, None).await {
        Ok(p) => Ok(p.replayed),
        Err(StoreError::InsufficientFunds { .. } | StoreError::IdempotencyConflict { .. }) => {
            Ok(false)
        }
        Err(e) => Err(TestCaseError::fail(format!("post: {e}"))),
    }
}

async fn settle(
    s: &MemoryStore,
    id: ReservationId,
    how: Settlement,
    settled: &mut HashMap<ReservationId, ReservationState>,
) -> Result<bool, TestCaseError> {
    match s.settle(id, how, Timestamp::from_millis(3)).await {
        Ok(r) => {
            let repeat = settled.contains_key(&id);
            let first = *settled.entry(id).or_insert(r.state);
            prop_assert_eq!(first, r.state, "a reservation changed how it was settled");
            Ok(repeat)
        }
        Err(StoreError::NotFound(_) | StoreError::Settlement(_)) => Ok(false),
        Err(e) => Err(TestCaseError::fail(format!("settle: {e}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_ledger_invariant(ops in proptest::collection::vec(op(), 1..60)) {
        block_on(run(ops))?;
    }
}
