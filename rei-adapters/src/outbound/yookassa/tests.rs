use super::*;

#[test]
fn vat_codes_are_one_to_six() {
    assert_eq!("4".parse::<VatCode>().map(VatCode::get), Ok(4));
    assert!("0".parse::<VatCode>().is_err());
    assert!("7".parse::<VatCode>().is_err());
    assert!("x".parse::<VatCode>().is_err());
}

#[test]
fn iso_times_become_millis() {
    assert_eq!(
        timestamp("2025-05-20T09:15:02.117Z").unwrap().millis(),
        1_747_732_502_117
    );
    assert_eq!(
        timestamp("2025-05-20T09:15:02Z").unwrap().millis(),
        1_747_732_502_000
    );
    assert!(timestamp("yesterday").is_err());
}

#[test]
fn payment_keys_are_the_payment_id() {
    let id: PaymentId = "4f0d1e6a-7c1b-4e55-9d7e-2a1f0b3c9d11".parse().unwrap();
    assert_eq!(
        YooKassaClient::payment_key(id),
        "4f0d1e6a-7c1b-4e55-9d7e-2a1f0b3c9d11"
    );
    assert!(YooKassaClient::payment_key(id).len() <= MAX_KEY_LEN);
}

fn answer(status: u16, body: &str) -> Exchange {
    Exchange {
        status: reqwest::StatusCode::from_u16(status).unwrap(),
        retry_after: None,
        body: bytes::Bytes::from(body.to_owned()),
    }
}

#[test]
fn processing_answers_are_rate_limits_with_the_named_wait_in_milliseconds() {
    let waited = |body: &str| match interpret::<wire::Payment>(answer(202, body)) {
        Err(ProviderError::RateLimited { retry_after }) => retry_after,
        other => panic!("{body}: {other:?}"),
    };
    assert_eq!(
        waited(r#"{"type":"processing","description":"Request accepted","retry_after":1800}"#),
        Some(std::time::Duration::from_millis(1800))
    );
    assert_eq!(
        waited(r#"{"type":"processing","retry_after":250}"#),
        Some(std::time::Duration::from_millis(250))
    );
    assert_eq!(waited(""), Some(PROCESSING_DEFAULT_DELAY));
}

#[test]
fn notifications_become_hints_and_odd_ones_are_refused() {
    let payment = br#"{"type":"notification","event":"payment.succeeded","object":{"id":"2f9e1c3a-000f-5000-9000-1b7d4c6e8a20","status":"succeeded","amount":{"value":"500.00","currency":"RUB"}}}"#;
    assert_eq!(
        parse_notification(payment),
        Ok(Some(GatewayHint::Payment {
            provider_payment_id: "2f9e1c3a-000f-5000-9000-1b7d4c6e8a20".into()
        }))
    );
    let refund = br#"{"type":"notification","event":"refund.succeeded","object":{"id":"rf-1","payment_id":"pay-1","status":"succeeded"}}"#;
    assert_eq!(
        parse_notification(refund),
        Ok(Some(GatewayHint::Refund {
            refund_id: "rf-1".into(),
            provider_payment_id: "pay-1".into()
        }))
    );
    let other = br#"{"type":"notification","event":"payout.succeeded","object":{"id":"po-1"}}"#;
    assert_eq!(parse_notification(other), Ok(None));
    for bad in [
        &b"not json"[..],
        br#"{"type":"list","event":"payment.succeeded","object":{"id":"x"}}"#,
        br#"{"type":"notification","event":"payment.succeeded","object":{"id":"../../v3/refunds"}}"#,
        br#"{"type":"notification","event":"refund.succeeded","object":{"id":"rf-1"}}"#,
        br#"{"type":"notification","event":"payment.succeeded"}"#,
    ] {
        assert!(parse_notification(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}
