//! A child process writing money flows is killed with SIGKILL at random points, again
//! and again; after every restart the ledger invariants hold.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rand::Rng;
use rei_adapters::outbound::sql::{DatabaseTarget, connect};
use rei_core::Timestamp;

const ROUNDS: u32 = 8;

/// Runs `rei-storage-child <mode> <target> <round>`, hands each line it prints (one per
/// answered write) to `on_line`, and kills it with SIGKILL after `kill_after` lines:
/// its next write is somewhere between begin and commit.
fn run_and_kill(
    mode: &str,
    target: &str,
    round: u32,
    kill_after: u64,
    mut on_line: impl FnMut(String),
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rei-storage-child"))
        .args([mode, target, &round.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the storage child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    for seen in 0..kill_after {
        match lines.next() {
            Some(Ok(line)) => on_line(line),
            other => panic!("the {mode} stopped on its own after {seen} lines: {other:?}"),
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

fn kill_at_random_points(target: &str) -> u64 {
    let mut rng = rand::rng();
    let mut total_ops = 0;
    for round in 0..ROUNDS {
        let kill_after: u64 = rng.random_range(1..60);
        run_and_kill("crash-writer", target, round, kill_after, |_| {});
        total_ops += kill_after;
    }
    total_ops
}

async fn verify(target: DatabaseTarget) {
    let stores = connect(&target).await.expect("reopen after crashes");
    let report = stores.ledger.verify().await.unwrap();
    assert!(
        report.is_ok(),
        "invariants broken after SIGKILL: {:?}",
        report.violations
    );
    assert!(report.entries_checked > 0);
    let stats = stores.users.stats(Timestamp::from_millis(0)).await.unwrap();
    assert!(stats.users > 0);
}

#[test]
fn sqlite_survives_sigkill_at_random_points() {
    let path = rei_tests::sqlite_path().unwrap();
    let ops = kill_at_random_points(&path);
    assert!(ops >= u64::from(ROUNDS));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(verify(DatabaseTarget::SqlitePath(path)));
}

#[test]
fn postgres_survives_sigkill_at_random_points() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(rei_tests::postgres_url()).unwrap();
    kill_at_random_points(&url);
    rt.block_on(verify(DatabaseTarget::from_config(Some(&url), "").unwrap()));
}

/// What the batch writer reported as answered before it was killed.
#[derive(Default)]
struct Answered {
    credits: Vec<String>,
    holds: Vec<String>,
    captured: Vec<String>,
}

/// Kills a process writing through group commit (32 concurrent writers, many writes per
/// commit) at random points, again and again. Every write whose caller had its answer
/// is in the database afterwards, none is half there (each credit with its audit line
/// and its notice), and the ledger verifies.
fn kill_batches_in_flight(target: &str) -> Answered {
    let mut rng = rand::rng();
    let mut answered = Answered::default();
    for round in 0..ROUNDS {
        let kill_after: u64 = rng.random_range(50..600);
        run_and_kill(
            "batch-writer",
            target,
            round,
            kill_after,
            |line| match line.split_once(' ') {
                Some(("credit", key)) => answered.credits.push(key.to_owned()),
                Some(("hold", id)) => answered.holds.push(id.to_owned()),
                Some(("captured", id)) => answered.captured.push(id.to_owned()),
                _ => panic!("unexpected line from the batch writer: {line}"),
            },
        );
    }
    answered
}

async fn verify_answered(target: DatabaseTarget, answered: &Answered) {
    use rei_core::ledger::ReservationState;
    use rei_core::prelude::{IdempotencyKey, ReservationId};
    let stores = connect(&target).await.expect("reopen after crashes");
    for key in &answered.credits {
        let entry = stores
            .ledger
            .entry_by_key(&IdempotencyKey::new(key.clone()).unwrap())
            .await
            .unwrap();
        assert!(entry.is_some(), "answered credit {key} is missing");
    }
    for (ids, state) in [
        (&answered.holds, None),
        (&answered.captured, Some(ReservationState::Captured)),
    ] {
        for id in ids {
            let id = ReservationId::from_uuid(id.parse().unwrap());
            let held = stores.ledger.reservation(id).await.unwrap();
            let held = held.unwrap_or_else(|| panic!("answered hold {id} is missing"));
            if let Some(state) = state {
                assert_eq!(held.state, state, "answered capture of {id}");
            }
        }
    }
    // Whole or absent: as many audit lines and notices as credits.
    let pool = sqlx::AnyPool::connect(&match &target {
        DatabaseTarget::SqlitePath(p) => format!("sqlite://{p}"),
        DatabaseTarget::Postgres(u) | DatabaseTarget::SqliteUrl(u) => u.clone(),
    })
    .await
    .unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            n
        }
    };
    let credits = count("SELECT COUNT(*) FROM ledger WHERE ref_id = 'crash-batch'").await;
    assert!(credits >= i64::try_from(answered.credits.len()).unwrap());
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_log WHERE reason = 'crash-batch'").await,
        credits
    );
    assert_eq!(count("SELECT COUNT(*) FROM outbox").await, credits);
    let report = stores.ledger.verify().await.unwrap();
    assert!(
        report.is_ok(),
        "invariants broken after SIGKILL: {:?}",
        report.violations
    );
}

#[test]
fn sqlite_batches_killed_in_flight_keep_every_answered_write() {
    let path = rei_tests::sqlite_path().unwrap();
    let answered = kill_batches_in_flight(&path);
    assert!(answered.credits.len() >= ROUNDS as usize);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(verify_answered(DatabaseTarget::SqlitePath(path), &answered));
}

#[test]
fn postgres_batches_killed_in_flight_keep_every_answered_write() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(rei_tests::postgres_url()).unwrap();
    let answered = kill_batches_in_flight(&url);
    assert!(answered.credits.len() >= ROUNDS as usize);
    rt.block_on(verify_answered(
        DatabaseTarget::from_config(Some(&url), "").unwrap(),
        &answered,
    ));
}
