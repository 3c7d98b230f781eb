//! Nano Banana Pro (Gemini) against a fake that speaks providers.md §2.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rei_adapters::outbound::gemini::{GeminiClient, GeminiConfig};
use rei_core::ports::{ImageGenerator, ImageInput, ImageRequest, ProviderError, ProviderErrorKind};
use rei_core::pricing::{AspectRatio, Resolution};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    LogCapture, RawAnswer, RawServer, TestRecorder, Then, fast_retry, job, jpeg, json_reply, png,
    requests, respond, respond_first,
};

const KEY: &str = "AIzaSy-test-key-0123456789";
const ENDPOINT: &str = "/v1beta/models/gemini-3-pro-image-preview:generateContent";

async fn fixture(attempts: u32) -> (MockServer, GeminiClient) {
    let server = MockServer::start().await;
    let client = client_for(&server.uri(), attempts, |_| {});
    (server, client)
}

fn client_for(base_url: &str, attempts: u32, edit: impl FnOnce(&mut GeminiConfig)) -> GeminiClient {
    let mut config = GeminiConfig::new(SecretString::from(KEY));
    config.base_url = base_url.to_owned();
    config.retry = fast_retry(attempts);
    edit(&mut config);
    GeminiClient::new(config).unwrap()
}

fn request(images: Vec<ImageInput>) -> ImageRequest {
    ImageRequest {
        job_id: job(100),
        prompt: "Make this photo a watercolor poster, keep the face unchanged".to_owned(),
        images,
        aspect: None,
        resolution: Resolution::OneK,
    }
}

/// The documented answer: two thought parts (one an interim image), a caption, the final image.
fn answer(final_image: &[u8]) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Planning the composition...", "thought": true},
                {"inlineData": {"mimeType": "image/png", "data": STANDARD.encode(png(64, 64))}, "thought": true},
                {"text": "Here is your watercolor poster."},
                {"inlineData": {"mimeType": "image/jpeg", "data": STANDARD.encode(final_image)}, "thoughtSignature": "CpwBAdHtim9..."}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 560, "candidatesTokenCount": 1290, "thoughtsTokenCount": 210, "totalTokenCount": 2060,
                          "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1120}]},
        "modelVersion": "gemini-3-pro-image-preview",
        "responseId": "bq9eaK2xK8"
    })
}

fn google_error(code: u16, status: &str, message: &str, details: Value) -> Value {
    json!({"error": {"code": code, "message": message, "status": status, "details": details}})
}

fn quota_exceeded(quota_id: &str, retry_delay: &str) -> Value {
    google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": quota_id, "quotaValue": "10"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        ]),
    )
}

/// HTTP 429 for the per-minute quota, to be retried after `retry_delay`.
fn per_minute_quota_exceeded(retry_delay: &str) -> ResponseTemplate {
    let body = quota_exceeded(
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        retry_delay,
    );
    json_reply(429, body)
}

