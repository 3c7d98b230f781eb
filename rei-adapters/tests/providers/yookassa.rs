//! YooKassa against a fake that speaks providers.md §3.

use std::time::{Duration, Instant};

use base64::Engine;
use rei_adapters::outbound::yookassa::{VatCode, YooKassaClient, YooKassaConfig};
use rei_core::Money;
use rei_core::ids::{IdempotencyKey, PaymentId, UserId};
use rei_core::ports::{
    CreatePayment, GatewayMethod, GatewayPayment, GatewayStatus, PaymentGateway, PaymentListQuery,
    PaymentPage, ProviderError, ProviderErrorKind, RefundRequest, RefundStatus,
};
use rei_core::time::Timestamp;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    LogCapture, RawAnswer, RawServer, Then, fast_retry, json_reply, raw_body, raw_header, requests,
    respond, respond_first, respond_once,
};

const SHOP: &str = "123456";
const SECRET: &str = "test_Fh8hUAVVBGUGbjmlzba6TB0iyUbos_lueTHE-axOwM0";
const PAYMENT: &str = "4f0d1e6a-7c1b-4e55-9d7e-2a1f0b3c9d11";
const GATEWAY_ID: &str = "2f9e1c3a-000f-5000-9000-1b7d4c6e8a20";
/// The refund key the caller chose (as rei-core derives it from the refund's hold).
const REFUND_KEY: &str = "refund:7d3c0a52-2f4e-4c1b-9a57-5e0c2b1d8f60:gateway";

async fn fixture(edit: impl FnOnce(&mut YooKassaConfig)) -> (MockServer, YooKassaClient) {
    let server = MockServer::start().await;
    let mut config = YooKassaConfig::new(SHOP, SecretString::from(SECRET));
    config.base_url = format!("{}/v3", server.uri());
    config.retry = fast_retry(3);
    edit(&mut config);
    (server, YooKassaClient::new(config).unwrap())
}

fn payment_id() -> PaymentId {
    PAYMENT.parse().unwrap()
}

fn create(receipt_email: Option<&str>) -> CreatePayment {
    CreatePayment {
        payment_id: payment_id(),
        user_id: UserId::new(123_456_789).unwrap(),
        amount: Money::from_rubles(500).unwrap(),
        description: "Пополнение баланса на 500 ₽".to_owned(),
        return_url: "https://t.me/ExampleGenBot".to_owned(),
        receipt_email: receipt_email.map(str::to_owned),
    }
}

