//! A fake YooKassa API v3 (providers.md §3): payments (`POST /payments`, idempotent by
//! `Idempotence-Key`; `GET /payments/{id}`; `GET /payments` with `created_at.gte|lt`,
//! `limit` and `cursor`, newest first) and refunds (`POST /refunds`, idempotent;
//! `GET /refunds/{id}`), with Basic auth accepted as is. Payments stay `pending` until a
//! test pays or cancels them; refunds answer as the test scripts. It also writes the
//! notification bodies YooKassa would send (§3.7).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// How the next refund requests are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundAnswer {
    /// `succeeded` at once (the default).
    Succeed,
    /// `pending`, until [`FakeYooKassa::finish_refund`].
    Pending,
    /// HTTP 500 without making the refund (the outcome is unknown to the caller).
    Fail,
}

#[derive(Debug, Default)]
struct Books {
    /// Payments by id, and their creation order.
    payments: HashMap<String, Value>,
    order: Vec<String>,
    by_key: HashMap<String, String>,
    refunds: HashMap<String, Value>,
    refunds_by_key: HashMap<String, String>,
    refund_answers: VecDeque<RefundAnswer>,
    /// Answers of HTTP 500 still to give to `GET /payments/{id}`.
    read_failures: u32,
    /// Requests per route (`POST /payments`, `GET /payments/{id}`, …).
    hits: HashMap<&'static str, u64>,
    /// Every `POST /payments` body received, in order.
    create_bodies: Vec<Value>,
}

/// The fake and its books.
#[derive(Clone, Debug)]
pub struct FakeYooKassa {
    books: Arc<Mutex<Books>>,
    /// Where it listens (`YOOKASSA_API_URL`, with the `/v3` prefix).
    pub url: String,
}

fn lock(books: &Mutex<Books>) -> std::sync::MutexGuard<'_, Books> {
    books.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "id": "7d9e5c1a-0000-4000-8000-000000000001", "code": code, "description": description})),
    )
        .into_response()
}

