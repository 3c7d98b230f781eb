//! The conformance cases. Each takes a fresh, empty store.

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
        JobSpec::ImageGeneration {
            prompt: Prompt::parse("a fox").unwrap(),
        },
        Quote::new(Product::ImageGeneration, m(kopecks)),
        ReservationId::from_uuid(uuid(1_000_000 + n)),
        key(k),
        at(3),
    )
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

// ---- users ----

pub async fn register_creates_then_refreshes<S: Backend>(s: Store<S>) {
    let id = UserId::new(7).unwrap();
    let p = UserProfile {
        id,
        username: Some("a".into()),
        first_name: None,
        language: Language::En,
    };
    let (u, created) = s.register(p.clone(), at(0)).await.unwrap();
    assert!(created);
    assert_eq!(
        (u.language, u.balance, u.is_banned),
        (Language::En, Money::ZERO, false)
    );
    s.set_language(id, Language::Ru).await.unwrap();
    let again = UserProfile {
        username: Some("b".into()),
        language: Language::En,
        ..p
    };
    let (u2, created2) = s.register(again, at(5)).await.unwrap();
    assert!(!created2);
    assert_eq!(u2.username.as_deref(), Some("b"));
    assert_eq!(
        u2.language,
        Language::Ru,
        "re-registration keeps the chosen language"
    );
    assert_eq!(u2.created_at, at(0));
}

pub async fn ban_is_audited_and_noticed_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    assert!(
        !s.mark_ban_notified(u).await.unwrap(),
        "no notice for users who are not banned"
    );
    let banned = s
        .set_banned(u, true, audit(u, AuditAction::Ban))
        .await
        .unwrap();
    assert!(banned.is_banned);
    assert!(s.mark_ban_notified(u).await.unwrap());
    assert!(!s.mark_ban_notified(u).await.unwrap());
    s.set_banned(u, false, audit(u, AuditAction::Unban))
        .await
        .unwrap();
    s.set_banned(u, true, audit(u, AuditAction::Ban))
        .await
        .unwrap();
    assert!(
        s.mark_ban_notified(u).await.unwrap(),
        "a new ban gets a new notice"
    );
    let log = s.audit_log(10).await.unwrap();
    assert_eq!(
        log.iter().map(|a| a.action).collect::<Vec<_>>(),
        vec![AuditAction::Ban, AuditAction::Unban, AuditAction::Ban]
    );
    assert_eq!(log[0].actor, Actor::Cli("tester".into()));
}

pub async fn language_is_kept<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    s.set_language(u, Language::En).await.unwrap();
    assert_eq!(s.user(u).await.unwrap().unwrap().language, Language::En);
}

pub async fn unknown_users_are_not_found<S: Backend>(s: Store<S>) {
    let ghost = UserId::new(404).unwrap();
    assert!(s.user(ghost).await.unwrap().is_none());
    assert!(matches!(
        s.set_language(ghost, Language::En).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    assert!(matches!(
        s.set_banned(ghost, true, audit(ghost, AuditAction::Ban))
            .await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    assert!(matches!(
        s.balance(ghost).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    let r = s
        .post(entry(ghost, EntryKind::Credit, 100, "k"), None)
        .await;
    assert!(
        matches!(r, Err(StoreError::NotFound(Missing::User(_)))),
        "{r:?}"
    );
    assert!(
        s.audit_log(10).await.unwrap().is_empty(),
        "a refused ban writes no audit"
    );
}

// ---- ledger ----

pub async fn credit_updates_balance_and_history<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let posted = s
        .post(entry(u, EntryKind::Credit, 1_250, "c1"), None)
        .await
        .unwrap();
    assert!(!posted.replayed);
    assert_eq!(posted.balance, m(1_250));
    assert_eq!(
        (
            posted.entry.kind,
            posted.entry.amount,
            posted.entry.ref_type
        ),
        (EntryKind::Credit, m(1_250), RefType::Admin)
    );
    let d = s
        .post(entry(u, EntryKind::Debit, 250, "d1"), None)
        .await
        .unwrap();
    assert_eq!(d.balance, m(1_000));
    assert_eq!(available(&*s, u).await, 1_000);
    assert_eq!(s.user(u).await.unwrap().unwrap().balance, m(1_000));
    let history = s.entries(u, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].idempotency_key.as_str(), "d1");
    assert!(history[0].id > history[1].id);
    assert_sound(&*s).await;
}

pub async fn post_is_idempotent<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let first = s
        .post(entry(u, EntryKind::Credit, 500, "same"), None)
        .await
        .unwrap();
    let again = s
        .post(entry(u, EntryKind::Credit, 500, "same"), None)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.entry, first.entry);
    assert_eq!(available(&*s, u).await, 500);
    assert_eq!(s.entries(u, 10).await.unwrap().len(), 1);
}

pub async fn entries_are_found_by_their_key<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let posted = s
        .post(entry(u, EntryKind::Credit, 500, "found"), None)
        .await
        .unwrap();
    assert_eq!(
        s.entry_by_key(&key("found")).await.unwrap(),
        Some(posted.entry)
    );
    assert_eq!(s.entry_by_key(&key("missing")).await.unwrap(), None);
}

pub async fn key_reuse_with_other_content_conflicts<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    s.post(entry(u, EntryKind::Credit, 500, "k"), None)
        .await
        .unwrap();
    let r = s.post(entry(u, EntryKind::Credit, 501, "k"), None).await;
    assert!(
        matches!(r, Err(StoreError::IdempotencyConflict { .. })),
        "{r:?}"
    );
    assert_eq!(available(&*s, u).await, 500);
}

pub async fn debit_beyond_balance_posts_nothing<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100).await;
    let r = s.post(entry(u, EntryKind::Debit, 101, "d"), None).await;
    match r {
        Err(StoreError::InsufficientFunds { needed, available }) => {
            assert_eq!((needed, available), (m(101), m(100)))
        }
        other => panic!("expected InsufficientFunds, got {other:?}"),
    }
    assert_eq!(available(&*s, u).await, 100);
    assert_eq!(s.entries(u, 10).await.unwrap().len(), 1);
    // The same key may be used once the user can pay: a refusal consumed nothing.
    fund(&*s, u, 1).await;
    s.post(entry(u, EntryKind::Debit, 101, "d"), None)
        .await
        .unwrap();
    assert_eq!(available(&*s, u).await, 0);
    assert_sound(&*s).await;
}

pub async fn zero_amounts_are_invalid<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let mut e = entry(u, EntryKind::Credit, 1, "z");
    e.amount = Money::ZERO;
    assert!(matches!(s.post(e, None).await, Err(StoreError::Invalid(_))));
    assert!(s.entries(u, 10).await.unwrap().is_empty());
}

pub async fn audit_is_written_once_with_its_post<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let a = AuditRecord {
        amount: Some(m(300)),
        ..audit(u, AuditAction::BalanceAdd)
    };
    s.post(entry(u, EntryKind::Credit, 300, "adm"), Some(a.clone()))
        .await
        .unwrap();
    s.post(entry(u, EntryKind::Credit, 300, "adm"), Some(a.clone()))
        .await
        .unwrap();
    let refused = AuditRecord {
        amount: Some(m(900)),
        ..audit(u, AuditAction::BalanceSub)
    };
    assert!(
        s.post(entry(u, EntryKind::Debit, 900, "sub"), Some(refused))
            .await
            .is_err()
    );
    let log = s.audit_log(10).await.unwrap();
    assert_eq!(
        log,
        vec![a],
        "one audit line per effective adjustment, none for refusals"
    );
}

pub async fn reserve_holds_and_is_idempotent<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let r = s.reserve(hold(1, u, 300)).await.unwrap();
    assert_eq!((r.state, r.amount), (ReservationState::Held, m(300)));
    assert_eq!(available(&*s, u).await, 700);
    assert_eq!(s.balance(u).await.unwrap().held, m(300));
    let again = s.reserve(hold(1, u, 300)).await.unwrap();
    assert_eq!(again, r);
    // A replay under another id but the same key still returns the first hold.
    let mut other_id = hold(1, u, 300);
    other_id.id = ReservationId::from_uuid(uuid(99));
    assert_eq!(s.reserve(other_id).await.unwrap().id, r.id);
    assert_eq!(available(&*s, u).await, 700);
    let mut conflicting = hold(1, u, 301);
    conflicting.id = ReservationId::from_uuid(uuid(98));
    assert!(matches!(
        s.reserve(conflicting).await,
        Err(StoreError::IdempotencyConflict { .. })
    ));
    assert_eq!(s.reservation(r.id).await.unwrap(), Some(r));
    assert_sound(&*s).await;
}