#[tokio::test]
async fn text_to_image_returns_the_last_non_thought_image_and_caption() {
    let (server, client) = fixture(3).await;
    let final_image = jpeg(1024, 1024);
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .and(header("x-goog-api-key", KEY))
        .respond_with(json_reply(200, answer(&final_image)))
        .expect(1)
        .mount(&server)
        .await;

    let image = client.generate(&request(vec![])).await.unwrap();

    assert_eq!(image.bytes, final_image);
    assert_eq!(image.mime_type, "image/jpeg");
    assert_eq!(
        image.caption.as_deref(),
        Some("Here is your watercolor poster.")
    );
    let sent = &requests(&server).await[0];
    assert_eq!(sent.url.query(), None, "the key never goes in the URL");
    assert!(!sent.url.as_str().contains(KEY));
    assert_eq!(
        sent.headers.get("content-type").unwrap(),
        "application/json"
    );
    let body: Value = sent.body_json().unwrap();
    assert_eq!(
        body,
        json!({"contents": [{"role": "user", "parts": [{"text": "Make this photo a watercolor poster, keep the face unchanged"}]}],
               "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}})
    );
}

#[tokio::test]
async fn a_chosen_shape_and_size_go_in_image_config_exactly() {
    for (aspect, resolution, config) in [
        (
            Some(AspectRatio::Wide16x9),
            Resolution::FourK,
            json!({"aspectRatio": "16:9", "imageSize": "4K"}),
        ),
        (
            Some(AspectRatio::Portrait3x4),
            Resolution::OneK,
            json!({"aspectRatio": "3:4"}),
        ),
        (None, Resolution::TwoK, json!({"imageSize": "2K"})),
    ] {
        let (server, client) = fixture(1).await;
        Mock::given(method("POST"))
            .and(path(ENDPOINT))
            .respond_with(json_reply(200, answer(&jpeg(64, 64))))
            .expect(1)
            .mount(&server)
            .await;
        let mut sent = request(vec![]);
        sent.aspect = aspect;
        sent.resolution = resolution;
        client.generate(&sent).await.unwrap();
        let body: Value = requests(&server).await[0].body_json().unwrap();
        assert_eq!(
            body["generationConfig"],
            json!({"responseModalities": ["TEXT", "IMAGE"], "imageConfig": config})
        );
    }
}

#[tokio::test]
async fn photo_and_text_send_inline_image_data() {
    let (server, client) = fixture(3).await;
    respond(
        &server,
        &format!("POST {}", ENDPOINT),
        json_reply(200, answer(&png(512, 512))),
    )
    .await;
    let photo = jpeg(800, 600);

    let image = client
        .generate(&request(vec![ImageInput {
            bytes: photo.clone(),
            mime_type: "image/jpeg".to_owned(),
        }]))
        .await
        .unwrap();

    assert_eq!(image.bytes, png(512, 512));
    let body: Value = requests(&server).await[0].body_json().unwrap();
    let parts = &body["contents"][0]["parts"];
    assert_eq!(
        parts[0],
        json!({"text": "Make this photo a watercolor poster, keep the face unchanged"})
    );
    assert_eq!(
        parts[1],
        json!({"inline_data": {"mime_type": "image/jpeg", "data": STANDARD.encode(&photo)}})
    );
}

#[tokio::test]
async fn refusals_carry_the_providers_reason() {
    let cases = [
        (
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
                   "modelVersion": "gemini-3-pro-image-preview"}),
            "PROHIBITED_CONTENT",
        ),
        (
            json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "IMAGE_SAFETY", "index": 0}]}),
            "IMAGE_SAFETY",
        ),
        (
            json!({"candidates": [{"finishReason": "SAFETY", "index": 0}]}),
            "SAFETY",
        ),
        (
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "I can't make that."}]}, "finishReason": "STOP", "index": 0}]}),
            "I can't make that.",
        ),
        (
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "hm"}]}, "finishReason": "NO_IMAGE"}]}),
            "NO_IMAGE",
        ),
        (
            json!({"candidates": [{"content": {"role": "model", "parts": [
                       {"inlineData": {"mimeType": "image/png", "data": STANDARD.encode(png(64, 64))}}]},
                   "finishReason": "IMAGE_OTHER",
                   "finishMessage": "Unable to show the generated image. You will not be charged for this request."}]}),
            "(IMAGE_OTHER): Unable to show the generated image.",
        ),
        (
            json!({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": STANDARD.encode(png(8, 8))}, "thought": true}]}, "finishReason": "STOP"}]}),
            "without an image",
        ),
        (json!({}), "no answer"),
    ];
    for (body, reason) in cases {
        let (server, client) = fixture(3).await;
        respond(&server, "POST", json_reply(200, body.clone())).await;
        let err = client.generate(&request(vec![])).await.unwrap_err();
        let ProviderError::Refused { reason: got } = &err else {
            panic!("{body}: expected Refused, got {err:?}")
        };
        assert!(got.contains(reason), "{got:?} should mention {reason:?}");
        assert_eq!(requests(&server).await.len(), 1, "refusals are not retried");
    }
}