/// HTTP 400 `invalid_request` saying `description`.
fn bad_request(description: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

impl FakeYooKassa {
    /// Starts the fake.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let books = Arc::new(Mutex::new(Books::default()));
        let router = Router::new()
            .route("/v3/payments", post(create).get(list))
            .route("/v3/payments/{id}", get(read))
            .route("/v3/refunds", post(refund))
            .route("/v3/refunds/{id}", get(read_refund))
            .with_state(books.clone());
        let (base, _task) = super::serve(router).await?;
        Ok(Self {
            books,
            url: format!("{base}/v3"),
        })
    }

    /// Payments created so far, in creation order.
    #[must_use]
    pub fn payments(&self) -> Vec<Value> {
        let b = lock(&self.books);
        b.order
            .iter()
            .filter_map(|id| b.payments.get(id).cloned())
            .collect()
    }

    /// Every `POST /payments` body received (receipts included), in order.
    #[must_use]
    pub fn create_requests(&self) -> Vec<Value> {
        lock(&self.books).create_bodies.clone()
    }

    /// Refunds made so far.
    #[must_use]
    pub fn refunds(&self) -> Vec<Value> {
        lock(&self.books).refunds.values().cloned().collect()
    }

    /// How many requests a route got (`"POST /payments"`, `"GET /payments/{id}"`,
    /// `"GET /payments"`, `"POST /refunds"`, `"GET /refunds/{id}"`).
    #[must_use]
    pub fn hits(&self, route: &str) -> u64 {
        lock(&self.books).hits.get(route).copied().unwrap_or(0)
    }

    /// The payer paid: the payment is `succeeded` from now on.
    pub fn pay(&self, id: &str) {
        if let Some(p) = lock(&self.books).payments.get_mut(id) {
            p["status"] = json!("succeeded");
            p["paid"] = json!(true);
            p["captured_at"] = json!(now_iso());
            p["income_amount"] = p["amount"].clone();
            p["payment_method"] =
                json!({"type": "bank_card", "id": id, "saved": false, "title": "Bank card *4444"});
            p["refundable"] = json!(true);
            p.as_object_mut().map(|o| o.remove("confirmation"));
        }
    }

    /// The payment was cancelled (by default: the payer never confirmed it).
    pub fn cancel(&self, id: &str) {
        if let Some(p) = lock(&self.books).payments.get_mut(id) {
            p["status"] = json!("canceled");
            p["cancellation_details"] =
                json!({"party": "yoo_money", "reason": "expired_on_confirmation"});
        }
    }

    /// How the next refund requests are answered (one answer each; then `Succeed`).
    pub fn answer_refunds(&self, answers: impl IntoIterator<Item = RefundAnswer>) {
        lock(&self.books).refund_answers.extend(answers);
    }

    /// A pending refund ends: `succeeded` (the payment's `refunded_amount` grows) or
    /// `canceled`.
    pub fn finish_refund(&self, refund_id: &str, succeeded: bool) {
        let mut b = lock(&self.books);
        let Some(r) = b.refunds.get_mut(refund_id) else {
            return;
        };
        if succeeded {
            r["status"] = json!("succeeded");
            let (payment, amount) = (r["payment_id"].clone(), r["amount"].clone());
            if let Some(id) = payment.as_str() {
                add_refunded(&mut b, id, &amount);
            }
        } else {
            r["status"] = json!("canceled");
            r["cancellation_details"] =
                json!({"party": "yoo_money", "reason": "rejected_by_payee"});
        }
    }

    /// Changes a payment's amount (for reconciliation tests: "another amount there").
    pub fn set_amount(&self, id: &str, value: &str) {
        if let Some(p) = lock(&self.books).payments.get_mut(id) {
            p["amount"] = json!({"value": value, "currency": "RUB"});
        }
    }

    /// A paid payment of the shop made elsewhere (no metadata of ours); returns its id.
    pub fn add_foreign(&self, value: &str) -> String {
        let mut b = lock(&self.books);
        let id = format!(
            "2f9e1c3a-000f-5000-9000-{:012x}",
            0xf000 + b.payments.len() + 1
        );
        let payment = json!({
            "id": id, "status": "succeeded", "paid": true,
            "amount": {"value": value, "currency": "RUB"},
            "created_at": now_iso(), "captured_at": now_iso(),
            "description": "paid on the website", "metadata": {},
            "refundable": true, "test": true
        });
        b.order.push(id.clone());
        b.payments.insert(id.clone(), payment);
        id
    }

    /// A refund made in the YooKassa dashboard, not through REI.
    pub fn refund_outside(&self, id: &str, value: &str) {
        add_refunded(
            &mut lock(&self.books),
            id,
            &json!({"value": value, "currency": "RUB"}),
        );
    }

    /// The next `n` reads of a payment by id answer HTTP 500.
    pub fn fail_reads(&self, n: u32) {
        lock(&self.books).read_failures = n;
    }

    /// The notification body YooKassa sends about a payment (`event` such as
    /// `payment.succeeded`), carrying the payment object as it is now — or `status` in
    /// its place, for a forged or stale one.
    #[must_use]
    pub fn notification(&self, event: &str, id: &str, status: Option<&str>) -> Value {
        let mut object =
            lock(&self.books).payments.get(id).cloned().unwrap_or_else(
                || json!({"id": id, "amount": {"value": "100.00", "currency": "RUB"}}),
            );
        if let Some(status) = status {
            object["status"] = json!(status);
        }
        json!({"type": "notification", "event": event, "object": object})
    }

    /// The notification body of a refund.
    #[must_use]
    pub fn refund_notification(&self, refund_id: &str) -> Value {
        let object = lock(&self.books)
            .refunds
            .get(refund_id)
            .cloned()
            .unwrap_or(Value::Null);
        json!({"type": "notification", "event": "refund.succeeded", "object": object})
    }
}

fn add_refunded(b: &mut Books, payment: &str, amount: &Value) {
    let Some(p) = b.payments.get_mut(payment) else {
        return;
    };
    let kopecks = |v: &Value| {
        v["value"]
            .as_str()
            .and_then(|s| s.replace('.', "").parse::<i64>().ok())
            .unwrap_or(0)
    };
    let total = kopecks(&p["refunded_amount"]) + kopecks(amount);
    p["refunded_amount"] =
        json!({"value": format!("{}.{:02}", total / 100, total % 100), "currency": "RUB"});
    if total >= kopecks(&p["amount"]) {
        p["refundable"] = json!(false);
    }
}

fn hit(books: &Mutex<Books>, route: &'static str) {
    *lock(books).hits.entry(route).or_default() += 1;
}

