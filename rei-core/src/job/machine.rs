//! The job state machine: one pure function, [`Job::apply`], that every store runs on
//! its own stored row inside its transaction. Callers send events, never rows, so a
//! caller cannot forge a state, a price or a reservation id; and every worker write
//! carries its lease, so a worker whose lease expired cannot touch the job again.

use serde::{Deserialize, Serialize};

use super::{
    CancelledBy, Delivery, FailureReason, Job, JobEvent, JobLease, JobState, JobTransition,
    LeaseToken, Progress, TransitionError,
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
    /// The user cancels after the provider call went out: it is already being made (and
    /// will be delivered and charged as usual).
    #[error("job {job_id} is already being made")]
    AlreadyBeingMade {
        /// The job.
        job_id: JobId,
    },
}

/// How long a result is still looked for after an admin cancelled a job whose provider
/// call was out.
pub const LATE_WATCH: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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
            JobEvent::Claimed { .. }
                | JobEvent::Cancelled { .. }
                | JobEvent::StatusMessage { .. }
                | JobEvent::Redeliver
                | JobEvent::SendAgain
                | JobEvent::Woken
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
            // Refunded while the create was out: its task is still worth watching.
            (JobEvent::ProviderTaskCreated { task_id }, Failed | Cancelled)
                if self.watch_until.is_some() =>
            {
                match &self.provider_task_id {
                    Some(existing) if existing == task_id => {}
                    Some(_) => return Err(illegal()),
                    None => next.provider_task_id = Some(task_id.clone()),
                }
            }
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
                    result_url,
                },
                Processing,
            ) => {
                if *actual_cost > self.quote.amount {
                    return Err(illegal());
                }
                next.result = Some(result.clone());
                next.result_url.clone_from(result_url);
                if matches!(self.cancel_requested, Some(CancelledBy::Admin(_))) {
                    // An admin's cancel (asked for by an older version, settled only
                    // now): released, and the result delivered free.
                    next.state = Cancelled;
                    settlement = Some(Settlement::Release);
                } else {
                    // A user's cancel asked for after the call went out does not stop
                    // it: delivered and charged as usual.
                    next.state = Completed;
                    next.progress = Progress::Done;
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
                    ..
                },
                Completed,
            ) if self.result.as_ref() == Some(result) && self.cost_actual == Some(*actual_cost) => {
            }
            // Refunded while the provider worked, and the result came after all: kept
            // and delivered free (no money moves).
            (
                JobEvent::Succeeded {
                    result, result_url, ..
                },
                Failed | Cancelled,
            ) if self.watch_until.is_some() && self.result.is_none() => {
                next.result = Some(result.clone());
                next.result_url.clone_from(result_url);
                next.watch_until = None;
                next.progress = Progress::Done;
                next.delivery = Delivery::Pending;
                next.delivery_attempts = 0;
                next.delivered_at = None;
                next.run_after = Some(now);
            }
            (JobEvent::Succeeded { result, .. }, Failed | Cancelled)
                if self.result.as_ref() == Some(result) => {}
            (
                JobEvent::DeadlinePassed {
                    after_secs,
                    watch_until,
                },
                Processing,
            ) => {
                next.state = Failed;
                next.failure = Some(FailureReason::DeadlineExceeded {
                    after_secs: *after_secs,
                });
                next.watch_until = Some(*watch_until);
                settlement = Some(Settlement::Release);
                next.finish(now);
            }
            (JobEvent::DeadlinePassed { .. }, Failed) => {}
            (JobEvent::WatchEnded, Completed | Failed | Cancelled) => {
                next.watch_until = None;
                if self.delivery != Delivery::Pending {
                    next.settle_queue();
                }
            }
            (JobEvent::Redeliver, Completed | Failed | Cancelled)
                if self.delivery == Delivery::Unreachable && self.result.is_some() =>
            {
                next.delivery = Delivery::Pending;
                next.delivery_attempts = 0;
                next.redelivery = true;
                next.run_after = Some(now);
            }
            (JobEvent::Redeliver, _) => {}
            // Only a result that was given: one being sent (or not yet) is on its way.
            (JobEvent::SendAgain, Completed)
                if self.delivery == Delivery::Delivered && self.result.is_some() =>
            {
                next.delivery = Delivery::Pending;
                next.delivery_attempts = 0;
                next.redelivery = true;
                next.run_after = Some(now);
            }
            (JobEvent::SendAgain, _) => {}
            (JobEvent::Woken, Processing) => next.woken_at = Some(now),
            (JobEvent::Woken, _) => {}
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
                // Who asked decides; an older version may have stored a request that
                // the worker now settles.
                let by = self.cancel_requested.clone().unwrap_or_else(|| by.clone());
                match by {
                    // After the call went out, a user's cancel cannot stop it.
                    CancelledBy::User if self.provider_calls > 0 => {
                        return Err(ApplyError::AlreadyBeingMade { job_id: self.id });
                    }
                    CancelledBy::User => {
                        next.state = Cancelled;
                        next.cancel_requested = Some(CancelledBy::User);
                        settlement = Some(Settlement::Release);
                        next.finish(now);
                        next.delivery = Delivery::Skipped;
                        next.run_after = None;
                    }
                    // An admin's cancel releases at once; a result of a call that is
                    // out is still looked for, and delivered free.
                    admin @ CancelledBy::Admin(_) => {
                        next.state = Cancelled;
                        next.cancel_requested = Some(admin);
                        settlement = Some(Settlement::Release);
                        next.finish(now);
                        if self.provider_calls > self.attempts || self.provider_task_id.is_some() {
                            next.watch_until = Some(now.plus(LATE_WATCH));
                        }
                    }
                }
            }
            (JobEvent::Failed { .. }, Failed) | (JobEvent::Cancelled { .. }, Cancelled) => {}
            (JobEvent::Delivered, Completed | Failed | Cancelled)
                if self.delivery == Delivery::Pending =>
            {
                next.delivery = Delivery::Delivered;
                next.delivered_at = Some(now);
                next.redelivery = false;
                next.settle_queue_unless_watched(now);
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
                next.settle_queue_unless_watched(now);
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
            | (JobEvent::DeadlinePassed { .. }, Pending | Completed | Cancelled)
            | (JobEvent::WatchEnded, Pending | Processing)
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

    /// Out of the queue, unless a late result is still looked for: then the worker that
    /// holds it goes on watching.
    fn settle_queue_unless_watched(&mut self, now: Timestamp) {
        if self.watch_until.is_some() {
            self.run_after = Some(now);
        } else {
            self.settle_queue();
        }
    }
}

impl JobLease {
    /// A lease for `token` until `until`.
    #[must_use]
    pub const fn new(token: LeaseToken, until: Timestamp) -> Self {
        Self { token, until }
    }
}
