//! `JobStore` over SQL: jobs with their reservations, and the jobs table as the queue.
//!
//! Every change is an event applied by core's `Job::apply` to the row read inside the
//! write transaction (locked on PostgreSQL), so a caller can never write a state, a lease
//! or a settlement the stored row does not allow. A claim picks the job ready longest
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's write lock serialises claimers) and
//! leases it in the same transaction.

use super::store::*;
use rei_core::job::{Applied, ApplyError, JobEvent, JobGuard, JobLease, JobWrite};
use rei_core::ports::ClaimTarget;

impl SqlStore {
    async fn create_job_once(&self, job: &NewJob, max_active: u32) -> Result<Job, TxError> {
        let job = job.clone();
        self.write(move |tx| {
            Box::pin(async move { Self::create_job_in(tx, &job, max_active).await })
        })
        .await
    }

    async fn create_job_in(
        tx: &mut Tx<'static>,
        job: &NewJob,
        max_active: u32,
    ) -> Result<Job, TxError> {
        // Serialises job creation per user on PostgreSQL, so the active-job count
        // below cannot be raced past the cap.
        Self::lock_user(tx, job.user_id()).await?;
        if let Some(first) = Self::job_by_key(tx, job.idempotency_key().as_str()).await? {
            return if job.matches(&first) {
                Ok(first)
            } else {
                Err(StoreError::IdempotencyConflict {
                    key: job.idempotency_key().to_string(),
                }
                .into())
            };
        }
        let (active,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND status IN ('pending', 'processing')",
        )
        .bind(job.user_id().get())
        .fetch_one(&mut **tx)
        .await?;
        if active >= i64::from(max_active) {
            return Err(StoreError::ActiveJobLimit { limit: max_active }.into());
        }
        // A hold under this job's key that is not this job's reservation means the
        // job id was reused: refuse rather than pair a new job with an old hold.
        let hold = Self::reserve_in(tx, &job.reservation()).await?;
        if hold.id != job.reservation_id() {
            return Err(StoreError::Invalid(format!("job id {} already exists", job.id())).into());
        }
        let created = job.pending();
        // The row is the queue entry: `run_after` makes it claimable at once.
        sqlx::query(
            "INSERT INTO jobs (id, user_id, type, status, progress, params, quote, cost_estimate, reservation_id, idempotency_key, \
             attempts, version, created_at, updated_at, run_after, delivery) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, $11, $11, $12, $13)",
        )
        .bind(created.id.to_string())
        .bind(created.user_id.get())
        .bind(created.spec.kind().as_str())
        .bind(created.state.as_str())
        .bind(i64::from(created.progress.percent()))
        .bind(rows::to_json(&created.spec)?)
        .bind(rows::to_json(&created.quote)?)
        .bind(created.quote.amount.kopecks())
        .bind(created.reservation_id.to_string())
        .bind(created.idempotency_key.as_str())
        .bind(created.created_at.millis())
        .bind(created.run_after.map(Timestamp::millis))
        .bind(created.delivery.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(created)
    }

    async fn job_by_key(tx: &mut Tx<'_>, key: &str) -> Result<Option<Job>, TxError> {
        let sql = concat!(
            "SELECT ",
            job_cols!(),
            " FROM jobs WHERE idempotency_key = $1"
        );
        let row: Option<JobRow> = sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(Job::try_from).transpose()?)
    }

