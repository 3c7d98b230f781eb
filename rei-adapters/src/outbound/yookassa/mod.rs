//! YooKassa card payments: [`YooKassaClient`] implements rei-core's `PaymentGateway`
//! (providers.md §0.3 and §3).
//!
//! - HTTP Basic auth `shopId:secretKey`; every POST carries an `Idempotence-Key`: our
//!   payment id for a payment, the request's `idempotency_key` for a refund (one per
//!   refund attempt, chosen by the caller). A retry repeats the same body with the same
//!   key, so YooKassa replays the first outcome.
//! - HTTP 202 (`{"type":"processing","retry_after":<ms>}`: YooKassa is still working on
//!   it) is a rate limit that names its wait: the same request is repeated with the same
//!   key after `retry_after` milliseconds, as the official SDKs do.
//! - `POST /payments`: amount as a decimal string in RUB, `capture: true`, a redirect
//!   confirmation, metadata `{tg_user_id, payment_id}`, and a 54-FZ receipt
//!   (`full_prepayment`, `service`) when a VAT code is configured.
//! - `GET /payments/{id}`, `GET /payments?created_at.gte=…&limit=100&cursor=…` (an item
//!   that cannot be read is skipped with a warning, so one odd payment never blocks
//!   reconciliation), `POST /refunds`.

mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rei_core::Money;
use rei_core::ids::{PaymentId, UserId};
use rei_core::payment::GatewayHint;
use rei_core::ports::{
    CreatePayment, GatewayMethod, GatewayPayment, GatewayRefund, GatewayStatus, PaymentGateway,
    PaymentListQuery, PaymentPage, ProviderError, RefundRequest, RefundStatus,
};
use rei_core::time::Timestamp;
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::outbound::client::{
    self, Call, ClientBuildError, Exchange, HttpConfig, Replay, RetryPolicy,
};

mod convert;
mod notification;
use convert::*;
pub use notification::{NotificationError, parse_notification};

/// The default of `YOOKASSA_API_URL`.
pub const DEFAULT_BASE_URL: &str = "https://api.yookassa.ru/v3";

const PROVIDER: &str = "yookassa";
const JSON_LIMIT: usize = 4 * 1024 * 1024;
/// `description` of a payment (providers.md §3.3).
const MAX_DESCRIPTION_CHARS: usize = 128;
/// `description` of a refund.
const MAX_REFUND_DESCRIPTION_CHARS: usize = 250;
/// Most payments per list page (the API maximum).
const MAX_PAGE_SIZE: u32 = 100;
/// Longest `Idempotence-Key` (providers.md §3.2: treat 64 as a hard limit).
const MAX_KEY_LEN: usize = 64;
/// The wait after a 202 without `retry_after` (the official PHP SDK's `DEFAULT_DELAY`).
const PROCESSING_DEFAULT_DELAY: std::time::Duration = std::time::Duration::from_millis(1800);

/// A 54-FZ VAT code, 1 to 6 (`YOOKASSA_RECEIPT_VAT_CODE`): 1 no VAT, 2 = 0 %, 3 = 10 %,
/// 4 = 20 %, 5 = 10/110, 6 = 20/120.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VatCode(u8);

/// A VAT code outside 1–6.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a VAT code (expected 1 to 6)")]
pub struct VatCodeError(String);

impl VatCode {
    /// A VAT code.
    ///
    /// # Errors
    /// [`VatCodeError`] outside 1–6.
    pub fn new(code: u8) -> Result<Self, VatCodeError> {
        if (1..=6).contains(&code) {
            Ok(Self(code))
        } else {
            Err(VatCodeError(code.to_string()))
        }
    }

    /// The number.
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl FromStr for VatCode {
    type Err = VatCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u8>()
            .ok()
            .and_then(|c| Self::new(c).ok())
            .ok_or_else(|| VatCodeError(s.chars().take(16).collect()))
    }
}

/// Everything [`YooKassaClient`] needs; the binaries fill it from the environment.
#[derive(Clone)]
pub struct YooKassaConfig {
    /// `YOOKASSA_API_URL` (default [`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// `YOOKASSA_SHOP_ID`.
    pub shop_id: String,
    /// `YOOKASSA_SECRET_KEY`.
    pub secret_key: SecretString,
    /// `YOOKASSA_RECEIPT_VAT_CODE`: when set, every payment and refund carries a receipt.
    pub receipt_vat_code: Option<VatCode>,
    /// `YOOKASSA_RETURN_URL`: used when a request carries no return URL of its own.
    pub default_return_url: Option<String>,
    /// Timeouts (default 40 s per call: YooKassa answers 500 after ~30 s of doubt).
    pub http: HttpConfig,
    /// Retries (same key, same body).
    pub retry: RetryPolicy,
}

