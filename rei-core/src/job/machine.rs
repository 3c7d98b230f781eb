//! The job state machine: one pure function, [`Job::apply`], that every store runs on
//! its own stored row inside its transaction. Callers send events, never rows, so a
//! caller cannot forge a state, a price or a reservation id; and every worker write
//! carries its lease, so a worker whose lease expired cannot touch the job again.

use serde::{Deserialize, Serialize};

use super::{
    CancelledBy, Delivery, Job, JobEvent, JobLease, JobState, JobTransition, LeaseToken, Progress,
    TransitionError,
};
use crate::ids::JobId;
use crate::ledger::Settlement;
use crate::time::Timestamp;
use crate::user::AuditRecord;

/// Who writes: a worker holding a lease, or anyone else (a claim, a cancel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobGuard {
    /// A worker's write: refused unless `token` is the job's live lease.
    Lease(LeaseToken),
    /// A write by no worker: only a claim or a cancel.
    Unleased,
}

/// One write to a job: an event the store applies to its stored row, with the ledger
/// effect and the audit record (if any) in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobWrite {
    /// The job.
    pub job_id: JobId,
    /// What happened.
    pub event: JobEvent,
    /// Who writes.
    pub guard: JobGuard,
    /// Written with the change (not on a repeat): e.g. an admin's cancel.
    pub audit: Option<AuditRecord>,
    /// When.
    pub at: Timestamp,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The event is not allowed in the job's state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The writer holds no live lease on the job (expired, or taken over): it must stop.
    #[error("the lease on job {job_id} was lost")]
    LeaseLost {
        /// The job.
        job_id: JobId,
    },
    /// A claim of a job another worker holds, or with nothing left to do.
    #[error("job {job_id} cannot be claimed now")]
    NotClaimable {
        /// The job.
        job_id: JobId,
    },
}

/// The result of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The job now.
    pub job: Job,
    /// False when the event was a repeat and nothing changed.
    pub changed: bool,
}