pub async fn reserve_beyond_balance_holds_nothing<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100).await;
    assert!(matches!(
        s.reserve(hold(1, u, 101)).await,
        Err(StoreError::InsufficientFunds { .. })
    ));
    assert_eq!(available(&*s, u).await, 100);
    assert!(
        s.reservation(ReservationId::from_uuid(uuid(1)))
            .await
            .unwrap()
            .is_none()
    );
    assert_sound(&*s).await;
}

pub async fn partial_capture_refunds_difference<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let r = s.reserve(hold(1, u, 400)).await.unwrap();
    let settled = s
        .settle(r.id, Settlement::Capture { actual: m(250) }, at(20))
        .await
        .unwrap();
    assert_eq!(
        (settled.state, settled.captured, settled.settled_at),
        (ReservationState::Captured, Some(m(250)), Some(at(20)))
    );
    assert_eq!(available(&*s, u).await, 750);
    assert_eq!(s.balance(u).await.unwrap().held, Money::ZERO);
    let full = s.reserve(hold(2, u, 100)).await.unwrap();
    s.settle(full.id, Settlement::Capture { actual: m(100) }, at(21))
        .await
        .unwrap();
    assert_eq!(available(&*s, u).await, 650);
    assert_sound(&*s).await;
}

pub async fn release_refunds_everything<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let r = s.reserve(hold(1, u, 400)).await.unwrap();
    let released = s.settle(r.id, Settlement::Release, at(20)).await.unwrap();
    assert_eq!(released.state, ReservationState::Released);
    assert_eq!(available(&*s, u).await, 1_000);
    let history = s.entries(u, 10).await.unwrap();
    assert_eq!(
        (history[0].kind, history[0].amount, history[0].ref_type),
        (EntryKind::Refund, m(400), RefType::Reservation)
    );
    assert_sound(&*s).await;
}

pub async fn settlement_happens_exactly_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let r = s.reserve(hold(1, u, 400)).await.unwrap();
    assert!(matches!(
        s.settle(r.id, Settlement::Capture { actual: m(401) }, at(20))
            .await,
        Err(StoreError::Settlement(
            crate::ledger::SettlementError::CaptureExceedsHold { .. }
        ))
    ));
    let first = s.settle(r.id, Settlement::Release, at(20)).await.unwrap();
    let again = s.settle(r.id, Settlement::Release, at(30)).await.unwrap();
    assert_eq!(
        again, first,
        "a repeated release returns the first settlement"
    );
    assert!(matches!(
        s.settle(r.id, Settlement::Capture { actual: m(400) }, at(20))
            .await,
        Err(StoreError::Settlement(
            crate::ledger::SettlementError::AlreadySettled { .. }
        ))
    ));
    assert_eq!(available(&*s, u).await, 1_000);
    assert_eq!(s.entries(u, 10).await.unwrap().len(), 3);
    assert_sound(&*s).await;
}

pub async fn unknown_reservation_is_not_found<S: Backend>(s: Store<S>) {
    let r = s
        .settle(
            ReservationId::from_uuid(uuid(5)),
            Settlement::Release,
            at(1),
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::NotFound(Missing::Reservation(_)))),
        "{r:?}"
    );
}

pub async fn entries_are_newest_first_and_limited<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let other = user(&*s, 2).await;
    for i in 0..5 {
        s.post(entry(u, EntryKind::Credit, 100 + i, &format!("e{i}")), None)
            .await
            .unwrap();
    }
    fund(&*s, other, 1).await;
    let page = s.entries(u, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.amount.kopecks()).collect::<Vec<_>>(),
        vec![104, 103, 102]
    );
    assert!(page.iter().all(|e| e.user_id == u));
}

// ---- jobs ----

pub async fn job_and_reservation_are_created_together<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let nj = new_job(1, u, 5_000);
    let job = s.create_job(nj.clone(), 3).await.unwrap();
    assert_eq!(job, nj.pending());
    assert_eq!(s.job(job.id).await.unwrap(), Some(job.clone()));
    let r = s
        .reservation(job.reservation_id)
        .await
        .unwrap()
        .expect("the job's reservation exists");
    assert_eq!(
        (r.amount, r.state, r.job_id),
        (m(5_000), ReservationState::Held, Some(job.id))
    );
    assert_eq!(available(&*s, u).await, 5_000);
    assert_sound(&*s).await;
}

pub async fn job_creation_is_idempotent<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let first = s.create_job(new_job(1, u, 5_000), 3).await.unwrap();
    let replay = new_job_keyed(2, u, 5_000, "confirm:1");
    assert_eq!(
        s.create_job(replay, 3).await.unwrap(),
        first,
        "same key: the first job, no second hold"
    );
    assert_eq!(available(&*s, u).await, 5_000);
    let conflicting = new_job_keyed(3, u, 4_000, "confirm:1");
    assert!(matches!(
        s.create_job(conflicting, 3).await,
        Err(StoreError::IdempotencyConflict { .. })
    ));
    assert_eq!(s.jobs(JobFilter::default()).await.unwrap().len(), 1);
}

pub async fn job_without_funds_writes_nothing<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 4_999).await;
    let r = s.create_job(new_job(1, u, 5_000), 3).await;
    assert!(
        matches!(r, Err(StoreError::InsufficientFunds { .. })),
        "{r:?}"
    );
    assert!(s.job(JobId::from_uuid(uuid(1))).await.unwrap().is_none());
    assert!(
        s.reservation(ReservationId::from_uuid(uuid(1_000_001)))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(available(&*s, u).await, 4_999);
    let ghost = new_job(2, UserId::new(999).unwrap(), 1);
    assert!(matches!(
        s.create_job(ghost, 3).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    assert_sound(&*s).await;
}

pub async fn active_job_cap_is_enforced<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let a = s.create_job(new_job(1, u, 100), 2).await.unwrap();
    s.create_job(new_job(2, u, 100), 2).await.unwrap();
    assert!(matches!(
        s.create_job(new_job(3, u, 100), 2).await,
        Err(StoreError::ActiveJobLimit { limit: 2 })
    ));
    assert_eq!(available(&*s, u).await, 9_800);
    let processing = claim(&*s, &a).await.unwrap();
    assert!(
        matches!(
            s.create_job(new_job(3, u, 100), 2).await,
            Err(StoreError::ActiveJobLimit { .. })
        ),
        "processing counts"
    );
    transition(
        &*s,
        &processing,
        JobEvent::Failed {
            reason: FailureReason::ProviderFailed { detail: "x".into() },
        },
    )
    .await
    .unwrap();
    s.create_job(new_job(3, u, 100), 2).await.unwrap();
    assert_sound(&*s).await;
}

pub async fn stale_lease_is_refused<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let job = s.create_job(new_job(1, u, 100), 3).await.unwrap();
    let claimed = claim(&*s, &job).await.unwrap();
    let mut forged = claimed.clone();
    forged.lease = Some(JobLease::new(LeaseToken::new("not-the-lease"), at(60_000)));
    let stale = transition(
        &*s,
        &forged,
        JobEvent::Succeeded {
            result: AssetRef::new("results/x.png"),
            actual_cost: m(100),
            result_url: None,
        },
    )
    .await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost { job_id }) if job_id == job.id),
        "{stale:?}"
    );
    let unleased = transition(&*s, &job, JobEvent::Generating).await;
    assert!(
        matches!(unleased, Err(StoreError::LeaseLost { .. })),
        "a worker event without a lease: {unleased:?}"
    );
    let now = s.job(job.id).await.unwrap().unwrap();
    assert_eq!(now, claimed, "a refused write changes nothing");
    assert_eq!(available(&*s, u).await, 900, "and settles nothing");
    assert_sound(&*s).await;
}

