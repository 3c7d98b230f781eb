//! `rei-cli jobs list|retry|cancel`.

use clap::Subcommand;
use rei_core::ids::{JobId, UserId};
use rei_core::job::{JobFilter, JobState};
use serde_json::json;

use super::{Ctx, job_failure, operational};
use crate::Failure;
use crate::output::when;

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// Jobs, newest first.
    #[command(after_help = "Example: rei-cli jobs list --status failed --user 123456789")]
    List {
        /// pending, processing, completed, failed or cancelled.
        #[arg(long)]
        status: Option<JobState>,
        /// Only this user's (Telegram id).
        #[arg(long)]
        user: Option<UserId>,
        /// How many.
        #[arg(long, default_value = "100")]
        limit: u32,
    },
    /// Queues a failed job again as a new job at its quoted price, with a fresh hold on
    /// the user's balance (refused when the balance is short). Running it twice queues
    /// one job. Audited.
    #[command(
        after_help = "Example: rei-cli jobs retry 0192f0c4-8d4e-7c6b-9a53-6f1e2d3c4b5a --reason \"provider outage over\""
    )]
    Retry {
        /// The failed job.
        job_id: JobId,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "retried with rei-cli")]
        reason: String,
    },
    /// Cancels a pending or processing job and releases its reservation at once. When
    /// its provider call is already out, a result that still comes is delivered free.
    /// Audited.
    #[command(after_help = "Example: rei-cli jobs cancel 0192f0c4-8d4e-7c6b-9a53-6f1e2d3c4b5a")]
    Cancel {
        /// The job.
        job_id: JobId,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "cancelled with rei-cli")]
        reason: String,
    },
}

pub(crate) async fn run(ctx: &Ctx, c: &JobsCommand) -> Result<(), Failure> {
    let jobs = &ctx.app.services.jobs;
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
                offset: 0,
            };
            let list = jobs.list(filter).await.map_err(job_failure)?;
            ctx.out
                .list(
                    &list,
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
                    |j| {
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
                    },
                )
                .map_err(operational)?;
            Ok(())
        }
        JobsCommand::Retry { job_id, reason } => {
            let retried = jobs
                .retry(*job_id, Ctx::actor(), reason)
                .await
                .map_err(job_failure)?;
            let job = &retried.job;
            let value = json!({
                "job_id": job_id.to_string(),
                "new_job_id": job.id.to_string(),
                "retried_now": retried.new,
                "status": job.state.as_str(),
                "held_kopecks": if retried.new { job.quote.amount.kopecks() } else { 0 },
                "price_kopecks": job.quote.amount.kopecks(),
                "tg_id": job.user_id.get(),
            });
            let text = if retried.new {
                format!(
                    "job {job_id} queued again as {}: {} held from {}",
                    job.id, job.quote.amount, job.user_id
                )
            } else {
                format!(
                    "job {job_id} was retried before as {} (now {}): nothing new held or queued",
                    job.id, job.state
                )
            };
            ctx.out.message(&value, &text);
            Ok(())
        }
        JobsCommand::Cancel { job_id, reason } => {
            let applied = jobs
                .cancel(*job_id, Ctx::actor(), reason)
                .await
                .map_err(job_failure)?;
            let job = applied.job;
            // What this run released (a repeat releases nothing).
            let released = applied.changed && job.state == JobState::Cancelled;
            let refunded = if released {
                job.quote.amount
            } else {
                rei_core::Money::ZERO
            };
            let value = json!({
                "job_id": job.id.to_string(),
                "status": job.state.as_str(),
                "refunded_kopecks": refunded.kopecks(),
                "changed": applied.changed,
                "watching_for_late_result": job.watch_until.is_some(),
            });
            let text = match (released, job.state) {
                (true, _) if job.watch_until.is_some() => format!(
                    "job {} cancelled; {refunded} returned to {}. Its provider call was out: a result that still comes is delivered free",
                    job.id, job.user_id
                ),
                (true, _) => format!(
                    "job {} cancelled; {refunded} returned to {}",
                    job.id, job.user_id
                ),
                (false, JobState::Cancelled) => {
                    format!(
                        "job {} was already cancelled; nothing more returned",
                        job.id
                    )
                }
                (false, state) => format!("job {} is {state}: nothing to cancel", job.id),
            };
            ctx.out.message(&value, &text);
            Ok(())
        }
    }
}
