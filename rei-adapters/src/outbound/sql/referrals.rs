//! `ReferralStore` over SQL, and the referral moves written with payment changes.

use rei_core::referral::{
    ReferralCode, ReferralMove, ReferralReward, ReferralStore, ReferralSummary,
};

use super::store::*;

/// `payment_id, referrer_id, referee_id, reward, taken_back, unrecovered`.
type RewardRow = (String, i64, i64, i64, i64, i64);

fn reward(row: RewardRow) -> Result<ReferralReward, StoreError> {
    let (payment, referrer, referee, reward, taken_back, unrecovered) = row;
    let user = |what: &str, id: i64| {
        UserId::new(id).map_err(|e| StoreError::Corrupt(format!("referral {what} {id}: {e}")))
    };
    Ok(ReferralReward {
        payment_id: payment
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("referral payment {payment}: {e}")))?,
        referrer: user("referrer", referrer)?,
        referee: user("referee", referee)?,
        reward: money("referral reward", reward)?,
        taken_back: money("referral taken back", taken_back)?,
        unrecovered: money("referral unrecovered", unrecovered)?,
    })
}

fn code(text: &str) -> Result<ReferralCode, StoreError> {
    ReferralCode::parse(text).map_err(|e| StoreError::Corrupt(format!("referral code {text}: {e}")))
}

impl SqlStore {
    /// Who `user` is bound to (inside a transaction or on a pooled connection).
    async fn referrer_in(
        conn: &mut sqlx::AnyConnection,
        user: UserId,
    ) -> Result<Option<UserId>, TxError> {
        let row: Option<(Option<i64>,)> =
            sqlx::query_as("SELECT referrer_id FROM referrals WHERE user_id = $1")
                .bind(user.get())
                .fetch_optional(&mut *conn)
                .await?;
        Ok(row
            .and_then(|(id,)| id)
            .map(|id| {
                UserId::new(id).map_err(|e| StoreError::Corrupt(format!("referrer {id}: {e}")))
            })
            .transpose()?)
    }

    /// The reward of `payment` (inside a transaction or on a pooled connection).
    async fn reward_in(
        conn: &mut sqlx::AnyConnection,
        payment: PaymentId,
    ) -> Result<Option<ReferralReward>, TxError> {
        let row: Option<RewardRow> = sqlx::query_as(
            "SELECT payment_id, referrer_id, referee_id, reward, taken_back, unrecovered \
             FROM referral_rewards WHERE payment_id = $1",
        )
        .bind(payment.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(reward).transpose()?)
    }

    /// Writes the referral move of a payment change (`stored` as it was before), in
    /// its transaction; says whether a notice was queued. `credited` says whether the
    /// credit it goes with is new (a replay rewards nobody).
    pub(super) async fn referral_in(
        tx: &mut Tx<'static>,
        referral: &ReferralMove,
        stored: &Payment,
        at: Timestamp,
    ) -> Result<bool, TxError> {
        let bound = Self::referrer_in(tx, stored.user_id).await?;
        let given = Self::reward_in(tx, stored.id).await?;
        referral.check(stored, bound, given.as_ref())?;
        match referral {
            ReferralMove::Reward { referee, entry } => {
                if let Inserted::Replay(_) = Self::insert_entry(tx, entry).await? {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO referral_rewards (payment_id, referrer_id, referee_id, reward, taken_back, unrecovered, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 0, 0, $5, $5)",
                )
                .bind(stored.id.to_string())
                .bind(entry.user_id.get())
                .bind(referee.get())
                .bind(entry.amount.kopecks())
                .bind(at.millis())
                .execute(&mut **tx)
                .await?;
                let balance = Self::current_balance(tx, entry.user_id).await?;
                let notice = Notice::ReferralRewarded {
                    amount: entry.amount,
                    balance,
                };
                Self::insert_notice(tx, entry.user_id, &notice, at).await?;
                Ok(true)
            }
            ReferralMove::TakeBack { entry } => {
                let available = Self::lock_user(tx, entry.user_id).await?;
                let (debit, short) = ReferralMove::take(entry, available);
                let mut taken = Money::ZERO;
                if let Some(debit) = debit {
                    if let Inserted::New(e) = Self::insert_entry(tx, &debit).await? {
                        taken = e.amount;
                    }
                }
                sqlx::query(
                    "UPDATE referral_rewards SET taken_back = taken_back + $1, unrecovered = unrecovered + $2, updated_at = $3 \
                     WHERE payment_id = $4",
                )
                .bind(taken.kopecks())
                .bind(short.kopecks())
                .bind(at.millis())
                .bind(stored.id.to_string())
                .execute(&mut **tx)
                .await?;
                Ok(false)
            }
        }
    }
}