pub async fn an_expired_lease_passes_to_the_next_worker<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let job = s.create_job(new_job(1, u, 100), 3).await.unwrap();
    let first = claim(&*s, &job).await.unwrap();
    assert_eq!((first.state, first.deliveries), (JobState::Processing, 1));
    let second_lease = JobLease::new(LeaseToken::new("second"), at(120_000));
    assert_eq!(
        s.claim_job(ClaimTarget::Next, &second_lease, at(59_999))
            .await
            .unwrap(),
        None,
        "a live lease keeps the job"
    );
    assert_eq!(
        s.claim_job(ClaimTarget::Job(job.id), &second_lease, at(59_999))
            .await
            .unwrap(),
        None
    );
    let second = s
        .claim_job(ClaimTarget::Next, &second_lease, at(60_000))
        .await
        .unwrap()
        .expect("an expired lease frees the job");
    assert_eq!(second.deliveries, 2);
    assert_eq!(second.lease, Some(second_lease));
    let late = JobWrite {
        job_id: job.id,
        event: JobEvent::CallStarted,
        guard: JobGuard::Lease(first.lease.clone().unwrap().token),
        audit: None,
        at: at(60_001),
    };
    assert!(matches!(
        s.write_job(&late).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let mine = JobWrite {
        guard: JobGuard::Lease(LeaseToken::new("second")),
        ..late
    };
    let applied = s.write_job(&mine).await.unwrap();
    assert_eq!((applied.changed, applied.job.provider_calls), (true, 1));
    assert_sound(&*s).await;
}

pub async fn the_queue_hands_out_ready_jobs_oldest_first<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let a = s.create_job(new_job(1, u, 100), 5).await.unwrap();
    let b = s.create_job(new_job(2, u, 100), 5).await.unwrap();
    assert_eq!(
        a.run_after,
        Some(at(3)),
        "queued with the job, in one write"
    );
    assert_eq!(s.queue_depth().await.unwrap(), 2);
    assert_eq!(s.queued_jobs(10).await.unwrap().len(), 2);
    let lease = |n: &str| JobLease::new(LeaseToken::new(n), at(60_000));
    let first = s
        .claim_job(ClaimTarget::Next, &lease("w1"), at(10))
        .await
        .unwrap()
        .unwrap();
    let second = s
        .claim_job(ClaimTarget::Next, &lease("w2"), at(10))
        .await
        .unwrap()
        .unwrap();
    let mut got = vec![first.id, second.id];
    got.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(got, want, "two claims, two different jobs");
    assert_eq!(
        s.claim_job(ClaimTarget::Next, &lease("w3"), at(10))
            .await
            .unwrap(),
        None
    );
    // Handed back for later: not ready before its time.
    let handed = transition(
        &*s,
        &first,
        JobEvent::Released {
            run_after: at(5_000),
        },
    )
    .await
    .unwrap();
    assert_eq!((handed.lease, handed.run_after), (None, Some(at(5_000))));
    assert_eq!(
        s.claim_job(ClaimTarget::Next, &lease("w3"), at(4_999))
            .await
            .unwrap(),
        None
    );
    assert!(
        s.claim_job(ClaimTarget::Next, &lease("w3"), at(5_000))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.queue_depth().await.unwrap(), 2);
}

