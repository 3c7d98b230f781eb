//! Upgrades: a database filled at the schema before a migration is migrated to the
//! latest, and keeps every entry, its balances and its guards. First for 0009, which
//! rebuilds SQLite's ledger table to admit the growth entry kinds.

use std::borrow::Cow;

use rei_adapters::outbound::sql::SqlStore;
use rei_core::ledger::{EntryKind, NewEntry, RefType};
use rei_core::ports::LedgerStore;
use rei_core::prelude::*;

/// The project's migrations for `dialect` up to and including `last`.
async fn migrator_until(dialect: &str, last: i64) -> sqlx::migrate::Migrator {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rei-adapters/migrations")
        .join(dialect);
    let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    let kept: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= last)
        .cloned()
        .collect();
    assert_eq!(
        kept.len(),
        usize::try_from(last).unwrap(),
        "migrations 1..={last}"
    );
    migrator.migrations = Cow::Owned(kept);
    migrator
}

/// Rows as the schema of migration 8 stores them (written by its own SQL, its
/// triggers keeping the balances).
const FILL: [&str; 3] = [
    "INSERT INTO users (tg_id, created_at) VALUES (1, 1), (2, 1)",
    "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) VALUES \
     (1, 'credit', 10000, 'payment', 'p1', 'top-up', 'k1', 2), \
     (1, 'debit', 2500, 'admin', 'admin:9', 'sub', 'k2', 3), \
     (2, 'credit', 500, 'admin', 'admin:9', 'add', 'k3', 4)",
    "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) VALUES \
     (1, 'refund', 100, 'reservation', 'r1', 'back', 'k4', 5)",
];

/// What the upgraded store must still hold and guard.
async fn still_whole(store: &SqlStore) {
    let one = UserId::new(1).unwrap();
    let two = UserId::new(2).unwrap();
    let entries = store.entries(one, 10).await.unwrap();
    let kept: Vec<(i64, EntryKind, i64, RefType)> = entries
        .iter()
        .map(|e| (e.id, e.kind, e.amount.kopecks(), e.ref_type))
        .collect();
    assert_eq!(
        kept,
        [
            (4, EntryKind::Refund, 100, RefType::Reservation),
            (2, EntryKind::Debit, 2_500, RefType::Admin),
            (1, EntryKind::Credit, 10_000, RefType::Payment),
        ],
        "every entry kept with its id"
    );
    assert_eq!(store.balance(one).await.unwrap().available.kopecks(), 7_600);
    assert_eq!(store.balance(two).await.unwrap().available.kopecks(), 500);
    let report = store.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    // The new kinds are admitted, and the balance trigger still follows each entry.
    let bonus = NewEntry {
        user_id: two,
        kind: EntryKind::Credit,
        amount: Money::from_kopecks(5_000).unwrap(),
        ref_type: RefType::Bonus,
        ref_id: "signup".into(),
        description: "signup bonus".into(),
        idempotency_key: IdempotencyKey::new("signup:2").unwrap(),
        created_at: Timestamp::from_millis(6),
    };
    let posted = store.post(bonus, None).await.unwrap();
    assert_eq!((posted.entry.id, posted.balance.kopecks()), (5, 5_500));
    assert!(store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn sqlite_upgraded_past_the_ledger_rebuild_keeps_every_entry_and_guard() {
    let path = rei_tests::sqlite_path().unwrap();
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        migrator_until("sqlite", 8).await.run(&pool).await.unwrap();
        for sql in FILL {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = SqlStore::open_sqlite_path(&path).await.unwrap();
    still_whole(&store).await;
    // Still append-only.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    for sql in [
        "UPDATE ledger SET amount = 1 WHERE id = 1",
        "DELETE FROM ledger WHERE id = 1",
    ] {
        let refused = sqlx::query(sql).execute(&pool).await;
        assert!(refused.is_err(), "{sql} went through");
    }
    // An unknown kind is still refused by the schema.
    let odd = sqlx::query(
        "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) \
         VALUES (1, 'credit', 1, 'gift', 'x', 'x', 'odd', 7)",
    )
    .execute(&pool)
    .await;
    assert!(odd.is_err(), "an unknown ref_type went in");
}

#[tokio::test]
async fn postgres_upgraded_past_the_ledger_kinds_keeps_every_entry_and_guard() {
    let url = rei_tests::postgres_url().await.unwrap();
    {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        migrator_until("postgres", 8)
            .await
            .run(&pool)
            .await
            .unwrap();
        for sql in FILL {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = SqlStore::connect_postgres(&url).await.unwrap();
    still_whole(&store).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for sql in [
        "UPDATE ledger SET amount = 1 WHERE id = 1",
        "DELETE FROM ledger WHERE id = 1",
        "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) \
         VALUES (1, 'credit', 1, 'gift', 'x', 'x', 'odd', 7)",
    ] {
        assert!(
            sqlx::query(sql).execute(&pool).await.is_err(),
            "{sql} went through"
        );
    }
}