#[tokio::test]
async fn only_stop_or_no_finish_reason_delivers_the_image() {
    // Each answer carries a final image; only a natural stop may be billed as a success.
    const IMAGE: Option<ProviderErrorKind> = None;
    const REFUSED: Option<ProviderErrorKind> = Some(ProviderErrorKind::Refused);
    let cases = [
        (Some("STOP"), IMAGE),
        (None, IMAGE),
        (Some("IMAGE_OTHER"), REFUSED),
        (Some("NO_IMAGE"), REFUSED),
        (Some("MAX_TOKENS"), REFUSED),
        (Some("OTHER"), REFUSED),
        (Some("FINISH_REASON_UNSPECIFIED"), REFUSED),
        (Some("LANGUAGE"), REFUSED),
        (Some("MALFORMED_FUNCTION_CALL"), REFUSED),
        (Some("UNEXPECTED_TOOL_CALL"), REFUSED),
        (Some("TOO_MANY_TOOL_CALLS"), REFUSED),
        (Some("SAFETY"), REFUSED),
        (Some("PROHIBITED_CONTENT"), REFUSED),
        (Some("BLOCKLIST"), REFUSED),
        (Some("SPII"), REFUSED),
        (Some("RECITATION"), REFUSED),
        (Some("IMAGE_SAFETY"), REFUSED),
        (Some("IMAGE_PROHIBITED_CONTENT"), REFUSED),
        (Some("IMAGE_RECITATION"), REFUSED),
        (Some("A_REASON_ADDED_LATER"), REFUSED),
    ];
    let mut wrong = Vec::new();
    for (finish, expected) in cases {
        let final_image = jpeg(640, 480);
        let mut body = answer(&final_image);
        match finish {
            Some(reason) => body["candidates"][0]["finishReason"] = json!(reason),
            None => {
                body["candidates"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("finishReason");
            }
        }
        let (server, client) = fixture(3).await;
        respond(&server, "POST", json_reply(200, body)).await;
        let result = client.generate(&request(vec![])).await;
        assert_eq!(requests(&server).await.len(), 1, "{finish:?}: not retried");
        match (expected, result) {
            (None, Ok(image)) => assert_eq!(image.bytes, final_image, "{finish:?}"),
            (Some(kind), Err(err)) if err.kind() == kind => {
                let reason = err.to_string();
                assert!(
                    reason.contains(finish.unwrap()),
                    "{finish:?}: {reason:?} should name the finish reason"
                );
            }
            (expected, result) => wrong.push(format!(
                "{finish:?}: expected {expected:?}, got {:?}",
                result.map(|image| image.mime_type)
            )),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn error_answers_map_to_their_class() {
    use ProviderErrorKind::{Auth, InvalidRequest, OutOfFunds, Transient, Unknown};
    let key_invalid = json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                              "metadata": {"service": "generativelanguage.googleapis.com"}}]);
    let cases = [
        (
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                "Unable to process input image.",
                json!([]),
            ),
            InvalidRequest,
            1,
        ),
        (
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                key_invalid,
            ),
            Auth,
            1,
        ),
        (
            400,
            google_error(
                400,
                "FAILED_PRECONDITION",
                "User location is not supported for the API use.",
                json!([]),
            ),
            Auth,
            1,
        ),
        (
            403,
            google_error(
                403,
                "PERMISSION_DENIED",
                "The caller does not have permission",
                json!([]),
            ),
            Auth,
            1,
        ),
        (
            404,
            google_error(404, "NOT_FOUND", "models/gemini-9 is not found", json!([])),
            InvalidRequest,
            1,
        ),
        (
            429,
            quota_exceeded("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "3600s"),
            OutOfFunds,
            1,
        ),
        (
            500,
            google_error(
                500,
                "INTERNAL",
                "An internal error has occurred.",
                json!([]),
            ),
            Transient,
            3,
        ),
        (
            503,
            google_error(503, "UNAVAILABLE", "The model is overloaded.", json!([])),
            Transient,
            3,
        ),
        (
            504,
            google_error(504, "DEADLINE_EXCEEDED", "Deadline exceeded.", json!([])),
            Transient,
            3,
        ),
        // Not documented as retryable: the generation may have been billed.
        (
            502,
            google_error(502, "UNAVAILABLE", "Bad gateway.", json!([])),
            Unknown,
            1,
        ),
        (408, json!({}), Unknown, 1),
        (501, json!({}), Unknown, 1),
    ];
    for (status, body, kind, attempts) in cases {
        let (server, client) = fixture(3).await;
        respond(&server, "POST", json_reply(status, body)).await;
        let err = client.generate(&request(vec![])).await.unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status}: {err:?}");
        assert_eq!(
            requests(&server).await.len(),
            attempts,
            "HTTP {status}: attempts"
        );
        assert!(!err.to_string().contains(KEY));
    }
}