pub async fn finished_jobs_stay_queued_until_delivered<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let job = s.create_job(new_job(1, u, 100), 5).await.unwrap();
    let job = claim(&*s, &job).await.unwrap();
    let done = transition(
        &*s,
        &job,
        JobEvent::Succeeded {
            result: AssetRef::new("results/x.png"),
            actual_cost: m(100),
            result_url: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(done.delivery, crate::job::Delivery::Pending);
    assert_eq!(
        s.queue_depth().await.unwrap(),
        1,
        "the result is still to deliver"
    );
    let retry = transition(
        &*s,
        &done,
        JobEvent::DeliveryFailed {
            retry_at: at(1_000),
        },
    )
    .await
    .unwrap();
    assert_eq!((retry.delivery_attempts, retry.lease.is_none()), (1, true));
    let again = s
        .claim_job(ClaimTarget::Next, &lease_for(job.id), at(1_000))
        .await
        .unwrap()
        .expect("an undelivered result is claimed again");
    assert_eq!(again.state, JobState::Completed);
    let delivered = transition(&*s, &again, JobEvent::Delivered).await.unwrap();
    assert_eq!(delivered.delivered_at, Some(at(10)));
    assert_eq!((delivered.run_after, delivered.lease), (None, None));
    assert_eq!(s.queue_depth().await.unwrap(), 0);
    assert_eq!(
        s.reservation(job.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Captured,
        "charged once"
    );
    assert_eq!(available(&*s, u).await, 900);
    assert_sound(&*s).await;
}

/// An admin's cancel of a running job releases its hold at once (audited once); the
/// result of a call that was out still comes, is kept and is delivered free: no second
/// settlement.
pub async fn a_running_job_is_cancelled_by_its_worker_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let job = s.create_job(new_job(1, u, 100), 5).await.unwrap();
    let running = claim(&*s, &job).await.unwrap();
    let calling = transition(&*s, &running, JobEvent::CallStarted)
        .await
        .unwrap();
    let cancel = JobWrite {
        job_id: job.id,
        event: JobEvent::Cancelled {
            by: CancelledBy::Admin("cli:root".into()),
        },
        guard: JobGuard::Unleased,
        audit: Some(audit(u, AuditAction::JobCancel)),
        at: at(20),
    };
    let cancelled = s.write_job(&cancel).await.unwrap();
    assert_eq!(cancelled.job.state, JobState::Cancelled);
    assert!(
        cancelled.job.watch_until.is_some(),
        "the call is out: watched"
    );
    assert_eq!(available(&*s, u).await, 1_000, "released at once");
    let again = s.write_job(&cancel).await.unwrap();
    assert!(!again.changed, "cancelling twice changes nothing");
    assert_eq!(s.audit_log(10).await.unwrap().len(), 1, "audited once");
    // The worker's result arrives: kept and delivered free, released once.
    let late = transition(
        &*s,
        &calling,
        JobEvent::Succeeded {
            result: AssetRef::new("results/x.png"),
            actual_cost: m(100),
            result_url: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (late.state, late.result.clone(), late.cost_actual),
        (
            JobState::Cancelled,
            Some(AssetRef::new("results/x.png")),
            None
        )
    );
    assert_eq!(late.delivery, Delivery::Pending);
    assert_eq!(available(&*s, u).await, 1_000);
    assert_eq!(running.reservation_id, late.reservation_id);
    assert_eq!(
        s.reservation(late.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Released
    );
    assert_sound(&*s).await;
}

pub async fn a_cost_above_the_stored_quote_is_refused<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let job = s.create_job(new_job(1, u, 100), 5).await.unwrap();
    let running = claim(&*s, &job).await.unwrap();
    // The caller's copy says the quote is larger: the store decides on its own row.
    let mut forged = running.clone();
    forged.quote.amount = m(1_000);
    let r = transition(
        &*s,
        &forged,
        JobEvent::Succeeded {
            result: AssetRef::new("results/x.png"),
            actual_cost: m(500),
            result_url: None,
        },
    )
    .await;
    assert!(matches!(r, Err(StoreError::Transition(_))), "{r:?}");
    assert_eq!(available(&*s, u).await, 900);
    assert_eq!(s.job(job.id).await.unwrap().unwrap(), running);
    assert_sound(&*s).await;
}

pub async fn job_settlements_follow_transitions<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    // completed at a lower cost: the difference comes back
    let a = s.create_job(new_job(1, u, 300), 3).await.unwrap();
    let a = claim(&*s, &a).await.unwrap();
    let a = transition(
        &*s,
        &a,
        JobEvent::ProviderTaskCreated {
            task_id: crate::ids::ProviderTaskId::new("t-1").unwrap(),
        },
    )
    .await
    .unwrap();
    let done = transition(
        &*s,
        &a,
        JobEvent::Succeeded {
            result: AssetRef::new("results/a.png"),
            actual_cost: m(200),
            result_url: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        done.provider_task_id
            .as_ref()
            .map(crate::ids::ProviderTaskId::as_str),
        Some("t-1")
    );
    assert_eq!(s.job(done.id).await.unwrap().unwrap(), done);
    assert_eq!(
        s.reservation(done.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Captured
    );
    assert_eq!(available(&*s, u).await, 800);
    // failed: released
    let b = s.create_job(new_job(2, u, 300), 3).await.unwrap();
    let b = claim(&*s, &b).await.unwrap();
    let failed = transition(
        &*s,
        &b,
        JobEvent::Failed {
            reason: FailureReason::ContentRefused {
                detail: "nope".into(),
            },
        },
    )
    .await
    .unwrap();
    assert_eq!(
        failed.failure,
        Some(FailureReason::ContentRefused {
            detail: "nope".into()
        })
    );
    assert_eq!(
        s.reservation(failed.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Released
    );
    // cancelled while pending: released
    let c = s.create_job(new_job(3, u, 300), 3).await.unwrap();
    transition(
        &*s,
        &c,
        JobEvent::Cancelled {
            by: CancelledBy::Admin("cli:root".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(available(&*s, u).await, 800);
    assert_sound(&*s).await;
}

pub async fn jobs_are_filtered_newest_first<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let v = user(&*s, 2).await;
    fund(&*s, u, 1_000).await;
    fund(&*s, v, 1_000).await;
    let a = s.create_job(new_job(1, u, 10), 5).await.unwrap();
    let b = s.create_job(new_job(2, v, 10), 5).await.unwrap();
    let c = s.create_job(new_job(3, u, 10), 5).await.unwrap();
    claim(&*s, &a).await.unwrap();
    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.jobs(JobFilter::default()).await.unwrap()),
        vec![c.id, b.id, a.id]
    );
    assert_eq!(
        ids(s
            .jobs(JobFilter {
                user_id: Some(u),
                ..JobFilter::default()
            })
            .await
            .unwrap()),
        vec![c.id, a.id]
    );
    assert_eq!(
        ids(s
            .jobs(JobFilter {
                state: Some(JobState::Pending),
                ..JobFilter::default()
            })
            .await
            .unwrap()),
        vec![c.id, b.id]
    );
    assert_eq!(
        ids(s
            .jobs(JobFilter {
                limit: 1,
                ..JobFilter::default()
            })
            .await
            .unwrap()),
        vec![c.id]
    );
}

// ---- payments ----

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

fn succeeded(provider_id: &str, kopecks: i64) -> PaymentEvent {
    PaymentEvent::ProviderSucceeded {
        provider_payment_id: provider_id.into(),
        amount: m(kopecks),
    }
}

pub async fn payment_creation_is_idempotent<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let p = s.create_payment(new_payment(1, u, 50_000)).await.unwrap();
    assert_eq!(p, new_payment(1, u, 50_000).pending());
    assert_eq!(
        s.create_payment(new_payment(1, u, 50_000)).await.unwrap(),
        p
    );
    assert!(matches!(
        s.create_payment(new_payment(1, u, 60_000)).await,
        Err(StoreError::IdempotencyConflict { .. })
    ));
    assert!(matches!(
        s.create_payment(new_payment(2, UserId::new(9).unwrap(), 1))
            .await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    assert_eq!(s.payment(p.id).await.unwrap(), Some(p));
}

pub async fn paid_payment_credits_exactly_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let p = s.create_payment(new_payment(1, u, 50_000)).await.unwrap();
    let registered = pay(
        &*s,
        &p,
        PaymentEvent::Registered {
            provider_payment_id: "yk-1".into(),
            confirmation_url: Some("https://pay".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.payment_by_provider_id(PaymentProvider::Yookassa, "yk-1")
            .await
            .unwrap(),
        Some(registered.clone())
    );
    assert!(
        s.payment_by_provider_id(PaymentProvider::TelegramStars, "yk-1")
            .await
            .unwrap()
            .is_none()
    );
    let paid = pay(&*s, &registered, succeeded("yk-1", 50_000))
        .await
        .unwrap();
    assert_eq!(paid.state, PaymentState::Paid);
    assert_eq!(available(&*s, u).await, 50_000);
    // A duplicate webhook racing the first one carries the stale version: refused.
    assert!(matches!(
        pay(&*s, &registered, succeeded("yk-1", 50_000)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(available(&*s, u).await, 50_000);
    assert_sound(&*s).await;
}

/// A transition only the state machine makes, from the stored row: one made from a
/// doctored copy (another state, someone else's hold) is refused and moves no money.
pub async fn forged_payment_transitions_move_no_money<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    // Cancelled here: a copy that says "pending" would let a success credit it.
    let p = s.create_payment(new_payment(1, u, 50_000)).await.unwrap();
    let cancelled = pay(&*s, &p, PaymentEvent::ProviderCancelled { reason: None })
        .await
        .unwrap();
    let mut doctored = cancelled.clone();
    doctored.state = PaymentState::Pending;
    let r = pay(&*s, &doctored, succeeded("yk-1", 50_000)).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(available(&*s, u).await, 10_000, "nothing credited");
    // Paid, with no refund under way: a copy that names a running job's hold as its
    // refund hold would release it.
    let q = s.create_payment(new_payment(2, u, 5_000)).await.unwrap();
    let paid = pay(&*s, &q, succeeded("yk-2", 5_000)).await.unwrap();
    let job = s.create_job(new_job(1, u, 3_000), 3).await.unwrap();
    claim(&*s, &job).await.unwrap();
    let mut doctored = paid.clone();
    doctored.refund = Some(crate::payment::RefundUnderWay {
        hold: job.reservation_id,
        amount: m(3_000),
        provider_refund_id: None,
    });
    for event in [
        PaymentEvent::RefundFailed {
            hold: job.reservation_id,
        },
        PaymentEvent::RefundSucceeded {
            hold: job.reservation_id,
        },
    ] {
        let r = pay(&*s, &doctored, event).await;
        assert!(r.is_err(), "{r:?}");
    }
    assert_eq!(
        s.reservation(job.reservation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Held,
        "the job's hold is untouched"
    );
    assert_eq!(s.payment(paid.id).await.unwrap().unwrap(), paid);
    assert_eq!(available(&*s, u).await, 10_000 + 5_000 - 3_000);
    assert_sound(&*s).await;
}

/// `LedgerStore::settle` settles free-standing holds only: a job's hold and a payment's
/// refund hold are settled by their own transitions.
pub async fn only_free_holds_are_settled_on_their_own<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let job = s.create_job(new_job(1, u, 3_000), 3).await.unwrap();
    let p = s.create_payment(new_payment(1, u, 5_000)).await.unwrap();
    let paid = pay(&*s, &p, succeeded("yk-1", 5_000)).await.unwrap();
    let refunding = pay(
        &*s,
        &paid,
        PaymentEvent::RefundStarted {
            reservation_id: ReservationId::from_uuid(uuid(50)),
            amount: m(5_000),
        },
    )
    .await
    .unwrap();
    for owned in [job.reservation_id, ReservationId::from_uuid(uuid(50))] {
        let r = s.settle(owned, Settlement::Release, at(20)).await;
        assert!(
            matches!(
                r,
                Err(StoreError::Settlement(
                    crate::ledger::SettlementError::BelongsElsewhere { .. }
                ))
            ),
            "{r:?}"
        );
        assert_eq!(
            s.reservation(owned).await.unwrap().unwrap().state,
            ReservationState::Held
        );
    }
    assert_eq!(s.payment(paid.id).await.unwrap().unwrap(), refunding);
    let free = s.reserve(hold(7, u, 1_000)).await.unwrap();
    let released = s
        .settle(free.id, Settlement::Release, at(20))
        .await
        .unwrap();
    assert_eq!(released.state, ReservationState::Released);
    assert_sound(&*s).await;
}

pub async fn provider_ids_are_unique<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let a = s.create_payment(new_payment(1, u, 100)).await.unwrap();
    let b = s.create_payment(new_payment(2, u, 100)).await.unwrap();
    pay(
        &*s,
        &a,
        PaymentEvent::Registered {
            provider_payment_id: "dup".into(),
            confirmation_url: None,
        },
    )
    .await
    .unwrap();
    let r = pay(
        &*s,
        &b,
        PaymentEvent::Registered {
            provider_payment_id: "dup".into(),
            confirmation_url: None,
        },
    )
    .await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(
        s.payment(b.id).await.unwrap().unwrap().provider_payment_id,
        None
    );
}

pub async fn refund_hold_is_captured_with_the_transition<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let p = s.create_payment(new_payment(1, u, 30_000)).await.unwrap();
    let paid = pay(&*s, &p, succeeded("yk-1", 30_000)).await.unwrap();
    // A partial refund: its hold is placed with it, in one transaction.
    let first = ReservationId::from_uuid(uuid(7));
    let started = pay(
        &*s,
        &paid,
        PaymentEvent::RefundStarted {
            reservation_id: first,
            amount: m(10_000),
        },
    )
    .await
    .unwrap();
    assert_eq!(started.refund_hold(), Some(first));
    assert_eq!(available(&*s, u).await, 20_000);
    assert_eq!(
        s.reservation(first).await.unwrap().unwrap().amount,
        m(10_000)
    );
    let part = pay(&*s, &started, PaymentEvent::RefundSucceeded { hold: first })
        .await
        .unwrap();
    assert_eq!(
        (part.state, part.refunded, part.refund.clone()),
        (PaymentState::Paid, m(10_000), None)
    );
    assert_eq!(
        s.reservation(first).await.unwrap().unwrap().state,
        ReservationState::Captured
    );
    // The rest: refunded in full.
    let second = ReservationId::from_uuid(uuid(8));
    let rest = pay(
        &*s,
        &part,
        PaymentEvent::RefundStarted {
            reservation_id: second,
            amount: m(20_000),
        },
    )
    .await
    .unwrap();
    let refunded = pay(&*s, &rest, PaymentEvent::RefundSucceeded { hold: second })
        .await
        .unwrap();
    assert_eq!(
        (refunded.state, refunded.refunded),
        (PaymentState::Refunded, m(30_000))
    );
    assert_eq!(available(&*s, u).await, 0);
    // A refused refund releases its hold instead.
    let q = s.create_payment(new_payment(2, u, 10_000)).await.unwrap();
    let q = pay(&*s, &q, succeeded("yk-2", 10_000)).await.unwrap();
    let third = ReservationId::from_uuid(uuid(9));
    let q = pay(
        &*s,
        &q,
        PaymentEvent::RefundStarted {
            reservation_id: third,
            amount: m(10_000),
        },
    )
    .await
    .unwrap();
    assert_eq!(available(&*s, u).await, 0);
    let q = pay(&*s, &q, PaymentEvent::RefundFailed { hold: third })
        .await
        .unwrap();
    assert_eq!((q.state, q.refund_hold()), (PaymentState::Paid, None));
    assert_eq!(available(&*s, u).await, 10_000);
    // A refund the balance cannot give back holds nothing and records nothing.
    let spent = s
        .post(entry(u, EntryKind::Debit, 5_000, "spend"), None)
        .await
        .unwrap();
    assert_eq!(spent.balance, m(5_000));
    let r = pay(
        &*s,
        &q,
        PaymentEvent::RefundStarted {
            reservation_id: ReservationId::from_uuid(uuid(10)),
            amount: m(10_000),
        },
    )
    .await;
    assert!(
        matches!(r, Err(StoreError::InsufficientFunds { available, .. }) if available == m(5_000)),
        "{r:?}"
    );
    assert_eq!(s.payment(q.id).await.unwrap().unwrap(), q);
    assert_eq!(
        s.reservation(ReservationId::from_uuid(uuid(10)))
            .await
            .unwrap(),
        None
    );
    assert_sound(&*s).await;
}

pub async fn payments_are_filtered<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let v = user(&*s, 2).await;
    let a = s.create_payment(new_payment(1, u, 100)).await.unwrap();
    let b = s.create_payment(new_payment(2, v, 100)).await.unwrap();
    let c = s.create_payment(new_payment(3, u, 100)).await.unwrap();
    pay(&*s, &a, succeeded("p-a", 100)).await.unwrap();
    let ids = |ps: Vec<Payment>| ps.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.payments(PaymentFilter::default()).await.unwrap()),
        vec![c.id, b.id, a.id]
    );
    assert_eq!(
        ids(s
            .payments(PaymentFilter {
                state: Some(PaymentState::Pending),
                ..Default::default()
            })
            .await
            .unwrap()),
        vec![c.id, b.id]
    );
    assert_eq!(
        ids(s
            .payments(PaymentFilter {
                user_id: Some(u),
                ..Default::default()
            })
            .await
            .unwrap()),
        vec![c.id, a.id]
    );
    assert_eq!(
        ids(s
            .payments(PaymentFilter {
                since: Some(at(2)),
                ..Default::default()
            })
            .await
            .unwrap()),
        vec![c.id, b.id]
    );
}

pub async fn the_poller_sees_due_payments_oldest_first<S: Backend>(s: Store<S>) {
    use crate::payment::{Due, DueFilter};
    let u = user(&*s, 1).await;
    let a = s.create_payment(new_payment(1, u, 10_000)).await.unwrap();
    let stars = s
        .create_payment(NewPayment {
            provider: PaymentProvider::TelegramStars,
            provider_units: Some(10),
            ..new_payment(2, u, 1_500)
        })
        .await
        .unwrap();
    let b = s.create_payment(new_payment(3, u, 20_000)).await.unwrap();
    let c = s.create_payment(new_payment(4, u, 30_000)).await.unwrap();
    pay(&*s, &c, succeeded("yk-4", 30_000)).await.unwrap();
    let ids = |ps: crate::payment::DuePayments| {
        assert!(ps.unreadable.is_empty(), "{:?}", ps.unreadable);
        ps.payments.into_iter().map(|p| p.id).collect::<Vec<_>>()
    };
    let due = |due, at_ms, limit| DueFilter {
        due,
        at: at(at_ms),
        created_since: None,
        limit,
    };
    let yk = Due::Pending(PaymentProvider::Yookassa);
    assert_eq!(
        ids(s.due_payments(due(yk, 10, 0)).await.unwrap()),
        vec![a.id, b.id]
    );
    assert_eq!(
        ids(s.due_payments(due(yk, 10, 1)).await.unwrap()),
        vec![a.id]
    );
    assert_eq!(
        ids(s
            .due_payments(due(Due::Pending(PaymentProvider::TelegramStars), 10, 0))
            .await
            .unwrap()),
        vec![stars.id]
    );
    // A scheduled check hides the payment until it is due; state and version stay.
    s.schedule_check(a.id, 3, at(100)).await.unwrap();
    assert_eq!(
        ids(s.due_payments(due(yk, 99, 0)).await.unwrap()),
        vec![b.id]
    );
    assert_eq!(
        ids(s.due_payments(due(yk, 100, 0)).await.unwrap()),
        vec![a.id, b.id]
    );
    let a_now = s.payment(a.id).await.unwrap().unwrap();
    assert_eq!(
        (a_now.checks, a_now.next_check_at, a_now.version),
        (3, Some(at(100)), a.version)
    );
    assert_eq!(
        ids(s
            .due_payments(DueFilter {
                created_since: Some(at(2)),
                ..due(yk, 100, 0)
            })
            .await
            .unwrap()),
        vec![b.id]
    );
    // A transition keeps the poller's bookkeeping.
    let registered = pay(
        &*s,
        &a_now,
        PaymentEvent::Registered {
            provider_payment_id: "yk-1".into(),
            confirmation_url: None,
        },
    )
    .await
    .unwrap();
    let stored = s.payment(a.id).await.unwrap().unwrap();
    assert_eq!((stored.checks, stored.next_check_at), (3, Some(at(100))));
    assert_eq!(stored.version, registered.version);
    // Refunds in progress: paid with a hold attached, and their refund id is kept.
    let c_paid = s.payment(c.id).await.unwrap().unwrap();
    assert!(
        s.due_payments(due(Due::Refunding, 100, 0))
            .await
            .unwrap()
            .payments
            .is_empty()
    );
    let h = ReservationId::from_uuid(uuid(7));
    let started = pay(
        &*s,
        &c_paid,
        PaymentEvent::RefundStarted {
            reservation_id: h,
            amount: m(30_000),
        },
    )
    .await
    .unwrap();
    let asked = pay(
        &*s,
        &started,
        PaymentEvent::RefundRequested {
            hold: h,
            refund_id: "rf-1".into(),
        },
    )
    .await
    .unwrap();
    let refunding = s
        .due_payments(due(Due::Refunding, 100, 0))
        .await
        .unwrap()
        .payments;
    assert_eq!(
        refunding.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![c.id]
    );
    assert_eq!(
        refunding[0]
            .refund
            .as_ref()
            .and_then(|r| r.provider_refund_id.as_deref()),
        Some("rf-1")
    );
    assert_eq!(refunding[0], asked);
    assert!(matches!(
        s.schedule_check(PaymentId::from_uuid(uuid(99)), 1, at(1))
            .await,
        Err(StoreError::NotFound(Missing::Payment(_)))
    ));
    assert_sound(&*s).await;
}

pub async fn stats_count_everything<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let v = user(&*s, 2).await;
    fund(&*s, u, 1_000).await;
    s.set_banned(v, true, audit(v, AuditAction::Ban))
        .await
        .unwrap();
    s.create_job(new_job(1, u, 300), 3).await.unwrap();
    let p = s.create_payment(new_payment(1, v, 5_000)).await.unwrap();
    pay(&*s, &p, succeeded("x", 5_000)).await.unwrap();
    s.save_dialogue(v, "{}", None, at(20)).await.unwrap();
    s.set_unreachable(v, Some(at(21))).await.unwrap();
    let stats = s.stats(at(0)).await.unwrap();
    assert_eq!((stats.users, stats.banned_users), (2, 1));
    assert_eq!(
        (
            stats.active_since,
            stats.failed_since,
            stats.unreachable_users
        ),
        (2, 0, 1),
        "u ordered a job, v wrote to the bot; v blocked it"
    );
    assert_eq!(
        s.stats(at(1_000_000)).await.unwrap().active_since,
        0,
        "nothing since"
    );
    s.set_unreachable(v, None).await.unwrap();
    assert_eq!(s.stats(at(0)).await.unwrap().unreachable_users, 0);
    assert!(matches!(
        s.set_unreachable(UserId::new(404).unwrap(), None).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    let stats = s.stats(at(0)).await.unwrap();
    assert_eq!(stats.balances_total, m(5_700));
    assert_eq!(stats.held_total, m(300));
    let jobs = |st: JobState| {
        stats
            .jobs_by_state
            .iter()
            .find(|(s, _)| *s == st)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!((jobs(JobState::Pending), jobs(JobState::Completed)), (1, 0));
    let paid = stats
        .payments_by_state
        .iter()
        .find(|(s, _, _)| *s == PaymentState::Paid)
        .copied();
    assert_eq!(paid, Some((PaymentState::Paid, 1, m(5_000))));
}

pub async fn dialogue_state_round_trips<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    assert_eq!(s.load_dialogue(u).await.unwrap(), None);
    let v1 = s
        .save_dialogue(u, r#"{"step":"model"}"#, None, at(1))
        .await
        .unwrap();
    let v2 = s
        .save_dialogue(u, r#"{"step":"duration"}"#, Some(v1), at(2))
        .await
        .unwrap();
    assert_ne!(v1, v2);
    assert_eq!(
        s.load_dialogue(u).await.unwrap(),
        Some(crate::ports::DialogueRecord {
            state: r#"{"step":"duration"}"#.into(),
            version: v2
        })
    );
    s.clear_dialogue(u).await.unwrap();
    s.clear_dialogue(u).await.unwrap();
    assert_eq!(s.load_dialogue(u).await.unwrap(), None);
}

pub async fn a_stale_dialogue_save_is_refused<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let v1 = s.save_dialogue(u, "a", None, at(1)).await.unwrap();
    // Two handlers read v1; the first save wins, the second is refused.
    s.save_dialogue(u, "b", Some(v1), at(2)).await.unwrap();
    let late = s.save_dialogue(u, "c", Some(v1), at(3)).await;
    assert!(
        matches!(
            late,
            Err(StoreError::Conflict {
                what: "dialogue",
                ..
            })
        ),
        "{late:?}"
    );
    let first = s.save_dialogue(u, "d", None, at(4)).await;
    assert!(
        matches!(first, Err(StoreError::Conflict { .. })),
        "a 'first' save over an existing state: {first:?}"
    );
    assert_eq!(s.load_dialogue(u).await.unwrap().unwrap().state, "b");
}

// ---- concurrency ----

pub async fn concurrent_spends_never_overdraw<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100).await;
    let spends = (0..100u128).map(|i| {
        let s = s.clone();
        async move { s.reserve(hold(i + 1, u, 10)).await }
    });
    let results = join_all(spends).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        assert!(
            matches!(r, Ok(_) | Err(StoreError::InsufficientFunds { .. })),
            "unexpected outcome: {r:?}"
        );
    }
    assert_eq!(ok, 10, "exactly ten 10-kopeck holds fit in 100");
    assert_eq!(available(&*s, u).await, 0);
    assert_sound(&*s).await;
}

pub async fn concurrent_duplicate_credits_post_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let p = s.create_payment(new_payment(1, u, 50_000)).await.unwrap();
    let credits = (0..50).map(|_| {
        let s = s.clone();
        let p = p.clone();
        async move { pay(&*s, &p, succeeded("yk-1", 50_000)).await }
    });
    let results = join_all(credits).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "one webhook wins"
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict { .. })))
    );
    let posts = (0..50).map(|_| {
        let s = s.clone();
        async move {
            s.post(entry(u, EntryKind::Credit, 700, "same-key"), None)
                .await
        }
    });
    let posted = join_all(posts).await;
    assert!(
        posted.iter().all(Result::is_ok),
        "replays are not errors: {posted:?}"
    );
    assert_eq!(
        posted
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|p| !p.replayed))
            .count(),
        1
    );
    assert_eq!(available(&*s, u).await, 50_700);
    assert_sound(&*s).await;
}

