//! Nano Banana Pro image generation over the Gemini API: [`GeminiClient`] implements
//! rei-core's `ImageGenerator` (providers.md §0.2 and §2).
//!
//! - `POST /v1beta/models/{NANO_BANANA_MODEL}:generateContent` with the key in the
//!   `x-goog-api-key` header (never in the URL), one user turn of the prompt and the
//!   photos as `inline_data`, and `generationConfig.responseModalities ["TEXT","IMAGE"]`.
//! - The result is the last non-thought part with `inlineData`; the non-thought texts
//!   become the caption.
//! - Only a candidate that stopped naturally delivers: `finishReason` `STOP` (or none).
//!   Every other `finishReason` is `ProviderError::Refused` with a reason a user can read
//!   (naming the code, plus Google's `finishMessage` when given), even when an image part
//!   is attached, so the job is refunded and never billed as a success:
//!   - the policy codes (`SAFETY`, `PROHIBITED_CONTENT`, `BLOCKLIST`, `SPII`,
//!     `RECITATION`, `IMAGE_SAFETY`, `IMAGE_PROHIBITED_CONTENT`, `IMAGE_RECITATION`);
//!   - `IMAGE_OTHER` (image generation stopped, reason unspecified) and `NO_IMAGE` (an
//!     image was expected, none was made);
//!   - `MAX_TOKENS`: the output budget ran out, so an attached image may be cut short or
//!     an interim one; repeating would most likely stop the same way and be billed again;
//!   - `OTHER`, `LANGUAGE`, the tool-call codes, `FINISH_REASON_UNSPECIFIED` and any code
//!     added later.
//!
//!   A blocked prompt (`promptFeedback.blockReason`), no candidate, or a `STOP` without a
//!   final image is `Refused` too.
//! - Gemini has no idempotency key and every call is billed (providers.md §2.5), so a
//!   call is repeated (a bounded number of times, counted in `provider_retries_total`)
//!   only when nothing was sent or Google's answer says to retry (providers.md §2.4): a
//!   connection that never opened (refused, unreachable, connect timeout), 429 (after
//!   `RetryInfo.retryDelay`) and 500/503/504. Once the request was sent, a client timeout
//!   (no answer yet, or an answer that stalls) or a connection that breaks is
//!   `ProviderError::Unknown` ("Gemini did not answer within N s; the call may have been
//!   billed …"), never retried by the client: Google has the request and may render and
//!   bill it anyway. The caller counts it as one failed attempt. Any other status is
//!   `Unknown` too. A 429 on a daily quota (`quotaId` with `PerDay`) is out of funds.

mod wire;

use rei_core::pricing::{AspectRatio, Resolution};
use std::fmt;

use async_trait::async_trait;
use base64::Engine;
use rei_core::ports::{GeneratedImage, ImageGenerator, ImageRequest, ProviderError};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::outbound::client::{
    self, Call, ClientBuildError, Exchange, HttpConfig, Replay, RetryPolicy,
};

/// The default of `NANO_BANANA_API_URL`.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The default of `NANO_BANANA_MODEL`.
pub const DEFAULT_MODEL: &str = "gemini-3-pro-image-preview";

/// The largest request (inline images and text), in bytes: Gemini's inline limit.
pub const MAX_REQUEST_BYTES: usize = 20 * 1024 * 1024;

/// The most input images one request may carry (`gemini-3-pro-image-preview`).
pub const MAX_INPUT_IMAGES: usize = 14;

const PROVIDER: &str = "gemini";
/// Largest answer read (a 4K image as base64 plus thought images).
const RESPONSE_LIMIT: usize = 96 * 1024 * 1024;
const INPUT_MIME_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/heic",
    "image/heif",
];
/// Finish reasons that mean the content was refused by a policy (providers.md §2.3).
const POLICY_FINISH_REASONS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
];