    async fn job_locked(tx: &mut Tx<'_>, id: JobId) -> Result<Option<Job>, TxError> {
        let sql = dialect_sql!(
            Dialect::of(tx),
            ["SELECT ", job_cols!(), " FROM jobs WHERE id = $1"],
            lock
        );
        let row: Option<JobRow> = sqlx::query_as(sql)
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(Job::try_from).transpose()?)
    }

    /// Writes every column a transition may change, guarded by the version read.
    async fn update_job(tx: &mut Tx<'_>, t: &JobTransition) -> Result<(), TxError> {
        let j = &t.after();
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, progress = $2, cost_actual = $3, attempts = $4, deliveries = $5, provider_calls = $6, \
             provider_task_id = $7, result_url = $8, error_message = $9, cancel_requested = $10, lease_token = $11, lease_until = $12, \
             run_after = $13, delivery = $14, delivery_attempts = $15, delivered_at = $16, version = $17, started_at = $18, \
             completed_at = $19, updated_at = $20, status_message = $21, provider_result_url = $24, watch_until = $25, \
             redelivery = $26, woken_at = $27 WHERE id = $22 AND version = $23",
        )
        .bind(j.state.as_str())
        .bind(i64::from(j.progress.percent()))
        .bind(j.cost_actual.map(Money::kopecks))
        .bind(i64::from(j.attempts))
        .bind(i64::from(j.deliveries))
        .bind(i64::from(j.provider_calls))
        .bind(j.provider_task_id.as_ref().map(|p| p.as_str().to_owned()))
        .bind(j.result.as_ref().map(|r| r.as_str().to_owned()))
        .bind(j.failure.as_ref().map(rows::to_json).transpose()?)
        .bind(j.cancel_requested.as_ref().map(rows::to_json).transpose()?)
        .bind(j.lease.as_ref().map(|l| l.token.as_str().to_owned()))
        .bind(j.lease.as_ref().map(|l| l.until.millis()))
        .bind(j.run_after.map(Timestamp::millis))
        .bind(j.delivery.as_str())
        .bind(i64::from(j.delivery_attempts))
        .bind(j.delivered_at.map(Timestamp::millis))
        .bind(i64::from(j.version))
        .bind(j.started_at.map(Timestamp::millis))
        .bind(j.finished_at.map(Timestamp::millis))
        .bind(j.updated_at.millis())
        .bind(j.status_message.as_ref().map(|m| m.as_str().to_owned()))
        .bind(j.id.to_string())
        .bind(i64::from(t.before().version))
        .bind(&j.result_url)
        .bind(j.watch_until.map(Timestamp::millis))
        .bind(j.redelivery)
        .bind(j.woken_at.map(Timestamp::millis))
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict {
                what: "job",
                id: j.id.to_string(),
            }
            .into());
        }
        Ok(())
    }

    async fn write_job_once(&self, w: &JobWrite) -> Result<Applied, TxError> {
        let w = w.clone();
        self.write(move |tx| Box::pin(async move { Self::write_job_in(tx, &w).await }))
            .await
    }

    async fn write_job_in(tx: &mut Tx<'static>, w: &JobWrite) -> Result<Applied, TxError> {
        let stored = Self::job_locked(tx, w.job_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(Missing::Job(w.job_id)))?;
        let t = stored
            .apply(&w.event, &w.guard, w.at)
            .map_err(StoreError::from)?;
        if !t.changed() {
            return Ok(Applied {
                job: t.into_after(),
                changed: false,
            });
        }
        Self::update_job(tx, &t).await?;
        if let Some(how) = t.settlement() {
            // The stored job's own reservation, never one a caller names.
            Self::settle_in(tx, stored.reservation_id, how, w.at).await?;
        }
        if let Some(audit) = &w.audit {
            Self::insert_audit(tx, audit).await?;
        }
        Ok(Applied {
            job: t.into_after(),
            changed: true,
        })
    }

    async fn claim_job_once(
        &self,
        target: ClaimTarget,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, TxError> {
        if target == ClaimTarget::Next {
            // An empty queue must not take the write lock (on SQLite, the only
            // one): look without a transaction first.
            let ready: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM jobs WHERE run_after IS NOT NULL AND run_after <= $1 \
                 AND (lease_until IS NULL OR lease_until <= $1) LIMIT 1",
            )
            .bind(at.millis())
            .fetch_optional(&self.pool)
            .await?;
            if ready.is_none() {
                return Ok(None);
            }
        }
        let lease = lease.clone();
        self.write(move |tx| {
            Box::pin(async move { Self::claim_job_in(tx, target, lease, at).await })
        })
        .await
    }

    async fn claim_job_in(
        tx: &mut Tx<'static>,
        target: ClaimTarget,
        lease: JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, TxError> {
        let candidate = match target {
            ClaimTarget::Job(id) => Self::job_locked(tx, id).await?,
            ClaimTarget::Next => {
                let sql = dialect_sql!(
                    Dialect::of(tx),
                    [
                        "SELECT ",
                        job_cols!(),
                        " FROM jobs WHERE run_after IS NOT NULL AND run_after <= $1 ",
                        "AND (lease_until IS NULL OR lease_until <= $1) ORDER BY run_after LIMIT 1"
                    ],
                    skip_locked
                );
                let row: Option<JobRow> = sqlx::query_as(sql)
                    .bind(at.millis())
                    .fetch_optional(&mut **tx)
                    .await?;
                row.map(Job::try_from).transpose()?
            }
        };
        let Some(job) = candidate else {
            return Ok(None);
        };
        let event = JobEvent::Claimed { lease };
        let t = match job.apply(&event, &JobGuard::Unleased, at) {
            Ok(t) => t,
            Err(ApplyError::NotClaimable { .. }) => return Ok(None),
            Err(e) => return Err(StoreError::from(e).into()),
        };
        Self::update_job(tx, &t).await?;
        Ok(Some(t.into_after()))
    }
}

