//! The sweep: the stream resynchronised with the database (ready jobs the stream lost
//! are added again), every 30 s and after an outage.

use super::*;

/// Stream entries read per `XRANGE` page during a sweep.
pub(super) const SWEEP_PAGE: usize = 1000;

impl RedisQueue {
    /// Adds to the stream every job among the store's first `limit` queued jobs that is
    /// neither in the stream (pending or not) nor delayed; returns how many were added.
    /// Creates the group if missing. Adding one twice is harmless (claims go through the
    /// database lease).
    ///
    /// # Errors
    /// [`RedisError::Unavailable`] when Redis fails, [`RedisError::Store`] when the
    /// store does.
    #[tracing::instrument(name = "redis_queue.sweep", skip_all, fields(limit = limit))]
    pub async fn sweep(&self, limit: u32) -> Result<usize, RedisError> {
        match self.sweep_inner(limit).await {
            Ok(added) => {
                self.note_success();
                // Recovering from an outage asks for a sweep: this was it.
                self.needs_sweep.store(false, Ordering::Release);
                Ok(added)
            }
            Err(Fault::Redis(e)) => {
                self.note_failure(&e);
                Err(Fault::Redis(e).into())
            }
            Err(f) => Err(f.into()),
        }
    }

    /// Sweeps every `every` (the first at once), up to `limit` jobs each time, until the
    /// future is dropped: run it beside the workers, `select!`ed with shutdown. Failures
    /// are logged (an outage once) and retried at the next round.
    pub async fn run_sweeper(&self, every: Duration, limit: u32) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.sweep(limit).await {
                Ok(0) => {}
                Ok(added) => tracing::info!(added, "redis queue sweep re-added jobs"),
                // Logged once per outage by `sweep`.
                Err(RedisError::Unavailable(_) | RedisError::Down) => {}
                Err(e) => {
                    tracing::warn!(error = %e, error.chain = ?e, "redis queue sweep failed");
                }
            }
        }
    }

    pub(super) async fn sweep_inner(&self, limit: u32) -> Result<usize, Fault> {
        self.ensure_group().await?;
        let ids = self.jobs.queued_jobs(limit).await?;
        let mut conn = self.cmd.get().await?;
        let present = self.present(&mut conn).await?;
        let missing: Vec<String> = ids
            .iter()
            .map(ToString::to_string)
            .filter(|id| !present.contains(id))
            .collect();
        if !missing.is_empty() {
            let mut pipe = ::redis::pipe();
            for id in &missing {
                pipe.xadd(&self.stream, "*", &[(FIELD, id)]).ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        self.needs_sweep.store(false, Ordering::Release);
        Ok(missing.len())
    }

    /// Job ids in the stream (pending or not) or delayed.
    pub(super) async fn present(
        &self,
        conn: &mut ConnectionManager,
    ) -> Result<HashSet<String>, Fault> {
        let mut present: HashSet<String> = conn
            .zrange::<_, Vec<String>>(&self.delayed, 0, -1)
            .await?
            .into_iter()
            .collect();
        let mut start = "-".to_owned();
        loop {
            let page: StreamRangeReply = conn
                .xrange_count(&self.stream, &start, "+", SWEEP_PAGE)
                .await?;
            let full = page.ids.len() == SWEEP_PAGE;
            for entry in &page.ids {
                if let Some(id) = entry.get::<String>(FIELD) {
                    present.insert(id);
                }
            }
            match page.ids.last() {
                Some(last) if full => start = format!("({}", last.id),
                _ => return Ok(present),
            }
        }
    }
}
