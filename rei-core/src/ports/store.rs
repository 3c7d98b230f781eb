//! Storage ports: users, ledger, jobs, payments, dialogue state.

use async_trait::async_trait;

use super::BoxError;
use crate::ids::{IdempotencyKey, JobId, PaymentId, ReservationId, UserId};
use crate::job::{
    Applied, ApplyError, Job, JobFilter, JobLease, JobWrite, NewJob, TransitionError,
};
use crate::ledger::{
    Balance, LedgerEntry, NewEntry, NewReservation, Posted, Reservation, Settlement,
    SettlementError, VerifyReport,
};
use crate::money::Money;
use crate::payment::{
    DueFilter, DuePayments, NewPayment, Payment, PaymentFilter, PaymentProvider, PaymentTransition,
};
use crate::time::Timestamp;
use crate::user::{AuditRecord, Email, Language, Stats, User, UserProfile};

/// The object a store did not find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// A user (Telegram id).
    User(UserId),
    /// A job.
    Job(JobId),
    /// A payment (our id).
    Payment(PaymentId),
    /// A reservation.
    Reservation(ReservationId),
    /// A broadcast.
    Broadcast(i64),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(id) => write!(f, "user {id}"),
            Self::Job(id) => write!(f, "job {id}"),
            Self::Payment(id) => write!(f, "payment {id}"),
            Self::Reservation(id) => write!(f, "reservation {id}"),
            Self::Broadcast(id) => write!(f, "broadcast {id}"),
        }
    }
}

/// What a store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The referenced object does not exist.
    #[error("{0} not found")]
    NotFound(Missing),
    /// A debit or hold is larger than the available balance.
    #[error("insufficient funds: needed {needed}, available {available}")]
    InsufficientFunds {
        /// The amount asked for.
        needed: Money,
        /// What the user has.
        available: Money,
    },
    /// The user already has the maximum number of pending + processing jobs.
    #[error("the user already has {limit} active jobs")]
    ActiveJobLimit {
        /// The limit.
        limit: u32,
    },
    /// An idempotency key was reused for a different operation.
    #[error("idempotency key `{key}` was already used for a different operation")]
    IdempotencyConflict {
        /// The key.
        key: String,
    },
    /// A reservation cannot be settled this way.
    #[error(transparent)]
    Settlement(#[from] SettlementError),
    /// The object changed since it was read (the stored `version` differs).
    #[error("{what} {id} was changed concurrently")]
    Conflict {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A worker wrote without the job's live lease (expired or taken over): it must stop.
    #[error("the lease on job {job_id} was lost")]
    LeaseLost {
        /// The job.
        job_id: JobId,
    },
    /// The user cancelled a job whose provider call went out: it is already being made.
    #[error("job {job_id} is already being made")]
    AlreadyBeingMade {
        /// The job.
        job_id: JobId,
    },
    /// The event is not allowed in the stored job's state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The request breaks a store constraint (e.g. a zero amount): a bug in the caller.
    #[error("invalid request to the store: {0}")]
    Invalid(String),
    /// Stored data violates a domain rule (corruption or a newer schema).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The store cannot be reached or failed; the operation may be retried.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
}

impl From<ApplyError> for StoreError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Transition(t) => Self::Transition(t),
            ApplyError::LeaseLost { job_id } => Self::LeaseLost { job_id },
            ApplyError::AlreadyBeingMade { job_id } => Self::AlreadyBeingMade { job_id },
            ApplyError::NotClaimable { job_id } => Self::Conflict {
                what: "job lease",
                id: job_id.to_string(),
            },
        }
    }
}

/// Which job a worker claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimTarget {
    /// The job that has been ready longest.
    Next,
    /// This job (a hint from a queue, a provider callback).
    Job(JobId),
}

