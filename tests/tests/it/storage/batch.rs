//! Group commit on real databases: writes that wait together are committed in one
//! transaction, and one write's refusal inside that transaction refuses it alone.

use std::time::Duration;

use rei_adapters::outbound::sql::{DatabaseTarget, Stores, WriteMode, connect_with};
use rei_core::ledger::{EntryKind, NewEntry, NewReservation, RefType, SettlementError};
use rei_core::ports::StoreError;
use rei_core::prelude::*;
use sqlx::Connection;
use uuid::Uuid;

/// Holds the write lock (SQLite) or user 9's row (PostgreSQL) from outside the store,
/// so the store's writer lane waits on its first write while the others queue.
enum Blocker {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Blocker {
    async fn take(target: &DatabaseTarget) -> Self {
        match target {
            DatabaseTarget::SqlitePath(path) => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
                    .await
                    .unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                Self::Sqlite(c)
            }
            DatabaseTarget::Postgres(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut c).await.unwrap();
                sqlx::query("SELECT balance FROM users WHERE tg_id = 9 FOR UPDATE")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                Self::Postgres(c)
            }
            DatabaseTarget::SqliteUrl(_) => unreachable!("the tests open files by path"),
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
            Self::Postgres(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
            }
        }
    }
}

fn credit(user: UserId, kopecks: i64, key: &str) -> NewEntry {
    NewEntry {
        user_id: user,
        kind: EntryKind::Credit,
        amount: Money::from_kopecks(kopecks).unwrap(),
        ref_type: RefType::Admin,
        ref_id: "batch".into(),
        description: "batch test".into(),
        idempotency_key: IdempotencyKey::new(key).unwrap(),
        created_at: Timestamp::from_millis(5),
    }
}

fn hold(user: UserId, kopecks: i64, key: &str) -> NewReservation {
    NewReservation {
        id: ReservationId::from_uuid(Uuid::new_v4()),
        user_id: user,
        amount: Money::from_kopecks(kopecks).unwrap(),
        job_id: None,
        description: "batch test".into(),
        idempotency_key: IdempotencyKey::new(key).unwrap(),
        created_at: Timestamp::from_millis(5),
    }
}

type Outcome = Result<String, StoreError>;

