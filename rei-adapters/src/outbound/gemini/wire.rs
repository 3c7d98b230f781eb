//! Gemini `generateContent` JSON (providers.md §2.2–§2.4). Requests use the snake_case
//! spelling of the official REST examples; responses are read in camelCase and in
//! snake_case.

use serde::{Deserialize, Serialize};

/// The request body.
#[derive(Debug, Serialize)]
pub(crate) struct GenerateRequest<'a> {
    pub contents: Vec<Content<'a>>,
    #[serde(rename = "generationConfig")]
    pub generation_config: GenerationConfig,
}

/// One turn.
#[derive(Debug, Serialize)]
pub(crate) struct Content<'a> {
    pub role: &'static str,
    pub parts: Vec<RequestPart<'a>>,
}

/// A text or an inline image.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum RequestPart<'a> {
    Text { text: &'a str },
    Image { inline_data: InlineDataOut<'a> },
}

/// `inline_data` of a request.
#[derive(Debug, Serialize)]
pub(crate) struct InlineDataOut<'a> {
    pub mime_type: &'a str,
    pub data: String,
}

/// `generationConfig`.
#[derive(Debug, Serialize)]
pub(crate) struct GenerationConfig {
    #[serde(rename = "responseModalities")]
    pub response_modalities: [&'static str; 2],
    /// Absent when neither the shape nor the size was chosen (the model decides; 1K).
    #[serde(rename = "imageConfig", skip_serializing_if = "Option::is_none")]
    pub image_config: Option<ImageConfig>,
}

/// `generationConfig.imageConfig` (providers.md §2.2).
#[derive(Debug, Serialize)]
pub(crate) struct ImageConfig {
    /// `1:1`, `3:4`, `4:3`, `9:16`, `16:9`, `21:9`.
    #[serde(rename = "aspectRatio", skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<&'static str>,
    /// `2K` or `4K` (upper-case K); absent for 1K, the default — the only size the
    /// non-Pro model is known to take.
    #[serde(rename = "imageSize", skip_serializing_if = "Option::is_none")]
    pub image_size: Option<&'static str>,
}

/// The response body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GenerateResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default, rename = "promptFeedback", alias = "prompt_feedback")]
    pub prompt_feedback: Option<PromptFeedback>,
}

/// `promptFeedback`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PromptFeedback {
    #[serde(default, rename = "blockReason", alias = "block_reason")]
    pub block_reason: Option<String>,
    #[serde(default, rename = "blockReasonMessage", alias = "block_reason_message")]
    pub block_reason_message: Option<String>,
}

/// `candidates[]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Candidate {
    #[serde(default)]
    pub content: Option<CandidateContent>,
    #[serde(default, rename = "finishReason", alias = "finish_reason")]
    pub finish_reason: Option<String>,
    /// Google's words on why it stopped (set with some non-`STOP` reasons).
    #[serde(default, rename = "finishMessage", alias = "finish_message")]
    pub finish_message: Option<String>,
}

/// `candidates[].content`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CandidateContent {
    #[serde(default)]
    pub parts: Vec<ResponsePart>,
}

/// `candidates[].content.parts[]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResponsePart {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default, rename = "inlineData", alias = "inline_data")]
    pub inline_data: Option<InlineDataIn>,
    #[serde(default)]
    pub thought: bool,
}

/// `inlineData` of a response.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct InlineDataIn {
    #[serde(default, rename = "mimeType", alias = "mime_type")]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub data: String,
}

/// `{"error": google.rpc.Status}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: Status,
}

/// google.rpc.Status.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Status {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub details: Vec<Detail>,
}

/// One `details[]` item; only the fields REI reads, whatever the `@type`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Detail {
    /// `ErrorInfo.reason` (e.g. `API_KEY_INVALID`).
    #[serde(default)]
    pub reason: Option<String>,
    /// `RetryInfo.retryDelay` (e.g. `"22s"`).
    #[serde(default, rename = "retryDelay", alias = "retry_delay")]
    pub retry_delay: Option<String>,
    /// `QuotaFailure.violations`.
    #[serde(default)]
    pub violations: Vec<Violation>,
}

/// `QuotaFailure.violations[]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Violation {
    #[serde(default, rename = "quotaId", alias = "quota_id")]
    pub quota_id: Option<String>,
}