/// Users, bans, languages, the audit log and statistics.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Registers a user or refreshes their names; returns the user and whether it is new.
    /// An existing user's language and ban are kept.
    ///
    /// # Errors
    /// MUST return `Unavailable` only for storage failures.
    async fn register(
        &self,
        profile: UserProfile,
        at: Timestamp,
    ) -> Result<(User, bool), StoreError>;

    /// A user by id, `None` if unknown.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;

    /// Bans or unbans a user and appends `audit` in the same transaction. Unbanning also
    /// resets the ban notice. Repeating is harmless (the audit line is still written).
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown user.
    async fn set_banned(
        &self,
        id: UserId,
        banned: bool,
        audit: AuditRecord,
    ) -> Result<User, StoreError>;

    /// Marks the one ban notice as sent; returns true only for the first call after a ban.
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown user.
    async fn mark_ban_notified(&self, id: UserId) -> Result<bool, StoreError>;

    /// Sets the bot language.
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown user.
    async fn set_language(&self, id: UserId, language: Language) -> Result<(), StoreError>;

    /// The newest `limit` audit records, newest first.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    /// Records that a user cannot be reached since `since` (blocked the bot), or, with
    /// `None`, that they can be again.
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown user.
    async fn set_unreachable(&self, id: UserId, since: Option<Timestamp>)
    -> Result<(), StoreError>;

    /// Appends an audit line on its own (for operations whose money moves are written
    /// by other ports: a job retried, a refund asked for).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn append_audit(&self, record: AuditRecord) -> Result<(), StoreError>;

    /// Keeps the e-mail for the user's receipts (replacing an earlier one).
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown user.
    async fn set_receipt_email(&self, id: UserId, email: &Email) -> Result<(), StoreError>;

    /// Counts of users, balances, jobs and payments; activity and failures since
    /// `since`.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn stats(&self, since: Timestamp) -> Result<Stats, StoreError>;
}

/// The append-only ledger and reservations on it.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Posts one entry and, if given, its audit record, atomically, updating the cached
    /// balance. A repeat with the same idempotency key and the same content returns the
    /// first entry with `replayed = true` and posts nothing.
    ///
    /// # Errors
    /// - MUST return `NotFound` for an unknown user.
    /// - MUST return `InsufficientFunds` when a debit exceeds the balance (nothing posted),
    ///   whatever the concurrency.
    /// - MUST return `IdempotencyConflict` when the key was used with different content.
    async fn post(&self, entry: NewEntry, audit: Option<AuditRecord>)
    -> Result<Posted, StoreError>;

    /// [`Self::post`], and the notice that tells the user of this manual adjustment
    /// (credited or debited, with the balance after) into the outbox in the same
    /// transaction. A replay posts and queues nothing.
    ///
    /// # Errors
    /// As [`Self::post`].
    async fn post_adjustment(
        &self,
        entry: NewEntry,
        audit: AuditRecord,
    ) -> Result<Posted, StoreError>;

    /// Holds money: posts the hold's debit entry and the reservation atomically. A repeat
    /// with the same key returns the first reservation and holds nothing more.
    ///
    /// # Errors
    /// `NotFound` (user), `InsufficientFunds`, `IdempotencyConflict` as for [`Self::post`].
    async fn reserve(&self, reservation: NewReservation) -> Result<Reservation, StoreError>;

    /// Settles a reservation exactly once (see [`Reservation::settle`]), posting its
    /// refund entry in the same transaction. Settling again the same way returns the
    /// settled reservation and posts nothing.
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown reservation and `Settlement` when it was
    /// settled differently or the capture exceeds the hold.
    async fn settle(
        &self,
        id: ReservationId,
        how: Settlement,
        at: Timestamp,
    ) -> Result<Reservation, StoreError>;

    /// A reservation by id.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError>;

    /// A user's balance.
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown user.
    async fn balance(&self, user: UserId) -> Result<Balance, StoreError>;

    /// The entry posted under an idempotency key, if any.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn entry_by_key(&self, key: &IdempotencyKey) -> Result<Option<LedgerEntry>, StoreError>;

    /// A user's newest `limit` entries, newest first.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn entries(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, StoreError>;

    /// Checks every invariant across the whole store: cached balances equal sums, no sum
    /// is negative, every reservation's entries match its state, every final job's
    /// reservation is settled, every paid payment has exactly one credit.
    ///
    /// # Errors
    /// `Unavailable` on storage failure (violations are data, not errors).
    async fn verify(&self) -> Result<VerifyReport, StoreError>;
}

