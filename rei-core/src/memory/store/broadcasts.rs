//! `BroadcastStore` in memory.

use super::*;
use crate::broadcast::{
    Broadcast, BroadcastId, BroadcastState, BroadcastStore, Delivery, NewBroadcast, Segment,
};

/// A recipient's row: `None` pending, `Some(None)` claimed (sending), `Some(Some(d))`
/// done.
type Recipient = (UserId, Option<Option<Delivery>>);

/// A broadcast and its recipients.
#[derive(Debug)]
pub(super) struct StoredBroadcast {
    broadcast: Broadcast,
    recipients: Vec<Recipient>,
}

impl StoredBroadcast {
    fn counted(&self) -> Broadcast {
        let mut b = self.broadcast.clone();
        let count = |want: Option<Option<Delivery>>| {
            u32::try_from(self.recipients.iter().filter(|(_, s)| *s == want).count())
                .unwrap_or(u32::MAX)
        };
        b.recipients = u32::try_from(self.recipients.len()).unwrap_or(u32::MAX);
        b.sent = count(Some(Some(Delivery::Sent)));
        b.blocked = count(Some(Some(Delivery::Blocked)));
        b.failed = count(Some(Some(Delivery::Failed)));
        b.unknown = count(Some(None));
        b
    }
}

impl State {
    fn in_segment(&self, user: &User, segment: Segment, now: Timestamp) -> bool {
        if user.is_banned || user.unreachable_since.is_some() {
            return false;
        }
        match segment {
            Segment::All => true,
            Segment::Paid => self
                .payments
                .values()
                .any(|p| p.user_id == user.id && p.paid_at.is_some()),
            Segment::Language(language) => user.language == language,
            Segment::Active { .. } => {
                let since = segment.active_since(now).unwrap_or(now);
                user.created_at >= since
                    || self
                        .dialogue_times
                        .get(&user.id)
                        .is_some_and(|at| *at >= since)
                    || self
                        .jobs
                        .values()
                        .any(|j| j.user_id == user.id && j.created_at >= since)
            }
        }
    }

    fn segment(&self, segment: Segment, now: Timestamp) -> Vec<UserId> {
        self.users
            .values()
            .filter(|u| self.in_segment(u, segment, now))
            .map(|u| u.id)
            .collect()
    }
}

#[async_trait]
impl BroadcastStore for MemoryStore {
    async fn create_broadcast(
        &self,
        b: NewBroadcast,
        audit: AuditRecord,
    ) -> Result<Broadcast, StoreError> {
        let mut s = self.lock();
        let id = BroadcastId::try_from(s.broadcasts.len()).unwrap_or(i64::MAX) + 1;
        let broadcast = Broadcast {
            id,
            text: b.text,
            photo: b.photo,
            button: b.button,
            segment: b.segment,
            state: BroadcastState::Draft,
            recipients: 0,
            sent: 0,
            blocked: 0,
            failed: 0,
            unknown: 0,
            created_at: b.created_at,
        };
        s.broadcasts.push(StoredBroadcast {
            broadcast: broadcast.clone(),
            recipients: Vec::new(),
        });
        s.audit.push(audit);
        Ok(broadcast)
    }

    async fn broadcast(&self, id: BroadcastId) -> Result<Option<Broadcast>, StoreError> {
        let s = self.lock();
        Ok(s.broadcasts
            .iter()
            .find(|b| b.broadcast.id == id)
            .map(StoredBroadcast::counted))
    }

    async fn running_broadcasts(&self) -> Result<Vec<BroadcastId>, StoreError> {
        let s = self.lock();
        Ok(s.broadcasts
            .iter()
            .filter(|b| b.broadcast.state == BroadcastState::Running)
            .map(|b| b.broadcast.id)
            .collect())
    }

    async fn segment_size(&self, segment: Segment, now: Timestamp) -> Result<u32, StoreError> {
        let s = self.lock();
        Ok(u32::try_from(s.segment(segment, now).len()).unwrap_or(u32::MAX))
    }

    async fn move_broadcast(
        &self,
        id: BroadcastId,
        from: &[BroadcastState],
        to: BroadcastState,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<Option<Broadcast>, StoreError> {
        let mut s = self.lock();
        let Some(i) = s.broadcasts.iter().position(|b| b.broadcast.id == id) else {
            return Err(StoreError::NotFound(Missing::Broadcast(id)));
        };
        let state = s.broadcasts[i].broadcast.state;
        if !from.contains(&state) {
            return Ok(None);
        }
        if state == BroadcastState::Draft && to == BroadcastState::Running {
            let segment = s.broadcasts[i].broadcast.segment;
            let chosen = s.segment(segment, at);
            s.broadcasts[i].recipients = chosen.into_iter().map(|u| (u, None)).collect();
        }
        s.broadcasts[i].broadcast.state = to;
        s.audit.push(audit);
        Ok(Some(s.broadcasts[i].counted()))
    }

    async fn claim_recipient(
        &self,
        id: BroadcastId,
        _at: Timestamp,
    ) -> Result<Option<UserId>, StoreError> {
        let mut s = self.lock();
        let Some(b) = s
            .broadcasts
            .iter_mut()
            .find(|b| b.broadcast.id == id && b.broadcast.state == BroadcastState::Running)
        else {
            return Ok(None);
        };
        Ok(b.recipients
            .iter_mut()
            .find(|(_, st)| st.is_none())
            .map(|r| {
                r.1 = Some(None);
                r.0
            }))
    }

    async fn record_delivery(
        &self,
        id: BroadcastId,
        user: UserId,
        delivery: Delivery,
        _at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        if let Some(r) = s
            .broadcasts
            .iter_mut()
            .find(|b| b.broadcast.id == id)
            .and_then(|b| {
                b.recipients
                    .iter_mut()
                    .find(|(u, st)| *u == user && *st == Some(None))
            })
        {
            r.1 = Some(Some(delivery));
        }
        Ok(())
    }

    async fn finish_broadcast(&self, id: BroadcastId, _at: Timestamp) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let Some(b) = s.broadcasts.iter_mut().find(|b| b.broadcast.id == id) else {
            return Ok(false);
        };
        let left = b.recipients.iter().any(|(_, st)| st.is_none());
        if b.broadcast.state != BroadcastState::Running || left {
            return Ok(false);
        }
        b.broadcast.state = BroadcastState::Done;
        Ok(true)
    }
}
