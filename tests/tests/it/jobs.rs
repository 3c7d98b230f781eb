//! Job creation through the service on real databases: concurrent confirmations by one
//! user never pass `MAX_ACTIVE_JOBS_PER_USER`, and every refusal holds nothing.

use std::sync::Arc;

use rei_adapters::outbound::sql::{DatabaseTarget, Stores, connect};
use rei_core::job::{JobError, JobLimits, JobSpec, Prompt};
use rei_core::prelude::*;

async fn twenty_concurrent_confirmations(target: DatabaseTarget) {
    let stores: Stores = connect(&target).await.unwrap();
    let jobs = Arc::new(rei_tests::job_service(
        &stores,
        JobLimits {
            max_active_per_user: 3,
            ..JobLimits::default()
        },
    ));
    let user = rei_tests::funded_user(&stores, 77, "10000".parse().unwrap())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let spec = JobSpec::image(Prompt::parse("a fox").unwrap());
                let quote = jobs.quote(&spec);
                jobs.create(
                    user,
                    spec,
                    &quote,
                    IdempotencyKey::new(format!("tap-{i}")).unwrap(),
                )
                .await
            })
        })
        .collect();
    let (mut accepted, mut capped) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(JobError::TooManyActiveJobs { limit: 3 }) => capped += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((accepted, capped), (3, 17));
    let balance = stores.ledger.balance(user).await.unwrap();
    assert_eq!(
        (balance.available.kopecks(), balance.held.kopecks()),
        (1_000_000 - 3 * 5_000, 3 * 5_000)
    );
    assert_eq!(stores.jobs.queue_depth().await.unwrap(), 3);
    assert!(stores.ledger.verify().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_confirmations_on_sqlite_make_exactly_the_cap() {
    twenty_concurrent_confirmations(DatabaseTarget::SqlitePath(
        rei_tests::sqlite_path().unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_confirmations_on_postgres_make_exactly_the_cap() {
    let url = rei_tests::postgres_url().await.unwrap();
    twenty_concurrent_confirmations(DatabaseTarget::Postgres(url)).await;
}