async fn create(
    State(books): State<Arc<Mutex<Books>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    hit(&books, "POST /payments");
    let Some(key) = headers.get("Idempotence-Key").and_then(|v| v.to_str().ok()) else {
        return bad_request("Idempotence-Key is required");
    };
    let mut b = lock(&books);
    b.create_bodies.push(body.clone());
    if let Some(id) = b.by_key.get(key) {
        return Json(b.payments.get(id).cloned().unwrap_or_default()).into_response();
    }
    let id = format!("2f9e1c3a-000f-5000-9000-{:012x}", b.payments.len() + 1);
    let payment = json!({
        "id": id,
        "status": "pending",
        "paid": false,
        "amount": body["amount"],
        "confirmation": {"type": "redirect", "confirmation_url": format!("https://yoomoney.test/checkout/payments/v2/contract?orderId={id}")},
        "created_at": now_iso(),
        "description": body["description"],
        "metadata": body["metadata"],
        "recipient": {"account_id": "123456", "gateway_id": "654321"},
        "refundable": false,
        "test": true
    });
    b.by_key.insert(key.to_owned(), id.clone());
    b.order.push(id.clone());
    b.payments.insert(id, payment.clone());
    Json(payment).into_response()
}

async fn read(State(books): State<Arc<Mutex<Books>>>, Path(id): Path<String>) -> Response {
    hit(&books, "GET /payments/{id}");
    let mut b = lock(&books);
    if b.read_failures > 0 {
        b.read_failures -= 1;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "Internal server error",
        );
    }
    match b.payments.get(&id) {
        Some(p) => Json(p.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "Payment not found"),
    }
}

async fn list(
    State(books): State<Arc<Mutex<Books>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    hit(&books, "GET /payments");
    let instant = |key: &str| {
        query
            .get(key)
            .map(|v| DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc)))
            .transpose()
    };
    let (Ok(gte), Ok(lt)) = (instant("created_at.gte"), instant("created_at.lt")) else {
        return bad_request("Invalid created_at");
    };
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| (1..=100).contains(l))
        .unwrap_or(10);
    let start: usize = query
        .get("cursor")
        .and_then(|c| c.strip_prefix("cursor-"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let b = lock(&books);
    let matching: Vec<Value> = b
        .order
        .iter()
        .rev()
        .filter_map(|id| b.payments.get(id))
        .filter(|p| {
            let created = p["created_at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            created.is_some_and(|c| gte.is_none_or(|g| c >= g) && lt.is_none_or(|l| c < l))
        })
        .cloned()
        .collect();
    let page: Vec<Value> = matching.iter().skip(start).take(limit).cloned().collect();
    let mut body = json!({"type": "list", "items": page});
    if start + limit < matching.len() {
        body["next_cursor"] = json!(format!("cursor-{}", start + limit));
    }
    Json(body).into_response()
}

async fn refund(
    State(books): State<Arc<Mutex<Books>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    hit(&books, "POST /refunds");
    let Some(key) = headers.get("Idempotence-Key").and_then(|v| v.to_str().ok()) else {
        return bad_request("Idempotence-Key is required");
    };
    let mut b = lock(&books);
    if let Some(id) = b.refunds_by_key.get(key) {
        return Json(b.refunds.get(id).cloned().unwrap_or_default()).into_response();
    }
    let Some(payment_id) = body["payment_id"].as_str().map(str::to_owned) else {
        return bad_request("payment_id is required");
    };
    if b.payments
        .get(&payment_id)
        .is_none_or(|p| p["refundable"] != json!(true))
    {
        return bad_request("The payment cannot be refunded");
    }
    // Like YooKassa: never more than what is left of the payment.
    let cents = |v: &Value| {
        v["value"]
            .as_str()
            .and_then(|s| s.replace('.', "").parse::<i64>().ok())
            .unwrap_or(0)
    };
    let left = b
        .payments
        .get(&payment_id)
        .map_or(0, |p| cents(&p["amount"]) - cents(&p["refunded_amount"]));
    if cents(&body["amount"]) > left {
        return bad_request("The refund amount exceeds the amount left to refund");
    }
    let answer = b
        .refund_answers
        .pop_front()
        .unwrap_or(RefundAnswer::Succeed);
    if answer == RefundAnswer::Fail {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "Internal server error",
        );
    }
    let id = format!("2f9e2b7c-0015-5000-8000-{:012x}", b.refunds.len() + 1);
    let status = if answer == RefundAnswer::Succeed {
        "succeeded"
    } else {
        "pending"
    };
    let refund = json!({
        "id": id, "payment_id": payment_id, "status": status, "amount": body["amount"],
        "created_at": now_iso(), "description": body["description"]
    });
    if status == "succeeded" {
        add_refunded(&mut b, &payment_id, &body["amount"]);
    }
    b.refunds_by_key.insert(key.to_owned(), id.clone());
    b.refunds.insert(id, refund.clone());
    Json(refund).into_response()
}

async fn read_refund(State(books): State<Arc<Mutex<Books>>>, Path(id): Path<String>) -> Response {
    hit(&books, "GET /refunds/{id}");
    match lock(&books).refunds.get(&id) {
        Some(r) => Json(r.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "Refund not found"),
    }
}
