//! `BroadcastStore` over SQL: broadcasts, and their recipients one row each.

use rei_core::broadcast::{
    Broadcast, BroadcastId, BroadcastState, BroadcastStore, Delivery, LinkButton, NewBroadcast,
    Segment,
};

use super::store::*;

/// `id, text, photo, button_label, button_url, segment, state, created_at`.
type BroadcastRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

/// A segment's one value (bound as `$1`).
enum Bound {
    None,
    Text(String),
    Int(i64),
}

/// Users who can get a broadcast: not banned, not known to have blocked the bot.
macro_rules! reachable {
    () => {
        "FROM users u WHERE u.is_banned = FALSE AND u.unreachable_since IS NULL"
    };
}

/// The condition a segment adds (on `users u`), its value as `$1`.
macro_rules! paid {
    () => {
        " AND EXISTS (SELECT 1 FROM payments p WHERE p.user_id = u.tg_id AND p.paid_at IS NOT NULL)"
    };
}
macro_rules! language {
    () => {
        " AND u.language = $1"
    };
}
macro_rules! active {
    () => {
        " AND (u.created_at >= $1 \
           OR EXISTS (SELECT 1 FROM dialogues d WHERE d.user_id = u.tg_id AND d.updated_at >= $1) \
           OR EXISTS (SELECT 1 FROM jobs j WHERE j.user_id = u.tg_id AND j.created_at >= $1))"
    };
}

/// For a segment at `now`: the count of its users, the insert of its users as a
/// broadcast's recipients (the broadcast is `$2`, or `$1` when the segment has no
/// value), and its value.
fn segment_sql(segment: Segment, now: Timestamp) -> (&'static str, &'static str, Bound) {
    match segment {
        Segment::All => (
            concat!("SELECT CAST(COUNT(*) AS BIGINT) ", reachable!()),
            concat!(
                "INSERT INTO broadcast_recipients (broadcast_id, user_id, status) ",
                "SELECT $1, u.tg_id, 'pending' ",
                reachable!()
            ),
            Bound::None,
        ),
        Segment::Paid => (
            concat!("SELECT CAST(COUNT(*) AS BIGINT) ", reachable!(), paid!()),
            concat!(
                "INSERT INTO broadcast_recipients (broadcast_id, user_id, status) ",
                "SELECT $1, u.tg_id, 'pending' ",
                reachable!(),
                paid!()
            ),
            Bound::None,
        ),
        Segment::Language(language) => (
            concat!(
                "SELECT CAST(COUNT(*) AS BIGINT) ",
                reachable!(),
                language!()
            ),
            concat!(
                "INSERT INTO broadcast_recipients (broadcast_id, user_id, status) ",
                "SELECT $2, u.tg_id, 'pending' ",
                reachable!(),
                language!()
            ),
            Bound::Text(language.as_str().to_owned()),
        ),
        Segment::Active { .. } => (
            concat!("SELECT CAST(COUNT(*) AS BIGINT) ", reachable!(), active!()),
            concat!(
                "INSERT INTO broadcast_recipients (broadcast_id, user_id, status) ",
                "SELECT $2, u.tg_id, 'pending' ",
                reachable!(),
                active!()
            ),
            Bound::Int(segment.active_since(now).unwrap_or(now).millis()),
        ),
    }
}

impl SqlStore {
    async fn broadcast_in(tx: &mut Tx<'_>, id: BroadcastId) -> Result<Option<Broadcast>, TxError> {
        let row: Option<BroadcastRow> = sqlx::query_as(
            "SELECT id, text, photo, button_label, button_url, segment, state, created_at \
             FROM broadcasts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((id, text, photo, label, url, segment, state, created_at)) = row else {
            return Ok(None);
        };
        let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN status = 'blocked' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN status = 'sending' THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM broadcast_recipients WHERE broadcast_id = $1",
        )
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
        let n = |v: i64| {
            u32::try_from(v).map_err(|e| StoreError::Corrupt(format!("broadcast {id}: {e}")))
        };
        Ok(Some(Broadcast {
            id,
            text,
            photo,
            button: label.zip(url).map(|(label, url)| LinkButton { label, url }),
            segment: Segment::parse(&segment)
                .map_err(|e| StoreError::Corrupt(format!("broadcast {id} segment: {e}")))?,
            state: state
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("broadcast {id}: {e}")))?,
            recipients: n(counts.0)?,
            sent: n(counts.1)?,
            blocked: n(counts.2)?,
            failed: n(counts.3)?,
            unknown: n(counts.4)?,
            created_at: Timestamp::from_millis(created_at),
        }))
    }
}

