//! Kling's answers classified: its own codes decide before the HTTP status; a
//! signing error, a malformed body, a refusal each become the right provider error.

use super::*;

/// Which token an attempt carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Signing {
    /// The cached one: a 1003/1004 answer asks for one re-sign.
    Cached,
    /// One signed after Kling refused the cached one: a refusal now is final.
    Resigned,
}

/// A failed Kling exchange: a mapped error with Kling's code and the HTTP status, or a
/// token to re-sign.
#[derive(Debug)]
pub(super) enum KlingFailure {
    Provider {
        error: ProviderError,
        code: Option<i64>,
        status: Option<u16>,
    },
    TokenRejected {
        error: ProviderError,
        rejection: Rejection,
    },
}

impl KlingFailure {
    pub(super) fn into_error(self) -> ProviderError {
        match self {
            Self::Provider { error, .. } | Self::TokenRejected { error, .. } => error,
        }
    }

    /// After the one re-sign, a rejected token is an ordinary auth failure.
    pub(super) fn settle(self) -> Self {
        match self {
            Self::TokenRejected { error, .. } => Self::Provider {
                error,
                code: None,
                status: None,
            },
            other => other,
        }
    }
}

impl From<ProviderError> for KlingFailure {
    fn from(error: ProviderError) -> Self {
        Self::Provider {
            error,
            code: None,
            status: None,
        }
    }
}

impl Classified for KlingFailure {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Provider { error, .. } => Outcome::Failed(error.kind()),
            // Not an error yet: the call is repeated with a new token.
            Self::TokenRejected { .. } => Outcome::Reauth,
        }
    }
}

pub(super) fn interpret<T>(exchange: Exchange) -> Result<T, KlingFailure>
where
    T: DeserializeOwned,
{
    let status = exchange.status.as_u16();
    if exchange.status.is_success() {
        let envelope: wire::Envelope<T> =
            serde_json::from_slice(&exchange.body).map_err(malformed)?;
        if envelope.code != 0 {
            return Err(classify(
                status,
                Some(envelope.code),
                envelope.message.as_deref(),
                exchange.retry_after,
            ));
        }
        return envelope.data.ok_or_else(|| {
            let request = envelope.request_id.unwrap_or_default();
            KlingFailure::from(ProviderError::Unknown {
                message: format!("Kling answered code 0 without data (request {request})"),
            })
        });
    }
    let body: Option<wire::ErrorBody> = serde_json::from_slice(&exchange.body).ok();
    if let Some(request_id) = body.as_ref().and_then(|b| b.request_id.as_deref()) {
        tracing::debug!(
            provider = PROVIDER,
            status,
            request_id,
            "Kling error answer"
        );
    }
    let code = body.as_ref().map(|b| b.code);
    Err(classify(
        status,
        code,
        body.as_ref().and_then(|b| b.message.as_deref()),
        exchange.retry_after,
    ))
}

/// Maps Kling's answer to the error model (providers.md §0.1, §1.9): by `code` first
/// (429 means both "slow down" and "out of funds"), by HTTP status otherwise.
pub(super) fn classify(
    status: u16,
    code: Option<i64>,
    message: Option<&str>,
    retry_after: Option<Duration>,
) -> KlingFailure {
    let words = message
        .map(|m| client::truncate(m.trim(), 300))
        .filter(|m| !m.is_empty());
    let text = match (code, &words) {
        (Some(c), Some(w)) => format!("Kling {c}: {w}"),
        (Some(c), None) => format!("Kling {c} (HTTP {status})"),
        (None, _) => format!("Kling answered HTTP {status}"),
    };
    let error = match code {
        Some(code @ (1003 | 1004)) => {
            return KlingFailure::TokenRejected {
                error: ProviderError::Auth { message: text },
                rejection: if code == 1003 {
                    Rejection::NotYetValid
                } else {
                    Rejection::Expired
                },
            };
        }
        Some(1000..=1002 | 1100 | 1103 | 1304) => ProviderError::Auth { message: text },
        Some(1101 | 1102) => ProviderError::OutOfFunds { message: text },
        Some(1200..=1203) => ProviderError::InvalidRequest { message: text },
        Some(1300 | 1301) => ProviderError::Refused {
            reason: words
                .unwrap_or_else(|| "the request was refused by Kling's content policy".to_owned()),
        },
        Some(1302 | 1303) => ProviderError::RateLimited { retry_after },
        Some(5000..=5002) => ProviderError::Transient { message: text },
        _ => match status {
            401 | 403 => ProviderError::Auth { message: text },
            429 => ProviderError::RateLimited { retry_after },
            400 | 404 | 405 | 413 | 422 => ProviderError::InvalidRequest { message: text },
            408 | 500..=599 => ProviderError::Transient { message: text },
            _ => ProviderError::Unknown { message: text },
        },
    };
    KlingFailure::Provider {
        error,
        code,
        status: Some(status),
    }
}

