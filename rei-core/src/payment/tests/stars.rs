//! Stars refunds through `refundStarPayment`.

use super::*;
use crate::user::{Actor, AuditAction};

/// A Telegram that expects one `refundStarPayment` of the world's user's charge `stx-1`
/// per answer, and gives the answers in order.
fn telegram_answering(answers: Vec<Result<(), ProviderError>>) -> MockStarsGateway {
    let mut stars = MockStarsGateway::new();
    let calls = answers.len();
    let mut answers = answers.into_iter();
    stars
        .expect_refund_stars()
        .withf(|user, charge| user.get() == 7 && charge == "stx-1")
        .times(calls)
        .returning(move |_, _| answers.next().unwrap());
    stars
}

fn with_stars(w: &World, stars: MockStarsGateway) -> PaymentService {
    service_with(w, None, Some(stars), stars_config(200))
}

/// A service over `telegram`, and a payment of 50 Stars (100 ₽) made through it.
async fn paid_in_stars(w: &World, telegram: MockStarsGateway) -> (PaymentService, Payment) {
    let svc = with_stars(w, telegram);
    let p = svc.create_stars_topup(w.user, 50).await.unwrap();
    assert!(svc.stars_paid(p.id, "stx-1", 50).await.unwrap().credited);
    let p = svc.payment(p.id).await.unwrap();
    (svc, p)
}

#[tokio::test]
async fn a_stars_payment_is_refunded_and_the_credit_taken_back_once() {
    let w = world().await;
    let (svc, p) = paid_in_stars(&w, telegram_answering(vec![Ok(())])).await;
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
    let telegram = telegram_answering(vec![
        Err(invalid("CHARGE_NOT_FOUND")),
        Err(transient("timeout")),
        Ok(()),
    ]);
    let (svc, p) = paid_in_stars(&w, telegram).await;
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
    the_poller_finishes_the_refund(&w, &svc, &p).await;
}

/// [money] 13: the process dies after the refund started (hold placed, recorded on the
/// payment) and before `refundStarPayment` was sent: the poller finishes it, once.
#[tokio::test]
async fn a_stars_refund_cut_off_before_telegram_was_asked_is_finished_by_the_poller() {
    let w = world().await;
    let (svc, p) = paid_in_stars(&w, telegram_answering(vec![Ok(())])).await;
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
    the_poller_finishes_the_refund(&w, &svc, &p).await;
    assert_eq!(svc.poll().await.unwrap().checked, 0, "nothing left to do");
}

/// Only Telegram's definite answers settle a Stars refund: an unknown outcome keeps the
/// hold, and the poller asks again.
#[tokio::test]
async fn an_unknown_stars_refund_outcome_keeps_the_hold_until_a_definite_answer() {
    let w = world().await;
    let unknown = ProviderError::Unknown {
        message: "Internal Server Error".into(),
    };
    let (svc, p) = paid_in_stars(&w, telegram_answering(vec![Err(unknown), Ok(())])).await;
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::Provider(ProviderError::Unknown { .. }))
    ));
    let held = svc.payment(p.id).await.unwrap().refund_hold().unwrap();
    assert_eq!(w.hold_state(held).await, ReservationState::Held);
    assert_eq!(svc.poll().await.unwrap().refunds_done, 1);
    assert_eq!(w.hold_state(held).await, ReservationState::Captured);
    assert!(w.store.verify().await.unwrap().is_ok());
}
