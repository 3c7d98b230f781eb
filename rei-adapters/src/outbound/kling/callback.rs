//! Kling's callbacks (`POST /webhooks/kling`): only a hint that a task changed; the
//! worker asks Kling itself.

use super::*;

/// The label of the callback key derived from Kling's secret key (HKDF-SHA256 `info`).
const CALLBACK_KEY_LABEL: &[u8] = b"rei/kling-callback/v1";

/// Hex digits of a callback token (128 bits of HMAC-SHA256).
const TOKEN_HEX: usize = 32;

/// Signs each task's callback URL (`PUBLIC_URL/webhooks/kling?job=<id>&t=<token>`): only
/// a caller that got the URL from us (Kling) can post a callback, checked before its body
/// is read. Derived from Kling's secret key, so every process has the same one.
#[derive(Clone)]
pub struct CallbackKey(std::sync::Arc<[u8; 64]>);

rei_core::opaque_debug!(CallbackKey);

impl CallbackKey {
    /// The key derived from `secret` (Kling's secret key).
    #[must_use]
    pub fn derive(secret: &[u8]) -> Self {
        // A whole HMAC-SHA256 block of key.
        let key: [u8; 64] = crate::outbound::secret_url::derive_key(secret, CALLBACK_KEY_LABEL);
        Self(std::sync::Arc::new(key))
    }

    fn mac(&self, job: JobId) -> hmac::Hmac<sha2::Sha256> {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&(*self.0).into());
        mac.update(job.to_string().as_bytes());
        mac
    }

    /// The token of `job`'s callback URL.
    #[must_use]
    pub fn token(&self, job: JobId) -> String {
        use hmac::Mac;
        let mut token = hex::encode(self.mac(job).finalize().into_bytes());
        token.truncate(TOKEN_HEX);
        token
    }

    /// Whether `token` is `job`'s (constant-time).
    #[must_use]
    pub fn verify(&self, job: JobId, token: &str) -> bool {
        use hmac::Mac;
        match hex::decode(token) {
            Ok(bytes) if bytes.len() * 2 == TOKEN_HEX => {
                self.mac(job).verify_truncated_left(&bytes).is_ok()
            }
            _ => false,
        }
    }

    /// `base` (the callback endpoint) with `job` and its token.
    #[must_use]
    pub fn url(&self, base: &str, job: JobId) -> String {
        format!("{base}?job={job}&t={}", self.token(job))
    }
}

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

#[cfg(test)]
mod key_tests {
    use super::*;

    fn job(n: u128) -> JobId {
        JobId::from_uuid(uuid::Uuid::from_u128(n))
    }

    /// [edge] A callback URL opens only for its job, with its token, under its key.
    #[test]
    fn a_callback_token_is_its_jobs_alone() {
        let key = CallbackKey::derive(b"sk-1");
        let token = key.token(job(1));
        assert_eq!(token.len(), 32);
        assert!(key.verify(job(1), &token));
        assert!(!key.verify(job(2), &token), "another job");
        assert!(
            !CallbackKey::derive(b"sk-2").verify(job(1), &token),
            "another key"
        );
        for forged in ["", "00", "zz", &token[..30], &format!("{token}00")] {
            assert!(!key.verify(job(1), forged), "{forged}");
        }
        assert_eq!(
            key.url("https://bot.example.com/webhooks/kling", job(1)),
            format!(
                "https://bot.example.com/webhooks/kling?job={}&t={token}",
                job(1)
            )
        );
    }
}
