//! What happens to a job (events) and the transitions core's state machine makes
//! of them, with the settlement to write.

use super::*;

/// Something that happens to a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEvent {
    /// A worker claims it (unleased write; refused while another lease is live):
    /// pending → processing at 10 %, deliveries + 1.
    Claimed {
        /// The new lease.
        lease: JobLease,
    },
    /// Heartbeat: the lease now ends at `until`.
    LeaseExtended {
        /// The new end.
        until: Timestamp,
    },
    /// The worker hands the job back (shutdown, waiting): claimable again at `run_after`.
    Released {
        /// When.
        run_after: Timestamp,
    },
    /// A billed provider call is about to be sent (recorded first, so a worker that dies
    /// mid-call is noticed by the next one).
    CallStarted,
    /// The provider accepted a task (stored before polling, progress 50 %).
    ProviderTaskCreated {
        /// The provider's id.
        task_id: ProviderTaskId,
    },
    /// The provider is generating (progress 50 %).
    Generating,
    /// A provider call failed in a way worth another try: attempts + 1, handed back
    /// until `retry_at`.
    AttemptFailed {
        /// When to try again.
        retry_at: Timestamp,
    },
    /// The provider produced the result: captured. On a job refunded while the provider
    /// worked (watched), the result is kept and delivered free.
    Succeeded {
        /// Where the result is stored.
        result: AssetRef,
        /// What to charge (≤ the quote).
        actual_cost: Money,
        /// Where the provider serves it, if it does (fetched again there when the file is
        /// not on this host).
        #[serde(default)]
        result_url: Option<String>,
    },
    /// The job ran past its deadline while the provider works on it: failed and
    /// refunded, and watched until `watch_until` for a result that still comes.
    DeadlinePassed {
        /// The deadline, in seconds from the first claim.
        after_secs: u64,
        /// Until when a late result is still looked for.
        watch_until: Timestamp,
    },
    /// Nothing more is looked for (the watch ran out, or the provider failed after all).
    WatchEnded,
    /// The user can be reached again: a result they could not be given is sent again.
    Redeliver,
    /// The user asked for a delivered result again ("Send again" under `/history`).
    SendAgain,
    /// A provider says the task changed (any writer): its worker asks at once.
    Woken,
    /// The provider failed or refused: released.
    Failed {
        /// Why.
        reason: FailureReason,
    },
    /// The user or an admin cancels it. Unleased on a pending job: released at once;
    /// unleased on a processing job: a request the worker settles; leased: the worker
    /// settles it (released).
    Cancelled {
        /// Who.
        by: CancelledBy,
    },
    /// The front end sent the job's status message (any writer: no money moves).
    StatusMessage {
        /// The message to edit from now on.
        message: crate::ports::MessageRef,
    },
    /// The user was told how the job ended.
    Delivered,
    /// Telling the user failed for now: try again at `retry_at`.
    DeliveryFailed {
        /// When.
        retry_at: Timestamp,
    },
    /// The user cannot be reached (blocked the bot): recorded, nothing more to do.
    Undeliverable,
}

impl JobEvent {
    /// A short name for logs and errors.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Claimed { .. } => "claimed",
            Self::LeaseExtended { .. } => "lease_extended",
            Self::Released { .. } => "released",
            Self::CallStarted => "call_started",
            Self::ProviderTaskCreated { .. } => "provider_task_created",
            Self::Generating => "generating",
            Self::AttemptFailed { .. } => "attempt_failed",
            Self::Succeeded { .. } => "succeeded",
            Self::DeadlinePassed { .. } => "deadline_passed",
            Self::WatchEnded => "watch_ended",
            Self::Redeliver => "redeliver",
            Self::SendAgain => "send_again",
            Self::Woken => "woken",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
            Self::StatusMessage { .. } => "status_message",
            Self::Delivered => "delivered",
            Self::DeliveryFailed { .. } => "delivery_failed",
            Self::Undeliverable => "undeliverable",
        }
    }
}

/// An event that is not allowed in the job's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id}: `{event}` is not allowed when {from}")]
pub struct TransitionError {
    /// The job.
    pub job_id: JobId,
    /// Its state.
    pub from: JobState,
    /// The event's name.
    pub event: &'static str,
}

/// The result of applying an event: the job to store and the ledger effect to write with
/// it. Only [`Job::apply`] makes one, and stores run that on their own stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobTransition {
    pub(super) before: Job,
    pub(super) after: Job,
    pub(super) settlement: Option<Settlement>,
}

impl JobTransition {
    pub(crate) const fn new(before: Job, after: Job, settlement: Option<Settlement>) -> Self {
        Self {
            before,
            after,
            settlement,
        }
    }

    /// False when the event was a repeat: nothing to write.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.before != self.after
    }

    /// The job before.
    #[must_use]
    pub const fn before(&self) -> &Job {
        &self.before
    }

    /// The job after.
    #[must_use]
    pub const fn after(&self) -> &Job {
        &self.after
    }

    /// The settlement of the job's own reservation, written in the same transaction.
    #[must_use]
    pub const fn settlement(&self) -> Option<Settlement> {
        self.settlement
    }

    /// The job after, by value.
    #[must_use]
    pub fn into_after(self) -> Job {
        self.after
    }
}
