use super::*;

#[test]
fn seconds_parse_without_floats() {
    assert_eq!(parse_seconds("22"), Some(Duration::from_secs(22)));
    assert_eq!(parse_seconds("1.203"), Some(Duration::from_millis(1203)));
    assert_eq!(parse_seconds("0.000000001"), Some(Duration::from_nanos(1)));
    assert_eq!(parse_seconds("0.0000000019"), Some(Duration::from_nanos(1)));
    assert_eq!(parse_seconds(""), None);
    assert_eq!(parse_seconds("-1"), None);
    assert_eq!(parse_seconds("1e3"), None);
    assert_eq!(parse_seconds(".5"), None);
}

#[test]
fn only_retryable_errors_get_a_delay() {
    let p = RetryPolicy::default();
    let backoff = Some(Duration::from_millis(700));
    assert_eq!(
        p.delay_for(
            &ProviderError::Transient {
                message: String::new()
            },
            backoff
        ),
        backoff
    );
    assert_eq!(
        p.delay_for(&ProviderError::RateLimited { retry_after: None }, backoff),
        backoff
    );
    assert_eq!(
        p.delay_for(
            &ProviderError::Auth {
                message: String::new()
            },
            backoff
        ),
        None
    );
    assert_eq!(
        p.delay_for(
            &ProviderError::OutOfFunds {
                message: String::new()
            },
            backoff
        ),
        None
    );
    assert_eq!(
        p.delay_for(
            &ProviderError::Transient {
                message: String::new()
            },
            None
        ),
        None
    );
}

#[test]
fn provider_waits_are_honoured_up_to_the_cap() {
    let p = RetryPolicy {
        max_retry_after: Duration::from_secs(30),
        ..RetryPolicy::default()
    };
    let limited = |s| ProviderError::RateLimited {
        retry_after: Some(Duration::from_secs(s)),
    };
    assert_eq!(
        p.delay_for(&limited(22), Some(Duration::from_millis(1))),
        Some(Duration::from_secs(22))
    );
    assert_eq!(
        p.delay_for(&limited(31), Some(Duration::from_millis(1))),
        None
    );
    assert_eq!(p.delay_for(&limited(1), None), None);
}

#[test]
fn rate_limits_without_a_wait_wait_at_least_the_floor() {
    let p = RetryPolicy {
        rate_limit_floor: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let unnamed = ProviderError::RateLimited { retry_after: None };
    assert_eq!(
        p.delay_for(&unnamed, Some(Duration::from_millis(300))),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        p.delay_for(&unnamed, Some(Duration::from_secs(3))),
        Some(Duration::from_secs(3))
    );
    assert_eq!(p.delay_for(&unnamed, None), None, "the budget still ends");
    let transient = ProviderError::Transient {
        message: String::new(),
    };
    assert_eq!(
        p.delay_for(&transient, Some(Duration::from_millis(300))),
        Some(Duration::from_millis(300)),
        "the floor is for rate limits only"
    );
}

#[test]
fn endpoints_join_base_and_path() {
    let base = url::Url::parse("https://api.yookassa.ru/v3").unwrap();
    assert_eq!(
        endpoint(&base, "/payments"),
        "https://api.yookassa.ru/v3/payments"
    );
    let base = url::Url::parse("https://api-singapore.klingai.com/").unwrap();
    assert_eq!(
        endpoint(&base, "/v1/videos/text2video"),
        "https://api-singapore.klingai.com/v1/videos/text2video"
    );
}

#[test]
fn waits_read_as_seconds() {
    assert_eq!(seconds(Duration::from_millis(300)), "0.3 s");
    assert_eq!(seconds(Duration::from_millis(9_960)), "10.0 s");
    assert_eq!(seconds(Duration::from_millis(180_004)), "180 s");
    assert_eq!(display_name("gemini"), "Gemini");
    assert_eq!(display_name(""), "");
}

#[test]
fn truncation_counts_characters() {
    assert_eq!(truncate("привет", 3), "при…");
    assert_eq!(truncate("abc", 3), "abc");
}