/// Everything [`GeminiClient`] needs; the binaries fill it from the environment.
#[derive(Clone)]
pub struct GeminiConfig {
    /// `NANO_BANANA_API_URL` (default [`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// `NANO_BANANA_API_KEY`.
    pub api_key: SecretString,
    /// `NANO_BANANA_MODEL` (default [`DEFAULT_MODEL`]).
    pub model: String,
    /// Timeouts (default: 180 s per call, since 4K images take tens of seconds).
    pub http: HttpConfig,
    /// Retries (default: 3 attempts in total).
    pub retry: RetryPolicy,
}

impl fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("http", &self.http)
            .field("retry", &self.retry)
            .finish()
    }
}

impl GeminiConfig {
    /// The defaults of `shared/spec/interfaces.md` with this key.
    #[must_use]
    pub fn new(api_key: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            model: DEFAULT_MODEL.to_owned(),
            http: HttpConfig::with_request_timeout(std::time::Duration::from_secs(180)),
            retry: RetryPolicy::default(),
        }
    }
}

/// The Nano Banana Pro adapter.
pub struct GeminiClient {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    model: String,
    retry: RetryPolicy,
}

impl fmt::Debug for GeminiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiClient")
            .field("base_url", &self.base_url.as_str())
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl GeminiClient {
    /// A client for the configured model.
    ///
    /// # Errors
    /// [`ClientBuildError`] for a base URL that is not http(s), a model name with other
    /// characters than `a-z0-9.-_`, or a TLS backend failure.
    pub fn new(config: GeminiConfig) -> Result<Self, ClientBuildError> {
        let base_url = Url::parse(config.base_url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                ClientBuildError::new(PROVIDER, "NANO_BANANA_API_URL must be an http(s) URL")
            })?;
        let model_ok = !config.model.is_empty()
            && config.model.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
            });
        if !model_ok {
            return Err(ClientBuildError::new(
                PROVIDER,
                "NANO_BANANA_MODEL is not a Gemini model id",
            ));
        }
        if config.api_key.expose_secret().trim().is_empty() {
            return Err(ClientBuildError::new(
                PROVIDER,
                "NANO_BANANA_API_KEY is empty",
            ));
        }
        Ok(Self {
            http: client::build_client(PROVIDER, &config.http)?,
            base_url,
            api_key: config.api_key,
            model: config.model,
            retry: config.retry,
        })
    }

    /// The model id.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    async fn attempt(&self, path: &str, body: &[u8]) -> Result<GeneratedImage, ProviderError> {
        let mut key = HeaderValue::from_str(self.api_key.expose_secret().trim()).map_err(|_| {
            ProviderError::Auth {
                message: "NANO_BANANA_API_KEY is not a valid header value".to_owned(),
            }
        })?;
        key.set_sensitive(true);
        let request = self
            .http
            .post(client::endpoint(&self.base_url, path))
            .header("x-goog-api-key", key)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let call = Call {
            provider: PROVIDER,
            method: "POST",
            path,
            body_limit: RESPONSE_LIMIT,
            replay: Replay::Billed,
        };
        client::exchange(call, request, interpret).await
    }
}

#[async_trait]
impl ImageGenerator for GeminiClient {
    #[tracing::instrument(skip_all, fields(provider = PROVIDER, job_id = %request.job_id, images = request.images.len()))]
    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        let body = request_body(request)?;
        let path = format!("/v1beta/models/{}:generateContent", self.model);
        let (path, body) = (path.as_str(), body.as_slice());
        self.retry.run(PROVIDER, || self.attempt(path, body)).await
    }
}

/// Builds the JSON body, refusing what Gemini would refuse before anything is billed.
/// `imageConfig`: exactly the shape and size chosen; none when nothing was (the model's
/// own choice at 1K, as before sizes existed).
fn image_config(request: &ImageRequest) -> Option<wire::ImageConfig> {
    let image_size = match request.resolution {
        Resolution::OneK => None,
        other => Some(other.as_str()),
    };
    let aspect_ratio = request.aspect.map(AspectRatio::as_str);
    (image_size.is_some() || aspect_ratio.is_some()).then_some(wire::ImageConfig {
        aspect_ratio,
        image_size,
    })
}

