//! `DialogueStore` over SQL: the bot's per-user dialogue state.

use super::store::*;

#[async_trait]
impl LeaseStore for SqlStore {
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let done = self
            .execute(
                sqlx::query(
                    "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                     WHERE leases.until <= $4 OR leases.holder = excluded.holder",
                )
                .bind(name)
                .bind(holder)
                .bind(until.millis())
                .bind(now.millis()),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.execute(
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl DialogueStore for SqlStore {
    async fn load_dialogue(&self, user: UserId) -> Result<Option<DialogueRecord>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT state, version FROM dialogues WHERE user_id = $1")
                .bind(user.get())
                .fetch_optional(&self.pool)
                .await
                .map_err(TxError::from)?;
        row.map(|(state, version)| {
            let version = u64::try_from(version)
                .map_err(|e| StoreError::Corrupt(format!("dialogue version: {e}")))?;
            Ok(DialogueRecord { state, version })
        })
        .transpose()
    }

    async fn save_dialogue(
        &self,
        user: UserId,
        state: &str,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let conflict = || StoreError::Conflict {
            what: "dialogue",
            id: user.to_string(),
        };
        let state = state.to_owned();
        let done = match expected {
            // First save: only if nobody saved meanwhile.
            None => {
                self.write(move |tx| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO dialogues (user_id, state, version, updated_at) VALUES ($1, $2, 1, $3) ON CONFLICT (user_id) DO NOTHING",
                        )
                        .bind(user.get())
                        .bind(state)
                        .bind(at.millis())
                        .execute(&mut **tx)
                        .await
                        .map_err(|e| unknown_user(e, user))
                    })
                })
                .await?
            }
            Some(v) => {
                let v = i64::try_from(v).map_err(|_| conflict())?;
                self.execute(
                    sqlx::query("UPDATE dialogues SET state = $1, version = version + 1, updated_at = $2 WHERE user_id = $3 AND version = $4")
                        .bind(state)
                        .bind(at.millis())
                        .bind(user.get())
                        .bind(v),
                )
                .await?
            }
        };
        if done.rows_affected() != 1 {
            return Err(conflict());
        }
        Ok(expected.map_or(1, |v| v.wrapping_add(1)))
    }

    async fn clear_dialogue(&self, user: UserId) -> Result<(), StoreError> {
        self.execute(sqlx::query("DELETE FROM dialogues WHERE user_id = $1").bind(user.get()))
            .await?;
        Ok(())
    }
}