/// Generation jobs.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Creates a pending job and its reservation in one transaction. Refuses when the user
    /// already has `max_active` pending + processing jobs, or cannot pay, whatever the
    /// concurrency. A repeat with the same idempotency key and content returns the first
    /// job and holds nothing more.
    ///
    /// # Errors
    /// `NotFound` (user), `ActiveJobLimit`, `InsufficientFunds`, `IdempotencyConflict`.
    async fn create_job(&self, job: NewJob, max_active: u32) -> Result<Job, StoreError>;

    /// A job by id.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Applies `write.event` to the stored job with [`Job::apply`], and writes the new
    /// row, the settlement of the job's own reservation and `write.audit` in one
    /// transaction. A repeat changes nothing (`changed = false`, no audit line).
    ///
    /// # Errors
    /// MUST return `NotFound` for an unknown job, `LeaseLost` when the guard is a lease
    /// that is not the job's live lease (nothing written), `Transition` for an event the
    /// stored state refuses, `Settlement` when the reservation refuses.
    async fn write_job(&self, write: &JobWrite) -> Result<Applied, StoreError>;

    /// Claims a job for a worker in one transaction: the job must be ready
    /// (`run_after <= at`) and not leased by anyone live; the claim moves a pending job
    /// to processing, counts the delivery and stores `lease`. Concurrent claimers never
    /// get the same job. `None` when nothing (or not that job) can be claimed now.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn claim_job(
        &self,
        target: ClaimTarget,
        lease: &JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, StoreError>;

    /// Ids of jobs with work left (queued, leased or awaiting delivery), oldest first.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn queued_jobs(&self, limit: u32) -> Result<Vec<JobId>, StoreError>;

    /// How many jobs have work left.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn queue_depth(&self) -> Result<u64, StoreError>;

    /// Jobs matching a filter, newest first.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError>;

    /// Keeps a job of the v2.0 bot as history (outside the queue; its money is already
    /// in the ledger). Returns false when it was imported before (nothing written).
    ///
    /// # Errors
    /// `NotFound` (user), `Unavailable`.
    async fn import_legacy_job(&self, job: &crate::legacy::LegacyJob) -> Result<bool, StoreError>;

    /// A user's jobs of the v2.0 bot, newest first (their history).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn legacy_jobs(
        &self,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<crate::legacy::LegacyJob>, StoreError>;
}