#[async_trait]
impl BroadcastStore for SqlStore {
    async fn create_broadcast(
        &self,
        b: NewBroadcast,
        audit: AuditRecord,
    ) -> Result<Broadcast, StoreError> {
        let made = self
            .write(move |tx| {
                Box::pin(async move {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO broadcasts (text, photo, button_label, button_url, segment, state, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'draft', $6, $6) RETURNING id",
                    )
                    .bind(&b.text)
                    .bind(&b.photo)
                    .bind(b.button.as_ref().map(|x| x.label.clone()))
                    .bind(b.button.as_ref().map(|x| x.url.clone()))
                    .bind(b.segment.name())
                    .bind(b.created_at.millis())
                    .fetch_one(&mut **tx)
                    .await?;
                    Self::insert_audit(tx, &AuditRecord {
                        reason: format!("broadcast {id}, {}", audit.reason),
                        ..audit
                    })
                    .await?;
                    Self::broadcast_in(tx, id).await
                })
            })
            .await?;
        made.ok_or_else(|| StoreError::Corrupt("a broadcast just written is missing".into()))
    }

    async fn broadcast(&self, id: BroadcastId) -> Result<Option<Broadcast>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(TxError::from)?;
        let found = Self::broadcast_in(&mut tx, id).await?;
        tx.commit().await.map_err(TxError::from)?;
        Ok(found)
    }

    async fn running_broadcasts(&self) -> Result<Vec<BroadcastId>, StoreError> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT id FROM broadcasts WHERE state = 'running' ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(TxError::from)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn segment_size(&self, segment: Segment, now: Timestamp) -> Result<u32, StoreError> {
        let (count, _, bound) = segment_sql(segment, now);
        let q = sqlx::query_as::<_, (i64,)>(count);
        let q = match bound {
            Bound::None => q,
            Bound::Text(t) => q.bind(t),
            Bound::Int(n) => q.bind(n),
        };
        let (n,) = q.fetch_one(&self.pool).await.map_err(TxError::from)?;
        u32::try_from(n).map_err(|e| StoreError::Corrupt(format!("segment size: {e}")))
    }

    async fn move_broadcast(
        &self,
        id: BroadcastId,
        from: &[BroadcastState],
        to: BroadcastState,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<Option<Broadcast>, StoreError> {
        let from = from.to_vec();
        self.write(move |tx| {
            Box::pin(async move {
                let lock = dialect_sql!(
                    Dialect::of(tx),
                    ["SELECT state, segment FROM broadcasts WHERE id = $1"],
                    lock
                );
                let row: Option<(String, String)> = sqlx::query_as(lock)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                let (state, segment) = row.ok_or(StoreError::NotFound(Missing::Broadcast(id)))?;
                let state: BroadcastState = state
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("broadcast {id}: {e}")))?;
                if !from.contains(&state) {
                    return Ok(None);
                }
                if state == BroadcastState::Draft && to == BroadcastState::Running {
                    let segment = Segment::parse(&segment)
                        .map_err(|e| StoreError::Corrupt(format!("broadcast {id}: {e}")))?;
                    let (_, insert, bound) = segment_sql(segment, at);
                    let q = match bound {
                        Bound::None => sqlx::query(insert).bind(id),
                        Bound::Text(t) => sqlx::query(insert).bind(t).bind(id),
                        Bound::Int(n) => sqlx::query(insert).bind(n).bind(id),
                    };
                    q.execute(&mut **tx).await?;
                }
                sqlx::query("UPDATE broadcasts SET state = $1, updated_at = $2 WHERE id = $3")
                    .bind(to.as_str())
                    .bind(at.millis())
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                Self::insert_audit(tx, &audit).await?;
                Self::broadcast_in(tx, id).await
            })
        })
        .await
        .map_err(StoreError::from)
    }

    async fn claim_recipient(
        &self,
        id: BroadcastId,
        at: Timestamp,
    ) -> Result<Option<UserId>, StoreError> {
        let claimed = self
            .write(move |tx| {
                Box::pin(async move {
                    let state: Option<(String,)> =
                        sqlx::query_as("SELECT state FROM broadcasts WHERE id = $1")
                            .bind(id)
                            .fetch_optional(&mut **tx)
                            .await?;
                    if state.is_none_or(|(s,)| s != BroadcastState::Running.as_str()) {
                        return Ok(None);
                    }
                    let next = dialect_sql!(
                        Dialect::of(tx),
                        ["SELECT user_id FROM broadcast_recipients WHERE broadcast_id = $1 AND status = 'pending' \
                          ORDER BY user_id LIMIT 1"],
                        skip_locked
                    );
                    let row: Option<(i64,)> =
                        sqlx::query_as(next).bind(id).fetch_optional(&mut **tx).await?;
                    let Some((user,)) = row else {
                        return Ok(None);
                    };
                    sqlx::query(
                        "UPDATE broadcast_recipients SET status = 'sending', updated_at = $1 \
                         WHERE broadcast_id = $2 AND user_id = $3",
                    )
                    .bind(at.millis())
                    .bind(id)
                    .bind(user)
                    .execute(&mut **tx)
                    .await?;
                    Ok(Some(user))
                })
            })
            .await?;
        claimed
            .map(|u| UserId::new(u).map_err(|e| StoreError::Corrupt(format!("recipient {u}: {e}"))))
            .transpose()
    }

    async fn record_delivery(
        &self,
        id: BroadcastId,
        user: UserId,
        delivery: Delivery,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE broadcast_recipients SET status = $1, updated_at = $2 \
                 WHERE broadcast_id = $3 AND user_id = $4 AND status = 'sending'",
            )
            .bind(delivery.as_str())
            .bind(at.millis())
            .bind(id)
            .bind(user.get()),
        )
        .await?;
        Ok(())
    }

    async fn finish_broadcast(&self, id: BroadcastId, at: Timestamp) -> Result<bool, StoreError> {
        let done = self
            .execute(
                sqlx::query(
                    "UPDATE broadcasts SET state = 'done', updated_at = $1 WHERE id = $2 AND state = 'running' \
                     AND NOT EXISTS (SELECT 1 FROM broadcast_recipients r WHERE r.broadcast_id = $2 AND r.status = 'pending')",
                )
                .bind(at.millis())
                .bind(id),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
