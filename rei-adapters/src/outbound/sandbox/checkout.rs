//! The sandbox's payment gateway: a checkout page of our own that pays on a click.
//!
//! Each payment is a small JSON record in a hidden directory beside the assets
//! (`<ASSET_DIR>/.sandbox/checkout/`), written atomically (a temporary file renamed), so
//! it survives a restart and every process on the machine sees the same state. Core
//! treats this gateway as it treats YooKassa: webhooks are hints, the record is re-read.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rei_core::ids::{PaymentId, UserId};
use rei_core::money::Money;
use rei_core::ports::{
    CreatePayment, GatewayMethod, GatewayPayment, GatewayRefund, GatewayStatus, PaymentGateway,
    PaymentListQuery, PaymentPage, ProviderError, RefundRequest, RefundStatus,
};
use rei_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a sandbox payment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutState {
    /// The page is open: nothing clicked yet.
    Pending,
    /// "Pay" was clicked.
    Paid,
    /// "Cancel" was clicked.
    Cancelled,
}

/// One refund of a sandbox payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Refund {
    id: String,
    kopecks: i64,
}

/// One sandbox payment, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRecord {
    /// The gateway's id (`sbx-<our payment id>`), in the checkout page's address.
    pub id: String,
    /// Our payment.
    pub payment_id: PaymentId,
    /// Who pays.
    pub user_id: UserId,
    /// The amount, in kopecks.
    pub kopecks: i64,
    /// What the payment is for.
    pub description: String,
    /// Where it is.
    pub state: CheckoutState,
    /// When it was created (unix ms).
    pub created_ms: i64,
    /// When "Pay" was clicked (unix ms).
    pub paid_ms: Option<i64>,
    refunds: Vec<Refund>,
}

impl CheckoutRecord {
    /// The amount.
    #[must_use]
    pub fn amount(&self) -> Money {
        Money::from_kopecks(self.kopecks).unwrap_or(Money::ZERO)
    }

    fn refunded(&self) -> i64 {
        self.refunds.iter().map(|r| r.kopecks).sum()
    }
}

/// Why the checkout page cannot act.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// No such sandbox payment.
    #[error("no such sandbox payment")]
    NotFound,
    /// It was paid or cancelled already, the other way.
    #[error("this sandbox payment is {0:?} already")]
    Settled(CheckoutState),
    /// The record cannot be read or written.
    #[error("sandbox checkout storage: {0}")]
    Io(#[from] std::io::Error),
    /// The record is not what this version writes.
    #[error("sandbox checkout record unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl From<CheckoutError> for ProviderError {
    fn from(e: CheckoutError) -> Self {
        match e {
            CheckoutError::NotFound => Self::NotFound {
                message: e.to_string(),
            },
            CheckoutError::Settled(_) => Self::InvalidRequest {
                message: e.to_string(),
            },
            CheckoutError::Io(_) => Self::Transient {
                message: e.to_string(),
            },
            CheckoutError::Corrupt(_) => Self::Unknown {
                message: e.to_string(),
            },
        }
    }
}

/// The sandbox's gateway. `base_url` is where our HTTP server is reached by the user's
/// browser (`PUBLIC_URL`, or the local address).
#[derive(Clone, Debug)]
pub struct SandboxCheckout {
    dir: PathBuf,
    /// Set again once the HTTP server knows its port (`HTTP_ADDR` with port 0).
    base_url: std::sync::Arc<std::sync::RwLock<url::Url>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Ids are ours (`sbx-` and a UUID, or `sbxr-` and hex): anything else is refused before
/// it can name a path.
fn safe_id(id: &str) -> Result<&str, CheckoutError> {
    let ok = (id.starts_with("sbx-") || id.starts_with("sbxr-"))
        && id.len() <= 80
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(CheckoutError::NotFound)
    }
}

impl SandboxCheckout {
    /// Records under `asset_dir/.sandbox/checkout`; pages under `base_url`.
    #[must_use]
    pub fn new(asset_dir: &Path, base_url: url::Url) -> Self {
        Self {
            dir: asset_dir.join(".sandbox").join("checkout"),
            base_url: std::sync::Arc::new(std::sync::RwLock::new(base_url)),
        }
    }

