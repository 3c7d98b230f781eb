//! Live prices: the price of every product lives in the store (seeded from the
//! settings on first start), is changed by an admin (`rei-cli prices set`, `/setprice`)
//! with an audit line, and every process picks a change up within seconds by
//! refreshing its [`JobService`]'s list. A draft keeps the price it quoted until it
//! expires ([`JobService::create_quoted`]).

use std::sync::Arc;

use async_trait::async_trait;

use crate::job::JobService;
use crate::money::Money;
use crate::ports::{Clock, StoreError};
use crate::pricing::{PriceList, Product};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord};

/// Where the live prices are kept.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait PriceStore: Send + Sync {
    /// Every price set, ordered by product name.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn prices(&self) -> Result<Vec<(String, Money)>, StoreError>;

    /// Writes `prices` when the store has none yet (the first start): `true` when it
    /// did. Atomic: of two processes starting at once, one seeds.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn seed_prices(
        &self,
        prices: &[(String, Money)],
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Sets one price with its audit line, in one transaction.
    ///
    /// # Errors
    /// `Invalid` for a zero amount; `Unavailable` on storage failure.
    async fn set_price(
        &self,
        product: &str,
        amount: Money,
        audit: AuditRecord,
    ) -> Result<(), StoreError>;
}

/// Why a price change is refused.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// Not a product sold here.
    #[error("{0} is not a product; `rei-cli prices list` shows them")]
    UnknownProduct(String),
    /// A product always costs something.
    #[error("a price must be greater than zero")]
    ZeroPrice,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lists, sets and refreshes the live prices.
#[derive(Clone)]
pub struct PriceService {
    store: Arc<dyn PriceStore>,
    jobs: Arc<JobService>,
    /// The list the settings make (what is not in the store costs this).
    base: PriceList,
    /// The video models sold.
    models: Vec<String>,
    clock: Arc<dyn Clock>,
}

crate::opaque_debug!(PriceService);