pub async fn concurrent_job_creation_respects_the_cap<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100_000).await;
    let creates = (0..20u128).map(|i| {
        let s = s.clone();
        async move { s.create_job(new_job(i + 1, u, 100), 3).await }
    });
    let results = join_all(creates).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(StoreError::ActiveJobLimit { .. }))),
        "{results:?}"
    );
    assert_eq!(available(&*s, u).await, 99_700);
    assert_sound(&*s).await;
}

pub async fn concurrent_settlements_settle_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let r = s.reserve(hold(1, u, 600)).await.unwrap();
    let settles = (0..30).map(|i| {
        let s = s.clone();
        let how = if i % 2 == 0 {
            Settlement::Release
        } else {
            Settlement::Capture { actual: m(600) }
        };
        async move { s.settle(r.id, how, at(9)).await }
    });
    let results = join_all(settles).await;
    let state = s.reservation(r.id).await.unwrap().unwrap().state;
    assert_ne!(state, ReservationState::Held, "one settlement won");
    let (wins, losses): (Vec<_>, Vec<_>) = results.iter().partition(|r| r.is_ok());
    assert_eq!(
        wins.len(),
        15,
        "every settlement the winner's way succeeds (the first, then its repeats)"
    );
    assert!(
        wins.iter()
            .all(|w| w.as_ref().is_ok_and(|x| x.state == state))
    );
    for l in &losses {
        assert!(
            matches!(
                l,
                Err(StoreError::Settlement(
                    crate::ledger::SettlementError::AlreadySettled { .. }
                ))
            ),
            "the other way is refused as already settled, not failed: {l:?}"
        );
    }
    assert_eq!(
        available(&*s, u).await,
        if state == ReservationState::Released {
            1_000
        } else {
            400
        }
    );
    assert_sound(&*s).await;
}