fn request_body(request: &ImageRequest) -> Result<Vec<u8>, ProviderError> {
    let prompt = request.prompt.trim();
    if prompt.is_empty() {
        return Err(invalid("the prompt is empty"));
    }
    if request.images.len() > MAX_INPUT_IMAGES {
        return Err(invalid(format!(
            "at most {MAX_INPUT_IMAGES} images can be edited at once"
        )));
    }
    let mut parts = vec![wire::RequestPart::Text { text: prompt }];
    for image in &request.images {
        let mime_type = image.mime_type.trim();
        if !INPUT_MIME_TYPES.contains(&mime_type) {
            return Err(invalid(format!(
                "images of type `{}` cannot be edited",
                client::truncate(mime_type, 40)
            )));
        }
        if image.bytes.is_empty() {
            return Err(invalid("an input image is empty"));
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&image.bytes);
        parts.push(wire::RequestPart::Image {
            inline_data: wire::InlineDataOut { mime_type, data },
        });
    }
    let body = wire::GenerateRequest {
        contents: vec![wire::Content {
            role: "user",
            parts,
        }],
        generation_config: wire::GenerationConfig {
            response_modalities: ["TEXT", "IMAGE"],
            image_config: image_config(request),
        },
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| ProviderError::Unknown {
        message: format!("cannot encode the request: {e}"),
    })?;
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(invalid(format!(
            "the request is {} bytes; Gemini accepts at most {MAX_REQUEST_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn interpret(exchange: Exchange) -> Result<GeneratedImage, ProviderError> {
    if exchange.status.is_success() {
        let answer: wire::GenerateResponse =
            serde_json::from_slice(&exchange.body).map_err(|e| ProviderError::Unknown {
                message: format!("malformed Gemini answer: {e}"),
            })?;
        return final_image(answer);
    }
    let status: Option<wire::Status> =
        serde_json::from_slice::<wire::ErrorEnvelope>(&exchange.body)
            .ok()
            .map(|e| e.error);
    Err(classify(
        exchange.status.as_u16(),
        status.unwrap_or_default(),
        exchange.retry_after,
    ))
}

/// Maps an error answer (providers.md §2.4).
fn classify(
    http_status: u16,
    status: wire::Status,
    retry_after_header: Option<std::time::Duration>,
) -> ProviderError {
    let code = status.status.as_deref().unwrap_or("");
    let text = match status
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        Some(m) => format!("Gemini {http_status} {code}: {}", client::truncate(m, 300)),
        None => format!("Gemini answered HTTP {http_status} {code}"),
    };
    let has_reason = |reason: &str| {
        status
            .details
            .iter()
            .any(|d| d.reason.as_deref() == Some(reason))
    };
    match http_status {
        400 if has_reason("API_KEY_INVALID") || code == "FAILED_PRECONDITION" => {
            ProviderError::Auth { message: text }
        }
        401 | 403 => ProviderError::Auth { message: text },
        400 | 404 | 413 => ProviderError::InvalidRequest { message: text },
        429 => {
            let daily = status
                .details
                .iter()
                .flat_map(|d| &d.violations)
                .any(|v| v.quota_id.as_deref().is_some_and(|q| q.contains("PerDay")));
            if daily {
                return ProviderError::OutOfFunds { message: text };
            }
            let delay = status
                .details
                .iter()
                .find_map(|d| d.retry_delay.as_deref().and_then(parse_retry_delay));
            ProviderError::RateLimited {
                retry_after: delay.or(retry_after_header),
            }
        }
        // Only these are documented as "retry with backoff" (providers.md §2.4/§2.5); any
        // other status may have been billed and is not retried.
        500 | 503 | 504 => ProviderError::Transient { message: text },
        _ => ProviderError::Unknown { message: text },
    }
}

/// A protobuf Duration string: `"22s"`, `"1.203s"`.
fn parse_retry_delay(text: &str) -> Option<std::time::Duration> {
    client::parse_seconds(text.trim().strip_suffix('s')?)
}

/// The final image of a successful answer, or the refusal it amounts to.
fn final_image(answer: wire::GenerateResponse) -> Result<GeneratedImage, ProviderError> {
    if let Some(feedback) = answer.prompt_feedback.as_ref() {
        if let Some(reason) = feedback.block_reason.as_deref() {
            let detail = feedback
                .block_reason_message
                .as_deref()
                .map(|m| format!(": {}", client::truncate(m, 200)))
                .unwrap_or_default();
            return Err(refused(format!(
                "the request was blocked by the provider's content policy ({reason}){detail}"
            )));
        }
    }
    let Some(candidate) = answer.candidates.into_iter().next() else {
        return Err(refused("the provider returned no answer"));
    };
    let finish = candidate.finish_reason.as_deref().map_or("", str::trim);
    if !matches!(finish, "" | "STOP") {
        return Err(refused(unfinished(
            finish,
            candidate.finish_message.as_deref(),
        )));
    }
    let parts: Vec<wire::ResponsePart> = candidate
        .content
        .map(|c| c.parts)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.thought)
        .collect();
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.text.as_deref())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let caption = (!texts.is_empty()).then(|| texts.join("\n"));
    let image = parts
        .iter()
        .rev()
        .find_map(|p| p.inline_data.as_ref().filter(|d| !d.data.is_empty()));
    let Some(image) = image else {
        let reason = match caption.as_deref() {
            Some(text) => format!(
                "the provider answered without an image: {}",
                client::truncate(text, 300)
            ),
            None => "the provider answered without an image".to_owned(),
        };
        return Err(refused(reason));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(image.data.trim())
        .map_err(|e| ProviderError::Unknown {
            message: format!("the image in Gemini's answer is not base64: {e}"),
        })?;
    let mime_type = image
        .mime_type
        .clone()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| sniff(&bytes).to_owned());
    Ok(GeneratedImage {
        bytes,
        mime_type,
        caption,
    })
}

