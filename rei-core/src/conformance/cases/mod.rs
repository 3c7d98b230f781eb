//! The conformance cases, one module per port (plus the concurrent ones). Each takes a
//! fresh, empty store; the helpers here build what they share.

use futures::future::join_all;
use uuid::Uuid;

use super::{Backend, Store};
use crate::ids::{IdempotencyKey, JobId, PaymentId, ReservationId, UserId};
use crate::job::{
    AssetRef, CancelledBy, Delivery, FailureReason, Job, JobEvent, JobFilter, JobGuard, JobLease,
    JobSpec, JobState, JobWrite, LeaseToken, NewJob, Prompt,
};
use crate::ledger::{EntryKind, NewEntry, NewReservation, RefType, ReservationState, Settlement};
use crate::money::Money;
use crate::payment::{
    NewPayment, Payment, PaymentEvent, PaymentFilter, PaymentProvider, PaymentState,
};
use crate::ports::{ClaimTarget, Missing, Notice, StoreError};
use crate::pricing::{Product, Quote};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord, Language, UserProfile};

mod broadcasts;
mod concurrency;
mod dialogues;
mod jobs;
mod ledger;
mod outbox;
mod payments;
mod prices;
mod promos;
mod referrals;
mod refunds;
mod users;
mod web;

pub use broadcasts::*;
pub use concurrency::*;
pub use dialogues::*;
pub use jobs::*;
pub use ledger::*;
pub use outbox::*;
pub use payments::*;
pub use prices::*;
pub use promos::*;
pub use referrals::*;
pub use refunds::*;
pub use users::*;
pub use web::*;

