//! `OutboxStore` over SQL: the money notices written with their change (see
//! `insert_notice` in `store.rs`), taken by dispatchers with `SKIP LOCKED` on PostgreSQL
//! (SQLite's write lock serialises them), held for a while, then finished.

use super::store::*;

/// How a notice left the outbox.
enum Finished {
    Sent,
    GivenUp,
}

impl SqlStore {
    /// Takes a notice out of the outbox (once: a second call changes nothing).
    async fn finish_notice(&self, id: i64, how: Finished, at: Timestamp) -> Result<(), StoreError> {
        let sql = match how {
            Finished::Sent => {
                "UPDATE outbox SET next_at = NULL, sent_at = $1 WHERE id = $2 AND next_at IS NOT NULL"
            }
            Finished::GivenUp => {
                "UPDATE outbox SET next_at = NULL, given_up_at = $1 WHERE id = $2 AND next_at IS NOT NULL"
            }
        };
        self.execute(sqlx::query(sql).bind(at.millis()).bind(id))
            .await?;
        Ok(())
    }
}

/// An outbox row as stored.
#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    user_id: i64,
    notice: String,
    attempts: i32,
    created_at: i64,
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn claim_notices(
        &self,
        now: Timestamp,
        hold_for: std::time::Duration,
        limit_n: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let until = now.plus(hold_for);
        let sql = dialect_sql!(
            self.dialect,
            [
                "UPDATE outbox SET next_at = $1 WHERE id IN (SELECT id FROM outbox WHERE next_at IS NOT NULL AND next_at <= $2 ",
                "ORDER BY id LIMIT $3"
            ],
            skip_locked,
            [") RETURNING id, user_id, notice, attempts, created_at"]
        );
        let n = limit(limit_n);
        let rows: Vec<OutboxRow> = self
            .write(move |tx| {
                Box::pin(async move {
                    Ok(sqlx::query_as(sql)
                        .bind(until.millis())
                        .bind(now.millis())
                        .bind(n)
                        .fetch_all(&mut **tx)
                        .await?)
                })
            })
            .await?;
        let mut taken = Vec::with_capacity(rows.len());
        for row in rows {
            match entry_of(&row) {
                Ok(entry) => taken.push(entry),
                Err(why) => {
                    // A row no version of this bot can read (written by hand, or
                    // by a newer version): set aside so it never blocks the rest.
                    tracing::warn!(outbox_id = row.id, error = %why, "an outbox notice cannot be read; given up");
                    self.notice_given_up(row.id, now).await?;
                }
            }
        }
        taken.sort_by_key(|e| e.id);
        Ok(taken)
    }

    async fn notice_sent(&self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        self.finish_notice(id, Finished::Sent, at).await
    }

    async fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        retry_at: Timestamp,
    ) -> Result<(), StoreError> {
        let attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        self.execute(
            sqlx::query(
                "UPDATE outbox SET attempts = $1, next_at = $2 WHERE id = $3 AND next_at IS NOT NULL",
            )
            .bind(attempts)
            .bind(retry_at.millis())
            .bind(id),
        )
        .await?;
        Ok(())
    }

    async fn notice_given_up(&self, id: i64, at: Timestamp) -> Result<(), StoreError> {
        self.finish_notice(id, Finished::GivenUp, at).await
    }

    async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE next_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(TxError::from)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn entry_of(row: &OutboxRow) -> Result<OutboxEntry, StoreError> {
    let user_id =
        UserId::new(row.user_id).map_err(|e| StoreError::Corrupt(format!("outbox user: {e}")))?;
    let notice: Notice = serde_json::from_str(&row.notice)
        .map_err(|e| StoreError::Corrupt(format!("outbox notice {}: {e}", row.id)))?;
    Ok(OutboxEntry {
        id: row.id,
        user_id,
        notice,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        created_at: Timestamp::from_millis(row.created_at),
    })
}
