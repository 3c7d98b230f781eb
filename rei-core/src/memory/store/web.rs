//! `WebStore` in memory.

use super::*;
use crate::web::{WebSession, WebStore};

#[async_trait]
impl WebStore for MemoryStore {
    async fn put_link(
        &self,
        digest: &str,
        admin: UserId,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.lock()
            .web_links
            .insert(digest.to_owned(), (admin, expires_at, false));
        Ok(())
    }

    async fn take_link(&self, digest: &str, now: Timestamp) -> Result<Option<UserId>, StoreError> {
        let mut s = self.lock();
        Ok(match s.web_links.get_mut(digest) {
            Some((admin, expires, used)) if !*used && now < *expires => {
                *used = true;
                Some(*admin)
            }
            _ => None,
        })
    }

    async fn put_session(&self, digest: &str, session: &WebSession) -> Result<(), StoreError> {
        self.lock()
            .web_sessions
            .insert(digest.to_owned(), session.clone());
        Ok(())
    }

    async fn session(&self, digest: &str) -> Result<Option<WebSession>, StoreError> {
        Ok(self.lock().web_sessions.get(digest).cloned())
    }

    async fn end_session(&self, digest: &str) -> Result<(), StoreError> {
        self.lock().web_sessions.remove(digest);
        Ok(())
    }

    async fn audit(&self, record: AuditRecord) -> Result<(), StoreError> {
        self.lock().audit.push(record);
        Ok(())
    }
}
