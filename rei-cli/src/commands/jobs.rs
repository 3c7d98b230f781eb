//! `rei-cli jobs list|cancel`.

use std::sync::Arc;

use clap::Subcommand;
use rei_adapters::system::{RandomIds, SystemClock};
use rei_core::ids::{JobId, UserId};
use rei_core::job::{JobError, JobFilter, JobLimits, JobPorts, JobService, JobState};
use rei_core::pricing::PriceList;
use serde_json::json;

use super::{Ctx, operational};
use crate::Failure;
use crate::output::when;

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// Jobs, newest first.
    List {
        /// pending, processing, completed, failed or cancelled.
        #[arg(long)]
        status: Option<JobState>,
        #[arg(long)]
        user: Option<UserId>,
        #[arg(long, default_value = "100")]
        limit: u32,
    },
    /// Cancels a pending or processing job and releases its reservation.
    Cancel { job_id: JobId },
}

pub(crate) async fn run(ctx: &Ctx, c: &JobsCommand) -> Result<(), Failure> {
    match c {
        JobsCommand::List {
            status,
            user,
            limit,
        } => {
            let filter = JobFilter {
                state: *status,
                user_id: *user,
                limit: (*limit).clamp(1, 10_000),
            };
            let jobs = ctx.stores.jobs.jobs(filter).await.map_err(operational)?;
            let value = serde_json::to_value(&jobs).map_err(operational)?;
            let rows = jobs
                .iter()
                .map(|j| {
                    vec![
                        j.id.to_string(),
                        when(j.created_at),
                        j.user_id.to_string(),
                        j.spec.kind().to_string(),
                        j.state.to_string(),
                        format!("{}%", j.progress.percent()),
                        j.quote.amount.to_string(),
                        j.attempts.to_string(),
                    ]
                })
                .collect();
            ctx.out.table(
                &value,
                &[
                    "id",
                    "created (UTC)",
                    "user",
                    "type",
                    "status",
                    "progress",
                    "price",
                    "attempts",
                ],
                rows,
            );
            Ok(())
        }
        JobsCommand::Cancel { job_id } => {
            let clock = Arc::new(SystemClock);
            // The price list and queue do not matter for a cancellation; the job's own quote is refunded.
            let jobs = JobService::new(
                JobPorts {
                    users: ctx.stores.users.clone(),
                    jobs: ctx.stores.jobs.clone(),
                    queue: ctx.queue.clone(),
                    clock,
                    ids: Arc::new(RandomIds),
                },
                PriceList::seed_defaults(),
                JobLimits::default(),
            );
            let applied = jobs
                .cancel(*job_id, Ctx::actor(), "cancelled with rei-cli")
                .await
                .map_err(|e| match e {
                    JobError::Store(s) => operational(s),
                    usage => Failure::Usage(usage.to_string()),
                })?;
            let job = applied.job;
            let value = json!({ "job_id": job.id.to_string(), "status": job.state.as_str(), "refunded_kopecks": job.quote.amount.kopecks(), "changed": applied.changed });
            let text = match (applied.changed, job.state) {
                (true, JobState::Cancelled) => format!(
                    "job {} cancelled; {} returned to {}",
                    job.id, job.quote.amount, job.user_id
                ),
                (true, _) => format!(
                    "job {} is running: cancel requested; its worker releases {} at its next step",
                    job.id, job.quote.amount
                ),
                (false, JobState::Cancelled) => format!("job {} was already cancelled", job.id),
                (false, _) => format!("a cancel of job {} was already requested", job.id),
            };
            ctx.out.message(&value, &text);
            Ok(())
        }
    }
}