/// One write of the batch under test.
enum Step {
    Credit(UserId, i64, &'static str),
    Hold(UserId, i64, &'static str),
    Capture(ReservationId),
    StaleDialogue(UserId),
}

impl Step {
    async fn run(self, s: Stores) -> Outcome {
        match self {
            Self::Credit(user, k, key) => s
                .ledger
                .post(credit(user, k, key), None)
                .await
                .map(|p| format!("credited {}", p.balance)),
            Self::Hold(user, k, key) => s
                .ledger
                .reserve(hold(user, k, key))
                .await
                .map(|r| format!("held {}", r.amount)),
            Self::Capture(id) => {
                let actual = Money::from_kopecks(10).unwrap();
                s.ledger
                    .settle(
                        id,
                        Settlement::Capture { actual },
                        Timestamp::from_millis(7),
                    )
                    .await
                    .map(|_| "captured".into())
            }
            Self::StaleDialogue(user) => s
                .dialogues
                .save_dialogue(user, "{\"stale\":true}", Some(7), Timestamp::from_millis(7))
                .await
                .map(|v| format!("saved v{v}")),
        }
    }
}

/// Seven writes queued behind a blocked lane: three succeed, four are refused (an
/// overdraft, a replayed key with other content, a settlement of a hold already
/// released, a stale dialogue version). They are committed in one transaction; each
/// caller gets its own answer, and only the refused writes are missing.
async fn refusals_in_a_batch_refuse_only_themselves(target: DatabaseTarget, stores: Stores) {
    let seed = |id: i64, k: i64| {
        let stores = stores.clone();
        async move {
            rei_tests::seeded_user(
                &stores,
                id,
                Money::from_kopecks(k).unwrap(),
                &format!("seed-{id}"),
            )
            .await
            .unwrap()
        }
    };
    let (a, b, c, blocked) = (
        seed(1, 100).await,
        seed(2, 1_000).await,
        seed(3, 1_000).await,
        seed(9, 1).await,
    );
    let released = stores
        .ledger
        .reserve(hold(c, 10, "c-released"))
        .await
        .unwrap();
    stores
        .ledger
        .settle(released.id, Settlement::Release, Timestamp::from_millis(6))
        .await
        .unwrap();
    stores
        .dialogues
        .save_dialogue(b, "{}", None, Timestamp::from_millis(6))
        .await
        .unwrap();

    let blocker = Blocker::take(&target).await;
    let before = stores.sql.write_stats();
    // The lane takes this write and waits for the lock with it.
    let first = {
        let ledger = stores.ledger.clone();
        tokio::spawn(async move { ledger.post(credit(blocked, 5, "blocked-1"), None).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ops = [
        Step::Credit(b, 500, "b-1"),
        Step::Hold(a, 1_000, "a-overdraft"),
        Step::Credit(b, 999, "seed-2"),
        Step::Capture(released.id),
        Step::Hold(c, 50, "c-hold"),
        Step::Credit(b, 700, "b-2"),
        Step::StaleDialogue(b),
    ];
    let n = ops.len();
    let mut tasks = Vec::new();
    for op in ops {
        tasks.push(tokio::spawn(op.run(stores.clone())));
        // In this order into the queue: the batch's first write is one that succeeds.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.release().await;

    first.await.unwrap().unwrap();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(
        outcomes[0].as_ref().unwrap(),
        "credited 15.00 ₽",
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Err(StoreError::InsufficientFunds { needed, available })
            if needed == Money::from_kopecks(1_000).unwrap() && available == Money::from_kopecks(100).unwrap()),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], Err(StoreError::IdempotencyConflict { key }) if key == "seed-2"),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[3], Err(StoreError::Settlement(SettlementError::AlreadySettled { id, .. })) if *id == released.id),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[4].as_ref().unwrap(), "held 0.50 ₽", "{outcomes:?}");
    assert_eq!(
        outcomes[5].as_ref().unwrap(),
        "credited 22.00 ₽",
        "{outcomes:?}"
    );
    assert!(
        matches!(
            &outcomes[6],
            Err(StoreError::Conflict {
                what: "dialogue",
                ..
            })
        ),
        "{outcomes:?}"
    );

    // One commit for the blocked write, one for the seven that waited behind it.
    let after = stores.sql.write_stats();
    assert_eq!(after.commits - before.commits, 2, "{before:?} -> {after:?}");
    assert_eq!(
        after.writes - before.writes,
        1 + n as u64,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.largest, n as u64, "{after:?}");

    let money = |k: i64| Money::from_kopecks(k).unwrap();
    assert_eq!(
        stores.ledger.balance(a).await.unwrap(),
        Balance {
            available: money(100),
            held: Money::ZERO
        }
    );
    assert_eq!(
        stores.ledger.balance(b).await.unwrap(),
        Balance {
            available: money(2_200),
            held: Money::ZERO
        }
    );
    assert_eq!(
        stores.ledger.balance(c).await.unwrap(),
        Balance {
            available: money(950),
            held: money(50)
        }
    );
    assert_eq!(
        stores
            .ledger
            .reservation(released.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Released
    );
    assert_eq!(
        stores
            .dialogues
            .load_dialogue(b)
            .await
            .unwrap()
            .unwrap()
            .state,
        "{}"
    );
    assert!(
        stores
            .ledger
            .entry_by_key(&IdempotencyKey::new("a-overdraft").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let report = stores.ledger.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
}

/// Many tasks credit and spend on a few shared users and many users of their own at
/// once, through group commit: every answered write is there, refusals are clean
/// overdrafts, and each balance is the sum of its entries.
async fn concurrent_writers_keep_balances_equal_to_their_entries(stores: Stores, batched: bool) {
    let shared: Vec<UserId> = {
        let mut v = Vec::new();
        for id in 1..=3 {
            v.push(
                rei_tests::seeded_user(
                    &stores,
                    id,
                    Money::from_kopecks(1_000).unwrap(),
                    &format!("seed-{id}"),
                )
                .await
                .unwrap(),
            );
        }
        v
    };
    let tasks: Vec<_> = (0..64_i64)
        .map(|t| {
            let stores = stores.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let own = rei_tests::seeded_user(
                    &stores,
                    100 + t,
                    Money::from_kopecks(300).unwrap(),
                    &format!("seed-own-{t}"),
                )
                .await
                .unwrap();
                let (mut credited, mut held) = (0_i64, 0_i64);
                for i in 0..10_i64 {
                    let target = shared[usize::try_from((t + i) % 3).unwrap()];
                    stores
                        .ledger
                        .post(credit(target, 7, &format!("c-{t}-{i}")), None)
                        .await
                        .unwrap();
                    credited += 7;
                    for user in [target, own] {
                        match stores
                            .ledger
                            .reserve(hold(user, 40, &format!("h-{t}-{i}-{user}")))
                            .await
                        {
                            Ok(r) => {
                                held += 40;
                                stores
                                    .ledger
                                    .settle(
                                        r.id,
                                        Settlement::Capture {
                                            actual: Money::from_kopecks(40).unwrap(),
                                        },
                                        Timestamp::from_millis(9),
                                    )
                                    .await
                                    .unwrap();
                            }
                            Err(StoreError::InsufficientFunds { .. }) => {}
                            Err(e) => panic!("unexpected store error: {e}"),
                        }
                    }
                }
                (credited, held)
            })
        })
        .collect();
    let (mut credited, mut spent) = (0, 0);
    for t in tasks {
        let (c, h) = t.await.unwrap();
        credited += c;
        spent += h;
    }
    let mut total = 0;
    for id in (1..=3).chain(100..164) {
        let b = stores
            .ledger
            .balance(UserId::new(id).unwrap())
            .await
            .unwrap();
        assert_eq!(b.held, Money::ZERO);
        total += b.available.kopecks();
    }
    assert_eq!(total, 3 * 1_000 + 64 * 300 + credited - spent);
    let report = stores.ledger.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    let stats = stores.sql.write_stats();
    if batched {
        assert!(
            stats.writes > stats.commits,
            "concurrent writes should share commits: {stats:?}"
        );
    } else {
        assert_eq!(stats.writes, stats.commits, "{stats:?}");
    }
}

async fn sqlite() -> (DatabaseTarget, Stores) {
    let target = DatabaseTarget::SqlitePath(rei_tests::sqlite_path().unwrap());
    let stores = connect_with(&target, WriteMode::Batched).await.unwrap();
    (target, stores)
}

async fn postgres(mode: WriteMode) -> (DatabaseTarget, Stores) {
    let target = DatabaseTarget::Postgres(rei_tests::postgres_url().await.unwrap());
    let stores = connect_with(&target, mode).await.unwrap();
    (target, stores)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_refusals_in_a_batch_refuse_only_themselves() {
    let (target, stores) = sqlite().await;
    refusals_in_a_batch_refuse_only_themselves(target, stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_refusals_in_a_batch_refuse_only_themselves() {
    let (target, stores) = postgres(WriteMode::Batched).await;
    refusals_in_a_batch_refuse_only_themselves(target, stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_writers_keep_balances_equal_to_their_entries() {
    let (_, stores) = sqlite().await;
    concurrent_writers_keep_balances_equal_to_their_entries(stores, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_writers_keep_balances_equal_to_their_entries() {
    for mode in [WriteMode::Direct, WriteMode::Batched] {
        let (_, stores) = postgres(mode).await;
        concurrent_writers_keep_balances_equal_to_their_entries(stores, mode != WriteMode::Direct)
            .await;
    }
}