pub async fn verify_reports_a_sound_store<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let j = s.create_job(new_job(1, u, 1_000), 3).await.unwrap();
    claim(&*s, &j).await.unwrap();
    let p = s.create_payment(new_payment(1, u, 2_000)).await.unwrap();
    pay(&*s, &p, succeeded("v", 2_000)).await.unwrap();
    let report = s.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.users_checked, 1);
    assert_eq!(report.entries_checked, 3);
    assert_eq!(report.reservations_checked, 1);
}

pub async fn balances_are_capped<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let max = crate::ledger::MAX_BALANCE.kopecks();
    s.post(entry(u, EntryKind::Credit, max, "to-the-top"), None)
        .await
        .unwrap();
    let r = s
        .post(entry(u, EntryKind::Credit, 1, "one-more"), None)
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let v = user(&*s, 2).await;
    let r = s
        .post(entry(v, EntryKind::Credit, max + 1, "too-big"), None)
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert_eq!((available(&*s, u).await, available(&*s, v).await), (max, 0));
    assert_sound(&*s).await;
}

pub async fn refund_holds_are_checked_against_the_stored_payment<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100_000).await;
    let p = s.create_payment(new_payment(1, u, 30_000)).await.unwrap();
    let paid = pay(&*s, &p, succeeded("yk-1", 30_000)).await.unwrap();
    // The caller's copy says the payment was 10 000: a refund of that size fits the
    // copy, not the stored payment.
    let mut forged = paid.clone();
    forged.amount = m(10_000);
    let r = pay(
        &*s,
        &forged,
        PaymentEvent::RefundStarted {
            reservation_id: ReservationId::from_uuid(uuid(20)),
            amount: m(10_000),
        },
    )
    .await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(s.payment(paid.id).await.unwrap().unwrap(), paid);
    assert_eq!(
        s.reservation(ReservationId::from_uuid(uuid(20)))
            .await
            .unwrap(),
        None
    );
}

