//! The poller: lost webhooks, abandoned payments, unfinished refunds, provider hints.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::payment::service::GatewayHint;
use crate::ports::{Clock, PaymentPage};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// A YooKassa that creates `yk-<n>` payments (n = 1, 2, …) and answers reads from a
/// table of statuses the test sets; it keeps the ids it was asked about.
#[derive(Default)]
struct Table {
    statuses: Arc<Mutex<Vec<(String, GatewayStatus)>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Table {
    fn gateway(&self) -> MockPaymentGateway {
        let mut g = MockPaymentGateway::new();
        let created = Arc::new(Mutex::new(0));
        let table = self.statuses.clone();
        g.expect_create_payment().returning(move |req| {
            let mut n = created.lock().unwrap();
            *n += 1;
            let id = format!("yk-{n}");
            table
                .lock()
                .unwrap()
                .push((id.clone(), GatewayStatus::Pending));
            Ok(remote(
                &id,
                GatewayStatus::Pending,
                req.amount.kopecks(),
                Some(req.payment_id),
            ))
        });
        let (statuses, asked) = (self.statuses.clone(), self.asked.clone());
        g.expect_get_payment().returning(move |id| {
            asked.lock().unwrap().push(id.to_owned());
            let status = statuses
                .lock()
                .unwrap()
                .iter()
                .find(|(s, _)| s == id)
                .map(|(_, st)| st.clone())
                .ok_or(ProviderError::NotFound {
                    message: id.to_owned(),
                })?;
            Ok(remote(id, status, 10_000, None))
        });
        g
    }

    fn set(&self, id: &str, to: GatewayStatus) {
        for (s, st) in self.statuses.lock().unwrap().iter_mut() {
            if s == id {
                *st = to.clone();
            }
        }
    }

    /// The ids asked about so far, oldest first.
    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// A service over the table's gateway; the world's clock drives it.
fn table_service(w: &World, config: PaymentConfig) -> (Table, PaymentService) {
    let table = Table::default();
    let svc = service(w, Some(table.gateway()), config);
    (table, svc)
}

/// What the gateway says of a refund of the whole of `yk-1` (200 ₽).
fn refund_answer(id: &str, status: RefundStatus) -> GatewayRefund {
    GatewayRefund {
        provider_payment_id: Some("yk-1".into()),
        amount: Some(m(20_000)),
        ..refund_reply(id, status)
    }
}

/// A gateway that takes one refund, `rf-1`, as pending.
fn gateway_refunding_pending() -> MockPaymentGateway {
    gateway_refunding(vec![Ok(refund_answer("rf-1", RefundStatus::Pending))]).0
}

/// The provider's word that refund `refund_id` of `yk-1` changed.
fn refund_hint(refund_id: &str) -> GatewayHint {
    GatewayHint::Refund {
        refund_id: refund_id.into(),
        provider_payment_id: "yk-1".into(),
    }
}

async fn refunds_told(w: &World) -> usize {
    w.told_of(|n| matches!(n, Notice::PaymentRefunded { .. }))
        .await
}

#[tokio::test]
async fn the_poller_credits_a_paid_top_up_whose_webhook_was_lost_oldest_first() {
    let w = world().await;
    let (yk, svc) = table_service(&w, stars_config(150));
    let oldest = svc.create_topup(w.user, m(10_000), None).await.unwrap();
    w.clock.advance(MIN);
    // A Stars invoice has nothing to ask YooKassa about.
    svc.create_stars_topup(w.user, 10).await.unwrap();
    w.clock.advance(MIN);
    svc.create_topup(w.user, m(10_000), None).await.unwrap();
    yk.set("yk-1", GatewayStatus::Succeeded);
    // The newest is not asked about yet: webhooks usually come within seconds.
    w.clock.advance(Duration::from_secs(10));
    let report = svc.poll().await.unwrap();
    assert_eq!(yk.asked(), vec!["yk-1".to_owned()]);
    assert_eq!((report.checked, report.credited), (1, 1));
    assert_eq!(
        svc.payment(oldest.id).await.unwrap().state,
        PaymentState::Paid
    );
    // A hint about a payment the provider does not know is not ours, not an outage.
    assert!(matches!(
        svc.sync_provider_payment("yk-forged").await,
        Err(PaymentError::UnknownPayment(_))
    ));
    assert_eq!(balance(&w).await, 10_000);
    assert_eq!(
        w.told_of(|n| matches!(n, Notice::PaymentCredited { .. }))
            .await,
        1
    );
    assert!(w.store.verify().await.unwrap().is_ok());
}

/// More payments are due than one round takes: the oldest go first, so a paid old one
/// is never starved by newer ones.
#[tokio::test]
async fn a_round_takes_the_oldest_due_payments_first_up_to_its_batch() {
    let w = world().await;
    let small = PaymentConfig {
        poll: PollConfig {
            batch: 2,
            ..PollConfig::default()
        },
        ..config()
    };
    let (yk, svc) = table_service(&w, small);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(svc.create_topup(w.user, m(10_000), None).await.unwrap().id);
        w.clock.advance(MIN);
    }
    yk.set("yk-1", GatewayStatus::Succeeded);
    let report = svc.poll().await.unwrap();
    assert_eq!(
        yk.asked(),
        vec!["yk-1".to_owned(), "yk-2".to_owned()],
        "the two oldest, oldest first"
    );
    assert_eq!((report.checked, report.credited), (2, 1));
    assert_eq!(svc.payment(ids[0]).await.unwrap().state, PaymentState::Paid);
    // The next round reaches the newest (the others wait out their backoff).
    yk.asked.lock().unwrap().clear();
    svc.poll().await.unwrap();
    assert_eq!(yk.asked(), vec!["yk-3".to_owned()]);
}

#[tokio::test]
async fn an_unpaid_payment_is_asked_about_with_growing_waits_then_expires() {
    let w = world().await;
    let (yk, svc) = table_service(&w, config());
    let p = svc.create_topup(w.user, m(10_000), None).await.unwrap();
    w.clock.advance(MIN);
    svc.poll().await.unwrap();
    assert_eq!(yk.asked().len(), 1);
    let after_one = svc.payment(p.id).await.unwrap();
    assert_eq!(after_one.checks, 1);
    assert_eq!(
        after_one.next_check_at,
        Some(w.clock.now().plus(Duration::from_secs(30)))
    );
    // Not due yet: nobody is asked.
    w.clock.advance(Duration::from_secs(20));
    svc.poll().await.unwrap();
    assert_eq!(yk.asked().len(), 1);
    w.clock.advance(Duration::from_secs(10));
    svc.poll().await.unwrap();
    assert_eq!(yk.asked().len(), 2);
    assert_eq!(
        svc.payment(p.id).await.unwrap().next_check_at,
        Some(w.clock.now().plus(Duration::from_secs(60))),
        "the wait doubles"
    );
    // A day later, still unpaid: one last look, then it expires.
    w.clock.advance(25 * HOUR);
    let report = svc.poll().await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(yk.asked().len(), 3);
    let expired = svc.payment(p.id).await.unwrap();
    assert_eq!(
        (expired.state, expired.cancel_reason.as_deref()),
        (
            PaymentState::Cancelled,
            Some(crate::payment::EXPIRED_REASON)
        )
    );
    w.clock.advance(HOUR);
    svc.poll().await.unwrap();
    assert_eq!(yk.asked().len(), 3, "expired payments are left alone");
    // Paid after all (a very late payer): the webhook still credits it, once.
    yk.set("yk-1", GatewayStatus::Succeeded);
    assert!(svc.sync_provider_payment("yk-1").await.unwrap().credited);
    assert!(!svc.sync_provider_payment("yk-1").await.unwrap().credited);
    assert_eq!(balance(&w).await, 10_000);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_payment_cancelled_at_the_provider_is_cancelled_by_the_poller() {
    let w = world().await;
    let (yk, svc) = table_service(&w, config());
    let p = svc.create_topup(w.user, m(10_000), None).await.unwrap();
    yk.set(
        "yk-1",
        GatewayStatus::Canceled {
            reason: Some("expired_on_confirmation".into()),
        },
    );
    w.clock.advance(MIN);
    let report = svc.poll().await.unwrap();
    assert_eq!((report.cancelled, report.expired), (1, 0));
    let cancelled = svc.payment(p.id).await.unwrap();
    assert_eq!(
        cancelled.cancel_reason.as_deref(),
        Some("expired_on_confirmation")
    );
    assert_eq!(balance(&w).await, 0);
}

#[tokio::test]
async fn a_payment_whose_creation_answer_was_lost_is_found_in_the_list_or_expired() {
    let w = world().await;
    let mut g = MockPaymentGateway::new();
    // Both creations time out: the provider made the first, not the second.
    g.expect_create_payment()
        .times(2)
        .returning(|_| Err(transient("timeout")));
    let made = Arc::new(Mutex::new(None));
    let listed = made.clone();
    let windows = Arc::new(Mutex::new(Vec::new()));
    let seen = windows.clone();
    g.expect_list_payments().returning(move |q| {
        seen.lock()
            .unwrap()
            .push((q.since, q.until, q.cursor.clone()));
        // Two pages: the first holds someone else's payment.
        match q.cursor.as_deref() {
            None => Ok(PaymentPage {
                items: vec![remote("yk-other", GatewayStatus::Succeeded, 500, None)],
                next_cursor: Some("page-2".into()),
            }),
            Some(_) => Ok(PaymentPage {
                items: listed.lock().unwrap().iter().cloned().collect(),
                next_cursor: None,
            }),
        }
    });
    let svc = service(&w, Some(g), config());
    assert!(svc.create_topup(w.user, m(10_000), None).await.is_err());
    assert!(svc.create_topup(w.user, m(20_000), None).await.is_err());
    let mut lost = svc.list(PaymentFilter::default()).await.unwrap();
    lost.sort_by_key(|p| p.amount);
    let (first, second) = (lost[0].clone(), lost[1].clone());
    *made.lock().unwrap() = Some(remote(
        "yk-9",
        GatewayStatus::Succeeded,
        10_000,
        Some(first.id),
    ));
    // Too young to give up on: the creation may still be under way.
    w.clock.advance(MIN);
    svc.poll().await.unwrap();
    assert!(windows.lock().unwrap().is_empty());
    w.clock.advance(10 * MIN);
    let report = svc.poll().await.unwrap();
    assert_eq!((report.credited, report.expired), (1, 1));
    let found = svc.payment(first.id).await.unwrap();
    assert_eq!(
        (found.state, found.provider_payment_id.as_deref()),
        (PaymentState::Paid, Some("yk-9"))
    );
    assert_eq!(
        svc.payment(second.id).await.unwrap().state,
        PaymentState::Cancelled
    );
    let windows = windows.lock().unwrap().clone();
    assert!(
        windows
            .iter()
            .all(|(since, until, _)| *since < first.created_at
                && until.is_some_and(|u| u > first.created_at)),
        "the list is read around the creation time: {windows:?}"
    );
    assert!(
        windows
            .iter()
            .any(|(_, _, c)| c.as_deref() == Some("page-2"))
    );
    assert_eq!(balance(&w).await, 10_000);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn an_unpaid_stars_invoice_expires_and_can_no_longer_be_paid() {
    let w = world().await;
    let svc = service(&w, None, stars_config(150));
    let p = svc.create_stars_topup(w.user, 10).await.unwrap();
    assert_eq!(svc.stars_checkout(p.id, w.user, 10).await.unwrap().id, p.id);
    assert!(matches!(
        svc.stars_checkout(p.id, w.user, 9).await,
        Err(PaymentError::StarsMismatch { .. })
    ));
    assert!(matches!(
        svc.stars_checkout(p.id, UserId::new(99).unwrap(), 10).await,
        Err(PaymentError::InvoiceNotPayable)
    ));
    svc.poll().await.unwrap();
    assert_eq!(
        svc.payment(p.id).await.unwrap().next_check_at,
        Some(p.created_at.plus(24 * HOUR)),
        "looked at again when it expires"
    );
    w.clock.advance(24 * HOUR);
    assert!(matches!(
        svc.stars_checkout(p.id, w.user, 10).await,
        Err(PaymentError::InvoiceNotPayable)
    ));
    assert_eq!(svc.poll().await.unwrap().expired, 1);
    assert_eq!(
        svc.payment(p.id).await.unwrap().state,
        PaymentState::Cancelled
    );
    // Telegram took the Stars anyway (checkout answered just before): credited once.
    assert!(svc.stars_paid(p.id, "stx-1", 10).await.unwrap().credited);
    assert!(!svc.stars_paid(p.id, "stx-1", 10).await.unwrap().credited);
    assert_eq!(balance(&w).await, 1_500);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_refund_whose_gateway_call_failed_is_finished_by_the_poller() {
    let w = world().await;
    let (g, sent) = gateway_refunding(vec![
        Err(transient("timeout")),
        Ok(refund_answer("rf-1", RefundStatus::Succeeded)),
    ]);
    // Not refunded at the provider when the poller looks.
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::Provider(_))
    ));
    assert_eq!(balance(&w).await, 0, "held while unknown");
    w.clock.advance(MIN);
    let report = svc.poll().await.unwrap();
    assert_eq!(report.refunds_done, 1);
    let done = svc.payment(p.id).await.unwrap();
    assert_eq!(
        (done.state, done.refunded, done.refund),
        (PaymentState::Refunded, m(20_000), None)
    );
    let sent = sent.lock().unwrap().clone();
    assert_eq!(
        sent[0].idempotency_key, sent[1].idempotency_key,
        "the same refund request, sent again"
    );
    assert_eq!(refunds_told(&w).await, 1, "the user is told once");
    w.clock.advance(HOUR);
    assert_eq!(svc.poll().await.unwrap().checked, 0);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_refund_lost_after_the_provider_made_it_is_not_sent_again() {
    let w = world().await;
    let (mut g, _) = gateway_refunding(vec![Err(transient("connection reset"))]);
    expect_creating(&mut g, "yk-1");
    let reads = Arc::new(Mutex::new(0));
    let r = reads.clone();
    g.expect_get_payment().returning(move |id| {
        let mut n = r.lock().unwrap();
        *n += 1;
        let mut p = remote(id, GatewayStatus::Succeeded, 20_000, None);
        // The second read (the poller's) shows the refund that was made.
        if *n > 1 {
            p.refunded_amount = Some(m(20_000));
        }
        Ok(p)
    });
    let svc = service(&w, Some(g), config());
    let p = svc.create_topup(w.user, m(20_000), None).await.unwrap();
    svc.sync_provider_payment("yk-1").await.unwrap();
    assert!(svc.refund(p.id, None).await.is_err());
    w.clock.advance(MIN);
    the_poller_finishes_the_refund(&w, &svc, &p).await;
}

#[tokio::test]
async fn a_pending_refund_refused_later_releases_the_hold_and_tells_the_admins() {
    let w = world().await;
    let mut g = gateway_refunding_pending();
    let answers = Arc::new(Mutex::new(vec![
        RefundStatus::Canceled {
            reason: Some("rejected_by_payee".into()),
        },
        RefundStatus::Pending,
    ]));
    g.expect_get_refund().returning(move |id| {
        assert_eq!(id, "rf-1");
        let status = answers.lock().unwrap().pop().unwrap();
        Ok(refund_answer(id, status))
    });
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    assert!(matches!(
        svc.refund(p.id, None).await.unwrap(),
        RefundOutcome::Pending(_)
    ));
    assert_eq!(
        svc.payment(p.id)
            .await
            .unwrap()
            .refund
            .and_then(|r| r.provider_refund_id)
            .as_deref(),
        Some("rf-1")
    );
    w.clock.advance(MIN);
    let first = svc.poll().await.unwrap();
    assert_eq!((first.checked, first.refunds_done), (1, 0), "still pending");
    w.clock.advance(MIN);
    let second = svc.poll().await.unwrap();
    assert_eq!(second.refunds_refused, 1);
    let after = svc.payment(p.id).await.unwrap();
    assert_eq!((after.state, after.refund), (PaymentState::Paid, None));
    assert_eq!(balance(&w).await, 20_000, "the hold was released");
    let alerts = w.notifier.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].subject, Some(format!("payment {}", p.id)));
    assert!(alerts[0].message.contains("rejected_by_payee"));
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_refund_notification_is_re_read_and_finishes_our_refund_once() {
    let w = world().await;
    let mut g = gateway_refunding_pending();
    g.expect_get_refund()
        .returning(|id| Ok(refund_answer(id, RefundStatus::Succeeded)));
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    svc.refund(p.id, None).await.unwrap();
    for _ in 0..3 {
        let applied = svc
            .gateway_notification(&refund_hint("rf-1"))
            .await
            .unwrap();
        assert_eq!(applied.payment.state, PaymentState::Refunded);
    }
    assert_eq!(refunds_told(&w).await, 1);
    assert!(matches!(
        svc.gateway_notification(&GatewayHint::Refund {
            refund_id: "rf-x".into(),
            provider_payment_id: "not-ours".into(),
        })
        .await,
        Err(PaymentError::UnknownPayment(_))
    ));
    assert_eq!(balance(&w).await, 0);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[test]
fn waits_double_up_to_the_cap() {
    let c = PollConfig::default();
    assert_eq!(c.backoff(1), Duration::from_secs(30));
    assert_eq!(c.backoff(2), Duration::from_secs(60));
    assert_eq!(c.backoff(4), Duration::from_secs(240));
    assert_eq!(c.backoff(7), Duration::from_secs(1800));
    assert_eq!(c.backoff(u32::MAX), Duration::from_secs(1800));
}

#[tokio::test]
async fn only_our_own_refund_moves_the_hold() {
    let w = world().await;
    let mut g = gateway_refunding_pending();
    g.expect_get_refund().returning(|id| {
        Ok(match id {
            // An older attempt, refused.
            "rf-old" => refund_answer(id, RefundStatus::Canceled { reason: None }),
            // A partial refund made in the dashboard.
            _ => GatewayRefund {
                amount: Some(m(5_000)),
                ..refund_answer(id, RefundStatus::Succeeded)
            },
        })
    });
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    svc.refund(p.id, None).await.unwrap();
    for refund in ["rf-old", "rf-partial"] {
        let applied = svc
            .gateway_notification(&refund_hint(refund))
            .await
            .unwrap();
        assert_eq!(applied.payment.state, PaymentState::Paid);
        assert!(applied.payment.refund.is_some(), "{refund}: still held");
    }
    assert_eq!(balance(&w).await, 0, "held until our refund rf-1 ends");
    assert!(w.notifier.alerts().is_empty());
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_refund_request_refused_outright_releases_the_hold_and_receipts_carry_the_email() {
    let w = world().await;
    w.store
        .set_receipt_email(
            w.user,
            &crate::user::Email::parse("anna@example.com").unwrap(),
        )
        .await
        .unwrap();
    let (mut g, sent) = gateway_refunding(vec![
        Err(transient("timeout")),
        Err(invalid("payment is not refundable")),
    ]);
    g.expect_create_payment().returning(|req| {
        assert_eq!(req.receipt_email.as_deref(), Some("anna@example.com"));
        Ok(remote(
            "yk-1",
            GatewayStatus::Pending,
            req.amount.kopecks(),
            Some(req.payment_id),
        ))
    });
    g.expect_get_payment()
        .returning(|id| Ok(remote(id, GatewayStatus::Succeeded, 20_000, None)));
    let svc = service(&w, Some(g), receipts_config());
    let p = svc
        .create_topup(w.user, m(20_000), Some("anna@example.com".into()))
        .await
        .unwrap();
    svc.sync_provider_payment("yk-1").await.unwrap();
    assert!(svc.refund(p.id, None).await.is_err());
    assert_eq!(
        sent.lock().unwrap()[0].receipt_email.as_deref(),
        Some("anna@example.com")
    );
    w.clock.advance(MIN);
    let report = svc.poll().await.unwrap();
    assert_eq!(report.refunds_refused, 1);
    assert_eq!(balance(&w).await, 20_000, "released");
    assert_eq!(w.notifier.alerts().len(), 1);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_payment_the_provider_contradicts_is_told_to_admins_and_asked_about_daily() {
    let w = world().await;
    let (yk, svc) = table_service(&w, config());
    // The fake answers 100 ₽ for every payment: this one is 300 ₽ here.
    let p = svc.create_topup(w.user, m(30_000), None).await.unwrap();
    yk.set("yk-1", GatewayStatus::Succeeded);
    w.clock.advance(MIN);
    let report = svc.poll().await.unwrap();
    assert_eq!(report.errors, 1);
    assert_eq!(w.notifier.alerts().len(), 1, "a person is told");
    assert_eq!(
        svc.payment(p.id).await.unwrap().next_check_at,
        Some(w.clock.now().plus(24 * HOUR))
    );
    w.clock.advance(HOUR);
    svc.poll().await.unwrap();
    assert_eq!(yk.asked().len(), 1, "not asked again within the day");
    assert_eq!(balance(&w).await, 0, "never credited blindly");
    // Unknown to the provider and past its window: expired.
    yk.statuses.lock().unwrap().clear();
    w.clock.advance(25 * HOUR);
    let report = svc.poll().await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        svc.payment(p.id).await.unwrap().state,
        PaymentState::Cancelled
    );
}

/// [money] 2: attempt A is given up here while the provider still has it pending; B is
/// started (its answer lost, so its refund id is not known yet); A's refusal arrives
/// late. Only A's hold may move: B's stays held, and B's success takes the balance back
/// exactly once.
#[tokio::test]
async fn a_late_refusal_of_an_earlier_attempt_never_releases_a_newer_ones_hold() {
    let w = world().await;
    let (mut g, sent) = gateway_refunding(vec![
        // A: the answer is lost; then its key has expired and the provider refuses the
        // resend outright.
        Err(transient("connection reset")),
        Err(invalid("idempotence key expired")),
        // B: the answer is lost too; sent again later, it went through.
        Err(transient("connection reset")),
        Ok(refund_answer("rf-B", RefundStatus::Succeeded)),
    ]);
    g.expect_get_refund().returning(|id| {
        Ok(match id {
            "rf-A" => refund_answer(
                id,
                RefundStatus::Canceled {
                    reason: Some("rejected_by_payee".into()),
                },
            ),
            _ => refund_answer(id, RefundStatus::Succeeded),
        })
    });
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    assert!(svc.refund(p.id, None).await.is_err());
    w.clock.advance(MIN);
    assert_eq!(
        svc.poll().await.unwrap().refunds_refused,
        1,
        "A given up here"
    );
    assert_eq!(balance(&w).await, 20_000);
    assert!(svc.refund(p.id, None).await.is_err(), "B's answer lost");
    let b = svc.payment(p.id).await.unwrap().refund_hold().unwrap();
    // A's refusal, late.
    let applied = svc
        .gateway_notification(&refund_hint("rf-A"))
        .await
        .unwrap();
    assert_eq!(
        applied.payment.refund_hold(),
        Some(b),
        "B is still under way"
    );
    assert_eq!(
        w.hold_state(b).await,
        ReservationState::Held,
        "B's hold is still held"
    );
    assert_eq!(balance(&w).await, 0);
    // The poller sends B again under B's key: it went through; captured once.
    w.clock.advance(MIN);
    assert_eq!(svc.poll().await.unwrap().refunds_done, 1);
    let done = svc.payment(p.id).await.unwrap();
    assert_eq!((done.state, done.refund), (PaymentState::Refunded, None));
    assert_eq!(balance(&w).await, 0);
    assert_eq!(w.hold_state(b).await, ReservationState::Captured);
    svc.gateway_notification(&refund_hint("rf-B"))
        .await
        .unwrap();
    assert_eq!(balance(&w).await, 0, "a duplicate changes nothing");
    let keys: Vec<_> = sent
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(keys[0], keys[1], "A resent under its own key");
    assert_ne!(keys[1], keys[2], "B has its own key");
    assert_eq!(keys[2], keys[3], "B resent under its own key");
    assert!(w.store.verify().await.unwrap().is_ok());
}
