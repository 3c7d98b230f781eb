//! Row structs of the SQL schema and their conversion into domain types. Only this file
//! knows how domain values are laid out in columns.

use std::str::FromStr;

use rei_core::ids::{IdempotencyKey, JobId, PaymentId, ProviderTaskId, ReservationId, UserId};
use rei_core::job::{AssetRef, CancelledBy, FailureReason, Job, JobLease, JobSpec, LeaseToken};
use rei_core::ledger::{LedgerEntry, Reservation};
use rei_core::money::Money;
use rei_core::payment::{Payment, RefundUnderWay};
use rei_core::ports::StoreError;
use rei_core::pricing::Quote;
use rei_core::time::Timestamp;
use rei_core::user::{AuditRecord, User};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn parse<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

fn money(what: &str, k: i64) -> Result<Money, StoreError> {
    Money::from_kopecks(k).map_err(|e| corrupt(what, e))
}

fn user_id(k: i64) -> Result<UserId, StoreError> {
    UserId::new(k).map_err(|e| corrupt("user id", e))
}

fn key(s: String) -> Result<IdempotencyKey, StoreError> {
    IdempotencyKey::new(s).map_err(|e| corrupt("idempotency key", e))
}

fn version(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|e| corrupt("version", e))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

/// Serialises a value stored as JSON text.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("cannot serialise: {e}")))
}

/// A flag column: PostgreSQL `BOOLEAN`, SQLite `INTEGER` 0/1 (the `Any` driver reports
/// them as different kinds; both read as a flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flag(pub(crate) bool);

impl sqlx::Type<sqlx::Any> for Flag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <bool as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        ty.kind() == sqlx::any::AnyTypeInfoKind::Bool || ty.kind().is_integer()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for Flag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        match <bool as sqlx::Decode<sqlx::Any>>::decode(value.clone()) {
            Ok(flag) => Ok(Self(flag)),
            Err(_) => Ok(Self(<i64 as sqlx::Decode<sqlx::Any>>::decode(value)? != 0)),
        }
    }
}

/// Column list of `user` queries.
macro_rules! user_cols {
    () => {
        "tg_id, username, first_name, language, is_banned, ban_notified, unreachable_since, receipt_email, balance, created_at"
    };
}
pub(crate) use user_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    tg_id: i64,
    username: Option<String>,
    first_name: Option<String>,
    language: String,
    is_banned: Flag,
    ban_notified: Flag,
    unreachable_since: Option<i64>,
    receipt_email: Option<String>,
    balance: i64,
    created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: user_id(r.tg_id)?,
            username: r.username,
            first_name: r.first_name,
            language: parse("language", &r.language)?,
            is_banned: r.is_banned.0,
            ban_notified: r.ban_notified.0,
            unreachable_since: r.unreachable_since.map(Timestamp::from_millis),
            receipt_email: r
                .receipt_email
                .map(|e| rei_core::user::Email::parse(&e).map_err(|e| corrupt("receipt e-mail", e)))
                .transpose()?,
            balance: money("balance", r.balance)?,
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

/// Column list of `entry` queries.
macro_rules! entry_cols {
    () => {
        "id, user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at"
    };
}
pub(crate) use entry_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EntryRow {
    id: i64,
    user_id: i64,
    #[sqlx(rename = "type")]
    kind: String,
    amount: i64,
    ref_type: String,
    ref_id: String,
    description: String,
    idempotency_key: String,
    created_at: i64,
}