pub async fn dialogue_of_an_unknown_user_is_not_found<S: Backend>(s: Store<S>) {
    let ghost = UserId::new(404).unwrap();
    let r = s.save_dialogue(ghost, "{}", None, at(1)).await;
    assert!(
        matches!(r, Err(StoreError::NotFound(Missing::User(_)))),
        "{r:?}"
    );
    assert_eq!(s.load_dialogue(ghost).await.unwrap(), None);
}

pub async fn imported_payments_and_legacy_jobs_are_written_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let mut paid = new_payment(1, u, 30_000).pending();
    paid.provider_payment_id = Some("yk-old".into());
    paid.state = PaymentState::Paid;
    paid.paid_at = Some(at(5));
    assert!(s.import_payment(&paid).await.unwrap());
    assert!(!s.import_payment(&paid).await.unwrap(), "once");
    let stored = s.payment(paid.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.provider_payment_id.as_deref()),
        (PaymentState::Paid, Some("yk-old"))
    );
    assert_eq!(available(&*s, u).await, 0, "no ledger effect");
    let mut other = new_payment(2, u, 100).pending();
    other.provider_payment_id = Some("yk-old".into());
    assert!(matches!(
        s.import_payment(&other).await,
        Err(StoreError::Conflict { .. })
    ));
    let ghost = new_payment(3, UserId::new(404).unwrap(), 100).pending();
    assert!(matches!(
        s.import_payment(&ghost).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    let job = crate::legacy::LegacyJob {
        id: 7,
        user_id: u,
        kind: "image_generation".into(),
        status: "completed".into(),
        params: "{}".into(),
        result_url: None,
        error_message: None,
        cost_estimate: Some(m(5_000)),
        cost_actual: Some(m(5_000)),
        created_at: at(1),
        completed_at: Some(at(2)),
    };
    assert!(s.import_legacy_job(&job).await.unwrap());
    assert!(!s.import_legacy_job(&job).await.unwrap());
    let later = crate::legacy::LegacyJob {
        id: 9,
        status: "failed".into(),
        created_at: at(5),
        ..job.clone()
    };
    assert!(s.import_legacy_job(&later).await.unwrap());
    // A user's history: newest first, limited, nobody else's.
    let other = user(&*s, 2).await;
    assert_eq!(
        s.legacy_jobs(u, 10).await.unwrap(),
        vec![later.clone(), job.clone()]
    );
    assert_eq!(s.legacy_jobs(u, 1).await.unwrap(), vec![later]);
    assert!(s.legacy_jobs(other, 10).await.unwrap().is_empty());
    let stranger = crate::legacy::LegacyJob {
        id: 8,
        user_id: UserId::new(404).unwrap(),
        ..job
    };
    assert!(matches!(
        s.import_legacy_job(&stranger).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
}

pub async fn receipt_emails_are_kept_per_user<S: Backend>(s: Store<S>) {
    use crate::user::Email;
    let u = user(&*s, 1).await;
    assert_eq!(s.user(u).await.unwrap().unwrap().receipt_email, None);
    let first = Email::parse("anna@example.com").unwrap();
    s.set_receipt_email(u, &first).await.unwrap();
    assert_eq!(s.user(u).await.unwrap().unwrap().receipt_email, Some(first));
    let second = Email::parse("anna@example.org").unwrap();
    s.set_receipt_email(u, &second).await.unwrap();
    assert_eq!(
        s.user(u).await.unwrap().unwrap().receipt_email,
        Some(second.clone())
    );
    let ghost = UserId::new(404).unwrap();
    assert!(matches!(
        s.set_receipt_email(ghost, &second).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
}

pub async fn entries_above_the_cap_are_invalid_whatever_their_kind<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let max = crate::ledger::MAX_BALANCE.kopecks();
    for kind in [EntryKind::Debit, EntryKind::Credit, EntryKind::Refund] {
        let r = s
            .post(
                entry(u, kind, max + 1, &format!("huge-{}", kind.as_str())),
                None,
            )
            .await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{kind:?}: {r:?}");
    }
    assert_eq!(available(&*s, u).await, 1_000);
}

/// A refund's hold is keyed by the payment and its version: a hold already under that
/// key that is not this one (settled, or another id) is never taken for it.
pub async fn refund_holds_must_fit_their_payment<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100_000).await;
    let p = s.create_payment(new_payment(1, u, 30_000)).await.unwrap();
    let paid = pay(&*s, &p, succeeded("yk-1", 30_000)).await.unwrap();
    let squatter = s
        .reserve(NewReservation {
            idempotency_key: key(&format!(
                "payment:{}:refund-hold-v{}",
                paid.id, paid.version
            )),
            ..hold(10, u, 30_000)
        })
        .await
        .unwrap();
    let r = pay(
        &*s,
        &paid,
        PaymentEvent::RefundStarted {
            reservation_id: ReservationId::from_uuid(uuid(11)),
            amount: m(30_000),
        },
    )
    .await;
    assert!(
        matches!(
            r,
            Err(StoreError::Conflict { .. } | StoreError::IdempotencyConflict { .. })
        ),
        "{r:?}"
    );
    assert_eq!(s.payment(paid.id).await.unwrap().unwrap().refund, None);
    assert_eq!(
        s.reservation(squatter.id).await.unwrap().unwrap().state,
        ReservationState::Held
    );
}

/// A hold in the refund namespace that no payment names (an older version's crash
/// between placing it and recording it) is reported, and can be released on its own.
pub async fn orphaned_refund_holds_are_reported<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let p = s.create_payment(new_payment(1, u, 30_000)).await.unwrap();
    let paid = pay(&*s, &p, succeeded("yk-1", 30_000)).await.unwrap();
    let orphan = NewReservation {
        idempotency_key: key(&format!(
            "payment:{}:refund-hold-v{}",
            paid.id, paid.version
        )),
        ..hold(1, u, 30_000)
    };
    let h = s.reserve(orphan).await.unwrap();
    let report = s.verify().await.unwrap();
    assert!(
        matches!(report.violations.as_slice(), [crate::ledger::Violation::DanglingReservation { reservation_id, job_id: None, .. }] if *reservation_id == h.id),
        "{:?}",
        report.violations
    );
    s.settle(h.id, Settlement::Release, at(60)).await.unwrap();
    assert_sound(&*s).await;
}

pub async fn provider_units_and_global_provider_ids<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let stars = NewPayment {
        provider: PaymentProvider::TelegramStars,
        provider_units: Some(100),
        ..new_payment(1, u, 15_000)
    };
    let created = s.create_payment(stars.clone()).await.unwrap();
    assert_eq!(created.provider_units, Some(100));
    assert_eq!(s.payment(created.id).await.unwrap().unwrap(), created);
    let other_units = NewPayment {
        provider_units: Some(99),
        ..stars
    };
    assert!(matches!(
        s.create_payment(other_units).await,
        Err(StoreError::IdempotencyConflict { .. })
    ));
    let yk = s.create_payment(new_payment(2, u, 100)).await.unwrap();
    pay(
        &*s,
        &yk,
        PaymentEvent::Registered {
            provider_payment_id: "same-id".into(),
            confirmation_url: None,
        },
    )
    .await
    .unwrap();
    let r = pay(&*s, &created, succeeded("same-id", 15_000)).await;
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "a provider id belongs to one payment, across providers: {r:?}"
    );
    assert!(
        s.payment_by_provider_id(PaymentProvider::TelegramStars, "same-id")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn reused_ids_are_invalid<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    s.create_job(new_job(1, u, 100), 5).await.unwrap();
    let same_id = new_job_keyed(1, u, 100, "another-confirmation");
    let r = s.create_job(same_id, 5).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let mut same_hold_id = hold(5, u, 100);
    s.reserve(same_hold_id.clone()).await.unwrap();
    same_hold_id.idempotency_key = key("another-hold");
    let r = s.reserve(same_hold_id).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert_eq!(available(&*s, u).await, 9_800);
    assert_sound(&*s).await;
}

