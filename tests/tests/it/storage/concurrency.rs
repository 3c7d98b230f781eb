//! Concurrency on real databases: many threads, and two OS processes on one SQLite file.

use std::process::Command;
use std::sync::Arc;

use futures::future::join_all;
use rei_adapters::outbound::sql::{DatabaseTarget, Stores, connect};
use rei_core::ledger::NewReservation;
use rei_core::memory::{ManualClock, SequentialIds};
use rei_core::ports::StoreError;
use rei_core::prelude::*;
use uuid::Uuid;

async fn user_with(stores: &Stores, id: i64, kopecks: i64) -> UserId {
    let amount = Money::from_kopecks(kopecks).unwrap();
    rei_tests::seeded_user(stores, id, amount, &format!("seed-{id}"))
        .await
        .unwrap()
}

/// 100 tasks on 4 threads each hold 10 from a balance of 100: exactly 10 succeed.
async fn threads_spend_one_balance(stores: Stores) {
    let u = user_with(&stores, 1, 100).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let ledger = stores.ledger.clone();
            tokio::spawn(async move {
                ledger
                    .reserve(NewReservation {
                        id: ReservationId::from_uuid(Uuid::from_u128(i + 1)),
                        user_id: u,
                        amount: Money::from_kopecks(10).unwrap(),
                        job_id: None,
                        description: "spend".into(),
                        idempotency_key: IdempotencyKey::new(format!("spend-{i}")).unwrap(),
                        created_at: Timestamp::from_millis(1),
                    })
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::InsufficientFunds { .. }) => {}
            Err(e) => panic!("unexpected error under concurrency: {e}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(
        stores.ledger.balance(u).await.unwrap().available,
        Money::ZERO
    );
    let report = stores.ledger.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

/// 50 tasks deliver the same Telegram Stars payment: one credit.
async fn duplicate_credits_credit_once(stores: Stores) {
    let u = user_with(&stores, 2, 1).await;
    let payments = Arc::new(rei_tests::stars_payments(
        &stores,
        Arc::new(ManualClock::new(Timestamp::from_millis(5))),
        Arc::new(SequentialIds::default()),
        Money::from_kopecks(150).unwrap(),
    ));
    let p = payments.create_stars_topup(u, 100).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let payments = payments.clone();
            tokio::spawn(async move { payments.stars_paid(p.id, "stx-dup", 100).await })
        })
        .collect();
    let results = join_all(tasks).await;
    let credited = results
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .filter(|a| a.credited)
        .count();
    assert_eq!(credited, 1);
    assert_eq!(
        stores.ledger.balance(u).await.unwrap().available.kopecks(),
        1 + 15_000
    );
    assert!(stores.ledger.verify().await.unwrap().is_ok());
}

async fn sqlite_stores() -> (Stores, String) {
    let path = rei_tests::sqlite_path().unwrap();
    (
        connect(&DatabaseTarget::SqlitePath(path.clone()))
            .await
            .unwrap(),
        path,
    )
}

async fn postgres_stores() -> Stores {
    let url = rei_tests::postgres_url().await.unwrap();
    connect(&DatabaseTarget::from_config(Some(&url), "").unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_threads_spend_one_balance() {
    threads_spend_one_balance(sqlite_stores().await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_threads_spend_one_balance() {
    threads_spend_one_balance(postgres_stores().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_duplicate_credits_credit_once() {
    duplicate_credits_credit_once(sqlite_stores().await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_duplicate_credits_credit_once() {
    duplicate_credits_credit_once(postgres_stores().await).await;
}

/// Two processes hold 10 kopecks 100 times each from one balance of 1000 on one SQLite
/// file: exactly 100 holds succeed, no "database is locked", the ledger adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_spend_one_sqlite_file() {
    let (stores, path) = sqlite_stores().await;
    let u = user_with(&stores, 3, 1_000).await;
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_rei-storage-child"))
            .args(["spend", &path, &u.to_string(), "100"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn child")
    };
    let children = [spawn(), spawn()];
    let mut ok = 0;
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n: u32 = stdout
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("child prints `ok N refused M`");
        ok += n;
    }
    assert_eq!(ok, 100, "1000 kopecks pay for exactly 100 holds of 10");
    assert_eq!(
        stores.ledger.balance(u).await.unwrap().available,
        Money::ZERO
    );
    let report = stores.ledger.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}
