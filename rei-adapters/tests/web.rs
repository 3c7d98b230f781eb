//! `/healthz` and `/readyz` over a real listener and real backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rei_adapters::app::backends::{BackendsConfig, connect};
use rei_adapters::outbound::sql::DatabaseTarget;
use tokio_util::sync::CancellationToken;

async fn serve(redis_url: Option<String>) -> (String, CancellationToken) {
    let dir = tempfile::tempdir().unwrap().keep();
    let backends = connect(&BackendsConfig {
        database: DatabaseTarget::SqlitePath(dir.join("rei.db").to_string_lossy().into_owned()),
        redis_url: redis_url.map(rei_adapters::outbound::secret_url::SecretUrl::new),
        rate_limit_per_minute: 10,
        lease_for: Duration::from_secs(60),
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(rei_adapters::inbound::http::serve(
        listener,
        rei_adapters::inbound::http::WebState::new(backends),
        shutdown.clone(),
    ));
    (url, shutdown)
}

async fn get(url: &str) -> (u16, String) {
    let answer = reqwest::get(url).await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test]
async fn health_and_readiness_answer_on_a_working_database() {
    let (url, shutdown) = serve(None).await;
    assert_eq!(get(&format!("{url}/healthz")).await, (200, "ok".to_owned()));
    assert_eq!(
        get(&format!("{url}/readyz")).await,
        (200, "ready".to_owned())
    );
    assert_eq!(get(&format!("{url}/nothing")).await.0, 404);
    // Parts not configured answer 404.
    assert_eq!(get(&format!("{url}/metrics")).await.0, 404);
    let hook = reqwest::Client::new()
        .post(format!("{url}/webhooks/yookassa"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status().as_u16(), 404);
    shutdown.cancel();
}

#[tokio::test]
async fn readiness_fails_while_redis_is_down_and_health_does_not() {
    // A port nobody listens on: Redis is configured but down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let (url, shutdown) = serve(Some(format!("redis://127.0.0.1:{port}/"))).await;
    assert_eq!(get(&format!("{url}/healthz")).await.0, 200);
    assert_eq!(
        get(&format!("{url}/readyz")).await,
        (503, "unavailable: redis".to_owned())
    );
    shutdown.cancel();
}