impl fmt::Debug for YooKassaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YooKassaConfig")
            .field("base_url", &self.base_url)
            .field("shop_id", &self.shop_id)
            .field("secret_key", &"<redacted>")
            .field("receipt_vat_code", &self.receipt_vat_code)
            .field("default_return_url", &self.default_return_url)
            .field("http", &self.http)
            .field("retry", &self.retry)
            .finish()
    }
}

impl YooKassaConfig {
    /// The defaults of `shared/spec/interfaces.md` with these credentials.
    #[must_use]
    pub fn new(shop_id: impl Into<String>, secret_key: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            shop_id: shop_id.into(),
            secret_key,
            receipt_vat_code: None,
            default_return_url: None,
            http: HttpConfig::with_request_timeout(std::time::Duration::from_secs(40)),
            retry: RetryPolicy::default(),
        }
    }
}

/// The YooKassa adapter.
pub struct YooKassaClient {
    http: reqwest::Client,
    base_url: Url,
    shop_id: String,
    secret_key: SecretString,
    vat_code: Option<VatCode>,
    default_return_url: Option<String>,
    retry: RetryPolicy,
}

impl fmt::Debug for YooKassaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YooKassaClient")
            .field("base_url", &self.base_url.as_str())
            .field("shop_id", &self.shop_id)
            .field("vat_code", &self.vat_code)
            .finish_non_exhaustive()
    }
}

impl YooKassaClient {
    /// A client for one shop.
    ///
    /// # Errors
    /// [`ClientBuildError`] for a base URL that is not http(s), empty credentials, or a
    /// TLS backend failure.
    pub fn new(config: YooKassaConfig) -> Result<Self, ClientBuildError> {
        let base_url = Url::parse(config.base_url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                ClientBuildError::new(PROVIDER, "YOOKASSA_API_URL must be an http(s) URL")
            })?;
        if config.shop_id.trim().is_empty() || config.secret_key.expose_secret().trim().is_empty() {
            return Err(ClientBuildError::new(
                PROVIDER,
                "YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY must not be empty",
            ));
        }
        Ok(Self {
            http: client::build_client(PROVIDER, &config.http)?,
            base_url,
            shop_id: config.shop_id.trim().to_owned(),
            secret_key: config.secret_key,
            vat_code: config.receipt_vat_code,
            default_return_url: config.default_return_url.filter(|u| !u.trim().is_empty()),
            retry: config.retry,
        })
    }

    /// The `Idempotence-Key` of a payment's creation: our payment id.
    #[must_use]
    pub fn payment_key(payment: PaymentId) -> String {
        payment.to_string()
    }

    fn receipt(
        &self,
        email: Option<&str>,
        description: &str,
        amount: Money,
    ) -> Result<Option<wire::Receipt>, ProviderError> {
        let Some(vat) = self.vat_code else {
            return Ok(None);
        };
        let email = email
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| invalid("receipts are on: the payer's e-mail is required"))?;
        Ok(Some(wire::Receipt {
            customer: wire::Customer {
                email: email.to_owned(),
            },
            items: vec![wire::ReceiptItem {
                description: cut(description, MAX_DESCRIPTION_CHARS),
                quantity: "1.00",
                amount: amount_of(amount),
                vat_code: vat.get(),
                payment_mode: "full_prepayment",
                payment_subject: "service",
            }],
        }))
    }

    /// One exchange; `key` is the `Idempotence-Key` of a POST.
    async fn attempt<T>(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        post: Option<(&str, &[u8])>,
    ) -> Result<T, ProviderError>
    where
        T: DeserializeOwned,
    {
        let url = client::endpoint(&self.base_url, path);
        let mut request = match post {
            Some((key, body)) => self
                .http
                .post(url)
                .header("Idempotence-Key", key)
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            None => self.http.get(url),
        };
        if !query.is_empty() {
            request = request.query(query);
        }
        let request = request.basic_auth(&self.shop_id, Some(self.secret_key.expose_secret()));
        let call = Call {
            provider: PROVIDER,
            method,
            path,
            body_limit: JSON_LIMIT,
            // GETs only read; every POST carries its Idempotence-Key.
            replay: Replay::Safe,
        };
        client::exchange(call, request, interpret::<T>).await
    }

    async fn get<T>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, ProviderError>
    where
        T: DeserializeOwned,
    {
        self.retry
            .run(PROVIDER, || self.attempt("GET", path, query, None))
            .await
    }

    /// POSTs `body` under `key`; every retry sends the very same bytes and key.
    async fn post<T>(&self, path: &str, key: &str, body: &[u8]) -> Result<T, ProviderError>
    where
        T: DeserializeOwned,
    {
        self.retry
            .run(PROVIDER, || {
                self.attempt("POST", path, &[], Some((key, body)))
            })
            .await
    }
}

