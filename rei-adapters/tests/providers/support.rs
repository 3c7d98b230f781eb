//! Helpers shared by the provider tests: fast retry policies, a metrics recorder, log
//! capture, tiny but well-formed test images, and a bare HTTP/1.1 server for answers a
//! mock server cannot give (bodies without `Content-Length`, answers that break off).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use rei_adapters::outbound::client::RetryPolicy;
use rei_core::ids::JobId;
use serde_json::Value;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, Respond, ResponseTemplate};

/// `attempts` attempts with millisecond backoff, no jitter, no rate-limit floor, provider
/// waits up to 2 s.
pub fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        max_retry_after: Duration::from_secs(2),
        rate_limit_floor: Duration::ZERO,
        jitter: false,
    }
}

/// A fixed job id.
pub fn job(n: u128) -> JobId {
    JobId::from_uuid(Uuid::from_u128(
        0x0b7c_1e2a_0000_4000_8000_0000_0000_0000 + n,
    ))
}

/// An answer with `status` and `body` as JSON.
pub fn json_reply(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

/// A mock for the requests `request_line` names: a method and, unless any path will do,
/// the path (`"GET /v1/tasks"`).
pub fn on(request_line: &str) -> MockBuilder {
    match request_line.split_once(' ') {
        Some((verb, route)) => Mock::given(method(verb)).and(path(route)),
        None => Mock::given(method(request_line)),
    }
}

/// Answers every request `request_line` names with `answer`.
pub async fn respond(server: &MockServer, request_line: &str, answer: impl Respond + 'static) {
    on(request_line).respond_with(answer).mount(server).await;
}

/// Answers the first `n` requests `request_line` names with `answer`; later ones go to the
/// mocks mounted after it.
pub async fn respond_first(
    server: &MockServer,
    request_line: &str,
    n: u64,
    answer: impl Respond + 'static,
) {
    on(request_line)
        .respond_with(answer)
        .up_to_n_times(n)
        .mount(server)
        .await;
}

/// Answers the requests `request_line` names with `answer` and expects exactly one of them
/// (checked when the server is dropped).
pub async fn respond_once(server: &MockServer, request_line: &str, answer: impl Respond + 'static) {
    on(request_line)
        .respond_with(answer)
        .expect(1)
        .mount(server)
        .await;
}

/// Every request the mock server received, in order.
pub async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

/// Counters by `name{label=value,…}` (labels sorted).
#[derive(Clone, Default)]
pub struct TestRecorder {
    counters: Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
}

impl TestRecorder {
    /// The value of a counter, 0 when never touched.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let key = render(
            name,
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self.counters
            .lock()
            .unwrap()
            .get(&key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

fn render(name: &str, mut labels: Vec<(String, String)>) -> String {
    labels.sort();
    let labels: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let rendered = render(key.name(), labels);
        let counter = self
            .counters
            .lock()
            .unwrap()
            .entry(rendered)
            .or_default()
            .clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Everything logged (at TRACE) while the guard lives, on this thread.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Starts capturing on this thread (`#[tokio::test]` runs on one thread).
    pub fn start() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// The text so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A PNG signature and IHDR claiming `width`×`height`.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    [
        &b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"[..],
        &width.to_be_bytes(),
        &height.to_be_bytes(),
        // Bit depth 8, RGBA, then compression, filter, interlace and a CRC left zero.
        &[8, 6, 0, 0, 0, 0, 0, 0, 0],
    ]
    .concat()
}

/// A JPEG with an APP0 segment and a baseline frame header of `width`×`height`.
pub fn jpeg(width: u16, height: u16) -> Vec<u8> {
    [
        // SOI, then the APP0 (JFIF) segment.
        &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10][..],
        b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0",
        // SOF0: length 17, 8-bit samples, the height and width, three components.
        &[0xFF, 0xC0, 0x00, 0x11, 0x08],
        &height.to_be_bytes(),
        &width.to_be_bytes(),
        &[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1],
        // EOI.
        &[0xFF, 0xD9],
    ]
    .concat()
}

/// What a [`RawServer`] does after writing an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Close the connection (ends a body without `Content-Length`, or cuts one short).
    Close,
    /// Keep the connection open without another byte.
    Stall,
}

/// One scripted answer: bytes written verbatim, then [`Then`].
#[derive(Clone, Debug)]
pub struct RawAnswer {
    pub bytes: Vec<u8>,
    pub then: Then,
}

impl RawAnswer {
    /// A status line and headers (each `Name: value`, CRLF added), then `body` as is.
    pub fn new(status_line: &str, headers: &[&str], body: &[u8], then: Then) -> Self {
        let mut bytes = format!("{status_line}\r\n").into_bytes();
        for header in headers {
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        Self { bytes, then }
    }
}

/// A bare HTTP/1.1 server on 127.0.0.1: the n-th connection reads one request and gets the
/// n-th answer (the last one repeats). Bound before it is spawned, so it is ready at once.
pub struct RawServer {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl RawServer {
    pub async fn start(answers: Vec<RawAnswer>) -> Self {
        assert!(!answers.is_empty());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let accept = tokio::spawn(async move {
            let mut served = 0;
            while let Ok((socket, _)) = listener.accept().await {
                let answer = answers[served.min(answers.len() - 1)].clone();
                served += 1;
                tokio::spawn(serve(socket, answer, recorded.clone()));
            }
        });
        Self {
            addr,
            requests,
            accept,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request read so far (head and body as text), in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    answer: RawAnswer,
    requests: Arc<Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&buf).into_owned());
    if socket.write_all(&answer.bytes).await.is_err() {
        return;
    }
    let _ = socket.flush().await;
    match answer.then {
        Then::Close => {
            let _ = socket.shutdown().await;
        }
        Then::Stall => {
            std::future::pending::<()>().await;
            drop(socket);
        }
    }
}

/// A chunked-transfer body of `chunks` chunks of `size` bytes each, then the last chunk.
pub fn chunked(chunks: usize, size: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..chunks {
        body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'v', size));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

/// The value of a header in a request recorded by [`RawServer`].
pub fn raw_header(request: &str, name: &str) -> Option<String> {
    let name = format!("{}:", name.to_ascii_lowercase());
    request
        .split("\r\n\r\n")
        .next()?
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&name))
        .map(|l| l[name.len()..].trim().to_owned())
}

/// The body of a request recorded by [`RawServer`].
pub fn raw_body(request: &str) -> &str {
    request.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}
