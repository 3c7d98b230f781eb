//! `MemoryQueue`: the job queue with leases, in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::JobId;
use crate::ports::{Clock, JobQueue, Lease, QueueError};
use crate::time::Timestamp;

/// A lease-based queue in memory: a job is ready, or leased until a deadline.
pub struct MemoryQueue {
    clock: Arc<dyn Clock>,
    state: Mutex<QueueState>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct QueueState {
    /// Every queued job: when it is ready (or its lease ends), its lease token, deliveries.
    items: HashMap<JobId, Item>,
    /// Enqueue order, for FIFO among ready jobs.
    order: BTreeMap<u64, JobId>,
    next_seq: u64,
    next_token: u64,
}

#[derive(Debug, Clone)]
struct Item {
    seq: u64,
    ready_at: Timestamp,
    token: Option<String>,
    deliveries: u32,
}

impl MemoryQueue {
    /// An empty queue reading time from `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(QueueState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl QueueState {
    fn owned(&mut self, lease: &Lease) -> Result<&mut Item, QueueError> {
        match self.items.get_mut(&lease.job_id) {
            Some(item) if item.token.as_deref() == Some(lease.token.as_str()) => Ok(item),
            _ => Err(QueueError::LeaseLost {
                job_id: lease.job_id,
            }),
        }
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, job: JobId) -> Result<(), QueueError> {
        let now = self.clock.now();
        let mut s = self.lock();
        if s.items.contains_key(&job) {
            return Ok(());
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        s.order.insert(seq, job);
        s.items.insert(
            job,
            Item {
                seq,
                ready_at: now,
                token: None,
                deliveries: 0,
            },
        );
        Ok(())
    }

    async fn claim(&self, worker: &str, lease_for: Duration) -> Result<Option<Lease>, QueueError> {
        let now = self.clock.now();
        let mut s = self.lock();
        let ready = s
            .order
            .values()
            .copied()
            .find(|id| s.items.get(id).is_some_and(|i| i.ready_at <= now));
        let Some(job_id) = ready else { return Ok(None) };
        s.next_token += 1;
        let token = format!("{worker}:{}", s.next_token);
        let expires_at = now.plus(lease_for);
        let Some(item) = s.items.get_mut(&job_id) else {
            return Ok(None);
        };
        item.token = Some(token.clone());
        item.ready_at = expires_at;
        item.deliveries += 1;
        let deliveries = item.deliveries;
        // Move to the back so an expired lease does not starve younger jobs.
        let old_seq = item.seq;
        let seq = s.next_seq;
        s.next_seq += 1;
        s.order.remove(&old_seq);
        s.order.insert(seq, job_id);
        if let Some(item) = s.items.get_mut(&job_id) {
            item.seq = seq;
        }
        Ok(Some(Lease {
            job_id,
            token,
            expires_at,
            deliveries,
        }))
    }

    async fn extend(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, QueueError> {
        let now = self.clock.now();
        let mut s = self.lock();
        let item = s.owned(lease)?;
        if item.ready_at < now {
            // Expired: another worker may already have it or be about to.
            return Err(QueueError::LeaseLost {
                job_id: lease.job_id,
            });
        }
        item.ready_at = now.plus(lease_for);
        Ok(Lease {
            expires_at: item.ready_at,
            ..lease.clone()
        })
    }

    async fn ack(&self, lease: &Lease) -> Result<(), QueueError> {
        let mut s = self.lock();
        let seq = s.owned(lease)?.seq;
        s.items.remove(&lease.job_id);
        s.order.remove(&seq);
        Ok(())
    }

    async fn retry(&self, lease: &Lease, delay: Duration) -> Result<(), QueueError> {
        let now = self.clock.now();
        let mut s = self.lock();
        let item = s.owned(lease)?;
        item.token = None;
        item.ready_at = now.plus(delay);
        Ok(())
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.lock().items.len() as u64)
    }
}
