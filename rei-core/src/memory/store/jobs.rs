//! `JobStore` in memory (and the queue's view of it).

use super::*;

#[async_trait]
impl JobStore for MemoryStore {
    async fn create_job(&self, job: NewJob, max_active: u32) -> Result<Job, StoreError> {
        let mut s = self.lock();
        if let Some(id) = s.job_by_key.get(job.idempotency_key().as_str()) {
            let first = s
                .jobs
                .get(id)
                .ok_or_else(|| StoreError::Corrupt(format!("job {id} indexed but missing")))?;
            return if job.matches(first) {
                Ok(first.clone())
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: job.idempotency_key().to_string(),
                })
            };
        }
        s.user(job.user_id())?;
        if s.jobs.contains_key(&job.id()) {
            return Err(StoreError::Invalid(format!(
                "job id {} already exists",
                job.id()
            )));
        }
        let active = s
            .jobs
            .values()
            .filter(|j| j.user_id == job.user_id() && j.state.is_active())
            .count();
        if active >= usize::try_from(max_active).unwrap_or(usize::MAX) {
            return Err(StoreError::ActiveJobLimit { limit: max_active });
        }
        let reservation = job.reservation();
        let ReservePlan::New { balance } = s.plan_reserve(&reservation)? else {
            return Err(StoreError::IdempotencyConflict {
                key: reservation.idempotency_key.to_string(),
            });
        };
        s.commit_reserve(&reservation, balance);
        let created = job.pending();
        s.job_by_key
            .insert(job.idempotency_key().to_string(), job.id());
        s.job_order.push(job.id());
        s.jobs.insert(job.id(), created.clone());
        Ok(created)
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().jobs.get(&id).cloned())
    }

    async fn write_job(&self, w: &JobWrite) -> Result<Applied, StoreError> {
        let mut s = self.lock();
        let stored = s
            .jobs
            .get(&w.job_id)
            .ok_or_else(|| StoreError::NotFound(Missing::Job(w.job_id)))?;
        let t = stored.apply(&w.event, &w.guard, w.at)?;
        if !t.changed() {
            return Ok(Applied {
                job: t.into_after(),
                changed: false,
            });
        }
        s.commit_job(&t, w.audit.clone())?;
        Ok(Applied {
            job: t.into_after(),
            changed: true,
        })
    }

    async fn claim_job(
        &self,
        target: ClaimTarget,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, StoreError> {
        let mut s = self.lock();
        let candidate = match target {
            ClaimTarget::Job(id) => s.jobs.get(&id).filter(|j| j.is_claimable(at)),
            ClaimTarget::Next => s
                .job_order
                .iter()
                .filter_map(|id| s.jobs.get(id))
                .filter(|j| j.is_claimable(at))
                .min_by_key(|j| j.run_after),
        };
        let Some(job) = candidate else {
            return Ok(None);
        };
        let event = JobEvent::Claimed {
            lease: lease.clone(),
        };
        let t = job.apply(&event, &JobGuard::Unleased, at)?;
        s.commit_job(&t, None)?;
        Ok(Some(t.into_after()))
    }

    async fn queued_jobs(&self, limit_n: u32) -> Result<Vec<JobId>, StoreError> {
        let s = self.lock();
        let mut queued: Vec<&Job> = s.jobs.values().filter(|j| j.run_after.is_some()).collect();
        queued.sort_by_key(|j| j.run_after);
        Ok(queued
            .into_iter()
            .take(limit(limit_n))
            .map(|j| j.id)
            .collect())
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let s = self.lock();
        Ok(s.jobs.values().filter(|j| j.run_after.is_some()).count() as u64)
    }

    async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        let s = self.lock();
        Ok(s.job_order
            .iter()
            .rev()
            .filter_map(|id| s.jobs.get(id))
            .filter(|j| {
                filter.state.is_none_or(|st| j.state == st)
                    && filter.user_id.is_none_or(|u| j.user_id == u)
            })
            .skip(usize::try_from(filter.offset).unwrap_or(usize::MAX))
            .take(limit(filter.limit))
            .cloned()
            .collect())
    }

    async fn import_legacy_job(&self, job: &crate::legacy::LegacyJob) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.user(job.user_id)?;
        if s.legacy_jobs.contains_key(&job.id) {
            return Ok(false);
        }
        s.legacy_jobs.insert(job.id, job.clone());
        Ok(true)
    }

    async fn legacy_jobs(
        &self,
        user: UserId,
        limit_n: u32,
    ) -> Result<Vec<crate::legacy::LegacyJob>, StoreError> {
        let s = self.lock();
        let mut jobs: Vec<crate::legacy::LegacyJob> = s
            .legacy_jobs
            .values()
            .filter(|j| j.user_id == user)
            .cloned()
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        jobs.truncate(limit(limit_n));
        Ok(jobs)
    }
}
