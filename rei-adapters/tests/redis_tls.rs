//! Redis over TLS (`rediss://`): the limiter and the queue talk to a real `redis-server`
//! started here with a certificate from a throwaway CA, trusted through `SSL_CERT_FILE`
//! (the system's roots, as in production). Needs `redis-server` (built with TLS, as
//! Debian's is) and the `openssl` tool: without them the test fails, it never passes
//! empty-handed.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use rei_adapters::outbound::redis::RedisLimiter;
use rei_core::ids::UserId;
use rei_core::ports::{RateDecision, RateLimiter};

/// Runs `openssl` with `args` in `dir`, failing the test on an error.
fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl tool makes the test certificates");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=rei-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// `redis-server` with TLS only, on a free port.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

fn start(dir: &Path) -> TlsRedis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = |f: &str| dir.join(f).display().to_string();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .args(["--tls-cert-file", &path("server.pem")])
        .args(["--tls-key-file", &path("server.key")])
        .args(["--tls-ca-cert-file", &path("ca.pem")])
        .args(["--dir", &dir.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsRedis { child, port }
}

/// Sets up the CA, the certificate and the server, then runs [`over_tls`] in a child
/// process whose `SSL_CERT_FILE` names the CA: the roots come from the system store, as
/// in production, and this process's environment is never changed.
#[test]
fn the_limiter_works_over_tls_with_a_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let server = start(dir.path());
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "over_tls", "--ignored", "--nocapture"])
        .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
        .env(
            "REI_TLS_REDIS_URL",
            format!("rediss://127.0.0.1:{}/", server.port),
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("1 passed"), "{said}");
    drop(server);
}

/// Run by [`the_limiter_works_over_tls_with_a_verified_certificate`] with its
/// environment; on its own it has no server to talk to.
#[tokio::test]
#[ignore = "run by the_limiter_works_over_tls_with_a_verified_certificate"]
async fn over_tls() {
    let url = std::env::var("REI_TLS_REDIS_URL").expect("set by the parent test");
    let limiter = RedisLimiter::new(&url, "tls:", NonZeroU32::new(2).unwrap()).unwrap();
    let anna = UserId::new(42).unwrap();
    for _ in 0..2 {
        assert_eq!(limiter.check(anna).await.unwrap(), RateDecision::Allowed);
    }
    assert!(matches!(
        limiter.check(anna).await.unwrap(),
        RateDecision::Limited { .. }
    ));
    // The budget lives in Redis (not in the in-process fallback): its key is there.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = conn.exists(limiter.key(anna)).await.unwrap();
    assert!(exists, "the limiter's state is in Redis, reached over TLS");
}