fn payment(status: &str, extra: Value) -> Value {
    let mut body = json!({
        "id": GATEWAY_ID, "status": status, "paid": status == "succeeded", "amount": {"value": "500.00", "currency": "RUB"},
        "created_at": "2025-05-20T09:15:02.117Z", "description": "Пополнение баланса на 500 ₽",
        "metadata": {"tg_user_id": "123456789", "payment_id": PAYMENT},
        "recipient": {"account_id": "123456", "gateway_id": "654321"}, "refundable": false, "test": false
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn pending() -> Value {
    payment(
        "pending",
        json!({"confirmation": {"type": "redirect", "confirmation_url": format!("https://yoomoney.ru/checkout/payments/v2/contract?orderId={GATEWAY_ID}")}}),
    )
}

fn refund_request(amount: Money) -> RefundRequest {
    RefundRequest {
        payment_id: payment_id(),
        idempotency_key: IdempotencyKey::new(REFUND_KEY).unwrap(),
        provider_payment_id: GATEWAY_ID.to_owned(),
        amount,
        description: "Возврат пополнения".to_owned(),
        receipt_email: None,
    }
}

fn list_from(since: Timestamp, cursor: Option<String>) -> PaymentListQuery {
    PaymentListQuery {
        since,
        until: None,
        cursor,
        limit: 100,
    }
}

fn yookassa_error(code: &str, description: &str) -> Value {
    json!({"type": "error", "id": "ab5a11cd-13cc-4e33-af8b-75a74e18dd09", "code": code, "description": description, "parameter": "amount.value"})
}

fn expected_pending() -> GatewayPayment {
    GatewayPayment {
        provider_payment_id: GATEWAY_ID.to_owned(),
        status: GatewayStatus::Pending,
        amount: Money::from_rubles(500).unwrap(),
        confirmation_url: Some(format!(
            "https://yoomoney.ru/checkout/payments/v2/contract?orderId={GATEWAY_ID}"
        )),
        payment_id: Some(payment_id()),
        user_id: Some(UserId::new(123_456_789).unwrap()),
        created_at: Some(Timestamp::from_millis(1_747_732_502_117)),
        test: false,
        ..Default::default()
    }
}

#[tokio::test]
async fn create_payment_sends_the_documented_request() {
    let (server, client) = fixture(|_| {}).await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SHOP}:{SECRET}"))
    );
    Mock::given(method("POST"))
        .and(path("/v3/payments"))
        .and(header("authorization", basic.as_str()))
        .and(header("idempotence-key", PAYMENT))
        .and(header("content-type", "application/json"))
        .respond_with(json_reply(200, pending()))
        .expect(1)
        .mount(&server)
        .await;

    let created = client.create_payment(&create(None)).await.unwrap();

    assert_eq!(created, expected_pending());
    let body: Value = requests(&server).await[0].body_json().unwrap();
    assert_eq!(
        body,
        json!({"amount": {"value": "500.00", "currency": "RUB"}, "capture": true,
               "confirmation": {"type": "redirect", "return_url": "https://t.me/ExampleGenBot"},
               "description": "Пополнение баланса на 500 ₽", "metadata": {"tg_user_id": "123456789", "payment_id": PAYMENT}})
    );
}

#[tokio::test]
async fn a_vat_code_adds_a_prepayment_receipt() {
    let (server, client) = fixture(|c| c.receipt_vat_code = Some(VatCode::new(4).unwrap())).await;
    respond(&server, "POST /v3/payments", json_reply(200, pending())).await;

    client
        .create_payment(&create(Some("user@example.com")))
        .await
        .unwrap();

    let body: Value = requests(&server).await[0].body_json().unwrap();
    assert_eq!(
        body["receipt"],
        json!({"customer": {"email": "user@example.com"},
               "items": [{"description": "Пополнение баланса на 500 ₽", "quantity": "1.00", "amount": {"value": "500.00", "currency": "RUB"},
                          "vat_code": 4, "payment_mode": "full_prepayment", "payment_subject": "service"}]})
    );
    let missing_email = client.create_payment(&create(None)).await.unwrap_err();
    assert_eq!(missing_email.kind(), ProviderErrorKind::InvalidRequest);
    assert_eq!(
        requests(&server).await.len(),
        1,
        "nothing is sent without the receipt e-mail"
    );
}

#[tokio::test]
async fn long_descriptions_are_cut_to_128_characters_and_amounts_keep_kopecks() {
    let (server, client) = fixture(|_| {}).await;
    respond(&server, "POST", json_reply(200, pending())).await;
    let request = CreatePayment {
        description: "я".repeat(200),
        amount: Money::from_kopecks(12_345).unwrap(),
        ..create(None)
    };
    client.create_payment(&request).await.unwrap();
    let body: Value = requests(&server).await[0].body_json().unwrap();
    assert_eq!(body["description"].as_str().unwrap().chars().count(), 128);
    assert_eq!(body["amount"]["value"], "123.45");
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_key_and_body() {
    let (server, client) = fixture(|_| {}).await;
    respond_first(
        &server,
        "POST",
        2,
        json_reply(
            500,
            yookassa_error("internal_server_error", "Internal server error"),
        ),
    )
    .await;
    respond(&server, "POST", json_reply(200, pending())).await;

    client.create_payment(&create(None)).await.unwrap();

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 3);
    for r in &sent {
        assert_eq!(r.headers.get("idempotence-key").unwrap(), PAYMENT);
        assert_eq!(r.body, sent[0].body);
    }
}

#[tokio::test]
async fn timeouts_are_transient_and_retried_with_the_same_key() {
    let (server, client) = fixture(|c| c.http.request_timeout = Duration::from_millis(200)).await;
    respond_first(
        &server,
        "POST",
        1,
        ResponseTemplate::new(200)
            .set_body_json(pending())
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    respond(&server, "POST", json_reply(200, pending())).await;
    client.create_payment(&create(None)).await.unwrap();
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].headers.get("idempotence-key"),
        sent[1].headers.get("idempotence-key")
    );
}

