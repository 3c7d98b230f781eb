//! `PriceStore` in memory.

use super::*;
use crate::prices::PriceStore;

#[async_trait]
impl PriceStore for MemoryStore {
    async fn prices(&self) -> Result<Vec<(String, Money)>, StoreError> {
        Ok(self
            .lock()
            .prices
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect())
    }

    async fn seed_prices(
        &self,
        prices: &[(String, Money)],
        _at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        if !s.prices.is_empty() {
            return Ok(false);
        }
        s.prices = prices.iter().cloned().collect();
        Ok(true)
    }

    async fn set_price(
        &self,
        product: &str,
        amount: Money,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        if amount.is_zero() {
            return Err(StoreError::Invalid(
                "a price must be greater than zero".into(),
            ));
        }
        let mut s = self.lock();
        s.prices.insert(product.to_owned(), amount);
        s.audit.push(audit);
        Ok(())
    }

    async fn offer_options(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .lock()
            .offer_options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn seed_offer_options(
        &self,
        options: &[(String, String)],
        _at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let mut wrote = false;
        for (key, value) in options {
            if !s.offer_options.contains_key(key) {
                s.offer_options.insert(key.clone(), value.clone());
                wrote = true;
            }
        }
        Ok(wrote)
    }

    async fn set_offer_option(
        &self,
        key: &str,
        value: &str,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.offer_options.insert(key.to_owned(), value.to_owned());
        s.audit.push(audit);
        Ok(())
    }
}
