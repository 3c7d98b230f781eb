//! `WebStore` over SQL: web admin sign-in links and sessions, by the digests of their
//! tokens.

use rei_core::web::{Secret, WebSession, WebStore};

use super::store::*;

#[async_trait]
impl WebStore for SqlStore {
    async fn put_link(
        &self,
        digest: &str,
        admin: UserId,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let digest = digest.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO web_links (digest, admin_id, expires_at, used) VALUES ($1, $2, $3, 0)",
                )
                .bind(&digest)
                .bind(admin.get())
                .bind(expires_at.millis())
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await?;
        Ok(())
    }

    async fn take_link(&self, digest: &str, now: Timestamp) -> Result<Option<UserId>, StoreError> {
        let digest = digest.to_owned();
        let admin = self
            .write(move |tx| {
                Box::pin(async move {
                    // One statement: of two uses at once, one updates the row.
                    let row: Option<(i64,)> = sqlx::query_as(
                        "UPDATE web_links SET used = 1 \
                         WHERE digest = $1 AND used = 0 AND expires_at > $2 RETURNING admin_id",
                    )
                    .bind(&digest)
                    .bind(now.millis())
                    .fetch_optional(&mut **tx)
                    .await?;
                    Ok(row.map(|(id,)| id))
                })
            })
            .await?;
        admin
            .map(|id| UserId::new(id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn put_session(&self, digest: &str, session: &WebSession) -> Result<(), StoreError> {
        let (digest, session) = (digest.to_owned(), session.clone());
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO web_sessions (digest, admin_id, csrf, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&digest)
                .bind(session.admin.get())
                .bind(session.csrf.expose())
                .bind(session.created_at.millis())
                .bind(session.expires_at.millis())
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await?;
        Ok(())
    }

    async fn session(&self, digest: &str) -> Result<Option<WebSession>, StoreError> {
        let row: Option<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT admin_id, csrf, created_at, expires_at FROM web_sessions WHERE digest = $1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(TxError::from)?;
        row.map(|(admin, csrf, created, expires)| {
            Ok(WebSession {
                admin: UserId::new(admin).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                csrf: Secret::new(csrf),
                created_at: Timestamp::from_millis(created),
                expires_at: Timestamp::from_millis(expires),
            })
        })
        .transpose()
    }

    async fn end_session(&self, digest: &str) -> Result<(), StoreError> {
        let digest = digest.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM web_sessions WHERE digest = $1")
                    .bind(&digest)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await?;
        Ok(())
    }

    async fn audit(&self, record: AuditRecord) -> Result<(), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                Self::insert_audit(tx, &record).await?;
                Ok(())
            })
        })
        .await?;
        Ok(())
    }
}