/// Why a candidate that did not stop naturally (`finishReason` other than `STOP`) is
/// refused, whatever parts it carries (providers.md §2.3; the module doc has the rules).
fn unfinished(finish: &str, finish_message: Option<&str>) -> String {
    let what = if POLICY_FINISH_REASONS.contains(&finish) {
        "the result was blocked by the provider's content policy"
    } else {
        match finish {
            "NO_IMAGE" => "the provider produced no image",
            "MAX_TOKENS" => "the provider stopped before the image was finished",
            _ => "the provider stopped without a usable image",
        }
    };
    let detail = finish_message
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {}", client::truncate(m, 200)))
        .unwrap_or_default();
    format!("{what} ({}){detail}", client::truncate(finish, 60))
}

/// The image type by content, when the answer does not say.
fn sniff(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.get(8..12) == Some(b"WEBP") {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

fn refused(reason: impl Into<String>) -> ProviderError {
    ProviderError::Refused {
        reason: reason.into(),
    }
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest {
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rei_core::ports::ProviderErrorKind;

    use super::*;

    #[test]
    fn retry_delays_are_protobuf_durations() {
        assert_eq!(parse_retry_delay("22s"), Some(Duration::from_secs(22)));
        assert_eq!(
            parse_retry_delay("1.203s"),
            Some(Duration::from_millis(1203))
        );
        assert_eq!(parse_retry_delay("22"), None);
        assert_eq!(parse_retry_delay("s"), None);
    }

    #[test]
    fn only_500_503_and_504_are_transient() {
        let kind = |status| classify(status, wire::Status::default(), None).kind();
        for status in [500, 503, 504] {
            assert_eq!(kind(status), ProviderErrorKind::Transient, "HTTP {status}");
        }
        for status in [408, 501, 502, 505, 507, 599, 418] {
            assert_eq!(kind(status), ProviderErrorKind::Unknown, "HTTP {status}");
        }
    }

    #[test]
    fn snake_case_answers_are_read_too() {
        let answer: wire::GenerateResponse = serde_json::from_str(
            r#"{"candidates":[{"content":{"parts":[{"inline_data":{"mime_type":"image/jpeg","data":"/9j/"}}]},"finish_reason":"STOP"}]}"#,
        )
        .unwrap();
        let image = final_image(answer).unwrap();
        assert_eq!(image.mime_type, "image/jpeg");
        assert_eq!(image.bytes, vec![0xFF, 0xD8, 0xFF]);
    }
}