#[tokio::test]
async fn the_retry_budget_ends_in_a_transient_error() {
    let (server, client) = fixture(|_| {}).await;
    respond(
        &server,
        "POST",
        json_reply(500, yookassa_error("internal_server_error", "x")),
    )
    .await;
    let err = client.create_payment(&create(None)).await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::Transient);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn error_answers_map_to_their_class() {
    use ProviderErrorKind::{Auth, InvalidRequest, NotFound, Transient};
    let cases = [
        (400, "invalid_request", InvalidRequest, 1),
        (400, "not_supported", InvalidRequest, 1),
        (401, "invalid_credentials", Auth, 1),
        (403, "forbidden", Auth, 1),
        (404, "not_found", NotFound, 1),
        (500, "internal_server_error", Transient, 3),
    ];
    for (status, code, kind, attempts) in cases {
        let (server, client) = fixture(|_| {}).await;
        respond(
            &server,
            "GET",
            json_reply(status, yookassa_error(code, "words")),
        )
        .await;
        let err = client.get_payment(GATEWAY_ID).await.unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status} {code}");
        assert_eq!(
            requests(&server).await.len(),
            attempts,
            "HTTP {status} {code}"
        );
        assert_eq!(err.alerts_admins(), kind == Auth);
        assert!(!err.to_string().contains(SECRET));
    }
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let (server, client) = fixture(|_| {}).await;
    respond_first(
        &server,
        "POST",
        1,
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "1")
            .set_body_json(yookassa_error("too_many_requests", "Too many requests")),
    )
    .await;
    respond(&server, "POST", json_reply(200, pending())).await;
    let started = Instant::now();
    client.create_payment(&create(None)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    let sent = requests(&server).await;
    assert_eq!(
        sent[0].headers.get("idempotence-key"),
        sent[1].headers.get("idempotence-key")
    );
}

#[tokio::test]
async fn payment_statuses_map_to_the_state_machine() {
    let cases = [
        (payment("pending", json!({})), GatewayStatus::Pending),
        (
            payment("waiting_for_capture", json!({})),
            GatewayStatus::WaitingForCapture,
        ),
        (
            payment(
                "succeeded",
                json!({"captured_at": "2025-05-20T09:16:40.331Z", "income_amount": {"value": "482.50", "currency": "RUB"},
                                        "payment_method": {"type": "bank_card", "id": GATEWAY_ID, "saved": false, "title": "Bank card *4444"},
                                        "refundable": true, "refunded_amount": {"value": "0.00", "currency": "RUB"}}),
            ),
            GatewayStatus::Succeeded,
        ),
        (
            payment(
                "canceled",
                json!({"cancellation_details": {"party": "payment_network", "reason": "insufficient_funds"}}),
            ),
            GatewayStatus::Canceled {
                reason: Some("insufficient_funds".to_owned()),
            },
        ),
    ];
    for (body, status) in cases {
        let (server, client) = fixture(|_| {}).await;
        respond_once(
            &server,
            &format!("GET /v3/payments/{GATEWAY_ID}"),
            json_reply(200, body),
        )
        .await;
        let got = client.get_payment(GATEWAY_ID).await.unwrap();
        assert_eq!(got.status, status);
        assert_eq!(got.payment_id, Some(payment_id()));
        assert!(
            requests(&server).await[0]
                .headers
                .get("idempotence-key")
                .is_none(),
            "GET needs no key"
        );
    }
}