    /// Pages are under `base_url` from now on (the server's bound address).
    pub fn set_base_url(&self, base_url: url::Url) {
        *self
            .base_url
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = base_url;
    }

    /// The checkout page of payment `id`.
    #[must_use]
    pub fn page_url(&self, id: &str) -> String {
        let base = self
            .base_url
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        format!("{base}/sandbox/checkout/{id}")
    }

    fn path(&self, id: &str) -> Result<PathBuf, CheckoutError> {
        Ok(self.dir.join(format!("{}.json", safe_id(id)?)))
    }

    async fn write_json<T: Serialize + Sync>(
        &self,
        id: &str,
        value: &T,
    ) -> Result<(), CheckoutError> {
        let path = self.path(id)?;
        tokio::fs::create_dir_all(&self.dir).await?;
        let temporary = self
            .dir
            .join(format!(".{id}.{}.tmp", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&temporary, serde_json::to_vec(value)?).await?;
        tokio::fs::rename(&temporary, &path).await?;
        Ok(())
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, id: &str) -> Result<T, CheckoutError> {
        match tokio::fs::read(self.path(id)?).await {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CheckoutError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// A payment's record (what the checkout page shows).
    ///
    /// # Errors
    /// [`CheckoutError::NotFound`] for an id that is not one of ours.
    pub async fn record(&self, id: &str) -> Result<CheckoutRecord, CheckoutError> {
        self.read_json(id).await
    }

    /// "Pay" (or "Cancel") clicked: a pending payment becomes paid (cancelled); a repeat
    /// of the same click changes nothing.
    ///
    /// # Errors
    /// [`CheckoutError::Settled`] when it went the other way already.
    pub async fn settle(&self, id: &str, pay: bool) -> Result<CheckoutRecord, CheckoutError> {
        let mut record = self.record(id).await?;
        let wanted = if pay {
            CheckoutState::Paid
        } else {
            CheckoutState::Cancelled
        };
        match record.state {
            CheckoutState::Pending => {
                record.state = wanted;
                record.paid_ms = pay.then(now_ms);
                self.write_json(id, &record).await?;
                tracing::info!(payment_id = %record.payment_id, user_id = record.user_id.get(), amount_kopecks = record.kopecks, state = ?wanted, "sandbox checkout clicked");
                Ok(record)
            }
            state if state == wanted => Ok(record),
            state => Err(CheckoutError::Settled(state)),
        }
    }

    fn gateway_payment(&self, r: &CheckoutRecord) -> GatewayPayment {
        let paid = r.state == CheckoutState::Paid;
        let refunded = r.refunded();
        GatewayPayment {
            provider_payment_id: r.id.clone(),
            status: match r.state {
                CheckoutState::Pending => GatewayStatus::Pending,
                CheckoutState::Paid => GatewayStatus::Succeeded,
                CheckoutState::Cancelled => GatewayStatus::Canceled {
                    reason: Some("canceled_by_user".into()),
                },
            },
            amount: r.amount(),
            confirmation_url: (r.state == CheckoutState::Pending).then(|| self.page_url(&r.id)),
            payment_id: Some(r.payment_id),
            user_id: Some(r.user_id),
            created_at: Some(Timestamp::from_millis(r.created_ms)),
            test: true,
            paid,
            captured_at: r.paid_ms.map(Timestamp::from_millis),
            income_amount: paid.then(|| r.amount()),
            payment_method: Some(GatewayMethod {
                kind: "sandbox".into(),
                title: Some("sandbox checkout".into()),
            }),
            refundable: paid && refunded < r.kopecks,
            refunded_amount: (refunded > 0)
                .then(|| Money::from_kopecks(refunded).unwrap_or(Money::ZERO)),
            cancellation_party: (r.state == CheckoutState::Cancelled)
                .then(|| "merchant".to_owned()),
            receipt_registration: None,
        }
    }
}

/// A refund's own record: which payment, how much.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RefundRecord {
    id: String,
    payment: String,
    kopecks: i64,
}

#[async_trait]
impl PaymentGateway for SandboxCheckout {
    async fn create_payment(
        &self,
        request: &CreatePayment,
    ) -> Result<GatewayPayment, ProviderError> {
        // One record per payment of ours: a retried creation finds the first.
        let id = format!("sbx-{}", request.payment_id.as_uuid().simple());
        let record = match self.record(&id).await {
            Ok(record) => record,
            Err(CheckoutError::NotFound) => {
                let record = CheckoutRecord {
                    id: id.clone(),
                    payment_id: request.payment_id,
                    user_id: request.user_id,
                    kopecks: request.amount.kopecks(),
                    description: request.description.clone(),
                    state: CheckoutState::Pending,
                    created_ms: now_ms(),
                    paid_ms: None,
                    refunds: Vec::new(),
                };
                self.write_json(&id, &record).await?;
                record
            }
            Err(e) => return Err(e.into()),
        };
        Ok(self.gateway_payment(&record))
    }

    async fn get_payment(
        &self,
        provider_payment_id: &str,
    ) -> Result<GatewayPayment, ProviderError> {
        let record = self.record(provider_payment_id).await?;
        Ok(self.gateway_payment(&record))
    }

    async fn refund(&self, request: &RefundRequest) -> Result<GatewayRefund, ProviderError> {
        // The refund's id is derived from its idempotency key: a retry finds the first.
        let digest = super::fnv1a(
            request
                .idempotency_key
                .as_str()
                .bytes()
                .chain([0])
                .chain(request.provider_payment_id.bytes()),
        );
        let id = format!("sbxr-{digest:016x}");
        let done = |kopecks| GatewayRefund {
            refund_id: id.clone(),
            status: RefundStatus::Succeeded,
            provider_payment_id: Some(request.provider_payment_id.clone()),
            amount: Money::from_kopecks(kopecks).ok(),
        };
        if let Ok(existing) = self.read_json::<RefundRecord>(&id).await {
            return Ok(done(existing.kopecks));
        }
        let mut payment = self.record(&request.provider_payment_id).await?;
        let kopecks = request.amount.kopecks();
        if payment.state != CheckoutState::Paid {
            return Err(ProviderError::InvalidRequest {
                message: "only a paid sandbox payment can be refunded".into(),
            });
        }
        if payment.refunded() + kopecks > payment.kopecks {
            return Err(ProviderError::InvalidRequest {
                message: "the refund is more than what is left of the payment".into(),
            });
        }
        payment.refunds.push(Refund {
            id: id.clone(),
            kopecks,
        });
        self.write_json(
            &id,
            &RefundRecord {
                id: id.clone(),
                payment: payment.id.clone(),
                kopecks,
            },
        )
        .await?;
        self.write_json(&payment.id, &payment).await?;
        Ok(done(kopecks))
    }

    async fn get_refund(&self, refund_id: &str) -> Result<GatewayRefund, ProviderError> {
        let refund: RefundRecord = self.read_json(refund_id).await?;
        Ok(GatewayRefund {
            refund_id: refund.id,
            status: RefundStatus::Succeeded,
            provider_payment_id: Some(refund.payment),
            amount: Money::from_kopecks(refund.kopecks).ok(),
        })
    }

    async fn list_payments(&self, query: &PaymentListQuery) -> Result<PaymentPage, ProviderError> {
        let mut records = Vec::new();
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PaymentPage::default()),
            Err(e) => return Err(CheckoutError::Io(e).into()),
        };
        while let Some(entry) = entries.next_entry().await.map_err(CheckoutError::Io)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(".json")
                .filter(|id| id.starts_with("sbx-"))
            else {
                continue;
            };
            let record = self.record(id).await?;
            let at = Timestamp::from_millis(record.created_ms);
            if at >= query.since && query.until.is_none_or(|until| at < until) {
                records.push(record);
            }
        }
        // Newest first; the cursor is how many were already given.
        records.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        let skip = query
            .cursor
            .as_deref()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0);
        let limit = usize::try_from(query.limit.max(1)).unwrap_or(100);
        let items: Vec<GatewayPayment> = records
            .iter()
            .skip(skip)
            .take(limit)
            .map(|r| self.gateway_payment(r))
            .collect();
        let next = skip + items.len();
        Ok(PaymentPage {
            next_cursor: (next < records.len()).then(|| next.to_string()),
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rei_core::ids::IdempotencyKey;

    fn checkout(dir: &Path) -> SandboxCheckout {
        SandboxCheckout::new(dir, "http://127.0.0.1:8080/".parse().unwrap())
    }

    fn create(amount: i64) -> CreatePayment {
        CreatePayment {
            payment_id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
            user_id: UserId::new(7).unwrap(),
            amount: Money::from_kopecks(amount).unwrap(),
            description: "top-up".into(),
            return_url: String::new(),
            receipt_email: None,
        }
    }

    #[tokio::test]
    async fn a_payment_is_pending_until_clicked_then_paid_once() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = checkout(dir.path());
        let request = create(30_000);
        let created = gateway.create_payment(&request).await.unwrap();
        assert_eq!(created.status, GatewayStatus::Pending);
        let page = created.confirmation_url.clone().unwrap();
        assert_eq!(
            page,
            format!(
                "http://127.0.0.1:8080/sandbox/checkout/{}",
                created.provider_payment_id
            )
        );
        // A retried creation finds the first.
        let again = gateway.create_payment(&request).await.unwrap();
        assert_eq!(again.provider_payment_id, created.provider_payment_id);

        let id = created.provider_payment_id.as_str();
        gateway.settle(id, true).await.unwrap();
        gateway.settle(id, true).await.unwrap();
        assert!(matches!(
            gateway.settle(id, false).await,
            Err(CheckoutError::Settled(CheckoutState::Paid))
        ));
        // Another process (a new gateway over the same directory) sees it paid.
        let seen = checkout(dir.path()).get_payment(id).await.unwrap();
        assert_eq!(seen.status, GatewayStatus::Succeeded);
        assert_eq!(seen.amount.kopecks(), 30_000);
        assert!(seen.test && seen.paid && seen.refundable);
        assert_eq!(seen.payment_id, Some(request.payment_id));
        assert!(seen.confirmation_url.is_none());
    }

    #[tokio::test]
    async fn refunds_are_idempotent_and_never_exceed_the_payment() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = checkout(dir.path());
        let created = gateway.create_payment(&create(10_000)).await.unwrap();
        let id = created.provider_payment_id.clone();
        let refund = |key: &str, kopecks| RefundRequest {
            payment_id: created.payment_id.unwrap(),
            idempotency_key: IdempotencyKey::new(key).unwrap(),
            provider_payment_id: id.clone(),
            amount: Money::from_kopecks(kopecks).unwrap(),
            description: "refund".into(),
            receipt_email: None,
        };
        assert!(
            gateway.refund(&refund("r1", 4_000)).await.is_err(),
            "an unpaid payment has nothing to refund"
        );
        gateway.settle(&id, true).await.unwrap();
        let first = gateway.refund(&refund("r1", 4_000)).await.unwrap();
        let repeat = gateway.refund(&refund("r1", 4_000)).await.unwrap();
        assert_eq!(first, repeat);
        assert_eq!(gateway.get_refund(&first.refund_id).await.unwrap(), first);
        assert!(gateway.refund(&refund("r2", 6_001)).await.is_err());
        gateway.refund(&refund("r2", 6_000)).await.unwrap();
        let paid = gateway.get_payment(&id).await.unwrap();
        assert_eq!(paid.refunded_amount.unwrap().kopecks(), 10_000);
        assert!(!paid.refundable);
    }

    #[tokio::test]
    async fn listing_pages_newest_first_and_strange_ids_name_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let gateway = checkout(dir.path());
        for _ in 0..3 {
            gateway.create_payment(&create(100)).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let query = |cursor| PaymentListQuery {
            since: Timestamp::from_millis(0),
            until: None,
            cursor,
            limit: 2,
        };
        let first = gateway.list_payments(&query(None)).await.unwrap();
        assert_eq!(first.items.len(), 2);
        let rest = gateway
            .list_payments(&query(first.next_cursor.clone()))
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 1);
        assert!(rest.next_cursor.is_none());
        assert!(first.items[0].created_at >= first.items[1].created_at);
        for bad in ["../../etc/passwd", "sbx-../x", "yk-1", ""] {
            assert!(matches!(
                gateway.get_payment(bad).await,
                Err(ProviderError::NotFound { .. })
            ));
        }
    }
}