/// One holder at a time; renewable by its holder; taken over once it ran out; given up.
pub async fn a_lease_has_one_holder_until_it_runs_out<S: Backend>(s: Store<S>) {
    assert!(s.hold_lease("poller", "a", at(100), at(0)).await.unwrap());
    assert!(!s.hold_lease("poller", "b", at(100), at(50)).await.unwrap());
    assert!(
        s.hold_lease("poller", "a", at(200), at(60)).await.unwrap(),
        "renewed by its holder"
    );
    assert!(
        !s.hold_lease("poller", "b", at(300), at(150)).await.unwrap(),
        "still a's: renewed until 200"
    );
    assert!(
        s.hold_lease("other", "b", at(300), at(150)).await.unwrap(),
        "leases are per name"
    );
    assert!(
        s.hold_lease("poller", "b", at(400), at(200)).await.unwrap(),
        "taken over once it ran out"
    );
    s.release_lease("poller", "a").await.unwrap();
    assert!(
        !s.hold_lease("poller", "c", at(500), at(250)).await.unwrap(),
        "only its holder gives it up"
    );
    s.release_lease("poller", "b").await.unwrap();
    assert!(s.hold_lease("poller", "c", at(500), at(250)).await.unwrap());
}

/// A provider callback's wake is recorded on a running job (its worker sees it), and
/// changes nothing on a job that is not running.
pub async fn a_wake_is_recorded_on_a_running_job_only<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let job = s.create_job(new_job(1, u, 100), 5).await.unwrap();
    let wake = |n: i64| JobWrite {
        job_id: job.id,
        event: JobEvent::Woken,
        guard: JobGuard::Unleased,
        audit: None,
        at: at(n),
    };
    assert!(
        !s.write_job(&wake(5)).await.unwrap().changed,
        "not running yet"
    );
    let running = claim(&*s, &job).await.unwrap();
    let woken = s.write_job(&wake(20)).await.unwrap();
    assert!(woken.changed);
    assert_eq!(woken.job.woken_at, Some(at(20)));
    assert_eq!(woken.job.lease, running.lease, "the worker keeps its lease");
    assert_eq!(s.job(job.id).await.unwrap().unwrap().woken_at, Some(at(20)));
}

/// Every notice in the outbox now, due or not (claimed far in the future, then put back
/// as they were by a failed-send record that keeps their attempts).
async fn outbox_now<S: Backend>(s: &S) -> Vec<(UserId, Notice)> {
    let far = at(1_000_000_000);
    let taken = s
        .claim_notices(far, std::time::Duration::from_secs(1), 1_000)
        .await
        .unwrap();
    for e in &taken {
        s.notice_failed(e.id, e.attempts, at(0)).await.unwrap();
    }
    taken.into_iter().map(|e| (e.user_id, e.notice)).collect()
}

/// A credit, a refund's capture and a manual adjustment write their notice in the same
/// transaction as the money; a replay, a refused change, a refund that failed and a
/// plain post write none.
pub async fn money_changes_write_their_notices_with_them<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    assert!(
        outbox_now(&*s).await.is_empty(),
        "a plain post tells nobody"
    );
    let p = s.create_payment(new_payment(1, u, 30_000)).await.unwrap();
    let paid = pay(&*s, &p, succeeded("yk-1", 30_000)).await.unwrap();
    assert!(matches!(
        pay(&*s, &p, succeeded("yk-1", 30_000)).await,
        Err(StoreError::Conflict { .. })
    ));
    let hold = ReservationId::from_uuid(uuid(7));
    let started = pay(
        &*s,
        &paid,
        PaymentEvent::RefundStarted {
            reservation_id: hold,
            amount: m(10_000),
        },
    )
    .await
    .unwrap();
    let part = pay(&*s, &started, PaymentEvent::RefundSucceeded { hold })
        .await
        .unwrap();
    let again = ReservationId::from_uuid(uuid(8));
    let started = pay(
        &*s,
        &part,
        PaymentEvent::RefundStarted {
            reservation_id: again,
            amount: m(5_000),
        },
    )
    .await
    .unwrap();
    pay(&*s, &started, PaymentEvent::RefundFailed { hold: again })
        .await
        .unwrap();
    let credit = entry(u, EntryKind::Credit, 700, "admin:a");
    s.post_adjustment(credit.clone(), audit(u, AuditAction::BalanceAdd))
        .await
        .unwrap();
    let replay = s
        .post_adjustment(credit, audit(u, AuditAction::BalanceAdd))
        .await
        .unwrap();
    assert!(replay.replayed);
    s.post_adjustment(
        entry(u, EntryKind::Debit, 200, "admin:b"),
        audit(u, AuditAction::BalanceSub),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.post_adjustment(
            entry(u, EntryKind::Debit, 1_000_000, "admin:c"),
            audit(u, AuditAction::BalanceSub),
        )
        .await,
        Err(StoreError::InsufficientFunds { .. })
    ));
    assert_eq!(
        outbox_now(&*s).await,
        vec![
            (
                u,
                Notice::PaymentCredited {
                    payment_id: p.id,
                    amount: m(30_000),
                    balance: m(31_000)
                }
            ),
            (
                u,
                Notice::PaymentRefunded {
                    payment_id: p.id,
                    amount: m(10_000),
                    balance: m(21_000)
                }
            ),
            (
                u,
                Notice::BalanceCredited {
                    amount: m(700),
                    balance: m(21_700)
                }
            ),
            (
                u,
                Notice::BalanceDebited {
                    amount: m(200),
                    balance: m(21_500)
                }
            ),
        ]
    );
    assert_eq!(s.outbox_depth().await.unwrap(), 4);
    assert_sound(&*s).await;
}

/// The dispatcher's side: notices are taken oldest first up to the limit and held for a
/// while; a failed one comes back at its retry time with its attempts; a sent or given
/// up one leaves for good.
pub async fn outbox_notices_are_taken_oldest_first_held_and_finished<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    for (n, k) in ["a", "b", "c"].into_iter().enumerate() {
        let mut e = entry(u, EntryKind::Credit, 100 * (n as i64 + 1), k);
        e.created_at = at(10 + n as i64);
        s.post_adjustment(e, audit(u, AuditAction::BalanceAdd))
            .await
            .unwrap();
    }
    let amounts = |taken: &[crate::ports::OutboxEntry]| -> Vec<i64> {
        taken
            .iter()
            .map(|e| match e.notice {
                Notice::BalanceCredited { amount, .. } => amount.kopecks(),
                ref other => panic!("unexpected {other:?}"),
            })
            .collect()
    };
    let hold = std::time::Duration::from_secs(60);
    assert!(
        s.claim_notices(at(9), hold, 10).await.unwrap().is_empty(),
        "nothing is due before it was written"
    );
    let first = s.claim_notices(at(100), hold, 2).await.unwrap();
    assert_eq!(amounts(&first), vec![100, 200]);
    assert!(first.iter().all(|e| e.attempts == 0 && e.user_id == u));
    assert!(first[0].id < first[1].id);
    assert_eq!(first[0].created_at, at(10));
    // Held: another dispatcher gets only the third.
    let second = s.claim_notices(at(200), hold, 10).await.unwrap();
    assert_eq!(amounts(&second), vec![300]);
    s.notice_sent(first[0].id, at(300)).await.unwrap();
    s.notice_failed(first[1].id, 1, at(5_000)).await.unwrap();
    s.notice_given_up(second[0].id, at(300)).await.unwrap();
    assert_eq!(s.outbox_depth().await.unwrap(), 1);
    assert!(
        s.claim_notices(at(4_999), hold, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = s.claim_notices(at(5_000), hold, 10).await.unwrap();
    assert_eq!(amounts(&retried), vec![200]);
    assert_eq!(retried[0].attempts, 1);
    // A dispatcher that died: after its hold the notice is due again.
    assert!(
        s.claim_notices(at(64_999), hold, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let taken_over = s.claim_notices(at(65_000), hold, 10).await.unwrap();
    assert_eq!(amounts(&taken_over), vec![200]);
    s.notice_sent(taken_over[0].id, at(65_001)).await.unwrap();
    // Finished notices never come back, and finishing one twice is harmless.
    s.notice_sent(taken_over[0].id, at(65_002)).await.unwrap();
    assert!(
        s.claim_notices(at(10_000_000), hold, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.outbox_depth().await.unwrap(), 0);
}