#[async_trait]
impl JobStore for SqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), user_id = job.user_id().get(), job_id = %job.id(), amount_kopecks = job.quote().amount.kopecks()))]
    async fn create_job(&self, job: NewJob, max_active: u32) -> Result<Job, StoreError> {
        self.with_available(
            job.user_id(),
            retrying(|| self.create_job_once(&job, max_active)).await,
        )
        .await
    }

    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let sql = concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1");
        self.find::<JobRow, _>(sqlx::query_as(sql).bind(id.to_string()))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), job_id = %write.job_id, event = write.event.name()))]
    async fn write_job(&self, write: &JobWrite) -> Result<Applied, StoreError> {
        retrying(|| self.write_job_once(write)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(store = stringify!(SqlStore), target = ?target))]
    async fn claim_job(
        &self,
        target: ClaimTarget,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, StoreError> {
        retrying(|| self.claim_job_once(target, lease, at)).await
    }

    async fn queued_jobs(&self, n: u32) -> Result<Vec<JobId>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE run_after IS NOT NULL ORDER BY run_after LIMIT $1",
        )
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await
        .map_err(TxError::from)?;
        rows.into_iter()
            .map(|(id,)| {
                id.parse()
                    .map_err(|e| StoreError::Corrupt(format!("job id {id}: {e}")))
            })
            .collect()
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE run_after IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(TxError::from)?;
        u64::try_from(n).map_err(|e| StoreError::Corrupt(format!("queue depth: {e}")))
    }

    async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        let sql = dialect_sql!(
            self.dialect,
            [
                "SELECT ",
                job_cols!(),
                " FROM jobs WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR user_id = $2) ORDER BY "
            ],
            order_col,
            [" DESC LIMIT $3 OFFSET $4"]
        );
        let rows: Vec<JobRow> = sqlx::query_as(sql)
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.user_id.map(UserId::get))
            .bind(limit(filter.limit))
            .bind(i64::from(filter.offset))
            .fetch_all(&self.pool)
            .await
            .map_err(TxError::from)?;
        rows.into_iter().map(Job::try_from).collect()
    }

    async fn legacy_jobs(
        &self,
        user: UserId,
        n: u32,
    ) -> Result<Vec<rei_core::legacy::LegacyJob>, StoreError> {
        let rows: Vec<rows::LegacyJobRow> = sqlx::query_as(
            "SELECT id, user_id, kind, status, params, result_url, error_message, cost_estimate, cost_actual, created_at, completed_at \
             FROM legacy_jobs WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(user.get())
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await
        .map_err(TxError::from)?;
        rows.into_iter()
            .map(rei_core::legacy::LegacyJob::try_from)
            .collect()
    }

    async fn import_legacy_job(
        &self,
        job: &rei_core::legacy::LegacyJob,
    ) -> Result<bool, StoreError> {
        retrying(|| {
            let job = job.clone();
            self.write(move |tx| {
                Box::pin(async move { Self::import_legacy_job_in(tx, &job).await })
            })
        })
        .await
    }
}

impl SqlStore {
    async fn import_legacy_job_in(
        tx: &mut Tx<'static>,
        job: &rei_core::legacy::LegacyJob,
    ) -> Result<bool, TxError> {
        let known: Option<(i64,)> = sqlx::query_as("SELECT id FROM legacy_jobs WHERE id = $1")
            .bind(job.id)
            .fetch_optional(&mut **tx)
            .await?;
        if known.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO legacy_jobs (id, user_id, kind, status, params, result_url, error_message, cost_estimate, cost_actual, created_at, completed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(job.id)
        .bind(job.user_id.get())
        .bind(&job.kind)
        .bind(&job.status)
        .bind(&job.params)
        .bind(&job.result_url)
        .bind(&job.error_message)
        .bind(job.cost_estimate.map(|m| m.kopecks()))
        .bind(job.cost_actual.map(|m| m.kopecks()))
        .bind(job.created_at.millis())
        .bind(job.completed_at.map(Timestamp::millis))
        .execute(&mut **tx)
        .await
        .map_err(|e| unknown_user(e, job.user_id))?;
        Ok(true)
    }
}