pub(super) fn task_status(task: wire::Task) -> Result<VideoTaskStatus, ProviderError> {
    match task.task_status.as_str() {
        "submitted" => Ok(VideoTaskStatus::Submitted),
        "processing" => Ok(VideoTaskStatus::Processing),
        "succeed" => {
            let video = task.task_result.and_then(|r| r.videos.into_iter().next());
            let (url, duration) = video.map(|v| (v.url, v.duration)).unwrap_or_default();
            let url =
                url.filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| ProviderError::Unknown {
                        message: format!(
                            "Kling task {} succeeded without a video URL",
                            task.task_id
                        ),
                    })?;
            Ok(VideoTaskStatus::Succeeded {
                url,
                duration_ms: duration.as_deref().and_then(duration_millis),
            })
        }
        "failed" => {
            let message = task.task_status_msg.filter(|m| !m.trim().is_empty());
            Ok(VideoTaskStatus::Failed {
                message: message.unwrap_or_else(|| "Kling reported the task as failed".to_owned()),
            })
        }
        other => Err(ProviderError::Unknown {
            message: format!(
                "unknown Kling task status `{}`",
                client::truncate(other, 32)
            ),
        }),
    }
}

pub(super) fn task_id(id: String) -> Result<ProviderTaskId, ProviderError> {
    ProviderTaskId::new(id).map_err(|e| ProviderError::Unknown {
        message: format!("Kling returned an unusable task id: {e}"),
    })
}

pub(super) fn malformed(error: serde_json::Error) -> KlingFailure {
    ProviderError::Unknown {
        message: format!("malformed Kling answer: {error}"),
    }
    .into()
}

pub(super) fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest {
        message: message.into(),
    }
}

pub(super) fn too_large(limit: u64) -> ProviderError {
    ProviderError::Unknown {
        message: format!("the result is larger than the {limit}-byte download cap"),
    }
}

/// Kling's prompt limit, on the prompt as sent.
pub(super) fn check_prompt_length(prompt: &str) -> Result<(), ProviderError> {
    if prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(invalid(format!(
            "the prompt is longer than {MAX_PROMPT_CHARS} characters"
        )));
    }
    Ok(())
}

pub(super) fn method_name(method: &Method) -> &'static str {
    if *method == Method::POST {
        "POST"
    } else {
        "GET"
    }
}

