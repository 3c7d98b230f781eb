//! `UserStore` over SQL: users, bans, languages, the audit log, statistics.

use super::store::*;

impl SqlStore {
    async fn register_once(&self, p: &UserProfile, at: Timestamp) -> Result<(User, bool), TxError> {
        let p = p.clone();
        self.write(move |tx| Box::pin(async move { Self::register_in(tx, &p, at).await }))
            .await
    }

    async fn register_in(
        tx: &mut Tx<'static>,
        p: &UserProfile,
        at: Timestamp,
    ) -> Result<(User, bool), TxError> {
        let created = match Self::user_in(tx, p.id).await? {
            Some(_) => {
                sqlx::query("UPDATE users SET username = $1, first_name = $2 WHERE tg_id = $3")
                    .bind(&p.username)
                    .bind(&p.first_name)
                    .bind(p.id.get())
                    .execute(&mut **tx)
                    .await?;
                false
            }
            None => {
                sqlx::query("INSERT INTO users (tg_id, username, first_name, language, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(p.id.get())
                    .bind(&p.username)
                    .bind(&p.first_name)
                    .bind(p.language.as_str())
                    .bind(at.millis())
                    .execute(&mut **tx)
                    .await?;
                true
            }
        };
        let user = Self::user_in(tx, p.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("user vanished".into()))?;
        Ok((user, created))
    }

    async fn set_banned_once(
        &self,
        id: UserId,
        banned: bool,
        audit: &AuditRecord,
    ) -> Result<User, TxError> {
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move { Self::set_banned_in(tx, id, banned, &audit).await })
        })
        .await
    }

    async fn set_banned_in(
        tx: &mut Tx<'static>,
        id: UserId,
        banned: bool,
        audit: &AuditRecord,
    ) -> Result<User, TxError> {
        let user = Self::user_in(tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(Missing::User(id)))?;
        let notified = user.is_banned == banned && user.ban_notified;
        sqlx::query("UPDATE users SET is_banned = $1, ban_notified = $2 WHERE tg_id = $3")
            .bind(banned)
            .bind(notified)
            .bind(id.get())
            .execute(&mut **tx)
            .await?;
        Self::insert_audit(tx, audit).await?;
        Ok(User {
            is_banned: banned,
            ban_notified: notified,
            ..user
        })
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn register(
        &self,
        profile: UserProfile,
        at: Timestamp,
    ) -> Result<(User, bool), StoreError> {
        retrying(|| self.register_once(&profile, at)).await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let sql = concat!("SELECT ", user_cols!(), " FROM users WHERE tg_id = $1");
        self.find::<UserRow, _>(sqlx::query_as(sql).bind(id.get()))
            .await
    }

    async fn set_banned(
        &self,
        id: UserId,
        banned: bool,
        audit: AuditRecord,
    ) -> Result<User, StoreError> {
        retrying(|| self.set_banned_once(id, banned, &audit)).await
    }

    async fn mark_ban_notified(&self, id: UserId) -> Result<bool, StoreError> {
        let done = self
            .execute(
                sqlx::query("UPDATE users SET ban_notified = TRUE WHERE tg_id = $1 AND is_banned = TRUE AND ban_notified = FALSE")
                    .bind(id.get()),
            )
            .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        match self.user(id).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(Missing::User(id))),
        }
    }

    async fn set_language(&self, id: UserId, language: Language) -> Result<(), StoreError> {
        self.update_user(
            "UPDATE users SET language = $1 WHERE tg_id = $2",
            language.as_str(),
            id,
        )
        .await
    }

    async fn audit_log(&self, n: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            audit_cols!(),
            " FROM audit_log ORDER BY id DESC LIMIT $1"
        );
        let rows: Vec<AuditRow> = sqlx::query_as(sql)
            .bind(limit(n))
            .fetch_all(&self.pool)
            .await
            .map_err(TxError::from)?;
        rows.into_iter().map(AuditRecord::try_from).collect()
    }

    async fn set_unreachable(
        &self,
        id: UserId,
        since: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.update_user(
            "UPDATE users SET unreachable_since = $1 WHERE tg_id = $2",
            since.map(Timestamp::millis),
            id,
        )
        .await
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<(), StoreError> {
        retrying(|| {
            let record = record.clone();
            self.write(move |tx| Box::pin(async move { Self::insert_audit(tx, &record).await }))
        })
        .await
    }

    async fn set_receipt_email(
        &self,
        id: UserId,
        email: &rei_core::user::Email,
    ) -> Result<(), StoreError> {
        self.update_user(
            "UPDATE users SET receipt_email = $1 WHERE tg_id = $2",
            email.as_str().to_owned(),
            id,
        )
        .await
    }

    async fn stats(&self, since: Timestamp) -> Result<Stats, StoreError> {
        let pool = &self.pool;
        let (active, failed, unreachable): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
             (SELECT COUNT(*) FROM (SELECT user_id FROM dialogues WHERE updated_at >= $1 \
                                    UNION SELECT user_id FROM jobs WHERE created_at >= $1) AS a), \
             (SELECT COUNT(*) FROM jobs WHERE status = 'failed' AND completed_at >= $1), \
             (SELECT COUNT(*) FROM users WHERE unreachable_since IS NOT NULL)",
        )
        .bind(since.millis())
        .fetch_one(pool)
        .await
        .map_err(TxError::from)?;
        let (users, banned, balances): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN is_banned THEN 1 ELSE 0 END), 0) AS BIGINT), CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM users",
        )
        .fetch_one(pool)
        .await
        .map_err(TxError::from)?;
        let (held,): (i64,) = sqlx::query_as("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM reservations WHERE state = 'held'")
            .fetch_one(pool)
            .await
            .map_err(TxError::from)?;
        let (bonuses,): (i64,) = sqlx::query_as("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE ref_type = 'bonus' AND type = 'credit'")
            .fetch_one(pool)
            .await
            .map_err(TxError::from)?;
        let jobs: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
                .fetch_all(pool)
                .await
                .map_err(TxError::from)?;
        let payments: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT status, COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments GROUP BY status")
                .fetch_all(pool)
                .await
                .map_err(TxError::from)?;
        let count =
            |n: i64| u64::try_from(n).map_err(|e| StoreError::Corrupt(format!("count: {e}")));
        let jobs_by_state = rei_core::job::JobState::ALL
            .iter()
            .map(|s| {
                Ok((
                    *s,
                    count(
                        jobs.iter()
                            .find(|(st, _)| st == s.as_str())
                            .map_or(0, |(_, n)| *n),
                    )?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let payments_by_state = rei_core::payment::PaymentState::ALL
            .iter()
            .map(|s| {
                let (n, sum) = payments
                    .iter()
                    .find(|(st, _, _)| st == s.as_str())
                    .map_or((0, 0), |(_, n, sum)| (*n, *sum));
                Ok((*s, count(n)?, money("payments total", sum)?))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Stats {
            users: count(users)?,
            banned_users: count(banned)?,
            balances_total: money("balances total", balances)?,
            held_total: money("held total", held)?,
            jobs_by_state,
            payments_by_state,
            active_since: count(active)?,
            failed_since: count(failed)?,
            unreachable_users: count(unreachable)?,
            bonuses_total: money("bonuses total", bonuses)?,
        })
    }
}
