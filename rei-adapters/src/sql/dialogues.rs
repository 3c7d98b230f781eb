//! `DialogueStore` over SQL: the bot's per-user dialogue state.

/// Stamps the port for one backend (see `store.rs`).
macro_rules! sql_dialogues {
    ($store:ident) => {
        use super::common::*;

        #[async_trait]
        impl DialogueStore for $store {
            async fn load_dialogue(&self, user: UserId) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> = sqlx::query_as("SELECT state FROM dialogues WHERE user_id = $1")
                    .bind(user.get())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(TxError::from)?;
                Ok(row.map(|(s,)| s))
            }

            async fn save_dialogue(&self, user: UserId, state: &str, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO dialogues (user_id, state, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(user.get())
                .bind(state)
                .bind(at.millis())
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::from(unknown_user(e, user)))?;
                Ok(())
            }

            async fn clear_dialogue(&self, user: UserId) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM dialogues WHERE user_id = $1").bind(user.get()).execute(&self.pool).await.map_err(TxError::from)?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_dialogues;
