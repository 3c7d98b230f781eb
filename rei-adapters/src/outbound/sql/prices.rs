//! `PriceStore` over SQL: the live prices.

use rei_core::prices::PriceStore;

use super::store::*;

#[async_trait]
impl PriceStore for SqlStore {
    async fn prices(&self) -> Result<Vec<(String, Money)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT product, amount FROM prices ORDER BY product")
                .fetch_all(&self.pool)
                .await
                .map_err(TxError::from)?;
        rows.into_iter()
            .map(|(product, amount)| Ok((product, money("price", amount)?)))
            .collect()
    }

    async fn seed_prices(
        &self,
        prices: &[(String, Money)],
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let prices = prices.to_vec();
        let seeded = self
            .write(move |tx| {
                Box::pin(async move {
                    // Writers are serialised (SQLite) or this insert conflicts (PostgreSQL):
                    // of two first starts, one seeds and the other finds its rows.
                    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM prices")
                        .fetch_one(&mut **tx)
                        .await?;
                    if count > 0 {
                        return Ok(false);
                    }
                    let mut wrote = false;
                    for (product, amount) in &prices {
                        let done = sqlx::query(
                            "INSERT INTO prices (product, amount, updated_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (product) DO NOTHING",
                        )
                        .bind(product)
                        .bind(amount.kopecks())
                        .bind(at.millis())
                        .execute(&mut **tx)
                        .await?;
                        wrote |= done.rows_affected() == 1;
                    }
                    Ok(wrote)
                })
            })
            .await?;
        Ok(seeded)
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
        let product = product.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO prices (product, amount, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (product) DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at",
                )
                .bind(&product)
                .bind(amount.kopecks())
                .bind(audit.created_at.millis())
                .execute(&mut **tx)
                .await?;
                Self::insert_audit(tx, &audit).await?;
                Ok(())
            })
        })
        .await?;
        Ok(())
    }

    async fn offer_options(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM offer_options ORDER BY key")
                .fetch_all(&self.pool)
                .await
                .map_err(TxError::from)?;
        Ok(rows)
    }

    async fn seed_offer_options(
        &self,
        options: &[(String, String)],
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let options = options.to_vec();
        let seeded = self
            .write(move |tx| {
                Box::pin(async move {
                    let mut wrote = false;
                    for (key, value) in &options {
                        let done = sqlx::query(
                            "INSERT INTO offer_options (key, value, updated_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (key) DO NOTHING",
                        )
                        .bind(key)
                        .bind(value)
                        .bind(at.millis())
                        .execute(&mut **tx)
                        .await?;
                        wrote |= done.rows_affected() == 1;
                    }
                    Ok(wrote)
                })
            })
            .await?;
        Ok(seeded)
    }

    async fn set_offer_option(
        &self,
        key: &str,
        value: &str,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO offer_options (key, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )
                .bind(&key)
                .bind(&value)
                .bind(audit.created_at.millis())
                .execute(&mut **tx)
                .await?;
                Self::insert_audit(tx, &audit).await?;
                Ok(())
            })
        })
        .await?;
        Ok(())
    }
}
