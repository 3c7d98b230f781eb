//! `rei-cli` as a user runs it: a real SQLite file, exit codes, tables and `--json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

struct Db {
    _dir: tempfile::TempDir,
    path: String,
}

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rei.db").to_string_lossy().into_owned();
    Db { _dir: dir, path }
}

/// Runs the CLI; returns (exit code, stdout, stderr).
fn cli(db: &Db, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rei-cli"))
        .args(args)
        .env("DATABASE_PATH", &db.path)
        .env_remove("DATABASE_URL")
        .env("USER", "ops")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Registers a user the way the bot does (the CLI has no registration command).
fn register(db: &Db, id: i64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let stores = rei_adapters::outbound::sql::connect(
            &rei_adapters::outbound::sql::DatabaseTarget::SqlitePath(db.path.clone()),
        )
        .await
        .unwrap();
        let profile = rei_core::user::UserProfile {
            id: rei_core::ids::UserId::new(id).unwrap(),
            username: Some("anna".into()),
            first_name: None,
            language: rei_core::user::Language::Ru,
        };
        stores
            .users
            .register(profile, rei_core::Timestamp::from_millis(0))
            .await
            .unwrap();
    });
}

#[test]
fn migrate_then_verify_an_empty_database() {
    let d = db();
    let (code, out, _) = cli(&d, &["migrate"]);
    assert_eq!(code, 0);
    assert!(out.contains("migrations applied"));
    let (code, out, _) = cli(&d, &["--json", "ledger", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["violations"], serde_json::json!([]));
}

#[test]
fn balance_adjustments_are_audited_and_never_go_below_zero() {
    let d = db();
    register(&d, 42);
    let (code, out, err) = cli(
        &d,
        &[
            "--json",
            "balance",
            "add",
            "42",
            "150.50",
            "--reason",
            "compensation",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v = json(&out);
    assert_eq!(
        (v["amount_kopecks"].as_i64(), v["balance_kopecks"].as_i64()),
        (Some(15_050), Some(15_050))
    );
    let (code, _, err) = cli(&d, &["balance", "sub", "42", "200", "--reason", "too much"]);
    assert_eq!(
        code, 2,
        "a debit beyond the balance is refused as a usage error"
    );
    assert!(
        err.contains("the balance is 150.50 ₽, cannot take 200.00 ₽"),
        "{err}"
    );
    let (code, out, _) = cli(&d, &["--json", "user", "show", "42"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["balance_kopecks"], 15_050);
    // The audit log names the OS user.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = rt.block_on(async {
        let stores = rei_adapters::outbound::sql::connect(
            &rei_adapters::outbound::sql::DatabaseTarget::SqlitePath(d.path.clone()),
        )
        .await
        .unwrap();
        stores.users.audit_log(10).await.unwrap()
    });
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].actor.to_string(), "cli:ops");
}

#[test]
fn a_retried_adjustment_with_a_key_applies_once() {
    let d = db();
    register(&d, 42);
    for _ in 0..2 {
        let (code, _, _) = cli(
            &d,
            &[
                "balance",
                "add",
                "42",
                "10",
                "--reason",
                "r",
                "--idempotency-key",
                "ticket-7",
            ],
        );
        assert_eq!(code, 0);
    }
    let (_, out, _) = cli(&d, &["--json", "user", "show", "42"]);
    assert_eq!(json(&out)["balance_kopecks"], 1_000);
}

#[test]
fn bad_input_is_a_usage_error_and_changes_nothing() {
    let d = db();
    register(&d, 42);
    for args in [
        vec!["balance", "add", "42", "-5", "--reason", "x"],
        vec!["balance", "add", "42", "1.005", "--reason", "x"],
        vec!["balance", "add", "abc", "5", "--reason", "x"],
        vec!["balance", "add", "42", "5"],
        vec!["user", "show", "999"],
        vec!["user", "ban", "999"],
        vec!["user", "unban", "999"],
        vec!["balance", "add", "999", "5", "--reason", "x"],
        vec!["payments", "list", "--since", "7w"],
        // A Cyrillic unit (a Russian keyboard): a clear error, not a panic.
        vec!["payments", "list", "--since", "7д"],
        vec!["payments", "reconcile", "--since", "д"],
        vec!["assets", "cleanup", "--older-than", "7дн"],
        vec!["jobs", "cancel", "not-a-uuid"],
        vec!["frobnicate"],
    ] {
        let (code, out, err) = cli(&d, &args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: the error is named");
    }
    let (_, out, _) = cli(&d, &["--json", "user", "show", "42"]);
    assert_eq!(json(&out)["balance_kopecks"], 0);
}

#[test]
fn stats_history_and_lists_render() {
    let d = db();
    register(&d, 42);
    cli(&d, &["balance", "add", "42", "100", "--reason", "welcome"]);
    let (code, out, _) = cli(&d, &["ledger", "history", "42"]);
    assert_eq!(code, 0);
    assert!(out.contains("welcome") && out.contains("100.00 ₽"), "{out}");
    let (code, out, _) = cli(&d, &["--json", "stats"]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(
        (v["users"].as_u64(), v["balances_total_kopecks"].as_i64()),
        (Some(1), Some(10_000))
    );
    let (code, out, _) = cli(
        &d,
        &[
            "--json", "payments", "list", "--status", "paid", "--since", "7d",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(json(&out), serde_json::json!([]));
    let (code, out, _) = cli(&d, &["--json", "jobs", "list", "--user", "42"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out), serde_json::json!([]));
    let (code, _, err) = cli(
        &d,
        &["jobs", "cancel", "00000000-0000-0000-0000-000000000001"],
    );
    assert_eq!(code, 2, "an unknown job is the caller's mistake: {err}");
}

#[test]
fn a_broken_ledger_fails_verification_with_exit_1() {
    let d = db();
    register(&d, 42);
    cli(&d, &["balance", "add", "42", "100", "--reason", "x"]);
    // Corrupt the cached balance behind the ledger's back.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", d.path))
            .await
            .unwrap();
        sqlx::query("UPDATE users SET balance = balance + 1")
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let (code, out, _) = cli(&d, &["ledger", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cached_balance_mismatch"), "{out}");
}
