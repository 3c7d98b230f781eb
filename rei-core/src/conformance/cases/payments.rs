//! Payments: creation, credits, provider ids, listing, the poller's view, imports.

use super::*;

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
    let paid = paid_payment(&*s, 2, u, 5_000, "yk-2").await;
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
        hold_state(&*s, job.reservation_id).await,
        ReservationState::Held,
        "the job's hold is untouched"
    );
    assert_eq!(s.payment(paid.id).await.unwrap().unwrap(), paid);
    assert_eq!(available(&*s, u).await, 10_000 + 5_000 - 3_000);
    assert_sound(&*s).await;
}

pub async fn provider_ids_are_unique<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let a = s.create_payment(new_payment(1, u, 100)).await.unwrap();
    let b = s.create_payment(new_payment(2, u, 100)).await.unwrap();
    pay(&*s, &a, registered("dup")).await.unwrap();
    let r = pay(&*s, &b, registered("dup")).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(
        s.payment(b.id).await.unwrap().unwrap().provider_payment_id,
        None
    );
}

pub async fn payments_are_filtered<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let v = user(&*s, 2).await;
    let a = s.create_payment(new_payment(1, u, 100)).await.unwrap();
    let b = s.create_payment(new_payment(2, v, 100)).await.unwrap();
    let c = s.create_payment(new_payment(3, u, 100)).await.unwrap();
    pay(&*s, &a, succeeded("p-a", 100)).await.unwrap();
    let by = |state, user_id, since| PaymentFilter {
        state,
        user_id,
        since,
        ..PaymentFilter::default()
    };
    let cases = [
        (by(None, None, None), vec![c.id, b.id, a.id]),
        (
            by(Some(PaymentState::Pending), None, None),
            vec![c.id, b.id],
        ),
        (by(None, Some(u), None), vec![c.id, a.id]),
        (by(None, None, Some(at(2))), vec![c.id, b.id]),
    ];
    let of = |provider| PaymentFilter {
        provider: Some(provider),
        ..PaymentFilter::default()
    };
    let cases = cases.into_iter().chain([
        (of(PaymentProvider::Yookassa), vec![c.id, b.id, a.id]),
        (of(PaymentProvider::Sandbox), vec![]),
    ]);
    for (filter, want) in cases {
        let listed = s.payments(filter.clone()).await.unwrap();
        let got: Vec<_> = listed.iter().map(|p| p.id).collect();
        assert_eq!(got, want, "{filter:?}");
    }
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
    let named = pay(&*s, &a_now, registered("yk-1")).await.unwrap();
    let stored = s.payment(a.id).await.unwrap().unwrap();
    assert_eq!((stored.checks, stored.next_check_at), (3, Some(at(100))));
    assert_eq!(stored.version, named.version);
    // Refunds in progress: paid with a hold attached, and their refund id is kept.
    let c_paid = s.payment(c.id).await.unwrap().unwrap();
    assert!(
        s.due_payments(due(Due::Refunding, 100, 0))
            .await
            .unwrap()
            .payments
            .is_empty()
    );
    let h = hold_id(7);
    let started = pay(&*s, &c_paid, refund_started(h, 30_000)).await.unwrap();
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
    pay(&*s, &yk, registered("same-id")).await.unwrap();
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