#[tokio::test]
async fn a_rate_limit_waits_for_retry_delay_then_succeeds() {
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let (server, client) = fixture(3).await;
    respond_first(&server, "POST", 1, per_minute_quota_exceeded("0.3s")).await;
    respond(&server, "POST", json_reply(200, answer(&png(300, 300)))).await;

    let started = Instant::now();
    client.generate(&request(vec![])).await.unwrap();

    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "retryDelay honoured: waited {:?}",
        started.elapsed()
    );
    assert_eq!(requests(&server).await.len(), 2);
    assert_eq!(
        recorder.counter("provider_retries_total", &[("provider", "gemini")]),
        1
    );
    assert_eq!(
        recorder.counter(
            "provider_errors_total",
            &[("provider", "gemini"), ("kind", "rate_limited")]
        ),
        1
    );
}

#[tokio::test]
async fn a_long_retry_delay_is_surfaced_with_its_value() {
    let (server, client) = fixture(3).await;
    respond(&server, "POST", per_minute_quota_exceeded("22s")).await;
    let err = client.generate(&request(vec![])).await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(22))
        }
    );
    assert_eq!(
        requests(&server).await.len(),
        1,
        "22 s is beyond the test's 2 s cap: not waited in place"
    );
}

#[tokio::test]
async fn rate_limits_exhaust_the_retry_budget() {
    let (server, client) = fixture(2).await;
    respond(&server, "POST", per_minute_quota_exceeded("0.01s")).await;
    let err = client.generate(&request(vec![])).await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::RateLimited);
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (server, client) = fixture(3).await;
    respond_first(
        &server,
        "POST",
        1,
        json_reply(
            503,
            google_error(503, "UNAVAILABLE", "overloaded", json!([])),
        ),
    )
    .await;
    respond(&server, "POST", json_reply(200, answer(&png(300, 300)))).await;
    assert_eq!(
        client.generate(&request(vec![])).await.unwrap().bytes,
        png(300, 300)
    );
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_retried_a_bounded_number_of_times() {
    // Nothing was sent, so nothing was billed: the one transport failure that is retried.
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    // A bound socket that never listens: every connection attempt is refused.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let client = client_for(
        &format!("http://{}", closed.local_addr().unwrap()),
        3,
        |_| {},
    );

    let err = client.generate(&request(vec![])).await.unwrap_err();

    let ProviderError::Transient { message } = &err else {
        panic!("expected Transient, got {err:?}")
    };
    assert!(message.contains("connection failed"), "{message}");
    assert_eq!(
        recorder.counter(
            "provider_requests_total",
            &[("provider", "gemini"), ("outcome", "transient")]
        ),
        3,
        "three attempts in total"
    );
    assert_eq!(
        recorder.counter("provider_retries_total", &[("provider", "gemini")]),
        2
    );
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_not_requested_again() {
    // Google has the request and goes on rendering (and billing) it after we stop waiting:
    // a repeat would be a second billed generation.
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let server = MockServer::start().await;
    respond(
        &server,
        "POST",
        ResponseTemplate::new(200)
            .set_body_json(answer(&png(300, 300)))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let client = client_for(&server.uri(), 3, |c| {
        c.http.request_timeout = Duration::from_millis(300);
        c.http.read_timeout = Duration::from_millis(300);
    });

    let err = client.generate(&request(vec![])).await.unwrap_err();

    assert_eq!(
        requests(&server).await.len(),
        1,
        "exactly one request reached Gemini; got {err:?}"
    );
    let ProviderError::Unknown { message } = &err else {
        panic!("expected Unknown, got {err:?}")
    };
    assert!(
        message.starts_with("Gemini did not answer within") && message.contains("billed"),
        "{message}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        recorder.counter("provider_retries_total", &[("provider", "gemini")]),
        0
    );
    assert_eq!(
        recorder.counter(
            "provider_errors_total",
            &[("provider", "gemini"), ("kind", "unknown")]
        ),
        1,
        "one failed attempt"
    );
}

#[tokio::test]
async fn a_connection_that_drops_after_the_request_was_sent_is_not_repeated() {
    let (server, client) = fixture(3).await;
    Mock::given(method("POST"))
        .respond_with_err(|_: &Request| {
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset")
        })
        .mount(&server)
        .await;
    let err = client.generate(&request(vec![])).await.unwrap_err();
    assert_eq!(requests(&server).await.len(), 1, "not repeated: {err:?}");
    let ProviderError::Unknown { message } = &err else {
        panic!("expected Unknown, got {err:?}")
    };
    assert!(message.contains("billed"), "{message}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_answer_that_breaks_off_after_its_status_line_is_not_repeated() {
    // Google has the request: a repeat would be a second billed generation.
    let broken = RawAnswer::new(
        "HTTP/1.1 200 OK",
        &["Content-Type: application/json", "Content-Length: 4096"],
        br#"{"candidates": [{"content": {"parts": ["#,
        Then::Close,
    );
    let server = RawServer::start(vec![broken]).await;
    let client = client_for(&server.uri(), 3, |_| {});
    let err = client.generate(&request(vec![])).await.unwrap_err();
    let ProviderError::Unknown { message } = &err else {
        panic!("expected Unknown, got {err:?}")
    };
    assert!(message.contains("billed"), "{message}");
    assert!(!err.is_retryable());
    assert_eq!(server.requests().len(), 1, "not repeated");
}

#[tokio::test]
async fn an_answer_that_stalls_after_its_status_line_is_not_repeated() {
    let stalled = RawAnswer::new(
        "HTTP/1.1 200 OK",
        &["Content-Type: application/json", "Content-Length: 4096"],
        b"{",
        Then::Stall,
    );
    let server = RawServer::start(vec![stalled]).await;
    let client = client_for(&server.uri(), 3, |c| {
        c.http.request_timeout = Duration::from_millis(300);
        c.http.read_timeout = Duration::from_millis(300);
    });
    let err = client.generate(&request(vec![])).await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::Unknown, "{err:?}");
    assert_eq!(server.requests().len(), 1, "not repeated");
}

#[tokio::test]
async fn malformed_answers_are_clear_errors_not_panics() {
    let bad_base64 = json!({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%not base64%%%"}}]}, "finishReason": "STOP"}]});
    for body in [
        "{\"candidates\": 5}".to_owned(),
        "<html>oops</html>".to_owned(),
        bad_base64.to_string(),
    ] {
        let (server, client) = fixture(3).await;
        respond(
            &server,
            "POST",
            ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json"),
        )
        .await;
        let err = client.generate(&request(vec![])).await.unwrap_err();
        let ProviderError::Unknown { message } = &err else {
            panic!("{body}: expected Unknown, got {err:?}")
        };
        assert!(message.contains("Gemini"), "{message}");
        assert_eq!(requests(&server).await.len(), 1);
    }
}

#[tokio::test]
async fn oversized_or_unsupported_inputs_are_refused_before_sending() {
    let (server, client) = fixture(3).await;
    let huge = ImageInput {
        bytes: vec![0u8; 16 * 1024 * 1024],
        mime_type: "image/jpeg".to_owned(),
    };
    let gif = ImageInput {
        bytes: b"GIF89a".to_vec(),
        mime_type: "image/gif".to_owned(),
    };
    let too_many = vec![
        ImageInput {
            bytes: jpeg(300, 300),
            mime_type: "image/jpeg".to_owned()
        };
        15
    ];
    for images in [vec![huge], vec![gif], too_many] {
        assert_eq!(
            client.generate(&request(images)).await.unwrap_err().kind(),
            ProviderErrorKind::InvalidRequest
        );
    }
    let empty = ImageRequest {
        prompt: "  ".to_owned(),
        ..request(vec![])
    };
    assert_eq!(
        client.generate(&empty).await.unwrap_err().kind(),
        ProviderErrorKind::InvalidRequest
    );
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn the_key_never_reaches_the_logs() {
    let (logs, _guard) = LogCapture::start();
    let (server, client) = fixture(2).await;
    respond(
        &server,
        "POST",
        json_reply(500, google_error(500, "INTERNAL", "boom", json!([]))),
    )
    .await;
    let err = client.generate(&request(vec![])).await.unwrap_err();
    let text = logs.text();
    assert!(
        text.contains("retrying provider call") && text.contains("gemini"),
        "{text}"
    );
    assert!(!text.contains(KEY));
    assert!(!format!("{err:?} {client:?}").contains(KEY));
}