impl TryFrom<EntryRow> for LedgerEntry {
    type Error = StoreError;
    fn try_from(r: EntryRow) -> Result<Self, StoreError> {
        Ok(LedgerEntry {
            id: r.id,
            user_id: user_id(r.user_id)?,
            kind: parse("entry type", &r.kind)?,
            amount: money("amount", r.amount)?,
            ref_type: parse("ref type", &r.ref_type)?,
            ref_id: r.ref_id,
            description: r.description,
            idempotency_key: key(r.idempotency_key)?,
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

/// Column list of `reservation` queries.
macro_rules! reservation_cols {
    () => {
        "id, user_id, amount, state, captured, job_id, description, idempotency_key, created_at, settled_at"
    };
}
pub(crate) use reservation_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReservationRow {
    id: String,
    user_id: i64,
    amount: i64,
    state: String,
    captured: Option<i64>,
    job_id: Option<String>,
    description: String,
    idempotency_key: String,
    created_at: i64,
    settled_at: Option<i64>,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = StoreError;
    fn try_from(r: ReservationRow) -> Result<Self, StoreError> {
        Ok(Reservation {
            id: parse::<ReservationId>("reservation id", &r.id)?,
            user_id: user_id(r.user_id)?,
            amount: money("amount", r.amount)?,
            state: parse("reservation state", &r.state)?,
            captured: r.captured.map(|c| money("captured", c)).transpose()?,
            job_id: r
                .job_id
                .as_deref()
                .map(|j| parse::<JobId>("job id", j))
                .transpose()?,
            description: r.description,
            idempotency_key: key(r.idempotency_key)?,
            created_at: Timestamp::from_millis(r.created_at),
            settled_at: r.settled_at.map(Timestamp::from_millis),
        })
    }
}

/// Column list of `job` queries.
macro_rules! job_cols {
    () => {
        "id, user_id, status, progress, params, quote, cost_actual, reservation_id, idempotency_key, attempts, deliveries, provider_calls, \
         provider_task_id, result_url, error_message, cancel_requested, status_message, lease_token, lease_until, run_after, delivery, delivery_attempts, \
         delivered_at, version, created_at, started_at, completed_at, updated_at, provider_result_url, watch_until, redelivery, woken_at"
    };
}
pub(crate) use job_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    id: String,
    user_id: i64,
    status: String,
    progress: i64,
    params: String,
    quote: String,
    cost_actual: Option<i64>,
    reservation_id: String,
    idempotency_key: String,
    attempts: i64,
    deliveries: i64,
    provider_calls: i64,
    provider_task_id: Option<String>,
    result_url: Option<String>,
    error_message: Option<String>,
    cancel_requested: Option<String>,
    status_message: Option<String>,
    lease_token: Option<String>,
    lease_until: Option<i64>,
    run_after: Option<i64>,
    delivery: String,
    delivery_attempts: i64,
    delivered_at: Option<i64>,
    version: i64,
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    updated_at: i64,
    provider_result_url: Option<String>,
    watch_until: Option<i64>,
    redelivery: Flag,
    woken_at: Option<i64>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let progress = u8::try_from(r.progress).map_err(|e| corrupt("progress", e))?;
        Ok(Job {
            id: parse("job id", &r.id)?,
            user_id: user_id(r.user_id)?,
            spec: json::<JobSpec>("job params", &r.params)?,
            state: parse("job status", &r.status)?,
            progress: progress
                .try_into()
                .map_err(|e: String| corrupt("progress", e))?,
            quote: json::<Quote>("job quote", &r.quote)?,
            cost_actual: r.cost_actual.map(|c| money("cost_actual", c)).transpose()?,
            reservation_id: parse("reservation id", &r.reservation_id)?,
            idempotency_key: key(r.idempotency_key)?,
            attempts: count("attempts", r.attempts)?,
            deliveries: count("deliveries", r.deliveries)?,
            provider_calls: count("provider_calls", r.provider_calls)?,
            provider_task_id: r
                .provider_task_id
                .map(ProviderTaskId::new)
                .transpose()
                .map_err(|e| corrupt("provider task id", e))?,
            result: r.result_url.map(AssetRef::new),
            failure: r
                .error_message
                .as_deref()
                .map(|f| json::<FailureReason>("job failure", f))
                .transpose()?,
            cancel_requested: r
                .cancel_requested
                .as_deref()
                .map(|c| json::<CancelledBy>("job cancel request", c))
                .transpose()?,
            lease: match (r.lease_token, r.lease_until) {
                (Some(token), Some(until)) => Some(JobLease::new(
                    LeaseToken::new(token),
                    Timestamp::from_millis(until),
                )),
                (None, None) => None,
                _ => return Err(StoreError::Corrupt("job lease: token without end".into())),
            },
            run_after: r.run_after.map(Timestamp::from_millis),
            status_message: r.status_message.map(rei_core::ports::MessageRef::new),
            result_url: r.provider_result_url,
            watch_until: r.watch_until.map(Timestamp::from_millis),
            redelivery: r.redelivery.0,
            woken_at: r.woken_at.map(Timestamp::from_millis),
            delivery: parse("job delivery", &r.delivery)?,
            delivery_attempts: count("delivery_attempts", r.delivery_attempts)?,
            delivered_at: r.delivered_at.map(Timestamp::from_millis),
            version: version(r.version)?,
            created_at: Timestamp::from_millis(r.created_at),
            started_at: r.started_at.map(Timestamp::from_millis),
            finished_at: r.completed_at.map(Timestamp::from_millis),
            updated_at: Timestamp::from_millis(r.updated_at),
        })
    }
}

/// Column list of `payment` queries.
macro_rules! payment_cols {
    () => {
        "id, provider, provider_payment_id, user_id, amount, provider_units, status, confirmation_url, refund_reservation_id, refund_id, refund_amount, refunded_amount, cancel_reason, version, checks, next_check_at, created_at, paid_at, updated_at"
    };
}
pub(crate) use payment_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PaymentRow {
    id: String,
    provider: String,
    provider_payment_id: Option<String>,
    user_id: i64,
    amount: i64,
    provider_units: Option<i64>,
    status: String,
    confirmation_url: Option<String>,
    refund_reservation_id: Option<String>,
    refund_id: Option<String>,
    refund_amount: Option<i64>,
    refunded_amount: i64,
    cancel_reason: Option<String>,
    version: i64,
    checks: i64,
    next_check_at: Option<i64>,
    created_at: i64,
    paid_at: Option<i64>,
    updated_at: i64,
}

impl PaymentRow {
    /// The id as stored (also when the row cannot be read).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;
    fn try_from(r: PaymentRow) -> Result<Self, StoreError> {
        Ok(Payment {
            id: parse::<PaymentId>("payment id", &r.id)?,
            user_id: user_id(r.user_id)?,
            provider: parse("payment provider", &r.provider)?,
            provider_payment_id: r.provider_payment_id,
            amount: money("amount", r.amount)?,
            provider_units: r
                .provider_units
                .map(|u| u32::try_from(u).map_err(|e| corrupt("provider units", e)))
                .transpose()?,
            state: parse("payment status", &r.status)?,
            confirmation_url: r.confirmation_url,
            refund: match (r.refund_reservation_id.as_deref(), r.refund_amount) {
                (Some(hold), Some(amount)) => Some(RefundUnderWay {
                    hold: parse("reservation id", hold)?,
                    amount: money("refund amount", amount)?,
                    provider_refund_id: r.refund_id,
                }),
                (None, None) => None,
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "payment {}: a refund hold without its amount, or the other way round",
                        r.id
                    )));
                }
            },
            refunded: money("refunded amount", r.refunded_amount)?,
            cancel_reason: r.cancel_reason,
            version: version(r.version)?,
            checks: u32::try_from(r.checks).map_err(|e| corrupt("payment checks", e))?,
            next_check_at: r.next_check_at.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(r.created_at),
            paid_at: r.paid_at.map(Timestamp::from_millis),
            updated_at: Timestamp::from_millis(r.updated_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LegacyJobRow {
    id: i64,
    user_id: i64,
    kind: String,
    status: String,
    params: String,
    result_url: Option<String>,
    error_message: Option<String>,
    cost_estimate: Option<i64>,
    cost_actual: Option<i64>,
    created_at: i64,
    completed_at: Option<i64>,
}

impl TryFrom<LegacyJobRow> for rei_core::legacy::LegacyJob {
    type Error = StoreError;
    fn try_from(r: LegacyJobRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            user_id: user_id(r.user_id)?,
            kind: r.kind,
            status: r.status,
            params: r.params,
            result_url: r.result_url,
            error_message: r.error_message,
            cost_estimate: r
                .cost_estimate
                .map(|c| money("cost_estimate", c))
                .transpose()?,
            cost_actual: r.cost_actual.map(|c| money("cost_actual", c)).transpose()?,
            created_at: Timestamp::from_millis(r.created_at),
            completed_at: r.completed_at.map(Timestamp::from_millis),
        })
    }
}

/// Column list of `audit` queries.
macro_rules! audit_cols {
    () => {
        "actor, action, target_user, amount, reason, created_at"
    };
}
pub(crate) use audit_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    actor: String,
    action: String,
    target_user: Option<i64>,
    amount: Option<i64>,
    reason: String,
    created_at: i64,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;
    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditRecord {
            actor: parse("actor", &r.actor)?,
            action: parse("audit action", &r.action)?,
            target_user: r.target_user.map(user_id).transpose()?,
            amount: r.amount.map(|a| money("amount", a)).transpose()?,
            reason: r.reason,
            created_at: Timestamp::from_millis(r.created_at),
        })
    }
}

