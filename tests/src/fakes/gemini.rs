//! A fake Gemini `generateContent` (providers.md §2): answers every request with one
//! final PNG part (`finishReason: STOP`) and counts the calls; a test can make it refuse
//! every prompt (safety filter), answer every call with 429 `RESOURCE_EXHAUSTED`, take a
//! call and drop the connection before its answer (the call may have been billed),
//! answer 503 `UNAVAILABLE` (overloaded), or hold each answer for a while (a render in
//! progress, or a call that hangs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde_json::json;

/// The fake and its recordings.
#[derive(Clone, Debug)]
pub struct FakeGemini {
    calls: Arc<AtomicU32>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    limited: Arc<std::sync::atomic::AtomicBool>,
    modes: Arc<Modes>,
    /// Where it listens (`NANO_BANANA_API_URL`).
    pub url: String,
}

/// A tiny valid PNG (1×1, transparent).
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

impl FakeGemini {
    /// Starts the fake.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let calls = Arc::new(AtomicU32::new(0));
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let limited = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let modes = Arc::new(Modes::default());
        let router = Router::new()
            .route("/v1beta/models/{call}", post(generate))
            .with_state((
                calls.clone(),
                refuse.clone(),
                limited.clone(),
                modes.clone(),
            ));
        let (url, _task) = super::serve(router).await?;
        Ok(Self {
            calls,
            refuse,
            limited,
            modes,
            url,
        })
    }

    /// From now on every call is taken (and counted: it may be billed) and the
    /// connection then breaks before the answer.
    pub fn drop_answers(&self) {
        self.modes.drop_answers.store(true, Ordering::SeqCst);
    }

    /// From now on each answer comes after `delay` (a render in progress).
    pub fn answer_after(&self, delay: std::time::Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.modes.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// From now on every call is refused with 429 `RESOURCE_EXHAUSTED` and a
    /// `RetryInfo.retryDelay` of one second (providers.md §2.4).
    pub fn rate_limit(&self) {
        self.limited.store(true, Ordering::SeqCst);
    }

    /// From now on every prompt is blocked by the safety filter (HTTP 200 with
    /// `finishReason: SAFETY` and no image, providers.md §2.3).
    pub fn refuse(&self) {
        self.refuse.store(true, Ordering::SeqCst);
    }

    /// The next `n` calls answer 503 `UNAVAILABLE` (the model is overloaded), without
    /// generating anything.
    pub fn unavailable(&self, n: u32) {
        self.modes.unavailable.store(n, Ordering::SeqCst);
    }

    /// `generateContent` calls so far.
    #[must_use]
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The `generationConfig` of every call, in order.
    #[must_use]
    pub fn generation_configs(&self) -> Vec<serde_json::Value> {
        self.modes
            .configs
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

/// `imageConfig.aspectRatio` values the API takes (providers.md §2.2).
const ASPECT_RATIOS: [&str; 10] = [
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
];

/// A 400 `INVALID_ARGUMENT` for a bad `imageConfig`, as the API answers one.
fn invalid_argument(message: &str) -> Response {
    (
        axum::http::StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})),
    )
        .into_response()
}

#[derive(Debug, Default)]
struct Modes {
    drop_answers: std::sync::atomic::AtomicBool,
    delay_ms: std::sync::atomic::AtomicU64,
    unavailable: AtomicU32,
    configs: std::sync::Mutex<Vec<serde_json::Value>>,
}

type Shared = (
    Arc<AtomicU32>,
    Arc<std::sync::atomic::AtomicBool>,
    Arc<std::sync::atomic::AtomicBool>,
    Arc<Modes>,
);

async fn generate(
    State((calls, refuse, limited, modes)): State<Shared>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    calls.fetch_add(1, Ordering::SeqCst);
    let config = body["generationConfig"].clone();
    if let Ok(mut configs) = modes.configs.lock() {
        configs.push(config.clone());
    }
    let image = &config["imageConfig"];
    if let Some(ratio) = image.get("aspectRatio") {
        if !ratio.as_str().is_some_and(|r| ASPECT_RATIOS.contains(&r)) {
            return invalid_argument(
                "Invalid value at 'generation_config.image_config.aspect_ratio'",
            );
        }
    }
    if let Some(size) = image.get("imageSize") {
        if !size
            .as_str()
            .is_some_and(|s| ["1K", "2K", "4K"].contains(&s))
        {
            return invalid_argument(
                "Invalid value at 'generation_config.image_config.image_size'",
            );
        }
    }
    let overloaded = modes
        .unavailable
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if overloaded {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE"
            }})),
        )
            .into_response();
    }
    let delay = modes.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if modes.drop_answers.load(Ordering::SeqCst) {
        // Headers go out, then the body fails: hyper drops the connection mid-answer.
        let broken = futures::stream::once(async {
            Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("connection dropped"))
        });
        return (
            [("content-type", "application/json")],
            axum::body::Body::from_stream(broken),
        )
            .into_response();
    }
    if limited.load(Ordering::SeqCst) {
        return (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                        "quotaValue": "10"
                    }]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
                ]
            }})),
        )
            .into_response();
    }
    if refuse.load(Ordering::SeqCst) {
        return Json(json!({
            "candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "SAFETY", "index": 0}],
            "modelVersion": "gemini-3-pro-image-preview"
        }))
        .into_response();
    }
    let data = base64::engine::general_purpose::STANDARD.encode(PNG);
    Json(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Here is your image."},
                {"inlineData": {"mimeType": "image/png", "data": data}}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "modelVersion": "gemini-3-pro-image-preview"
    }))
    .into_response()
}
