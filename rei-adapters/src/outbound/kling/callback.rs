//! Kling's callbacks (`POST /webhooks/kling`): only a hint that a task changed; the
//! worker asks Kling itself.

use super::*;

/// What a Kling callback names: the task to re-read. Nothing is credited or delivered
/// from a callback: it carries no signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KlingCallback {
    /// Kling's task id.
    pub task_id: ProviderTaskId,
    /// `task_info.external_task_id` (our job id), when present.
    pub external_task_id: Option<String>,
    /// `task_status` as sent (`submitted`, `processing`, `succeed`, `failed`); a hint only.
    pub status: String,
}

impl KlingCallback {
    /// The job the task belongs to, when `external_task_id` is one of our job ids.
    #[must_use]
    pub fn job_id(&self) -> Option<JobId> {
        self.external_task_id
            .as_deref()
            .and_then(|id| id.parse().ok())
    }
}

/// A callback body that is not a Kling task object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a Kling task callback: {0}")]
pub struct CallbackError(String);

/// Parses a callback body (the task object itself, without the `code`/`data` envelope).
///
/// # Errors
/// [`CallbackError`] for malformed JSON or a missing or invalid `task_id`.
pub fn parse_callback(body: &[u8]) -> Result<KlingCallback, CallbackError> {
    let task: wire::Task =
        serde_json::from_slice(body).map_err(|e| CallbackError(e.to_string()))?;
    let external_task_id = task.external_task_id().map(str::to_owned);
    let task_id = ProviderTaskId::new(task.task_id).map_err(|e| CallbackError(e.to_string()))?;
    Ok(KlingCallback {
        task_id,
        external_task_id,
        status: task.task_status,
    })
}

/// Parses Kling's `duration` string (`"5"`, `"5.1"`) into milliseconds without floats;
/// digits after the third decimal are dropped.
#[must_use]
pub fn duration_millis(text: &str) -> Option<u32> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let seconds: u32 = whole.parse().ok()?;
    let mut millis: u32 = 0;
    for (i, digit) in fraction.bytes().take(3).enumerate() {
        millis += u32::from(digit - b'0') * [100, 10, 1][i];
    }
    seconds.checked_mul(1000)?.checked_add(millis)
}
