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

    /// Every live option of the offer ([`OFFER_KEYS`]) set, ordered by key.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn offer_options(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Writes each option the store does not have yet (the first start, or the first
    /// start of a version that added it): `true` when it wrote any. Atomic per key.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn seed_offer_options(
        &self,
        options: &[(String, String)],
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Sets one option with its audit line, in one transaction.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn set_offer_option(
        &self,
        key: &str,
        value: &str,
        audit: AuditRecord,
    ) -> Result<(), StoreError>;
}

/// The video models switched off (comma-separated API names; a model added to the
/// settings later is on).
pub const MODELS_OFF: &str = "models_off";
/// The top-up amounts offered (comma-separated rubles).
pub const TOPUP_AMOUNTS: &str = "topup_amounts";
/// Every option of the offer the store keeps.
pub const OFFER_KEYS: [&str; 2] = [MODELS_OFF, TOPUP_AMOUNTS];

/// Most top-up amounts offered at once (a keyboard stays readable).
pub const MAX_TOPUP_AMOUNTS: usize = 8;

/// What is offered now besides prices: the video models switched off, the top-up
/// amounts. Live like the prices: in the store, refreshed by every process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Video models not offered now (API names).
    pub models_off: std::collections::BTreeSet<String>,
    /// The top-up amounts offered, ascending (empty: the settings' list).
    pub topup_amounts: Vec<Money>,
}

impl Offer {
    /// Whether the video model `api_name` is offered now.
    #[must_use]
    pub fn model_on(&self, api_name: &str) -> bool {
        !self.models_off.contains(api_name)
    }

