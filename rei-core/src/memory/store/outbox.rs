//! `OutboxStore` in memory.

use super::*;

#[async_trait]
impl crate::ports::OutboxStore for MemoryStore {
    async fn claim_notices(
        &self,
        now: Timestamp,
        hold_for: std::time::Duration,
        limit_n: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut s = self.lock();
        let mut taken = Vec::new();
        for row in &mut s.outbox {
            if taken.len() >= limit(limit_n) {
                break;
            }
            if row.next_at.is_some_and(|at| at <= now) {
                row.next_at = Some(now.plus(hold_for));
                taken.push(row.entry.clone());
            }
        }
        Ok(taken)
    }

    async fn notice_sent(&self, id: i64, _at: Timestamp) -> Result<(), StoreError> {
        self.finish_notice(id);
        Ok(())
    }

    async fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        retry_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        if let Some(row) = s.outbox.iter_mut().find(|r| r.entry.id == id) {
            if row.next_at.is_some() {
                row.entry.attempts = attempts;
                row.next_at = Some(retry_at);
            }
        }
        Ok(())
    }

    async fn notice_given_up(&self, id: i64, _at: Timestamp) -> Result<(), StoreError> {
        self.finish_notice(id);
        Ok(())
    }

    async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let s = self.lock();
        Ok(s.outbox.iter().filter(|r| r.next_at.is_some()).count() as u64)
    }
}

impl MemoryStore {
    fn finish_notice(&self, id: i64) {
        let mut s = self.lock();
        if let Some(row) = s.outbox.iter_mut().find(|r| r.entry.id == id) {
            row.next_at = None;
        }
    }
}
