//! `PromoStore` over SQL: codes, and their redemption in one transaction.

use rei_core::promo::{NewPromo, Promo, PromoCode, PromoStore, Redeemed};

use super::store::*;

/// `code, amount, max_uses, used, expires_at, disabled, created_at`.
type PromoRow = (String, i64, Option<i64>, i64, Option<i64>, Flag, i64);

macro_rules! promo_cols {
    () => {
        "code, amount, max_uses, used, expires_at, disabled, created_at"
    };
}

fn promo(row: PromoRow) -> Result<Promo, StoreError> {
    let (code, amount, max_uses, used, expires_at, disabled, created_at) = row;
    let count = |what: &str, n: i64| {
        u32::try_from(n).map_err(|e| StoreError::Corrupt(format!("promo {code} {what}: {e}")))
    };
    Ok(Promo {
        code: PromoCode::parse(&code)
            .map_err(|e| StoreError::Corrupt(format!("promo code {code}: {e}")))?,
        amount: money("promo amount", amount)?,
        max_uses: max_uses.map(|n| count("max_uses", n)).transpose()?,
        used: count("used", used)?,
        expires_at: expires_at.map(Timestamp::from_millis),
        disabled: disabled.0,
        created_at: Timestamp::from_millis(created_at),
    })
}

impl SqlStore {
    async fn promo_in(
        tx: &mut Tx<'_>,
        code: &PromoCode,
        for_update: bool,
    ) -> Result<Option<Promo>, TxError> {
        let sql = if for_update {
            dialect_sql!(
                Dialect::of(tx),
                [
                    "SELECT ",
                    promo_cols!(),
                    " FROM promo_codes WHERE code = $1"
                ],
                lock
            )
        } else {
            concat!(
                "SELECT ",
                promo_cols!(),
                " FROM promo_codes WHERE code = $1"
            )
        };
        let row: Option<PromoRow> = sqlx::query_as(sql)
            .bind(code.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(promo).transpose()?)
    }

    async fn redeem_in(
        tx: &mut Tx<'static>,
        code: &PromoCode,
        entry: &NewEntry,
        now: Timestamp,
    ) -> Result<Redeemed, TxError> {
        // The code's row first (concurrent redemptions of one code wait here), then
        // the user's.
        let Some(promo) = Self::promo_in(tx, code, true).await? else {
            return Ok(Redeemed::Unknown);
        };
        Self::lock_user(tx, entry.user_id).await?;
        let used_before: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM promo_redemptions WHERE code = $1 AND user_id = $2")
                .bind(code.as_str())
                .bind(entry.user_id.get())
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(refused) = promo.refusal(entry.amount, used_before.is_some(), now)? {
            return Ok(refused);
        }
        sqlx::query("UPDATE promo_codes SET used = used + 1 WHERE code = $1")
            .bind(code.as_str())
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO promo_redemptions (code, user_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(code.as_str())
        .bind(entry.user_id.get())
        .bind(now.millis())
        .execute(&mut **tx)
        .await
        .map_err(|e| unknown_user(e, entry.user_id))?;
        // The reply tells the user: no notice from the outbox.
        let posted = Self::post_in(tx, entry, None, false).await?;
        Ok(Redeemed::Credited(posted))
    }
}

#[async_trait]
impl PromoStore for SqlStore {
    async fn create_promo(&self, p: NewPromo, audit: AuditRecord) -> Result<Promo, StoreError> {
        let code = p.code.clone();
        let inserted = self
            .write(move |tx| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "INSERT INTO promo_codes (code, amount, max_uses, used, expires_at, disabled, created_at) \
                         VALUES ($1, $2, $3, 0, $4, FALSE, $5) ON CONFLICT (code) DO NOTHING",
                    )
                    .bind(p.code.as_str().to_owned())
                    .bind(p.amount.kopecks())
                    .bind(p.max_uses.map(i64::from))
                    .bind(p.expires_at.map(Timestamp::millis))
                    .bind(p.created_at.millis())
                    .execute(&mut **tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Ok(None);
                    }
                    Self::insert_audit(tx, &audit).await?;
                    Self::promo_in(tx, &p.code, false).await
                })
            })
            .await?;
        inserted.ok_or_else(|| StoreError::Conflict {
            what: "promo code",
            id: code.to_string(),
        })
    }

    async fn promos(&self) -> Result<Vec<Promo>, StoreError> {
        let sql = concat!(
            "SELECT ",
            promo_cols!(),
            " FROM promo_codes ORDER BY created_at DESC, code DESC"
        );
        let rows: Vec<PromoRow> = sqlx::query_as(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(TxError::from)?;
        rows.into_iter().map(promo).collect()
    }

    async fn promo(&self, code: &PromoCode) -> Result<Option<Promo>, StoreError> {
        let sql = concat!(
            "SELECT ",
            promo_cols!(),
            " FROM promo_codes WHERE code = $1"
        );
        let row: Option<PromoRow> = sqlx::query_as(sql)
            .bind(code.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(TxError::from)?;
        row.map(promo).transpose()
    }

    async fn disable_promo(
        &self,
        code: &PromoCode,
        audit: AuditRecord,
    ) -> Result<Option<Promo>, StoreError> {
        let code = code.clone();
        Ok(self
            .write(move |tx| {
                Box::pin(async move {
                    let done =
                        sqlx::query("UPDATE promo_codes SET disabled = TRUE WHERE code = $1")
                            .bind(code.as_str().to_owned())
                            .execute(&mut **tx)
                            .await?;
                    if done.rows_affected() == 0 {
                        return Ok(None);
                    }
                    Self::insert_audit(tx, &audit).await?;
                    Self::promo_in(tx, &code, false).await
                })
            })
            .await?)
    }

    async fn redeem_promo(
        &self,
        code: &PromoCode,
        entry: NewEntry,
        now: Timestamp,
    ) -> Result<Redeemed, StoreError> {
        let user = entry.user_id;
        let redeemed = retrying(|| {
            let (code, entry) = (code.clone(), entry.clone());
            self.write(move |tx| {
                Box::pin(async move { Self::redeem_in(tx, &code, &entry, now).await })
            })
        })
        .await;
        match redeemed {
            Ok(Redeemed::Credited(posted)) => self
                .with_available(user, Ok(posted))
                .await
                .map(Redeemed::Credited),
            other => other,
        }
    }
}