impl Job {
    /// Applies an event written under `guard` at `now`: a pure function. Re-applying the
    /// event that produced the current state is `Ok` with no change and no effect.
    ///
    /// # Errors
    /// [`ApplyError::LeaseLost`] when a worker event comes without the live lease,
    /// [`ApplyError::NotClaimable`] for a claim of a leased or finished job,
    /// [`ApplyError::Transition`] for an event illegal in the current state.
    pub fn apply(
        &self,
        event: &JobEvent,
        guard: &JobGuard,
        now: Timestamp,
    ) -> Result<JobTransition, ApplyError> {
        use JobState::{Cancelled, Completed, Failed, Pending, Processing};
        let illegal = || {
            ApplyError::Transition(TransitionError {
                job_id: self.id,
                from: self.state,
                event: event.name(),
            })
        };
        let lost = ApplyError::LeaseLost { job_id: self.id };
        let leased = match guard {
            JobGuard::Lease(token) if self.is_leased_by(token, now) => true,
            JobGuard::Lease(_) => return Err(lost),
            JobGuard::Unleased => false,
        };
        let needs_lease = !matches!(
            event,
            JobEvent::Claimed { .. } | JobEvent::Cancelled { .. } | JobEvent::StatusMessage { .. }
        );
        if needs_lease && !leased {
            return Err(lost);
        }
        let mut next = self.clone();
        let mut settlement = None;
        match (event, self.state) {
            (JobEvent::Claimed { lease }, _) => {
                if leased || !self.is_claimable(now) {
                    return Err(ApplyError::NotClaimable { job_id: self.id });
                }
                next.lease = Some(lease.clone());
                next.deliveries = self.deliveries.saturating_add(1);
                if self.state == Pending {
                    next.state = Processing;
                }
                if next.state == Processing {
                    next.progress = next.progress.max(Progress::Started);
                    next.started_at = Some(self.started_at.unwrap_or(now));
                }
            }
            (JobEvent::LeaseExtended { until }, _) => {
                if let Some(lease) = &mut next.lease {
                    lease.until = lease.until.max(*until);
                }
            }
            (JobEvent::Released { run_after }, _) => {
                next.lease = None;
                if self.run_after.is_some() {
                    next.run_after = Some(*run_after);
                }
            }
            (JobEvent::StatusMessage { message }, _) => {
                next.status_message = Some(message.clone());
            }
            (JobEvent::CallStarted, Processing) => {
                next.provider_calls = self.provider_calls.saturating_add(1);
            }
            (JobEvent::ProviderTaskCreated { task_id }, Processing) => match &self.provider_task_id
            {
                Some(existing) if existing == task_id => {}
                Some(_) => return Err(illegal()),
                None => {
                    next.provider_task_id = Some(task_id.clone());
                    next.progress = next.progress.max(Progress::Generating);
                }
            },
            (JobEvent::Generating, Processing) => {
                next.progress = next.progress.max(Progress::Generating);
            }
            (JobEvent::AttemptFailed { retry_at }, Processing) => {
                next.attempts = self.attempts.saturating_add(1);
                next.lease = None;
                next.run_after = Some(*retry_at);
            }
            (
                JobEvent::Succeeded {
                    result,
                    actual_cost,
                },
                Processing,
            ) => {
                if *actual_cost > self.quote.amount {
                    return Err(illegal());
                }
                if self.cancel_requested.is_some() {
                    // The user asked to stop before the result was in: they are not
                    // charged, and the result is not delivered.
                    next.state = Cancelled;
                    settlement = Some(Settlement::Release);
                } else {
                    next.state = Completed;
                    next.progress = Progress::Done;
                    next.result = Some(result.clone());
                    next.cost_actual = Some(*actual_cost);
                    settlement = Some(Settlement::Capture {
                        actual: *actual_cost,
                    });
                }
                next.finish(now);
            }
            (
                JobEvent::Succeeded {
                    result,
                    actual_cost,
                },
                Completed,
            ) if self.result.as_ref() == Some(result) && self.cost_actual == Some(*actual_cost) => {
            }
            (JobEvent::Failed { reason }, Processing) => {
                next.state = Failed;
                next.failure = Some(reason.clone());
                settlement = Some(Settlement::Release);
                next.finish(now);
            }
            (JobEvent::Cancelled { by }, Pending) => {
                next.state = Cancelled;
                next.cancel_requested = Some(by.clone());
                settlement = Some(Settlement::Release);
                next.finish(now);
                if *by == CancelledBy::User {
                    // The dialogue that cancelled it tells the user.
                    next.delivery = Delivery::Skipped;
                    next.run_after = None;
                }
            }
            (JobEvent::Cancelled { by }, Processing) => {
                if leased {
                    next.state = Cancelled;
                    next.cancel_requested =
                        Some(self.cancel_requested.clone().unwrap_or_else(|| by.clone()));
                    settlement = Some(Settlement::Release);
                    next.finish(now);
                } else if self.cancel_requested.is_none() {
                    next.cancel_requested = Some(by.clone());
                }
            }
            (JobEvent::Failed { .. }, Failed) | (JobEvent::Cancelled { .. }, Cancelled) => {}
            (JobEvent::Delivered, Completed | Failed | Cancelled)
                if self.delivery == Delivery::Pending =>
            {
                next.delivery = Delivery::Delivered;
                next.delivered_at = Some(now);
                next.settle_queue();
            }
            (JobEvent::DeliveryFailed { retry_at }, Completed | Failed | Cancelled)
                if self.delivery == Delivery::Pending =>
            {
                next.delivery_attempts = self.delivery_attempts.saturating_add(1);
                next.lease = None;
                next.run_after = Some(*retry_at);
            }
            (JobEvent::Undeliverable, Completed | Failed | Cancelled)
                if self.delivery == Delivery::Pending =>
            {
                next.delivery = Delivery::Unreachable;
                next.settle_queue();
            }
            (
                JobEvent::CallStarted
                | JobEvent::ProviderTaskCreated { .. }
                | JobEvent::Generating
                | JobEvent::AttemptFailed { .. }
                | JobEvent::Failed { .. },
                Pending | Completed | Failed | Cancelled,
            )
            | (JobEvent::Succeeded { .. }, Pending | Completed | Failed | Cancelled)
            | (JobEvent::Cancelled { .. }, Completed | Failed)
            | (
                JobEvent::Delivered | JobEvent::DeliveryFailed { .. } | JobEvent::Undeliverable,
                _,
            ) => {
                return Err(illegal());
            }
        }
        if next != *self {
            next.version = self.version.wrapping_add(1);
            next.updated_at = now;
        }
        Ok(JobTransition::new(self.clone(), next, settlement))
    }

    /// A final state: the user is to be told, by the worker that holds the job now (or
    /// the next one, should it die).
    fn finish(&mut self, now: Timestamp) {
        self.finished_at = Some(now);
        self.delivery = Delivery::Pending;
        self.run_after = Some(now);
    }

    /// Nothing left to do: out of the queue.
    fn settle_queue(&mut self) {
        self.run_after = None;
        self.lease = None;
    }
}

impl JobLease {
    /// A lease for `token` until `until`.
    #[must_use]
    pub const fn new(token: LeaseToken, until: Timestamp) -> Self {
        Self { token, until }
    }
}