#[tokio::test]
async fn malformed_or_unknown_answers_are_clear_errors_not_panics() {
    let bodies = [
        "not json".to_owned(),
        payment("exploded", json!({})).to_string(),
        payment(
            "pending",
            json!({"amount": {"value": "5.000", "currency": "RUB"}}),
        )
        .to_string(),
        payment(
            "pending",
            json!({"amount": {"value": "5.00", "currency": "USD"}}),
        )
        .to_string(),
        payment("pending", json!({"created_at": "yesterday"})).to_string(),
        json!({"id": GATEWAY_ID}).to_string(),
    ];
    for body in bodies {
        let (server, client) = fixture(|_| {}).await;
        respond(
            &server,
            "GET",
            ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json"),
        )
        .await;
        let err = client.get_payment(GATEWAY_ID).await.unwrap_err();
        assert_eq!(err.kind(), ProviderErrorKind::Unknown, "{body}: {err:?}");
    }
    let (_server, client) = fixture(|_| {}).await;
    assert_eq!(
        client.get_payment("../refunds").await.unwrap_err().kind(),
        ProviderErrorKind::InvalidRequest
    );
}

#[tokio::test]
async fn refunds_use_the_requests_key_on_every_retry() {
    let (server, client) = fixture(|_| {}).await;
    respond_first(&server, "POST /v3/refunds", 1, ResponseTemplate::new(500)).await;
    respond(&server, "POST /v3/refunds", json_reply(200, json!({"id": "2f9e2b7c-0015-5000-8000-1a2b3c4d5e6f", "payment_id": GATEWAY_ID,
            "status": "succeeded", "amount": {"value": "500.00", "currency": "RUB"}, "created_at": "2025-05-21T10:00:00.000Z", "description": "Возврат пополнения"}))).await;
    let refund = client
        .refund(&refund_request(Money::from_rubles(500).unwrap()))
        .await
        .unwrap();

    assert_eq!(refund.refund_id, "2f9e2b7c-0015-5000-8000-1a2b3c4d5e6f");
    assert_eq!(refund.status, RefundStatus::Succeeded);
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2, "the 500 was retried");
    for r in &sent {
        assert_eq!(
            r.headers.get("idempotence-key").unwrap().to_str().unwrap(),
            REFUND_KEY
        );
        assert_eq!(r.body, sent[0].body);
    }
    let body: Value = sent[0].body_json().unwrap();
    assert_eq!(
        body,
        json!({"payment_id": GATEWAY_ID, "amount": {"value": "500.00", "currency": "RUB"}, "description": "Возврат пополнения"})
    );
}

#[tokio::test]
async fn canceled_refunds_carry_their_reason() {
    let (server, client) = fixture(|_| {}).await;
    respond(&server, "POST", json_reply(200, json!({"id": "r1", "payment_id": GATEWAY_ID, "status": "canceled",
            "amount": {"value": "1.00", "currency": "RUB"}, "cancellation_details": {"party": "yoo_money", "reason": "general_decline"}}))).await;
    let request = RefundRequest {
        description: "x".to_owned(),
        ..refund_request(Money::from_rubles(1).unwrap())
    };
    assert_eq!(
        client.refund(&request).await.unwrap().status,
        RefundStatus::Canceled {
            reason: Some("general_decline".to_owned())
        }
    );
}

