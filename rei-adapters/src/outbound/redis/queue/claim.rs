//! Claiming through the stream: entries pending too long are taken over, new ones
//! read; each is checked against the job's row before it is handed out, deferred
//! when not ready, acknowledged and deleted when finished.

use super::*;

/// One step of the take-over scan.
pub(super) enum TakeOver {
    /// An entry now delivered to this worker.
    Entry(StreamId),
    /// None idle in this part of the pending list; the cursor moved on.
    ScanOn,
    /// The whole list was scanned (the cursor starts over next time).
    Done,
}

/// What to do with an entry whose job the database would not lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Disposition {
    /// No work left, or no such job: delete the entry.
    Finished,
    /// Ready only at this time: move it to the delayed set.
    NotReady(Timestamp),
    /// Another worker's lease is live until then: move it to the delayed set.
    HeldElsewhere(Timestamp),
    /// It is claimable now (the lease expired between two reads): try again.
    Claimable,
}

/// Decides from the job's `(run_after, lease until)` as stored, `None` when it is gone.
pub(super) fn disposition(
    job: Option<(Option<Timestamp>, Option<Timestamp>)>,
    at: Timestamp,
) -> Disposition {
    match job {
        None | Some((None, _)) => Disposition::Finished,
        Some((Some(run_after), _)) if run_after > at => Disposition::NotReady(run_after),
        Some((Some(_), Some(until))) if until > at => Disposition::HeldElsewhere(until),
        Some((Some(_), _)) => Disposition::Claimable,
    }
}

