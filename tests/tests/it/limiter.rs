//! The Redis rate limiter shared by two real processes: together they get exactly the
//! per-minute budget of one user, not one budget each.

use tokio::process::Command;

async fn ask(url: &str, prefix: &str, attempts: u32) -> u32 {
    let out = Command::new(env!("CARGO_BIN_EXE_rei-storage-child"))
        .args(["limit", url, prefix, "42", "10", &attempts.to_string()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .strip_prefix("allowed ")
        .unwrap_or_else(|| panic!("unexpected output: {text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn two_processes_share_one_users_budget_in_redis() {
    let url = rei_tests::server_url("REI_TEST_REDIS_URL");
    let prefix = format!("rei-test-{}:", uuid::Uuid::new_v4().simple());
    let (a, b) = tokio::join!(ask(&url, &prefix, 8), ask(&url, &prefix, 8));
    assert_eq!(
        a + b,
        10,
        "10 per minute across both processes (got {a} + {b})"
    );
    assert_eq!(
        ask(&url, &prefix, 3).await,
        0,
        "the budget is spent for everyone"
    );
}