#[tokio::test]
async fn refund_keys_over_64_characters_are_refused_before_sending() {
    let (server, client) = fixture(|_| {}).await;
    let request = RefundRequest {
        idempotency_key: IdempotencyKey::new("k".repeat(65)).unwrap(),
        ..refund_request(Money::from_rubles(1).unwrap())
    };
    assert_eq!(
        client.refund(&request).await.unwrap_err().kind(),
        ProviderErrorKind::InvalidRequest
    );
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn a_processing_answer_is_repeated_with_the_same_key_after_its_wait() {
    let (server, client) = fixture(|_| {}).await;
    respond_first(
        &server,
        "POST /v3/payments",
        1,
        json_reply(
            202,
            json!({"type": "processing", "description": "Request accepted", "retry_after": 300}),
        ),
    )
    .await;
    respond(&server, "POST /v3/payments", json_reply(200, pending())).await;

    let started = Instant::now();
    let created = client.create_payment(&create(None)).await.unwrap();

    assert_eq!(created, expected_pending());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "retry_after is in milliseconds: waited {:?}",
        started.elapsed()
    );
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_eq!(r.headers.get("idempotence-key").unwrap(), PAYMENT);
        assert_eq!(r.body, sent[0].body);
    }
}

#[tokio::test]
async fn a_processing_answer_that_never_ends_is_a_rate_limit() {
    let (server, client) = fixture(|c| c.retry = fast_retry(2)).await;
    respond(
        &server,
        "POST",
        json_reply(202, json!({"type": "processing", "retry_after": 10})),
    )
    .await;
    let err = client.create_payment(&create(None)).await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_millis(10))
        }
    );
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn an_answer_that_breaks_off_is_repeated_with_the_same_key() {
    // Unlike Gemini, a repeat is safe here: the Idempotence-Key replays the first outcome.
    let broken = RawAnswer::new(
        "HTTP/1.1 200 OK",
        &["Content-Type: application/json", "Content-Length: 4096"],
        br#"{"id": "2f9e1c3a"#,
        Then::Close,
    );
    let whole = pending().to_string();
    let length = format!("Content-Length: {}", whole.len());
    let good = RawAnswer::new(
        "HTTP/1.1 200 OK",
        &[
            "Content-Type: application/json",
            &length,
            "Connection: close",
        ],
        whole.as_bytes(),
        Then::Close,
    );
    let server = RawServer::start(vec![broken, good]).await;
    let (_mock, client) = fixture(|c| c.base_url = format!("{}/v3", server.uri())).await;

    assert_eq!(
        client.create_payment(&create(None)).await.unwrap(),
        expected_pending()
    );

    let sent = server.requests();
    assert_eq!(sent.len(), 2);
    for r in &sent {
        assert_eq!(raw_header(r, "idempotence-key").as_deref(), Some(PAYMENT));
        assert_eq!(raw_body(r), raw_body(&sent[0]));
    }
}

#[tokio::test]
async fn an_unreadable_payment_is_skipped_and_the_page_goes_on() {
    let (logs, _guard) = LogCapture::start();
    let (server, client) = fixture(|_| {}).await;
    let odd_status = json!({"id": "odd-status-0001", "status": "exploded", "amount": {"value": "1.00", "currency": "RUB"}});
    let no_amount = json!({"id": "no-amount-0002", "status": "succeeded"});
    respond_once(
        &server,
        "GET /v3/payments",
        json_reply(
            200,
            json!({"type": "list",
            "items": [pending(), odd_status, no_amount, payment("succeeded", json!({}))],
            "next_cursor": "37a5c87d-3984-51e8-a7f3-8de646d39ec15"}),
        ),
    )
    .await;

    let page = client
        .list_payments(&list_from(Timestamp::from_millis(1_746_057_600_000), None))
        .await
        .unwrap();

    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0], expected_pending());
    assert_eq!(page.items[1].status, GatewayStatus::Succeeded);
    assert_eq!(
        page.next_cursor.as_deref(),
        Some("37a5c87d-3984-51e8-a7f3-8de646d39ec15"),
        "the cursor is kept"
    );
    let text = logs.text();
    assert!(
        text.contains("WARN")
            && text.contains("skipping a payment")
            && text.contains("odd-status-0001")
            && text.contains("no-amount-0002"),
        "{text}"
    );
    assert!(!text.contains(SECRET));
}