    /// Reads the stored options. Only [`PriceService::set_value`] writes them, checked;
    /// a value it cannot read (written by hand) leaves its option at the default.
    fn from_options(options: &[(String, String)]) -> Self {
        let mut offer = Self::default();
        for (key, value) in options {
            match key.as_str() {
                MODELS_OFF => {
                    offer.models_off = split(value).map(str::to_owned).collect();
                }
                TOPUP_AMOUNTS => {
                    offer.topup_amounts = parse_amounts(value).unwrap_or_default();
                }
                _ => {}
            }
        }
        offer
    }
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `100,300,500`: 1 to [`MAX_TOPUP_AMOUNTS`] positive amounts, sorted, without repeats.
///
/// # Errors
/// [`PriceError::BadTopUps`] naming what is wrong.
pub fn parse_amounts(list: &str) -> Result<Vec<Money>, PriceError> {
    let mut amounts = split(list)
        .map(|a| {
            a.parse::<Money>()
                .ok()
                .filter(|m| !m.is_zero())
                .ok_or_else(|| PriceError::BadTopUps(format!("`{a}` is not an amount")))
        })
        .collect::<Result<Vec<Money>, PriceError>>()?;
    amounts.sort_unstable();
    amounts.dedup();
    if amounts.is_empty() || amounts.len() > MAX_TOPUP_AMOUNTS {
        return Err(PriceError::BadTopUps(format!(
            "give 1 to {MAX_TOPUP_AMOUNTS} amounts, like 100,300,500"
        )));
    }
    Ok(amounts)
}

fn join_amounts(amounts: &[Money]) -> String {
    amounts
        .iter()
        .map(|m| {
            let k = m.kopecks();
            if k % 100 == 0 {
                (k / 100).to_string()
            } else {
                format!("{}.{:02}", k / 100, k % 100)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What [`PriceService::set_value`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfferChange {
    /// A product's price: before and after.
    Price {
        /// The price before.
        before: Money,
        /// The price now.
        after: Money,
    },
    /// A video model switched on or off.
    Model {
        /// On now.
        on: bool,
    },
    /// The top-up amounts offered now.
    TopUps(Vec<Money>),
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
    /// Not a video model sold here.
    #[error("{0} is not a video model sold here; `rei-cli prices list` shows them")]
    UnknownModel(String),
    /// A model is switched `on` or `off`.
    #[error("a model is switched `on` or `off`, not `{0}`")]
    BadSwitch(String),
    /// The top-up amounts do not make a list.
    #[error("top-up amounts: {0}")]
    BadTopUps(String),
    /// The last model offered cannot be switched off (use fewer models in the settings).
    #[error("at least one video model stays on")]
    LastModel,
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
    /// The settings' top-up amounts (seeded on first start).
    topups: Vec<Money>,
    /// The offer as last read.
    offer: Arc<std::sync::RwLock<Offer>>,
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
            topups: Vec::new(),
            offer: Arc::default(),
            clock,
        }
    }

    /// The settings' top-up amounts (`TOPUP_AMOUNTS`), seeded on the first start.
    #[must_use]
    pub fn with_topups(mut self, topups: Vec<Money>) -> Self {
        self.topups = topups;
        self
    }

    /// What is offered now (as of the last refresh).
    #[must_use]
    pub fn offer(&self) -> Offer {
        self.offer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The video models sold (on or off).
    #[must_use]
    pub fn models(&self) -> &[String] {
        &self.models
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
        let mut options = vec![(MODELS_OFF.to_owned(), String::new())];
        if !self.topups.is_empty() {
            options.push((TOPUP_AMOUNTS.to_owned(), join_amounts(&self.topups)));
        }
        self.store
            .seed_offer_options(&options, self.clock.now())
            .await?;
        self.refresh().await?;
        Ok(seeded)
    }

    /// Loads the store's prices into the job service: `true` when they changed.
    ///
    /// # Errors
    /// [`PriceError::Store`].
    pub async fn refresh(&self) -> Result<bool, PriceError> {
        let stored = self.store.prices().await?;
        let priced = self
            .jobs
            .set_prices(self.base.clone().with_overrides(stored));
        let offer = Offer::from_options(&self.store.offer_options().await?);
        let mut current = self
            .offer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let offered = *current != offer;
        *current = offer;
        Ok(priced || offered)
    }

    /// Sets what `what` names, from `value` (what `rei-cli prices set` and `/setprice`
    /// take): `model:<api name>` `on`/`off`; `topups` `100,300,500`; or a product and its
    /// price in rubles. Audited; live everywhere within a refresh.
    ///
    /// # Errors
    /// [`PriceError`] naming what is wrong; nothing is changed then.
    pub async fn set_value(
        &self,
        actor: Actor,
        what: &str,
        value: &str,
    ) -> Result<OfferChange, PriceError> {
        let what = what.trim();
        let value = value.trim();
        if let Some(model) = what.strip_prefix("model:") {
            let on = match value {
                "on" => true,
                "off" => false,
                other => return Err(PriceError::BadSwitch(other.to_owned())),
            };
            self.switch_model(actor, model, on).await?;
            return Ok(OfferChange::Model { on });
        }
        if what == "topups" {
            let amounts = parse_amounts(value)?;
            self.set_offer(
                actor,
                TOPUP_AMOUNTS,
                &join_amounts(&amounts),
                format!("topups: {}", join_amounts(&amounts)),
            )
            .await?;
            return Ok(OfferChange::TopUps(amounts));
        }
        let amount: Money = value.parse().map_err(|_| PriceError::ZeroPrice)?;
        let before = self.set(actor, what, amount).await?;
        Ok(OfferChange::Price {
            before,
            after: amount,
        })
    }

    async fn switch_model(&self, actor: Actor, model: &str, on: bool) -> Result<(), PriceError> {
        if !self.models.iter().any(|m| m == model) {
            return Err(PriceError::UnknownModel(model.to_owned()));
        }
        self.refresh().await?;
        let mut off = self.offer().models_off;
        if on {
            off.remove(model);
        } else {
            off.insert(model.to_owned());
        }
        if self.models.iter().all(|m| off.contains(m)) {
            return Err(PriceError::LastModel);
        }
        let value = off.into_iter().collect::<Vec<_>>().join(",");
        let state = if on { "on" } else { "off" };
        self.set_offer(actor, MODELS_OFF, &value, format!("model:{model}: {state}"))
            .await
    }

    async fn set_offer(
        &self,
        actor: Actor,
        key: &str,
        value: &str,
        reason: String,
    ) -> Result<(), PriceError> {
        let audit = AuditRecord {
            actor,
            action: AuditAction::PriceSet,
            target_user: None,
            amount: None,
            reason,
            created_at: self.clock.now(),
        };
        self.store.set_offer_option(key, value, audit).await?;
        self.refresh().await?;
        Ok(())
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
