//! Stars refunds through `refundStarPayment`.

use super::*;
use crate::ports::MockStarsGateway;
use crate::user::{Actor, AuditAction};

fn with_stars(w: &World, stars: MockStarsGateway) -> PaymentService {
    PaymentService::new(
        PaymentPorts {
            users: w.store.clone(),
            payments: w.store.clone(),
            gateway: None,
            stars: Some(Arc::new(stars)),
            notifier: w.notifier.clone(),
            clock: Arc::new(ManualClock::new(t(1_000))),
            ids: Arc::new(SequentialIds::default()),
        },
        PaymentConfig {
            stars_rate: Some(m(200)),
            ..config()
        },
    )
}

async fn paid_in_stars(svc: &PaymentService, w: &World) -> Payment {
    let p = svc.create_stars_topup(w.user, 50).await.unwrap();
    assert!(svc.stars_paid(p.id, "stx-1", 50).await.unwrap().credited);
    svc.payment(p.id).await.unwrap()
}

#[tokio::test]
async fn a_stars_payment_is_refunded_and_the_credit_taken_back_once() {
    let w = world().await;
    let mut stars = MockStarsGateway::new();
    stars
        .expect_refund_stars()
        .withf(|user, charge| user.get() == 7 && charge == "stx-1")
        .times(1)
        .returning(|_, _| Ok(()));
    let svc = with_stars(&w, stars);
    let p = paid_in_stars(&svc, &w).await;
    assert_eq!(balance(&w).await, 10_000);
    let out = svc
        .refund_audited(p.id, None, Actor::Cli("ops".into()), "asked by the user")
        .await
        .unwrap();
    assert!(matches!(out, RefundOutcome::Refunded(_)));
    assert_eq!(balance(&w).await, 0);
    // Again: already refunded, Telegram is not asked twice.
    assert!(matches!(
        svc.refund(p.id, None).await.unwrap(),
        RefundOutcome::Refunded(_)
    ));
    let audit = w.store.audit_log(10).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == AuditAction::PaymentRefund)
            .count(),
        1
    );
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_refused_stars_refund_releases_the_hold_and_a_lost_answer_is_finished_later() {
    let w = world().await;
    let mut stars = MockStarsGateway::new();
    let mut seq = mockall::Sequence::new();
    stars
        .expect_refund_stars()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| {
            Err(ProviderError::InvalidRequest {
                message: "CHARGE_NOT_FOUND".into(),
            })
        });
    stars
        .expect_refund_stars()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| {
            Err(ProviderError::Transient {
                message: "timeout".into(),
            })
        });
    stars
        .expect_refund_stars()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    let svc = with_stars(&w, stars);
    let p = paid_in_stars(&svc, &w).await;
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::RefundRefused { .. })
    ));
    assert_eq!(balance(&w).await, 10_000, "released");
    assert_eq!(w.notifier.alerts().len(), 1, "admins told of the refusal");
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::Provider(_))
    ));
    assert_eq!(balance(&w).await, 0, "held while unknown");
    let report = svc.poll().await.unwrap();
    assert_eq!(report.refunds_done, 1);
    assert_eq!(
        svc.payment(p.id).await.unwrap().state,
        PaymentState::Refunded
    );
    assert_eq!(balance(&w).await, 0);
    assert!(w.store.verify().await.unwrap().is_ok());
}

/// [money] 13: the process dies after the refund started (hold placed, recorded on the
/// payment) and before `refundStarPayment` was sent: the poller finishes it, once.
#[tokio::test]
async fn a_stars_refund_cut_off_before_telegram_was_asked_is_finished_by_the_poller() {
    let w = world().await;
    let mut stars = MockStarsGateway::new();
    stars
        .expect_refund_stars()
        .times(1)
        .returning(|_, _| Ok(()));
    let svc = with_stars(&w, stars);
    let p = paid_in_stars(&svc, &w).await;
    // What the dead process committed: the start, with its hold.
    let started = p
        .apply(
            PaymentEvent::RefundStarted {
                reservation_id: ReservationId::from_uuid(Uuid::from_u128(77)),
                amount: p.amount,
            },
            t(2_000),
        )
        .unwrap();
    w.store.save_payment_transition(&started).await.unwrap();
    assert_eq!(balance(&w).await, 0, "held");
    let report = svc.poll().await.unwrap();
    assert_eq!(report.refunds_done, 1, "{report:?}");
    let done = svc.payment(p.id).await.unwrap();
    assert_eq!(done.state, PaymentState::Refunded);
    assert_eq!(balance(&w).await, 0);
    assert_eq!(svc.poll().await.unwrap().checked, 0, "nothing left to do");
    assert!(w.store.verify().await.unwrap().is_ok());
}

/// Only Telegram's definite answers settle a Stars refund: an unknown outcome keeps the
/// hold, and the poller asks again.
#[tokio::test]
async fn an_unknown_stars_refund_outcome_keeps_the_hold_until_a_definite_answer() {
    let w = world().await;
    let mut stars = MockStarsGateway::new();
    let calls = Arc::new(std::sync::Mutex::new(0));
    let c = calls.clone();
    stars.expect_refund_stars().times(2).returning(move |_, _| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n == 1 {
            Err(ProviderError::Unknown {
                message: "Internal Server Error".into(),
            })
        } else {
            Ok(())
        }
    });
    let svc = with_stars(&w, stars);
    let p = paid_in_stars(&svc, &w).await;
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::Provider(ProviderError::Unknown { .. }))
    ));
    let held = svc.payment(p.id).await.unwrap().refund_hold().unwrap();
    assert_eq!(
        w.store.reservation(held).await.unwrap().unwrap().state,
        ReservationState::Held
    );
    assert_eq!(svc.poll().await.unwrap().refunds_done, 1);
    assert_eq!(
        w.store.reservation(held).await.unwrap().unwrap().state,
        ReservationState::Captured
    );
    assert!(w.store.verify().await.unwrap().is_ok());
}