const T0: i64 = 1_700_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn m(kopecks: i64) -> Money {
    Money::from_kopecks(kopecks).unwrap()
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

async fn user<S: Backend>(s: &S, n: i64) -> UserId {
    let id = UserId::new(n).unwrap();
    let profile = UserProfile {
        id,
        username: Some(format!("user{n}")),
        first_name: Some("Test".into()),
        language: Language::Ru,
    };
    s.register(profile, at(0)).await.unwrap();
    id
}

fn entry(user: UserId, kind: EntryKind, kopecks: i64, k: &str) -> NewEntry {
    NewEntry {
        user_id: user,
        kind,
        amount: m(kopecks),
        ref_type: RefType::Admin,
        ref_id: "admin:1".into(),
        description: "test".into(),
        idempotency_key: key(k),
        created_at: at(1),
    }
}

async fn fund<S: Backend>(s: &S, user: UserId, kopecks: i64) {
    s.post(
        entry(
            user,
            EntryKind::Credit,
            kopecks,
            &format!("fund:{user}:{kopecks}"),
        ),
        None,
    )
    .await
    .unwrap();
}

fn hold(n: u128, user: UserId, kopecks: i64) -> NewReservation {
    NewReservation {
        id: ReservationId::from_uuid(uuid(n)),
        user_id: user,
        amount: m(kopecks),
        job_id: None,
        description: "hold".into(),
        idempotency_key: key(&format!("hold:{n}")),
        created_at: at(2),
    }
}

fn new_job(n: u128, user: UserId, kopecks: i64) -> NewJob {
    new_job_keyed(n, user, kopecks, &format!("confirm:{n}"))
}

fn new_job_keyed(n: u128, user: UserId, kopecks: i64, k: &str) -> NewJob {
    NewJob::new(
        JobId::from_uuid(uuid(n)),
        user,
        JobSpec::image(Prompt::parse("a fox").unwrap()),
        Quote::new(Product::image_generation(), m(kopecks)),
        ReservationId::from_uuid(uuid(1_000_000 + n)),
        key(k),
        at(3),
    )
}

/// User 1, funded with `funds`, and a pending job (job 1) priced `price`.
async fn user_with_job<S: Backend>(s: &S, funds: i64, price: i64) -> (UserId, Job) {
    let u = user(s, 1).await;
    fund(s, u, funds).await;
    let job = s.create_job(new_job(1, u, price), 5).await.unwrap();
    (u, job)
}

/// The provider's result `result`, charged `kopecks`.
fn success(result: &str, kopecks: i64) -> JobEvent {
    JobEvent::Succeeded {
        result: AssetRef::new(result),
        actual_cost: m(kopecks),
        result_url: None,
    }
}

fn hold_id(n: u128) -> ReservationId {
    ReservationId::from_uuid(uuid(n))
}

async fn hold_state<S: Backend>(s: &S, id: ReservationId) -> ReservationState {
    s.reservation(id).await.unwrap().unwrap().state
}

fn audit(user: UserId, action: AuditAction) -> AuditRecord {
    AuditRecord {
        actor: Actor::Cli("tester".into()),
        action,
        target_user: Some(user),
        amount: None,
        reason: "r".into(),
        created_at: at(4),
    }
}

async fn available<S: Backend>(s: &S, user: UserId) -> i64 {
    s.balance(user).await.unwrap().available.kopecks()
}

async fn assert_sound<S: Backend>(s: &S) {
    let report = s.verify().await.unwrap();
    assert!(
        report.is_ok(),
        "ledger invariants broken: {:?}",
        report.violations
    );
}

fn lease_for(job: JobId) -> JobLease {
    JobLease::new(LeaseToken::new(format!("lease-{job}")), at(60_000))
}

/// Claims this job for a worker (at 10 ms, leased for a minute).
async fn claim<S: Backend>(s: &S, job: &Job) -> Result<Job, StoreError> {
    let claimed = s
        .claim_job(ClaimTarget::Job(job.id), &lease_for(job.id), at(10))
        .await?;
    Ok(claimed.expect("the job is claimable"))
}

/// Writes an event as the job's worker (its lease) or, without a lease, as anyone.
async fn transition<S: Backend>(s: &S, job: &Job, event: JobEvent) -> Result<Job, StoreError> {
    let guard = job
        .lease
        .as_ref()
        .map_or(JobGuard::Unleased, |l| JobGuard::Lease(l.token.clone()));
    let write = JobWrite {
        job_id: job.id,
        event,
        guard,
        audit: None,
        at: at(10),
    };
    s.write_job(&write).await.map(|a| a.job)
}

fn new_payment(n: u128, user: UserId, kopecks: i64) -> NewPayment {
    NewPayment {
        id: PaymentId::from_uuid(uuid(n)),
        user_id: user,
        provider: PaymentProvider::Yookassa,
        amount: m(kopecks),
        provider_units: None,
        created_at: at(n as i64),
    }
}

async fn pay<S: Backend>(s: &S, p: &Payment, event: PaymentEvent) -> Result<Payment, StoreError> {
    let t = p.apply(event, at(50)).unwrap();
    s.save_payment_transition(&t).await
}

/// Payment `n` of `kopecks`, paid through the provider, who calls it `provider_id`.
async fn paid_payment<S: Backend>(
    s: &S,
    n: u128,
    user: UserId,
    kopecks: i64,
    provider_id: &str,
) -> Payment {
    let p = s
        .create_payment(new_payment(n, user, kopecks))
        .await
        .unwrap();
    pay(s, &p, succeeded(provider_id, kopecks)).await.unwrap()
}

fn registered(provider_id: &str) -> PaymentEvent {
    PaymentEvent::Registered {
        provider_payment_id: provider_id.into(),
        confirmation_url: None,
    }
}

/// A refund of `kopecks` starts, under the hold `hold`.
fn refund_started(hold: ReservationId, kopecks: i64) -> PaymentEvent {
    PaymentEvent::RefundStarted {
        reservation_id: hold,
        amount: m(kopecks),
    }
}

fn succeeded(provider_id: &str, kopecks: i64) -> PaymentEvent {
    PaymentEvent::ProviderSucceeded {
        provider_payment_id: provider_id.into(),
        amount: m(kopecks),
    }
}
