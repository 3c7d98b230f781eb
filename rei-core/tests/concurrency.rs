//! Many tasks on many threads spending one balance through the services, on the memory
//! adapters: nobody overdraws, every hold is settled once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rei_core::job::JobError;
use rei_core::job::{AssetRef, FailureReason, JobLimits, JobPorts, JobSpec, Prompt, StoreQueue};
use rei_core::job::{JobEvent, JobGuard};
use rei_core::memory::{ManualClock, MemoryStore, SequentialIds};
use rei_core::ports::LedgerStore;
use rei_core::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_spending_one_balance_never_overdraw() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
    let users = UserService::new(store.clone(), clock.clone());
    let admin = AdminService::new(AdminPorts {
        users: store.clone(),
        ledger: store.clone(),
        queue: Arc::new(StoreQueue::new(store.clone())),
        clock: clock.clone(),
    });
    let jobs = Arc::new(JobService::new(
        JobPorts {
            users: store.clone(),
            jobs: store.clone(),
            queue: Arc::new(StoreQueue::new(store.clone())),
            clock,
            ids: Arc::new(SequentialIds::default()),
        },
        PriceList::seed_defaults(),
        JobLimits {
            max_active_per_user: 1_000,
            max_attempts: 3,
            max_deliveries: 10,
        },
    ));
    let u = UserId::new(1).unwrap();
    users
        .register(UserProfile {
            id: u,
            username: None,
            first_name: None,
            language: Language::Ru,
        })
        .await
        .unwrap();
    // 1000 ₽ = exactly 20 images at 50 ₽.
    admin
        .credit(
            Actor::System,
            u,
            "1000".parse().unwrap(),
            "seed",
            IdempotencyKey::new("seed").unwrap(),
        )
        .await
        .unwrap();

    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let spec = JobSpec::image(Prompt::parse("fox").unwrap());
                let quote = jobs.quote(&spec);
                let job = jobs
                    .create(
                        u,
                        spec,
                        &quote,
                        IdempotencyKey::new(format!("tap-{i}")).unwrap(),
                    )
                    .await?;
                // Any worker may claim any job: run whichever this task got.
                let claimed = jobs
                    .claim("w", std::time::Duration::from_secs(60))
                    .await?
                    .expect("as many claims as jobs: one is always ready");
                let guard = JobGuard::Lease(claimed.lease.clone().unwrap().token);
                // Half succeed, half fail and are refunded.
                let event = if i % 2 == 0 {
                    JobEvent::Succeeded {
                        result: AssetRef::new("r.png"),
                        actual_cost: job.quote.amount,
                        result_url: None,
                    }
                } else {
                    JobEvent::Failed {
                        reason: FailureReason::ProviderFailed { detail: "x".into() },
                    }
                };
                jobs.write(claimed.id, event, guard).await?;
                Ok::<_, JobError>(i % 2 == 0)
            })
        })
        .collect();
    let mut created = 0;
    let mut captured = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(true) => {
                created += 1;
                captured += 1;
            }
            Ok(false) => created += 1,
            Err(JobError::InsufficientFunds { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(created >= 20, "at least the first 20 fit");
    let balance = store.balance(u).await.unwrap();
    assert_eq!(balance.available.kopecks(), 100_000 - captured * 5_000);
    assert_eq!(balance.held, Money::ZERO);
    let report = store.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}
