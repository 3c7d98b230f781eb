//! YooKassa API v3 JSON (providers.md §3.3–§3.8). Only this module knows the field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"value":"500.00","currency":"RUB"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Amount {
    pub value: String,
    pub currency: String,
}

/// `POST /payments`.
#[derive(Debug, Serialize)]
pub(crate) struct CreatePayment<'a> {
    pub amount: Amount,
    pub capture: bool,
    pub confirmation: ConfirmationRequest<'a>,
    pub description: String,
    pub metadata: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// `{"type":"redirect","return_url":…}`.
#[derive(Debug, Serialize)]
pub(crate) struct ConfirmationRequest<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub return_url: &'a str,
}

/// A 54-FZ receipt.
#[derive(Debug, Serialize)]
pub(crate) struct Receipt {
    pub customer: Customer,
    pub items: Vec<ReceiptItem>,
}

/// `receipt.customer`.
#[derive(Debug, Serialize)]
pub(crate) struct Customer {
    pub email: String,
}

/// `receipt.items[]`.
#[derive(Debug, Serialize)]
pub(crate) struct ReceiptItem {
    pub description: String,
    pub quantity: &'static str,
    pub amount: Amount,
    pub vat_code: u8,
    pub payment_mode: &'static str,
    pub payment_subject: &'static str,
}

/// `POST /refunds`.
#[derive(Debug, Serialize)]
pub(crate) struct CreateRefund<'a> {
    pub payment_id: &'a str,
    pub amount: Amount,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// A payment object (create, get, list items, notifications).
#[derive(Debug, Deserialize)]
pub(crate) struct Payment {
    pub id: String,
    pub status: String,
    pub amount: Amount,
    #[serde(default)]
    pub confirmation: Option<Confirmation>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub cancellation_details: Option<CancellationDetails>,
    #[serde(default)]
    pub test: bool,
    #[serde(default)]
    pub paid: bool,
    #[serde(default)]
    pub captured_at: Option<String>,
    #[serde(default)]
    pub income_amount: Option<Amount>,
    #[serde(default)]
    pub payment_method: Option<PaymentMethod>,
    #[serde(default)]
    pub refundable: bool,
    #[serde(default)]
    pub refunded_amount: Option<Amount>,
    #[serde(default)]
    pub receipt_registration: Option<String>,
}

/// `payment_method`: only its type and title are read (never card data).
#[derive(Debug, Deserialize)]
pub(crate) struct PaymentMethod {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub title: Option<String>,
}

/// `confirmation` of a payment.
#[derive(Debug, Deserialize)]
pub(crate) struct Confirmation {
    #[serde(default)]
    pub confirmation_url: Option<String>,
}

/// `cancellation_details`.
#[derive(Debug, Deserialize)]
pub(crate) struct CancellationDetails {
    #[serde(default)]
    pub party: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A refund object.
#[derive(Debug, Deserialize)]
pub(crate) struct Refund {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub payment_id: Option<String>,
    #[serde(default)]
    pub amount: Option<Amount>,
    #[serde(default)]
    pub cancellation_details: Option<CancellationDetails>,
}

/// `GET /payments` answer; each item is read on its own, so one odd payment does not
/// spoil the page.
#[derive(Debug, Deserialize)]
pub(crate) struct PaymentList {
    #[serde(default)]
    pub items: Vec<serde_json::Value>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `{"type":"error","id":…,"code":…,"description":…,"parameter":…}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameter: Option<String>,
}

/// The HTTP 202 answer: `{"type":"processing","description":…,"retry_after":1800}`, the
/// wait in milliseconds.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Processing {
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// An incoming notification (providers.md §3.7): only what names the object is read.
#[derive(Debug, Deserialize)]
pub(crate) struct Notification {
    #[serde(rename = "type")]
    pub kind: String,
    pub event: String,
    pub object: NotifiedObject,
}

/// `object` of a notification: a payment, or a refund (which has `payment_id`).
#[derive(Debug, Deserialize)]
pub(crate) struct NotifiedObject {
    pub id: String,
    #[serde(default)]
    pub payment_id: Option<String>,
}