#[async_trait]
impl PaymentGateway for YooKassaClient {
    #[tracing::instrument(skip_all, fields(provider = PROVIDER, payment_id = %request.payment_id, amount_kopecks = request.amount.kopecks()))]
    async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<GatewayPayment, ProviderError> {
        if request.amount.is_zero() {
            return Err(invalid("the amount must be positive"));
        }
        let return_url = Some(request.return_url.trim())
            .filter(|u| !u.is_empty())
            .or(self.default_return_url.as_deref())
            .ok_or_else(|| invalid("a return URL is required"))?;
        let description = cut(&request.description, MAX_DESCRIPTION_CHARS);
        let metadata = BTreeMap::from([
            ("tg_user_id", request.user_id.to_string()),
            ("payment_id", request.payment_id.to_string()),
        ]);
        let body = wire::CreatePayment {
            amount: amount_of(request.amount),
            capture: true,
            confirmation: wire::ConfirmationRequest {
                kind: "redirect",
                return_url,
            },
            receipt: self.receipt(
                request.receipt_email.as_deref(),
                &description,
                request.amount,
            )?,
            description,
            metadata,
        };
        let body = encode(&body)?;
        let payment: wire::Payment = self
            .post("/payments", &Self::payment_key(request.payment_id), &body)
            .await?;
        gateway_payment(payment)
    }

    #[tracing::instrument(skip_all, fields(provider = PROVIDER, provider_payment_id = %provider_payment_id))]
    async fn get_payment(
        &self,
        provider_payment_id: &str,
    ) -> Result<GatewayPayment, ProviderError> {
        let id = path_segment(provider_payment_id)?;
        let payment: wire::Payment = self.get(&format!("/payments/{id}"), &[]).await?;
        gateway_payment(payment)
    }

    #[tracing::instrument(skip_all, fields(provider = PROVIDER, payment_id = %request.payment_id, amount_kopecks = request.amount.kopecks()))]
    async fn refund(&self, request: &RefundRequest) -> Result<GatewayRefund, ProviderError> {
        if request.amount.is_zero() {
            return Err(invalid("the amount must be positive"));
        }
        let key = request.idempotency_key.as_str();
        if key.len() > MAX_KEY_LEN {
            return Err(invalid(format!(
                "the refund's idempotency key is longer than {MAX_KEY_LEN} characters"
            )));
        }
        let payment_id = path_segment(&request.provider_payment_id)?;
        let body = wire::CreateRefund {
            payment_id,
            amount: amount_of(request.amount),
            description: cut(&request.description, MAX_REFUND_DESCRIPTION_CHARS),
            receipt: self.receipt(
                request.receipt_email.as_deref(),
                &request.description,
                request.amount,
            )?,
        };
        let body = encode(&body)?;
        let refund: wire::Refund = self.post("/refunds", key, &body).await?;
        gateway_refund(refund)
    }

    #[tracing::instrument(skip_all, fields(provider = PROVIDER, refund_id = %refund_id))]
    async fn get_refund(&self, refund_id: &str) -> Result<GatewayRefund, ProviderError> {
        let id = path_segment(refund_id)?;
        let refund: wire::Refund = self.get(&format!("/refunds/{id}"), &[]).await?;
        gateway_refund(refund)
    }

    #[tracing::instrument(skip_all, fields(provider = PROVIDER, since = query.since.millis(), until = query.until.map(Timestamp::millis)))]
    async fn list_payments(&self, query: &PaymentListQuery) -> Result<PaymentPage, ProviderError> {
        let since = iso(query.since)?;
        let until = query.until.map(iso).transpose()?;
        let limit = query.limit.clamp(1, MAX_PAGE_SIZE).to_string();
        let mut params = vec![
            ("created_at.gte", since.as_str()),
            ("limit", limit.as_str()),
        ];
        if let Some(until) = until.as_deref() {
            params.push(("created_at.lt", until));
        }
        if let Some(cursor) = query.cursor.as_deref() {
            params.push(("cursor", cursor));
        }
        let query = params;
        let list: wire::PaymentList = self.get("/payments", &query).await?;
        let items = list.items.into_iter().filter_map(listed_payment).collect();
        Ok(PaymentPage {
            items,
            next_cursor: list.next_cursor.filter(|c| !c.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests;
