//! Entries, holds, settlements, verification.

use super::*;

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

/// A signup bonus, a referral reward (and its reversal) and a promo credit are entries
/// of their own kinds: stored, read back and summed like any other.
pub async fn growth_entries_have_kinds_of_their_own<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    for (n, (ref_type, kind, kopecks)) in [
        (RefType::Bonus, EntryKind::Credit, 5_000),
        (RefType::Referral, EntryKind::Credit, 1_000),
        (RefType::Promo, EntryKind::Credit, 2_500),
        (RefType::Referral, EntryKind::Debit, 400),
    ]
    .into_iter()
    .enumerate()
    {
        let posted = s
            .post(
                NewEntry {
                    ref_type,
                    ref_id: format!("growth-{n}"),
                    ..entry(u, kind, kopecks, &format!("growth-{n}"))
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(posted.entry.ref_type, ref_type);
    }
    assert_eq!(available(&*s, u).await, 5_000 + 1_000 + 2_500 - 400);
    let kinds: Vec<RefType> = s
        .entries(u, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.ref_type)
        .collect();
    assert_eq!(
        kinds,
        [
            RefType::Referral,
            RefType::Promo,
            RefType::Referral,
            RefType::Bonus
        ]
    );
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
