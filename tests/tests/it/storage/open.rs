//! Opening databases, migrations, and the schema's constraints as the last line of defence.

use rei_adapters::outbound::sql::{DatabaseTarget, SqlError, connect, redact};
use sqlx::Connection;

#[test]
fn database_url_wins_over_path_and_bad_schemes_are_named() {
    assert_eq!(
        DatabaseTarget::from_config(None, "rei_bot.db").unwrap(),
        DatabaseTarget::SqlitePath("rei_bot.db".into())
    );
    assert_eq!(
        DatabaseTarget::from_config(Some(""), "a.db").unwrap(),
        DatabaseTarget::SqlitePath("a.db".into())
    );
    assert!(matches!(
        DatabaseTarget::from_config(Some("sqlite://x.db"), "a.db").unwrap(),
        DatabaseTarget::SqliteUrl(_)
    ));
    assert!(matches!(
        DatabaseTarget::from_config(Some("postgres://u:p@h/db"), "a.db").unwrap(),
        DatabaseTarget::Postgres(_)
    ));
    let err = DatabaseTarget::from_config(Some("mysql://root:hunter2@db/rei"), "a.db").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SqlError::BadUrl(_)));
    assert!(text.contains("mysql://root:***@db/rei"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "passwords never appear in errors"
    );
    assert!(
        !format!(
            "{:?}",
            DatabaseTarget::from_config(Some("postgres://u:secret@h/db"), "").unwrap()
        )
        .contains("secret")
    );
    assert_eq!(
        redact("postgres://u:pw@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode_and_reopening_keeps_data() {
    let path = rei_tests::sqlite_path().unwrap();
    assert!(!std::path::Path::new(&path).exists());
    let stores = connect(&DatabaseTarget::SqlitePath(path.clone()))
        .await
        .unwrap();
    stores.health.ping().await.unwrap();
    drop(stores);
    let again = connect(&DatabaseTarget::SqliteUrl(format!("sqlite://{path}")))
        .await
        .unwrap();
    again.health.ping().await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rei-adapters/migrations/sqlite"
    ))
    .unwrap()
    .count();
    assert_eq!(
        usize::try_from(n).unwrap(),
        files,
        "each migration is applied once"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let err = connect(
        &DatabaseTarget::from_config(Some("postgres://rei:pw@127.0.0.1:1/none"), "").unwrap(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SqlError::Connect(_)), "{err:?}");
}

const MUST_SUCCEED: [&str; 6] = [
    "INSERT INTO users (tg_id, created_at) VALUES (1, 0)",
    "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) VALUES (1, 'credit', 5, 'admin', 'x', 'x', 'dup', 0)",
    "INSERT INTO payments (id, provider, provider_payment_id, user_id, amount, status, created_at, updated_at) VALUES ('p1', 'yookassa', 'yk-same', 1, 100, 'pending', 0, 0)",
    "INSERT INTO reservations (id, user_id, amount, state, description, idempotency_key, created_at) VALUES ('r1', 1, 10, 'held', 'd', 'rk', 0)",
    "UPDATE reservations SET state = 'captured', captured = 10, settled_at = 0 WHERE id = 'r1'",
    "INSERT INTO reservations (id, user_id, amount, state, description, idempotency_key, created_at) VALUES ('r2', 1, 10, 'held', 'd', 'rk2', 0)",
];

/// Raw writes that must be refused by one named rule (the message proves which fired).
const MUST_FAIL_WITH: [(&str, &str); 4] = [
    // Captured -> released with the capture erased would refund a captured job.
    (
        "UPDATE reservations SET state = 'released', captured = NULL WHERE id = 'r1'",
        "a settled reservation cannot change",
    ),
    (
        "UPDATE reservations SET amount = 5 WHERE id = 'r1'",
        "a settled reservation cannot change",
    ),
    (
        "INSERT INTO settlements (reservation_id, kind, actual, settled_at) VALUES ('r2', 'capture', 10, 0)",
        "a settlement must match a settled reservation",
    ),
    (
        "INSERT INTO settlements (reservation_id, kind, actual, settled_at) VALUES ('r2', 'release', NULL, 0)",
        "a settlement must match a settled reservation",
    ),
];

/// Raw writes that bypass the domain must still be refused by the schema.
macro_rules! constraints_hold {
    ($conn:expr) => {{
        let must_fail = [
            "UPDATE ledger SET amount = 1",
            "DELETE FROM ledger",
            "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) VALUES (1, 'credit', -5, 'admin', 'x', 'x', 'neg', 0)",
            "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) VALUES (1, 'gift', 5, 'admin', 'x', 'x', 'bad-type', 0)",
            "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) VALUES (1, 'credit', 5, 'admin', 'x', 'x', 'dup', 0)",
            "UPDATE users SET balance = -1",
            "INSERT INTO payments (id, provider, provider_payment_id, user_id, amount, status, created_at, updated_at) VALUES ('p2', 'yookassa', 'yk-same', 1, 100, 'pending', 0, 0)",
            "INSERT INTO settlements (reservation_id, kind, actual, settled_at) VALUES ('r1', 'release', NULL, 0)",
            "INSERT INTO jobs (id, user_id, type, status, progress, params, quote, cost_estimate, reservation_id, idempotency_key, created_at, updated_at, delivery) \
             VALUES ('j1', 1, 'image_generation', 'pending', 0, '{}', '{}', 10, 'r2', 'jk', 0, 0, 'delivered')",
            "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) VALUES (999, 'credit', 5, 'admin', 'x', 'x', 'no-user', 0)",
        ];
        for ok in MUST_SUCCEED {
            sqlx::query(ok).execute(&mut $conn).await.unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in must_fail {
            assert!(sqlx::query(bad).execute(&mut $conn).await.is_err(), "the schema accepted: {bad}");
        }
        for (bad, rule) in MUST_FAIL_WITH {
            match sqlx::query(bad).execute(&mut $conn).await {
                Ok(_) => panic!("the schema accepted: {bad}"),
                Err(e) => assert!(e.to_string().contains(rule), "{bad}: refused by another rule than `{rule}`: {e}"),
            }
        }
    }};
}

#[tokio::test]
async fn sqlite_schema_refuses_what_the_domain_forbids() {
    let path = rei_tests::sqlite_path().unwrap();
    connect(&DatabaseTarget::SqlitePath(path.clone()))
        .await
        .unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    constraints_hold!(conn);
}

#[tokio::test]
async fn postgres_schema_refuses_what_the_domain_forbids() {
    let url = rei_tests::postgres_url().await.unwrap();
    connect(&DatabaseTarget::from_config(Some(&url), "").unwrap())
        .await
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    constraints_hold!(conn);
}

/// [edge] PostgreSQL over TLS with `sslmode=verify-full`: the stores open and migrate
/// through a connection that is encrypted and whose certificate was checked; a server
/// certificate from an unknown CA is refused.
#[tokio::test]
async fn postgres_over_tls_with_a_verified_certificate() {
    let ca = std::env::var("REI_TEST_POSTGRES_CA")
        .expect("scripts/test starts PostgreSQL with TLS and sets REI_TEST_POSTGRES_CA");
    let plain = rei_tests::postgres_url().await.unwrap();
    let with_roots = |roots: &str| {
        let mut url = url::Url::parse(&plain).unwrap();
        url.query_pairs_mut()
            .append_pair("sslmode", "verify-full")
            .append_pair("sslrootcert", roots);
        url.to_string()
    };
    let url = with_roots(&ca);
    rei_adapters::outbound::sql::SqlStore::connect_postgres(&url)
        .await
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (encrypted,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(encrypted, "the connection is TLS");
    // Another CA does not vouch for the test server: refused.
    let other = std::env::var("REI_TEST_POSTGRES_OTHER_CA").expect("set by scripts/test");
    let refused =
        rei_adapters::outbound::sql::SqlStore::connect_postgres(&with_roots(&other)).await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA is refused"
    );
}