pub(super) fn parse_http_url(text: &str) -> Option<Url> {
    Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

#[cfg(test)]
mod tests {
    use rei_core::ports::ProviderErrorKind;

    use super::*;

    #[test]
    fn durations_convert_to_millis_without_floats() {
        assert_eq!(duration_millis("5"), Some(5_000));
        assert_eq!(duration_millis("5.1"), Some(5_100));
        assert_eq!(duration_millis("10.04"), Some(10_040));
        assert_eq!(duration_millis("4.9999"), Some(4_999));
        assert_eq!(duration_millis(""), None);
        assert_eq!(duration_millis("abc"), None);
        assert_eq!(duration_millis("-5"), None);
        assert_eq!(duration_millis("5."), Some(5_000));
        assert_eq!(duration_millis("99999999"), None);
    }

    fn kind_of(failure: &KlingFailure) -> ProviderErrorKind {
        match failure {
            KlingFailure::Provider { error, .. } | KlingFailure::TokenRejected { error, .. } => {
                error.kind()
            }
        }
    }

    #[test]
    fn code_decides_before_http_status() {
        let kind = |status, code: i64| kind_of(&classify(status, Some(code), Some("m"), None));
        assert_eq!(kind(429, 1302), ProviderErrorKind::RateLimited);
        assert_eq!(kind(429, 1303), ProviderErrorKind::RateLimited);
        assert_eq!(kind(429, 1101), ProviderErrorKind::OutOfFunds);
        assert_eq!(kind(429, 1102), ProviderErrorKind::OutOfFunds);
        assert_eq!(kind(429, 1100), ProviderErrorKind::Auth);
        assert_eq!(kind(429, 1304), ProviderErrorKind::Auth);
        assert_eq!(kind(400, 1301), ProviderErrorKind::Refused);
        assert_eq!(kind(401, 1004), ProviderErrorKind::Auth);
        assert!(matches!(
            classify(401, Some(1003), None, None),
            KlingFailure::TokenRejected {
                rejection: Rejection::NotYetValid,
                ..
            }
        ));
        assert!(matches!(
            classify(401, Some(1004), None, None),
            KlingFailure::TokenRejected {
                rejection: Rejection::Expired,
                ..
            }
        ));
        assert_eq!(
            classify(401, Some(1004), None, None).outcome(),
            Outcome::Reauth,
            "a refused token is not counted as an auth error before the re-sign"
        );
        assert_eq!(
            classify(401, Some(1004), None, None).settle().outcome(),
            Outcome::Failed(ProviderErrorKind::Auth)
        );
        assert_eq!(
            kind_of(&classify(502, None, None, None)),
            ProviderErrorKind::Transient
        );
        assert_eq!(
            kind_of(&classify(418, None, None, None)),
            ProviderErrorKind::Unknown
        );
    }

    #[test]
    fn rate_limits_without_retry_after_wait_at_least_a_second_by_default() {
        let credentials = KlingCredentials::from_combined(&secrecy::SecretString::from("ak:sk"))
            .unwrap_or_else(|e| panic!("{e}"));
        let policy = KlingConfig::new(credentials).retry;
        let limited = ProviderError::RateLimited { retry_after: None };
        for backoff in [1, 250, 500, 999] {
            let delay = policy.delay_for(&limited, Some(Duration::from_millis(backoff)));
            assert_eq!(delay, Some(Duration::from_secs(1)), "backoff {backoff} ms");
        }
        assert_eq!(
            policy.delay_for(&limited, Some(Duration::from_secs(4))),
            Some(Duration::from_secs(4))
        );
    }

    /// A page of `(external_task_id, created_at)` tasks (`None`: field absent).
    fn page(tasks: &[(&str, Option<i64>)]) -> Vec<wire::Task> {
        tasks
            .iter()
            .enumerate()
            .map(|(i, (external, created))| {
                serde_json::from_value(serde_json::json!({
                    "task_id": format!("t{i}"), "task_status": "succeed",
                    "task_info": {"external_task_id": external}, "created_at": created,
                }))
                .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    #[track_caller]
    fn check(tasks: &[(&str, Option<i64>)], page_size: usize, expected: Scan) {
        assert_eq!(scan_page(page(tasks), "job", page_size, 100), expected);
    }

    #[test]
    fn a_page_finds_the_task_wherever_it_is() {
        check(
            &[("a", Some(300)), ("job", Some(50))],
            2,
            Scan::Found("t1".into()),
        );
        check(&[("job", None)], 5, Scan::Found("t0".into()));
    }

    #[test]
    fn a_short_page_ends_the_list() {
        check(&[], 2, Scan::End);
        check(&[("a", Some(300))], 2, Scan::End);
        check(&[("a", None)], 2, Scan::End);
    }

    #[test]
    fn a_full_newest_first_page_ending_in_old_tasks_ends_the_search() {
        check(&[("a", Some(300)), ("b", Some(99))], 2, Scan::End);
        check(&[("a", Some(300)), ("b", Some(100))], 2, Scan::More);
        check(&[("a", Some(300)), ("b", Some(300))], 2, Scan::More);
    }

    #[test]
    fn old_tasks_end_nothing_unless_the_page_is_newest_first_with_known_times() {
        check(&[("a", Some(50)), ("b", Some(300))], 2, Scan::More);
        check(
            &[("a", Some(99)), ("b", Some(50)), ("c", Some(300))],
            3,
            Scan::More,
        );
        check(&[("a", None), ("b", Some(50))], 2, Scan::More);
    }
}
