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
}