impl RedisQueue {
    /// One claim through the stream; `Fault::Redis` sends the caller to the database.
    pub(super) async fn claim_from_stream(
        &self,
        worker: &str,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, Fault> {
        // One claimer sweeps; the others go on (a duplicate entry would be harmless, but
        // every worker of a process starting at once need not sweep the same jobs).
        if self.needs_sweep.swap(false, Ordering::AcqRel) {
            match self.sweep_inner(self.config.sweep_limit).await {
                Ok(0) => {}
                Ok(added) => tracing::info!(added, "redis queue sweep re-added jobs"),
                Err(f) => {
                    self.needs_sweep.store(true, Ordering::Release);
                    return Err(f);
                }
            }
        }
        let mut conn = self.cmd.get().await?;
        self.promote
            .key(&self.stream)
            .key(&self.delayed)
            .arg(at.millis())
            .arg(self.config.batch.max(1) * 16)
            .invoke_async::<i64>(&mut conn)
            .await?;
        for _ in 0..self.config.batch {
            match self.take_over(&mut conn, worker).await? {
                TakeOver::Entry(entry) => {
                    if let Some(job) = self.try_entry(&mut conn, entry, lease, at).await? {
                        return Ok(Some(job));
                    }
                }
                TakeOver::ScanOn => {}
                TakeOver::Done => break,
            }
        }
        for i in 0..self.config.batch {
            let Some(entry) = self.read_new(&mut conn, worker, i == 0).await? else {
                return Ok(None);
            };
            if let Some(job) = self.try_entry(&mut conn, entry, lease, at).await? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Takes over one entry idle for `min_idle` for `worker`, scanning the pending list
    /// from where the last scan stopped.
    pub(super) async fn take_over(
        &self,
        conn: &mut ConnectionManager,
        worker: &str,
    ) -> Result<TakeOver, Fault> {
        let start = self
            .autoclaim_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let min_idle = u64::try_from(self.config.min_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: Result<StreamAutoClaimReply, _> = conn
            .xautoclaim_options(
                &self.stream,
                GROUP,
                worker,
                min_idle,
                &start,
                StreamAutoClaimOptions::default().count(1),
            )
            .await;
        let reply = match reply {
            Err(e) if e.code() == Some("NOGROUP") => {
                self.group_lost().await?;
                return Ok(TakeOver::Done);
            }
            other => other?,
        };
        let scanned_all = reply.next_stream_id == "0-0";
        *self
            .autoclaim_cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reply.next_stream_id;
        Ok(match reply.claimed.into_iter().next() {
            Some(entry) => {
                tracing::debug!(entry = %entry.id, "took over a stream entry idle for min_idle");
                TakeOver::Entry(entry)
            }
            None if scanned_all => TakeOver::Done,
            None => TakeOver::ScanOn,
        })
    }

    /// One new entry for `worker`; blocks up to `block` when `may_block` and no other
    /// claimer of this process is blocking already.
    pub(super) async fn read_new(
        &self,
        conn: &mut ConnectionManager,
        worker: &str,
        may_block: bool,
    ) -> Result<Option<StreamId>, Fault> {
        let base = StreamReadOptions::default().group(GROUP, worker).count(1);
        let block_ms = usize::try_from(self.config.block.as_millis()).unwrap_or(usize::MAX);
        let guard = if may_block && block_ms > 0 {
            self.reader_busy.try_lock().ok()
        } else {
            None
        };
        let reply: Result<Option<StreamReadReply>, _> = match guard {
            Some(_blocking) => {
                let mut reader = self.reader.get().await?;
                reader
                    .xread_options(&[&self.stream], &[">"], &base.block(block_ms))
                    .await
            }
            None => conn.xread_options(&[&self.stream], &[">"], &base).await,
        };
        let reply = match reply {
            Err(e) if e.code() == Some("NOGROUP") => {
                self.group_lost().await?;
                return Ok(None);
            }
            other => other?,
        };
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next()))
    }

    /// The group is gone (Redis restarted without persistence, or the key was deleted):
    /// recreate it and sweep at the next claim.
    pub(super) async fn group_lost(&self) -> Result<(), Fault> {
        tracing::warn!(stream = %self.stream, "redis consumer group missing: recreating it");
        self.ensure_group().await?;
        self.needs_sweep.store(true, Ordering::Release);
        Ok(())
    }

    /// Claims the entry's job in the database, or settles the entry (module docs).
    pub(super) async fn try_entry(
        &self,
        conn: &mut ConnectionManager,
        entry: StreamId,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, Fault> {
        let Some(id) = entry
            .get::<String>(FIELD)
            .and_then(|s| s.parse::<JobId>().ok())
        else {
            tracing::warn!(entry = %entry.id, "stream entry without a job id: deleted");
            self.ack_del(conn, &entry.id).await?;
            return Ok(None);
        };
        if let Some(job) = self.db.claim_job(id, lease, at).await? {
            self.remember(conn, id, entry.id).await;
            return Ok(Some(job));
        }
        let current = self.jobs.job(id).await?;
        let state = current
            .as_ref()
            .map(|j| (j.run_after, j.lease.as_ref().map(|l| l.until)));
        match disposition(state, at) {
            Disposition::Finished => {
                tracing::debug!(job_id = %id, "nothing left to do: entry deleted");
                self.ack_del(conn, &entry.id).await?;
            }
            Disposition::HeldElsewhere(until) => {
                tracing::debug!(job_id = %id, until = until.millis(), "leased by another worker: delayed until the lease ends");
                self.defer(conn, Some(&entry.id), id, until).await?;
            }
            Disposition::NotReady(run_after) => {
                tracing::debug!(job_id = %id, run_after = run_after.millis(), "not ready: delayed");
                self.defer(conn, Some(&entry.id), id, run_after).await?;
            }
            Disposition::Claimable => {
                if let Some(job) = self.db.claim_job(id, lease, at).await? {
                    self.remember(conn, id, entry.id).await;
                    return Ok(Some(job));
                }
                tracing::debug!(job_id = %id, "claim raced: entry left pending");
            }
        }
        Ok(None)
    }

    /// Records the entry of a job claimed here; an older entry of the same job is
    /// deleted (best effort: a leftover is taken over and dropped later).
    pub(super) async fn remember(&self, conn: &mut ConnectionManager, id: JobId, entry: String) {
        let old = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, entry.clone());
        if let Some(old) = old.filter(|o| *o != entry) {
            if let Err(e) = self.ack_del(conn, &old).await {
                tracing::debug!(error = %e, "could not delete an older entry");
            }
        }
    }

    pub(super) async fn ack_del(
        &self,
        conn: &mut ConnectionManager,
        entry: &str,
    ) -> Result<(), ::redis::RedisError> {
        // Atomic: an entry acknowledged but not deleted would look present to the sweep
        // while no consumer would ever read it again.
        ::redis::pipe()
            .atomic()
            .xack(&self.stream, GROUP, &[entry])
            .ignore()
            .xdel(&self.stream, &[entry])
            .ignore()
            .query_async::<()>(conn)
            .await
    }

    /// Puts `job` into the delayed set at `run_after`, and settles `entry`, atomically.
    pub(super) async fn defer(
        &self,
        conn: &mut ConnectionManager,
        entry: Option<&str>,
        job: JobId,
        run_after: Timestamp,
    ) -> Result<(), ::redis::RedisError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&self.delayed)
            .arg("LT")
            .arg(run_after.millis())
            .arg(job.to_string())
            .ignore();
        if let Some(entry) = entry {
            pipe.xack(&self.stream, GROUP, &[entry])
                .ignore()
                .xdel(&self.stream, &[entry])
                .ignore();
        }
        pipe.query_async::<()>(conn).await
    }

    pub(super) async fn finish(
        &self,
        job: &Job,
        entry: Option<&str>,
    ) -> Result<(), ::redis::RedisError> {
        let mut conn = self.cmd.get().await?;
        match (job.run_after, entry) {
            (Some(run_after), entry) => self.defer(&mut conn, entry, job.id, run_after).await,
            (None, Some(entry)) => self.ack_del(&mut conn, entry).await,
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn check(job: Option<(Option<i64>, Option<i64>)>, expected: Disposition) {
        let job = job.map(|(r, l)| (r.map(t), l.map(t)));
        assert_eq!(disposition(job, t(100)), expected, "{job:?}");
    }

    #[test]
    fn a_missing_job_is_finished() {
        check(None, Disposition::Finished);
    }

    #[test]
    fn a_job_without_run_after_is_finished() {
        check(Some((None, Some(500))), Disposition::Finished);
    }

    #[test]
    fn a_job_due_later_is_not_ready() {
        check(Some((Some(101), None)), Disposition::NotReady(t(101)));
    }

    #[test]
    fn a_live_lease_of_another_worker_holds_it() {
        check(
            Some((Some(50), Some(101))),
            Disposition::HeldElsewhere(t(101)),
        );
    }

    #[test]
    fn an_expired_lease_leaves_it_claimable() {
        check(Some((Some(100), Some(100))), Disposition::Claimable);
        check(Some((Some(0), None)), Disposition::Claimable);
    }
}