/// Per-user totals for verification.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserTotalsRow {
    pub(crate) tg_id: i64,
    pub(crate) balance: i64,
    pub(crate) total: i64,
}

/// Per-reservation totals for verification.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReservationTotalsRow {
    #[sqlx(flatten)]
    pub(crate) reservation: ReservationRow,
    pub(crate) debit_count: i64,
    pub(crate) debit_sum: i64,
    pub(crate) refund_count: i64,
    pub(crate) refund_sum: i64,
}

/// Per-job reservation state for verification.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobTotalsRow {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) reservation_id: String,
    pub(crate) reservation_state: Option<String>,
    pub(crate) cost_actual: Option<i64>,
    pub(crate) captured: Option<i64>,
}

/// Per-payment credits for verification.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PaymentTotalsRow {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) amount: i64,
    pub(crate) credit_count: i64,
    pub(crate) credit_sum: i64,
    pub(crate) refund_reservation_id: Option<String>,
}

/// Converts verification rows into the domain totals.
pub(crate) fn totals(
    entries: i64,
    users: Vec<UserTotalsRow>,
    reservations: Vec<ReservationTotalsRow>,
    jobs: Vec<JobTotalsRow>,
    payments: Vec<PaymentTotalsRow>,
) -> Result<rei_core::ledger::verify::LedgerTotals, StoreError> {
    use rei_core::ledger::verify::{
        JobTotals, LedgerTotals, PaymentTotals, ReservationTotals, UserTotals,
    };
    let count = |n: i64| u32::try_from(n).map_err(|e| corrupt("count", e));
    Ok(LedgerTotals {
        entries: u64::try_from(entries).map_err(|e| corrupt("count", e))?,
        users: users
            .into_iter()
            .map(|u| {
                Ok(UserTotals {
                    user_id: user_id(u.tg_id)?,
                    cached: u.balance,
                    sum: u.total,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        reservations: reservations
            .into_iter()
            .map(|r| {
                Ok(ReservationTotals {
                    reservation: r.reservation.try_into()?,
                    debit_count: count(r.debit_count)?,
                    debit_sum: r.debit_sum,
                    refund_count: count(r.refund_count)?,
                    refund_sum: r.refund_sum,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        jobs: jobs
            .into_iter()
            .map(|j| {
                Ok(JobTotals {
                    job_id: parse("job id", &j.id)?,
                    state: parse("job status", &j.status)?,
                    reservation_id: parse("reservation id", &j.reservation_id)?,
                    reservation_state: j
                        .reservation_state
                        .as_deref()
                        .map(|s| parse("reservation state", s))
                        .transpose()?,
                    cost_actual: j.cost_actual,
                    captured: j.captured,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        payments: payments
            .into_iter()
            .map(|p| {
                Ok(PaymentTotals {
                    payment_id: parse("payment id", &p.id)?,
                    state: parse("payment status", &p.status)?,
                    amount: p.amount,
                    credit_count: count(p.credit_count)?,
                    credit_sum: p.credit_sum,
                    refund_hold: p
                        .refund_reservation_id
                        .as_deref()
                        .map(|r| parse("reservation id", r))
                        .transpose()?,
                })
            })
            .collect::<Result<_, StoreError>>()?,
    })
}

fn count(what: &str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|e| corrupt(what, e))
}
