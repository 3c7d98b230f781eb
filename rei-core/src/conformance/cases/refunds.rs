//! Refund holds: placed, captured or released with their payment, and checked.

use super::*;

/// The key a refund of `paid` (at its version) places its hold under.
fn refund_hold_key(paid: &Payment) -> IdempotencyKey {
    key(&format!(
        "payment:{}:refund-hold-v{}",
        paid.id, paid.version
    ))
}

/// `LedgerStore::settle` settles free-standing holds only: a job's hold and a payment's
/// refund hold are settled by their own transitions.
pub async fn only_free_holds_are_settled_on_their_own<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let job = s.create_job(new_job(1, u, 3_000), 3).await.unwrap();
    let paid = paid_payment(&*s, 1, u, 5_000, "yk-1").await;
    let refunding = pay(&*s, &paid, refund_started(hold_id(50), 5_000))
        .await
        .unwrap();
    for owned in [job.reservation_id, hold_id(50)] {
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
        assert_eq!(hold_state(&*s, owned).await, ReservationState::Held);
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

pub async fn refund_hold_is_captured_with_the_transition<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let paid = paid_payment(&*s, 1, u, 30_000, "yk-1").await;
    // A partial refund: its hold is placed with it, in one transaction.
    let first = hold_id(7);
    let started = pay(&*s, &paid, refund_started(first, 10_000))
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
    assert_eq!(hold_state(&*s, first).await, ReservationState::Captured);
    // The rest: refunded in full.
    let second = hold_id(8);
    let rest = pay(&*s, &part, refund_started(second, 20_000))
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
    let q = paid_payment(&*s, 2, u, 10_000, "yk-2").await;
    let third = hold_id(9);
    let q = pay(&*s, &q, refund_started(third, 10_000)).await.unwrap();
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
    let r = pay(&*s, &q, refund_started(hold_id(10), 10_000)).await;
    assert!(
        matches!(r, Err(StoreError::InsufficientFunds { available, .. }) if available == m(5_000)),
        "{r:?}"
    );
    assert_eq!(s.payment(q.id).await.unwrap().unwrap(), q);
    assert_eq!(s.reservation(hold_id(10)).await.unwrap(), None);
    assert_sound(&*s).await;
}

pub async fn refund_holds_are_checked_against_the_stored_payment<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100_000).await;
    let paid = paid_payment(&*s, 1, u, 30_000, "yk-1").await;
    // The caller's copy says the payment was 10 000: a refund of that size fits the
    // copy, not the stored payment.
    let mut forged = paid.clone();
    forged.amount = m(10_000);
    let r = pay(&*s, &forged, refund_started(hold_id(20), 10_000)).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(s.payment(paid.id).await.unwrap().unwrap(), paid);
    assert_eq!(s.reservation(hold_id(20)).await.unwrap(), None);
}

/// A refund's hold is keyed by the payment and its version: a hold already under that
/// key that is not this one (settled, or another id) is never taken for it.
pub async fn refund_holds_must_fit_their_payment<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100_000).await;
    let paid = paid_payment(&*s, 1, u, 30_000, "yk-1").await;
    let squatter = s
        .reserve(NewReservation {
            idempotency_key: refund_hold_key(&paid),
            ..hold(10, u, 30_000)
        })
        .await
        .unwrap();
    let r = pay(&*s, &paid, refund_started(hold_id(11), 30_000)).await;
    assert!(
        matches!(
            r,
            Err(StoreError::Conflict { .. } | StoreError::IdempotencyConflict { .. })
        ),
        "{r:?}"
    );
    assert_eq!(s.payment(paid.id).await.unwrap().unwrap().refund, None);
    assert_eq!(hold_state(&*s, squatter.id).await, ReservationState::Held);
}

/// A hold in the refund namespace that no payment names (an older version's crash
/// between placing it and recording it) is reported, and can be released on its own.
pub async fn orphaned_refund_holds_are_reported<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let paid = paid_payment(&*s, 1, u, 30_000, "yk-1").await;
    let orphan = NewReservation {
        idempotency_key: refund_hold_key(&paid),
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