/// Top-up payments.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// Creates a pending payment; creating the same id again returns the stored one.
    ///
    /// # Errors
    /// `NotFound` (user); `IdempotencyConflict` when the id exists with other content.
    async fn create_payment(&self, payment: NewPayment) -> Result<Payment, StoreError>;

    /// A payment by our id.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError>;

    /// A payment by the provider's id.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn payment_by_provider_id(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
    ) -> Result<Option<Payment>, StoreError>;

    /// Stores a transition when the stored payment still has `before.version`, writing its
    /// effect in the same transaction: `Credit` posts the payment's credit (at most once
    /// per payment, enforced by the store); refund effects capture or release the hold.
    /// A credit, and a refund's capture, also put their notice to the payer (with the
    /// balance after) into the outbox in that transaction.
    ///
    /// # Errors
    /// MUST return `Conflict` when the stored version differs or the provider id is taken
    /// by another payment (nothing written), `NotFound` for an unknown payment.
    async fn save_payment_transition(
        &self,
        transition: &PaymentTransition,
    ) -> Result<Payment, StoreError>;

    /// Payments matching a filter, newest first.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn payments(&self, filter: PaymentFilter) -> Result<Vec<Payment>, StoreError>;

    /// Inserts a payment as it is (an import of older data): no ledger effect is written.
    /// Returns false when a payment with this id exists already (nothing written).
    ///
    /// # Errors
    /// `Conflict` when the provider id belongs to another payment, `NotFound` (user).
    async fn import_payment(&self, payment: &Payment) -> Result<bool, StoreError>;

    /// Payments the poller should look at now, **oldest first**: those of `filter.due`
    /// whose `next_check_at` is unset or not after `filter.at`.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    ///
    /// A row that cannot be read (corrupt, from a newer schema) is listed in
    /// `unreadable` and never stops the others.
    async fn due_payments(&self, filter: DueFilter) -> Result<DuePayments, StoreError>;

    /// Records that the poller asked about a payment: `checks` and when to ask again.
    /// Bookkeeping only: state and `version` are untouched.
    ///
    /// # Errors
    /// `NotFound` for an unknown payment.
    async fn schedule_check(
        &self,
        id: PaymentId,
        checks: u32,
        next_check_at: Timestamp,
    ) -> Result<(), StoreError>;
}

/// A notice waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its id (in writing order).
    pub id: i64,
    /// To whom.
    pub user_id: UserId,
    /// What.
    pub notice: crate::ports::Notice,
    /// Failed sends so far.
    pub attempts: u32,
    /// When it was written (with its money change).
    pub created_at: Timestamp,
}

/// The outbox: notices written in the same transaction as the money change they tell
/// of (a credit, a refund, a manual adjustment), sent afterwards by a dispatcher, so a
/// crash between the commit and the send loses none. Writers are the money ports
/// themselves (`save_payment_transition`, `post_adjustment`).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Takes up to `limit` notices due at `now`, oldest first, and holds them for
    /// `hold_for` (another dispatcher does not take them meanwhile; one that dies lets
    /// them come due again).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn claim_notices(
        &self,
        now: Timestamp,
        hold_for: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The notice was sent: it leaves the outbox.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn notice_sent(&self, id: i64, at: Timestamp) -> Result<(), StoreError>;

    /// Sending failed for now: tried again at `retry_at`, with `attempts` counted.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        retry_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// The notice cannot be sent (the user blocked the bot, or it failed too often): it
    /// leaves the outbox, recorded as given up.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn notice_given_up(&self, id: i64, at: Timestamp) -> Result<(), StoreError>;

    /// Notices still to send.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn outbox_depth(&self) -> Result<u64, StoreError>;
}

/// Named leases: at most one holder at a time across every process on one database
/// (the payment poller runs in one process of a deployment).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `until`. It is taken when
    /// nobody holds it, its holder's time ran out (`until <= now` as stored), or
    /// `holder` holds it already. Returns whether `holder` holds it now.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Gives the lease up, if `holder` holds it (no error otherwise).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}

/// A user's stored dialogue state and its version (bumped by every save).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogueRecord {
    /// The state, as opaque text (JSON by the conversation engine).
    pub state: String,
    /// Compared by the next save.
    pub version: u64,
}

/// The bot's per-user dialogue and draft state.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait DialogueStore: Send + Sync {
    /// The saved state, if any.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn load_dialogue(&self, user: UserId) -> Result<Option<DialogueRecord>, StoreError>;

    /// Replaces the state when the stored version is still `expected` (`None`: nothing
    /// stored yet), and returns the new version.
    ///
    /// # Errors
    /// MUST return `Conflict` when another save came first (nothing written), and
    /// `NotFound` for an unknown user.
    async fn save_dialogue(
        &self,
        user: UserId,
        state: &str,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Removes the state (no error when there is none).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn clear_dialogue(&self, user: UserId) -> Result<(), StoreError>;
}