#[tokio::test]
async fn listing_pages_through_payments_since_an_instant() {
    let (server, client) = fixture(|_| {}).await;
    Mock::given(method("GET"))
        .and(path("/v3/payments"))
        .and(query_param("created_at.gte", "2025-05-01T00:00:00.000Z"))
        .and(query_param("limit", "100"))
        .and(query_param(
            "cursor",
            "37a5c87d-3984-51e8-a7f3-8de646d39ec15",
        ))
        .respond_with(json_reply(
            200,
            json!({"type": "list", "items": [pending()]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/payments"))
        .and(query_param("created_at.gte", "2025-05-01T00:00:00.000Z"))
        .and(query_param("limit", "100"))
        .respond_with(json_reply(200, json!({"type": "list", "items": [pending(), payment("succeeded", json!({}))], "next_cursor": "37a5c87d-3984-51e8-a7f3-8de646d39ec15"}),))
        .mount(&server)
        .await;
    let since = Timestamp::from_millis(1_746_057_600_000);

    let first = client.list_payments(&list_from(since, None)).await.unwrap();
    let second = client
        .list_payments(&list_from(since, first.next_cursor.clone()))
        .await
        .unwrap();

    assert_eq!(first.items.len(), 2);
    assert_eq!(first.items[1].status, GatewayStatus::Succeeded);
    assert_eq!(
        first.next_cursor.as_deref(),
        Some("37a5c87d-3984-51e8-a7f3-8de646d39ec15")
    );
    assert_eq!(
        second,
        PaymentPage {
            items: vec![expected_pending()],
            next_cursor: None
        }
    );
}

#[tokio::test]
async fn the_secret_never_reaches_the_logs() {
    let (logs, _guard) = LogCapture::start();
    let (server, client) = fixture(|c| c.retry = fast_retry(2)).await;
    respond(
        &server,
        "POST",
        json_reply(
            401,
            yookassa_error("invalid_credentials", "Login or password is invalid"),
        ),
    )
    .await;
    let err = client.create_payment(&create(None)).await.unwrap_err();
    assert_eq!(err, ProviderError::Auth { message: "YooKassa 401 invalid_credentials: Login or password is invalid (parameter amount.value)".to_owned() });
    let text = logs.text();
    assert!(
        text.contains("provider_request")
            && text.contains("/payments")
            && text.contains("status=401"),
        "{text}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SHOP}:{SECRET}"));
    for secret in [SECRET, basic.as_str(), "Basic "] {
        assert!(!text.contains(secret), "a secret leaked into the logs");
        assert!(!format!("{client:?}").contains(secret));
    }
}

#[tokio::test]
async fn a_finished_payment_is_read_in_full() {
    let (server, client) = fixture(|_| {}).await;
    respond(&server, &format!("GET /v3/payments/{GATEWAY_ID}"), json_reply(200, payment(
            "succeeded",
            json!({"captured_at": "2025-05-20T09:16:40.331Z",
                   "income_amount": {"value": "482.50", "currency": "RUB"},
                   "payment_method": {"type": "bank_card", "id": GATEWAY_ID, "saved": false, "title": "Bank card *4444",
                                      "card": {"first6": "555555", "last4": "4444", "expiry_month": "07", "expiry_year": "2030"}},
                   "refundable": true,
                   "refunded_amount": {"value": "100.00", "currency": "RUB"},
                   "receipt_registration": "succeeded"}),
        ))).await;
    let read = client.get_payment(GATEWAY_ID).await.unwrap();
    assert_eq!(
        read,
        GatewayPayment {
            status: GatewayStatus::Succeeded,
            confirmation_url: None,
            paid: true,
            captured_at: Some(Timestamp::from_millis(1_747_732_600_331)),
            income_amount: Some(Money::from_kopecks(48_250).unwrap()),
            payment_method: Some(GatewayMethod {
                kind: "bank_card".into(),
                title: Some("Bank card *4444".into()),
            }),
            refundable: true,
            refunded_amount: Some(Money::from_rubles(100).unwrap()),
            receipt_registration: Some("succeeded".into()),
            ..expected_pending()
        }
    );
}

#[tokio::test]
async fn a_cancelled_payment_names_who_cancelled_it() {
    let (server, client) = fixture(|_| {}).await;
    respond(&server, &format!("GET /v3/payments/{GATEWAY_ID}"), json_reply(200, payment(
            "canceled",
            json!({"cancellation_details": {"party": "yoo_money", "reason": "expired_on_confirmation"}}),
        ))).await;
    let read = client.get_payment(GATEWAY_ID).await.unwrap();
    assert_eq!(
        read.status,
        GatewayStatus::Canceled {
            reason: Some("expired_on_confirmation".into())
        }
    );
    assert_eq!(read.cancellation_party.as_deref(), Some("yoo_money"));
}

#[tokio::test]
async fn unknown_payments_and_refunds_are_not_found_not_bad_requests() {
    let (server, client) = fixture(|_| {}).await;
    respond(
        &server,
        "GET",
        json_reply(404, yookassa_error("not_found", "Not found")),
    )
    .await;
    assert_eq!(
        client.get_payment(GATEWAY_ID).await.unwrap_err().kind(),
        ProviderErrorKind::NotFound
    );
    assert_eq!(
        client
            .get_refund("2f9e2b7c-0015-5000-8000-1a2b3c4d5e6f")
            .await
            .unwrap_err()
            .kind(),
        ProviderErrorKind::NotFound
    );
    assert_eq!(requests(&server).await.len(), 2, "a 404 is not retried");
}

#[tokio::test]
async fn a_refund_is_re_read_by_its_id() {
    let (server, client) = fixture(|_| {}).await;
    let refund = "2f9e2b7c-0015-5000-8000-1a2b3c4d5e6f";
    respond_once(
        &server,
        &format!("GET /v3/refunds/{refund}"),
        json_reply(
            200,
            json!({
            "id": refund, "payment_id": GATEWAY_ID, "status": "canceled",
            "cancellation_details": {"party": "yoo_money", "reason": "rejected_by_payee"},
            "amount": {"value": "500.00", "currency": "RUB"},
            "created_at": "2025-05-21T10:00:00.000Z", "description": "Возврат пополнения"}),
        ),
    )
    .await;
    let read = client.get_refund(refund).await.unwrap();
    assert_eq!(read.refund_id, refund);
    assert_eq!(
        read.status,
        RefundStatus::Canceled {
            reason: Some("rejected_by_payee".into())
        }
    );
    assert_eq!(read.provider_payment_id.as_deref(), Some(GATEWAY_ID));
    assert_eq!(read.amount, Some(Money::from_rubles(500).unwrap()));
    assert_eq!(
        client.get_refund("../payments").await.unwrap_err().kind(),
        ProviderErrorKind::InvalidRequest,
        "ids never escape their path segment"
    );
}

#[tokio::test]
async fn listing_a_window_sends_both_bounds_and_the_page_size() {
    let (server, client) = fixture(|_| {}).await;
    Mock::given(method("GET"))
        .and(path("/v3/payments"))
        .and(query_param("created_at.gte", "2025-05-01T00:00:00.000Z"))
        .and(query_param("created_at.lt", "2025-05-02T00:00:00.000Z"))
        .and(query_param("limit", "20"))
        .respond_with(json_reply(
            200,
            json!({"type": "list", "items": [pending()]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let page = client
        .list_payments(&PaymentListQuery {
            since: Timestamp::from_millis(1_746_057_600_000),
            until: Some(Timestamp::from_millis(1_746_144_000_000)),
            cursor: None,
            limit: 20,
        })
        .await
        .unwrap();
    assert_eq!(page.items, vec![expected_pending()]);
}
