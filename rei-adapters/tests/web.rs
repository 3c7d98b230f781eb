//! `/healthz` and `/readyz` over a real listener and real backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rei_adapters::app::backends::{BackendsConfig, connect};
use rei_adapters::inbound::http::ServerLimits;
use rei_adapters::outbound::sql::DatabaseTarget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn serve(redis_url: Option<String>) -> (String, CancellationToken) {
    serve_with(redis_url, ServerLimits::default()).await
}

async fn serve_with(
    redis_url: Option<String>,
    limits: ServerLimits,
) -> (String, CancellationToken) {
    let dir = tempfile::tempdir().unwrap().keep();
    let backends = connect(&BackendsConfig {
        database: DatabaseTarget::SqlitePath(dir.join("rei.db").to_string_lossy().into_owned()),
        redis_url: redis_url.map(rei_adapters::outbound::secret_url::SecretUrl::new),
        rate_limit_per_minute: 10,
        lease_for: Duration::from_secs(60),
        write_mode: None,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(rei_adapters::inbound::http::serve(
        listener,
        rei_adapters::inbound::http::WebState::new(backends),
        limits,
        shutdown.clone(),
    ));
    (url, shutdown)
}

/// The status of a POST of `body` to `url`.
async fn post(url: &str, body: &'static str) -> u16 {
    let answer = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    answer.status().as_u16()
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
    assert_eq!(post(&format!("{url}/webhooks/yookassa"), "{}").await, 404);
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

/// [edge] The server cannot be starved: a thousand idle connections and a slowloris
/// client (headers a byte at a time) hold nothing — `/healthz` and the webhooks answer at
/// once, and the slow client is cut off after the header timeout.
#[tokio::test]
async fn idle_and_slow_clients_do_not_starve_the_server() {
    let limits = ServerLimits {
        max_connections: 1_100,
        header_timeout: Duration::from_secs(2),
    };
    let (url, shutdown) = serve_with(None, limits).await;
    let addr = url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..1_000 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let slowloris = tokio::spawn(async move {
        // One header byte a second, never the end of the headers.
        for _ in 0..30 {
            if slow.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut buf = [0_u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
            {
                return true;
            }
        }
        false
    });
    let started = std::time::Instant::now();
    assert_eq!(get(&format!("{url}/healthz")).await, (200, "ok".to_owned()));
    assert_eq!(
        post(&format!("{url}/webhooks/yookassa"), "{}").await,
        404,
        "answered (not configured here)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once: {:?}",
        started.elapsed()
    );
    assert!(
        slowloris.await.unwrap(),
        "the slow client is cut off after the header timeout"
    );
    // The idle ones are closed too, all within a few header timeouts.
    let reads = idle.into_iter().map(|mut connection| async move {
        let mut buf = [0_u8; 16];
        matches!(connection.read(&mut buf).await, Ok(0) | Err(_))
    });
    let closed = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(reads))
        .await
        .expect("idle connections are closed within 10 s")
        .into_iter()
        .filter(|closed| *closed)
        .count();
    assert_eq!(
        closed, 1_000,
        "idle connections are closed after the header timeout"
    );
    shutdown.cancel();
}

/// [edge] A webhook's sender is checked before its body is read: a client that
/// announces a body and never sends it gets its answer at once (here 404: the route's
/// part is not configured), instead of holding the connection until the request timeout.
#[tokio::test]
async fn a_webhook_answers_before_reading_a_body_that_never_comes() {
    let (url, shutdown) = serve(None).await;
    let addr = url.trim_start_matches("http://").to_owned();
    for path in [
        "/webhooks/yookassa",
        "/webhooks/telegram",
        "/webhooks/kling",
    ] {
        let mut client = tokio::net::TcpStream::connect(&addr).await.unwrap();
        client
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = vec![0_u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(2), client.read(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer while the body is missing"))
            .unwrap();
        let head = String::from_utf8_lossy(&answer[..n]);
        assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
    }
    shutdown.cancel();
}
