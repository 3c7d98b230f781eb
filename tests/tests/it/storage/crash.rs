//! A child process writing money flows is killed with SIGKILL at random points, again
//! and again; after every restart the ledger invariants hold.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rand::Rng;
use rei_adapters::outbound::sql::{DatabaseTarget, connect};
use rei_core::Timestamp;

const ROUNDS: u32 = 8;

fn kill_at_random_points(target: &str) -> u64 {
    let mut rng = rand::rng();
    let mut total_ops = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rei-storage-child"))
            .args(["crash-writer", target, &round.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash writer");
        let kill_after: u64 = rng.random_range(1..60);
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < kill_after {
            match lines.next() {
                Some(Ok(_)) => seen += 1,
                other => panic!("the writer stopped on its own after {seen} ops: {other:?}"),
            }
        }
        // SIGKILL mid-flight: the next write is somewhere between begin and commit.
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        total_ops += seen;
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