impl PriceService {
    /// A service that keeps `jobs`' prices: the store's over `base`, for `models`.
    #[must_use]
    pub fn new(
        store: Arc<dyn PriceStore>,
        jobs: Arc<JobService>,
        base: PriceList,
        models: Vec<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            jobs,
            base,
            models,
            clock,
        }
    }

    /// Seeds the store from the settings on first start (nothing when it has prices),
    /// then loads it: `true` when it seeded.
    ///
    /// # Errors
    /// [`PriceError::Store`].
    pub async fn start(&self) -> Result<bool, PriceError> {
        let seed: Vec<(String, Money)> = self
            .base
            .catalog(self.models.iter().map(String::as_str))
            .into_iter()
            .map(|(product, price)| (product.to_string(), price))
            .collect();
        let seeded = self.store.seed_prices(&seed, self.clock.now()).await?;
        self.refresh().await?;
        Ok(seeded)
    }

    /// Loads the store's prices into the job service: `true` when they changed.
    ///
    /// # Errors
    /// [`PriceError::Store`].
    pub async fn refresh(&self) -> Result<bool, PriceError> {
        let stored = self.store.prices().await?;
        Ok(self
            .jobs
            .set_prices(self.base.clone().with_overrides(stored)))
    }

    /// Every product sold and its price now.
    ///
    /// # Errors
    /// [`PriceError::Store`].
    pub async fn list(&self) -> Result<Vec<(Product, Money)>, PriceError> {
        self.refresh().await?;
        Ok(self
            .jobs
            .prices()
            .catalog(self.models.iter().map(String::as_str)))
    }

    /// Sets `product`'s price (audited as `actor`), effective here at once and in every
    /// other process at its next refresh: the price before.
    ///
    /// # Errors
    /// [`PriceError::UnknownProduct`], [`PriceError::ZeroPrice`], [`PriceError::Store`].
    pub async fn set(
        &self,
        actor: Actor,
        product: &str,
        amount: Money,
    ) -> Result<Money, PriceError> {
        let product: Product = product
            .trim()
            .parse()
            .map_err(|_| PriceError::UnknownProduct(product.to_owned()))?;
        let sold = self
            .base
            .catalog(self.models.iter().map(String::as_str))
            .into_iter()
            .any(|(p, _)| p == product);
        if !sold {
            return Err(PriceError::UnknownProduct(product.to_string()));
        }
        if amount.is_zero() {
            return Err(PriceError::ZeroPrice);
        }
        self.refresh().await?;
        let before = self.jobs.prices().price(&product);
        let audit = AuditRecord {
            actor,
            action: AuditAction::PriceSet,
            target_user: None,
            amount: Some(amount),
            reason: format!("{product}: {before} -> {amount}"),
            created_at: self.clock.now(),
        };
        self.store
            .set_price(&product.to_string(), amount, audit)
            .await?;
        self.refresh().await?;
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobLimits, JobPorts, StoreQueue};
    use crate::memory::{ManualClock, MemoryStore, SequentialIds};
    use crate::ports::UserStore;
    use crate::pricing::Resolution;

    fn rub(s: &str) -> Money {
        s.parse().unwrap()
    }

    /// A process: its own job service and price service over the shared store.
    fn process(
        store: &Arc<MemoryStore>,
        clock: &Arc<ManualClock>,
    ) -> (Arc<JobService>, PriceService) {
        let jobs = Arc::new(JobService::new(
            JobPorts {
                users: store.clone(),
                jobs: store.clone(),
                queue: Arc::new(StoreQueue::new(store.clone())),
                clock: clock.clone(),
                ids: Arc::new(SequentialIds::default()),
            },
            PriceList::seed_defaults(),
            JobLimits::default(),
        ));
        let prices = PriceService::new(
            store.clone(),
            jobs.clone(),
            PriceList::seed_defaults(),
            vec!["kling-v3".into()],
            clock.clone(),
        );
        (jobs, prices)
    }

    #[tokio::test]
    async fn prices_are_seeded_once_set_with_an_audit_line_and_seen_by_every_process() {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000)));
        let (jobs_a, a) = process(&store, &clock);
        let (jobs_b, b) = process(&store, &clock);
        assert!(a.start().await.unwrap(), "the first start seeds");
        assert!(!b.start().await.unwrap(), "the second does not");
        assert_eq!(a.list().await.unwrap().len(), 8);
        for bad in ["image", "video:kling-v9:5s", "image_generation:8k"] {
            let r = a.set(Actor::Cli("ops".into()), bad, rub("1")).await;
            assert!(
                matches!(r, Err(PriceError::UnknownProduct(_))),
                "{bad}: {r:?}"
            );
        }
        let r = a
            .set(Actor::Cli("ops".into()), "image_generation", Money::ZERO)
            .await;
        assert!(matches!(r, Err(PriceError::ZeroPrice)), "{r:?}");
        let before = a
            .set(Actor::Cli("ops".into()), "image_generation:4k", rub("120"))
            .await
            .unwrap();
        assert_eq!(before, rub("100"));
        let four_k = Product::ImageGeneration {
            resolution: Resolution::FourK,
        };
        assert_eq!(jobs_a.prices().price(&four_k), rub("120"), "at once here");
        assert_eq!(jobs_b.prices().price(&four_k), rub("100"), "not yet there");
        assert!(b.refresh().await.unwrap());
        assert_eq!(
            jobs_b.prices().price(&four_k),
            rub("120"),
            "after its refresh"
        );
        assert!(!b.refresh().await.unwrap(), "nothing new");
        let audit = store.audit_log(10).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, AuditAction::PriceSet);
        assert_eq!(audit[0].reason, "image_generation:4k: 100.00 ₽ -> 120.00 ₽");
        // A restart keeps the live price, not the settings'.
        let (jobs_c, c) = process(&store, &clock);
        c.start().await.unwrap();
        assert_eq!(jobs_c.prices().price(&four_k), rub("120"));
    }
}