#[async_trait]
impl ReferralStore for SqlStore {
    async fn referral_code(
        &self,
        user: UserId,
        fresh: &ReferralCode,
        at: Timestamp,
    ) -> Result<ReferralCode, StoreError> {
        let fresh = fresh.clone();
        let found = self
            .write(move |tx| {
                Box::pin(async move {
                    let mine: Option<(Option<String>,)> =
                        sqlx::query_as("SELECT code FROM referrals WHERE user_id = $1")
                            .bind(user.get())
                            .fetch_optional(&mut **tx)
                            .await?;
                    if let Some((Some(mine),)) = mine {
                        return Ok(Some(code(&mine)?));
                    }
                    let taken: Option<(i64,)> =
                        sqlx::query_as("SELECT user_id FROM referrals WHERE code = $1")
                            .bind(fresh.as_str())
                            .fetch_optional(&mut **tx)
                            .await?;
                    if taken.is_some() {
                        return Ok(None);
                    }
                    sqlx::query(
                        "INSERT INTO referrals (user_id, code, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (user_id) DO UPDATE SET code = excluded.code WHERE referrals.code IS NULL",
                    )
                    .bind(user.get())
                    .bind(fresh.as_str())
                    .bind(at.millis())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| unknown_user(e, user))?;
                    let (now,): (Option<String>,) =
                        sqlx::query_as("SELECT code FROM referrals WHERE user_id = $1")
                            .bind(user.get())
                            .fetch_one(&mut **tx)
                            .await?;
                    now.map(|c| code(&c)).transpose().map_err(TxError::from)
                })
            })
            .await?;
        found.ok_or_else(|| StoreError::Conflict {
            what: "referral code",
            id: String::new(),
        })
    }

    async fn user_by_referral_code(
        &self,
        code: &ReferralCode,
    ) -> Result<Option<UserId>, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT user_id FROM referrals WHERE code = $1")
            .bind(code.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(TxError::from)?;
        row.map(|(id,)| {
            UserId::new(id).map_err(|e| StoreError::Corrupt(format!("referral user {id}: {e}")))
        })
        .transpose()
    }

    async fn referrer_of(&self, user: UserId) -> Result<Option<UserId>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(TxError::from)?;
        Ok(Self::referrer_in(&mut conn, user).await?)
    }

    async fn bind_referrer(
        &self,
        referee: UserId,
        referrer: UserId,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        if referee == referrer {
            return Err(StoreError::Invalid("a user cannot refer themselves".into()));
        }
        let done = self
            .write(move |tx| {
                Box::pin(async move {
                    // The referrer must exist (the foreign key would say so only for a
                    // new row).
                    Self::current_balance(tx, referrer).await?;
                    let done = sqlx::query(
                        "INSERT INTO referrals (user_id, referrer_id, bound_at, created_at) VALUES ($1, $2, $3, $3) \
                         ON CONFLICT (user_id) DO UPDATE SET referrer_id = excluded.referrer_id, bound_at = excluded.bound_at \
                         WHERE referrals.referrer_id IS NULL",
                    )
                    .bind(referee.get())
                    .bind(referrer.get())
                    .bind(at.millis())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| unknown_user(e, referee))?;
                    Ok(done.rows_affected() == 1)
                })
            })
            .await?;
        Ok(done)
    }

    async fn referral_summary(&self, referrer: UserId) -> Result<ReferralSummary, StoreError> {
        let (invited,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM referrals WHERE referrer_id = $1")
                .bind(referrer.get())
                .fetch_one(&self.pool)
                .await
                .map_err(TxError::from)?;
        let (earned, unrecovered): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(reward - taken_back), 0) AS BIGINT), CAST(COALESCE(SUM(unrecovered), 0) AS BIGINT) \
             FROM referral_rewards WHERE referrer_id = $1",
        )
        .bind(referrer.get())
        .fetch_one(&self.pool)
        .await
        .map_err(TxError::from)?;
        Ok(ReferralSummary {
            invited: u32::try_from(invited)
                .map_err(|e| StoreError::Corrupt(format!("referral count: {e}")))?,
            earned: money("referral earnings", earned)?,
            unrecovered: money("referral unrecovered", unrecovered)?,
        })
    }

    async fn referral_reward(
        &self,
        payment: PaymentId,
    ) -> Result<Option<ReferralReward>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(TxError::from)?;
        Ok(Self::reward_in(&mut conn, payment).await?)
    }
}
