//! A fake YooKassa API v3 (providers.md §3): `POST /payments` (idempotent by
//! `Idempotence-Key`) and `GET /payments/{id}`, with Basic auth accepted as is. Payments
//! stay `pending` until a test marks them paid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Books {
    payments: HashMap<String, Value>,
    by_key: HashMap<String, String>,
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

impl FakeYooKassa {
    /// Starts the fake.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let books = Arc::new(Mutex::new(Books::default()));
        let router = Router::new()
            .route("/v3/payments", post(create))
            .route("/v3/payments/{id}", get(read))
            .with_state(books.clone());
        let (base, _task) = super::serve(router).await?;
        Ok(Self {
            books,
            url: format!("{base}/v3"),
        })
    }

    /// Payments created so far.
    #[must_use]
    pub fn payments(&self) -> Vec<Value> {
        lock(&self.books).payments.values().cloned().collect()
    }

    /// The payer paid: the payment is `succeeded` from now on.
    pub fn pay(&self, id: &str) {
        if let Some(p) = lock(&self.books).payments.get_mut(id) {
            p["status"] = json!("succeeded");
            p["paid"] = json!(true);
            p["captured_at"] = json!("2026-12-02T10:00:00.000Z");
            p["income_amount"] = p["amount"].clone();
        }
    }
}

async fn create(
    State(books): State<Arc<Mutex<Books>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let Some(key) = headers.get("Idempotence-Key").and_then(|v| v.to_str().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"type": "error", "id": "e1", "code": "invalid_request", "description": "Idempotence-Key is required"})),
        )
            .into_response();
    };
    let mut b = lock(&books);
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
        "created_at": "2026-12-02T09:15:02.117Z",
        "description": body["description"],
        "metadata": body["metadata"],
        "recipient": {"account_id": "123456", "gateway_id": "654321"},
        "refundable": false,
        "test": true
    });
    b.by_key.insert(key.to_owned(), id.clone());
    b.payments.insert(id, payment.clone());
    Json(payment).into_response()
}

async fn read(State(books): State<Arc<Mutex<Books>>>, Path(id): Path<String>) -> Response {
    match lock(&books).payments.get(&id) {
        Some(p) => Json(p.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"type": "error", "id": "e2", "code": "not_found", "description": "Payment not found"})),
        )
            .into_response(),
    }
}
