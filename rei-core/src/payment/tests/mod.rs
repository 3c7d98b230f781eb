//! Payment state machine and `PaymentService` tests.

use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::ids::{IdempotencyKey, PaymentId, ReservationId, UserId};
use crate::ledger::{EntryKind, NewEntry, RefType, ReservationState};
use crate::memory::{ManualClock, MemoryStore, RecordingNotifier, SequentialIds};
use crate::money::Money;
use crate::ports::{
    GatewayPayment, GatewayRefund, GatewayStatus, LedgerStore, MockPaymentGateway,
    MockStarsGateway, Notice, PaymentStore, ProviderError, RefundRequest, RefundStatus, UserStore,
};
use crate::time::Timestamp;
use crate::user::{Language, UserProfile};

fn m(k: i64) -> Money {
    Money::from_kopecks(k).unwrap()
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn pending() -> Payment {
    NewPayment {
        id: PaymentId::from_uuid(Uuid::from_u128(1)),
        user_id: UserId::new(1).unwrap(),
        provider: PaymentProvider::Yookassa,
        amount: m(50_000),
        provider_units: None,
        created_at: t(0),
    }
    .pending()
}

fn ok_step(p: &Payment, ev: PaymentEvent) -> PaymentTransition {
    p.apply(ev, t(10)).unwrap()
}

fn succeeded(id: &str, k: i64) -> PaymentEvent {
    PaymentEvent::ProviderSucceeded {
        provider_payment_id: id.into(),
        amount: m(k),
    }
}

// ---- state machine ----

#[test]
fn entering_paid_credits_once() {
    let tr = ok_step(&pending(), succeeded("yk", 50_000));
    assert_eq!(
        (tr.after().state, tr.effect()),
        (PaymentState::Paid, Some(&PaymentEffect::Credit))
    );
    assert_eq!(tr.after().paid_at, Some(t(10)));
    let again = ok_step(tr.after(), succeeded("yk", 50_000));
    assert!(!again.changed());
    assert_eq!(again.effect(), None);
}

#[test]
fn waiting_for_capture_and_pending_change_nothing() {
    let tr = ok_step(&pending(), PaymentEvent::ProviderPending);
    assert!(!tr.changed());
    assert_eq!(tr.effect(), None);
}

#[test]
fn cancellation_is_final() {
    let c = ok_step(
        &pending(),
        PaymentEvent::ProviderCancelled {
            reason: Some("expired_on_confirmation".into()),
        },
    )
    .after;
    assert_eq!(
        (c.state, c.cancel_reason.as_deref()),
        (PaymentState::Cancelled, Some("expired_on_confirmation"))
    );
    assert!(!ok_step(&c, PaymentEvent::ProviderCancelled { reason: None }).changed());
    assert!(!ok_step(&c, PaymentEvent::ProviderPending).changed());
    assert!(matches!(
        c.apply(PaymentEvent::RefundSucceeded { hold: hold(1) }, t(1)),
        Err(PaymentTransitionError::Illegal { .. })
    ));
}

#[test]
fn money_taken_after_a_cancel_or_expiry_is_credited_once() {
    let expired = ok_step(&pending(), PaymentEvent::Expired).after;
    assert_eq!(
        (expired.state, expired.cancel_reason.as_deref()),
        (PaymentState::Cancelled, Some(EXPIRED_REASON))
    );
    assert!(!ok_step(&expired, PaymentEvent::Expired).changed());
    // Its creation answer was lost: the id becomes known, it stays cancelled.
    let named = ok_step(
        &expired,
        PaymentEvent::Registered {
            provider_payment_id: "yk".into(),
            confirmation_url: None,
        },
    )
    .after;
    assert_eq!(named.state, PaymentState::Cancelled);
    let paid = ok_step(&named, succeeded("yk", 50_000));
    assert_eq!(paid.effect(), Some(&PaymentEffect::Credit));
    assert_eq!(
        (paid.after().state, paid.after().cancel_reason.as_deref()),
        (PaymentState::Paid, None)
    );
    assert!(!ok_step(paid.after(), succeeded("yk", 50_000)).changed());
    assert!(matches!(
        named.apply(succeeded("other", 50_000), t(1)),
        Err(PaymentTransitionError::ProviderIdMismatch { .. })
    ));
    assert!(matches!(
        named.apply(succeeded("yk", 40_000), t(1)),
        Err(PaymentTransitionError::AmountMismatch { .. })
    ));
    assert!(paid.after().apply(PaymentEvent::Expired, t(2)).is_err());
}

fn hold(n: u128) -> ReservationId {
    ReservationId::from_uuid(Uuid::from_u128(n))
}

fn start(p: &Payment, n: u128, k: i64) -> PaymentTransition {
    ok_step(
        p,
        PaymentEvent::RefundStarted {
            reservation_id: hold(n),
            amount: m(k),
        },
    )
}

#[test]
fn a_refund_id_is_recorded_once_and_dropped_with_a_refusal() {
    let paid = ok_step(&pending(), succeeded("yk", 50_000)).after().clone();
    let requested = |n, id: &str| PaymentEvent::RefundRequested {
        hold: hold(n),
        refund_id: id.into(),
    };
    assert!(
        !ok_step(&paid, requested(9, "rf")).changed(),
        "no refund under way: an answer about it changes nothing"
    );
    let started = start(&paid, 9, 50_000);
    assert!(
        matches!(started.effect(), Some(PaymentEffect::HoldRefund(h)) if h.id == hold(9) && h.amount == m(50_000) && h.job_id.is_none())
    );
    let started = started.after().clone();
    let asked = ok_step(&started, requested(9, "rf"));
    assert_eq!(asked.effect(), None);
    let asked = asked.after().clone();
    assert_eq!(
        asked
            .refund
            .as_ref()
            .and_then(|r| r.provider_refund_id.as_deref()),
        Some("rf")
    );
    assert!(!ok_step(&asked, requested(9, "rf")).changed());
    assert!(asked.apply(requested(9, "other"), t(1)).is_err());
    let refused = ok_step(&asked, PaymentEvent::RefundFailed { hold: hold(9) });
    assert_eq!(
        refused.effect(),
        Some(&PaymentEffect::ReleaseRefundHold(hold(9)))
    );
    assert_eq!(refused.after().refund, None);
}

#[test]
fn refunds_capture_or_release_the_hold() {
    let paid = ok_step(&pending(), succeeded("yk", 50_000)).after().clone();
    assert!(
        !ok_step(&paid, PaymentEvent::RefundSucceeded { hold: hold(9) }).changed(),
        "no refund under way: nothing to capture"
    );
    let started = start(&paid, 9, 50_000).after().clone();
    let done = ok_step(&started, PaymentEvent::RefundSucceeded { hold: hold(9) });
    assert_eq!(
        (done.after().state, done.after().refunded, done.effect()),
        (
            PaymentState::Refunded,
            m(50_000),
            Some(&PaymentEffect::CaptureRefundHold(hold(9)))
        )
    );
    let done = done.after().clone();
    assert!(!ok_step(&done, PaymentEvent::RefundSucceeded { hold: hold(9) }).changed());
    assert!(
        !ok_step(&done, succeeded("yk", 50_000)).changed(),
        "YooKassa still says succeeded after a refund"
    );
    let failed = ok_step(&started, PaymentEvent::RefundFailed { hold: hold(9) });
    assert_eq!(
        (failed.after().state, failed.effect()),
        (
            PaymentState::Paid,
            Some(&PaymentEffect::ReleaseRefundHold(hold(9)))
        )
    );
}

#[test]
fn partial_refunds_add_up_to_the_paid_amount_one_at_a_time() {
    let paid = ok_step(&pending(), succeeded("yk", 50_000)).after().clone();
    let first = start(&paid, 1, 20_000).after().clone();
    // One at a time.
    assert!(
        first
            .apply(
                PaymentEvent::RefundStarted {
                    reservation_id: hold(2),
                    amount: m(10_000)
                },
                t(1)
            )
            .is_err()
    );
    let part = ok_step(&first, PaymentEvent::RefundSucceeded { hold: hold(1) })
        .after()
        .clone();
    assert_eq!(
        (part.state, part.refunded, part.refundable()),
        (PaymentState::Paid, m(20_000), m(30_000))
    );
    // Never more than is left, never nothing.
    for k in [30_001, 0] {
        assert!(matches!(
            part.apply(
                PaymentEvent::RefundStarted {
                    reservation_id: hold(2),
                    amount: m(k)
                },
                t(1)
            ),
            Err(PaymentTransitionError::RefundTooLarge { .. })
        ));
    }
    let rest = start(&part, 2, 30_000).after().clone();
    let all = ok_step(&rest, PaymentEvent::RefundSucceeded { hold: hold(2) })
        .after()
        .clone();
    assert_eq!(
        (all.state, all.refunded),
        (PaymentState::Refunded, m(50_000))
    );
    assert!(
        all.apply(
            PaymentEvent::RefundStarted {
                reservation_id: hold(3),
                amount: m(1)
            },
            t(1)
        )
        .is_err()
    );
}

#[test]
fn an_outcome_of_an_earlier_attempt_never_moves_a_newer_ones_hold() {
    let paid = ok_step(&pending(), succeeded("yk", 50_000)).after().clone();
    // Attempt A was given up (released); attempt B is under way.
    let a = start(&paid, 1, 50_000).after().clone();
    let given_up = ok_step(&a, PaymentEvent::RefundFailed { hold: hold(1) })
        .after()
        .clone();
    let b = start(&given_up, 2, 50_000).after().clone();
    for late in [
        PaymentEvent::RefundFailed { hold: hold(1) },
        PaymentEvent::RefundSucceeded { hold: hold(1) },
        PaymentEvent::RefundRequested {
            hold: hold(1),
            refund_id: "rf-a".into(),
        },
    ] {
        let t = ok_step(&b, late);
        assert!(!t.changed(), "a late word about A moves nothing");
        assert_eq!(t.effect(), None);
    }
    let done = ok_step(&b, PaymentEvent::RefundSucceeded { hold: hold(2) });
    assert_eq!(
        done.effect(),
        Some(&PaymentEffect::CaptureRefundHold(hold(2)))
    );
}

mod poll;
mod stars;

#[test]
fn a_paid_payment_cannot_be_cancelled_by_the_provider() {
    let paid = ok_step(&pending(), succeeded("yk", 50_000)).after;
    assert!(
        paid.apply(PaymentEvent::ProviderCancelled { reason: None }, t(1))
            .is_err()
    );
}

#[test]
fn a_different_amount_is_never_credited() {
    let r = pending().apply(succeeded("yk", 49_999), t(1));
    assert_eq!(
        r,
        Err(PaymentTransitionError::AmountMismatch {
            payment_id: pending().id,
            expected: m(50_000),
            reported: m(49_999)
        })
    );
}

#[test]
fn a_different_provider_id_is_refused() {
    let reg = ok_step(
        &pending(),
        PaymentEvent::Registered {
            provider_payment_id: "a".into(),
            confirmation_url: None,
        },
    )
    .after;
    assert!(matches!(
        reg.apply(succeeded("b", 50_000), t(1)),
        Err(PaymentTransitionError::ProviderIdMismatch { .. })
    ));
}

#[test]
fn payment_codes_are_stable() {
    for s in PaymentState::ALL {
        assert_eq!(s.as_str().parse::<PaymentState>(), Ok(s));
    }
    assert_eq!(PaymentProvider::TelegramStars.as_str(), "telegram_stars");
}

// ---- service ----

struct World {
    store: Arc<MemoryStore>,
    notifier: Arc<RecordingNotifier>,
    /// The clock of every service built over this world.
    clock: Arc<ManualClock>,
    user: UserId,
}

impl World {
    /// Sends what the outbox holds (as the dispatcher would), then every notice so far.
    async fn told(&self) -> Vec<(UserId, Notice)> {
        let later = Arc::new(ManualClock::new(Timestamp::from_millis(4_000_000_000_000)));
        crate::notice::flush(self.store.clone(), self.notifier.clone(), later).await;
        self.notifier.notices()
    }

    /// How many of the notices told so far are of the kind `is` picks.
    async fn told_of(&self, is: fn(&Notice) -> bool) -> usize {
        self.told().await.iter().filter(|(_, n)| is(n)).count()
    }

    async fn hold_state(&self, hold: ReservationId) -> ReservationState {
        self.store.reservation(hold).await.unwrap().unwrap().state
    }
}

async fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let user = UserId::new(7).unwrap();
    store
        .register(
            UserProfile {
                id: user,
                username: None,
                first_name: None,
                language: Language::Ru,
            },
            t(0),
        )
        .await
        .unwrap();
    World {
        store,
        notifier: Arc::new(RecordingNotifier::default()),
        clock: Arc::new(ManualClock::new(t(1_000))),
        user,
    }
}

fn service(
    w: &World,
    gateway: Option<MockPaymentGateway>,
    config: PaymentConfig,
) -> PaymentService {
    service_with(w, gateway, None, config)
}

/// A payment service over the world's store, notifier and clock, with these gateways.
fn service_with(
    w: &World,
    gateway: Option<MockPaymentGateway>,
    stars: Option<MockStarsGateway>,
    config: PaymentConfig,
) -> PaymentService {
    PaymentService::new(
        PaymentPorts {
            users: w.store.clone(),
            payments: w.store.clone(),
            gateway: gateway.map(|g| Arc::new(g) as Arc<dyn crate::ports::PaymentGateway>),
            stars: stars.map(|s| Arc::new(s) as Arc<dyn crate::ports::StarsGateway>),
            notifier: w.notifier.clone(),
            clock: w.clock.clone(),
            ids: Arc::new(SequentialIds::default()),
        },
        config,
    )
}

fn config() -> PaymentConfig {
    PaymentConfig {
        return_url: "https://t.me/ReiBot".into(),
        ..PaymentConfig::default()
    }
}

/// Stars on, at `rate` kopecks a Star.
fn stars_config(rate: i64) -> PaymentConfig {
    PaymentConfig {
        stars_rate: Some(m(rate)),
        ..config()
    }
}

fn receipts_config() -> PaymentConfig {
    PaymentConfig {
        receipts: true,
        ..config()
    }
}

fn remote(id: &str, status: GatewayStatus, k: i64, ours: Option<PaymentId>) -> GatewayPayment {
    GatewayPayment {
        provider_payment_id: id.into(),
        status,
        amount: m(k),
        confirmation_url: Some(format!("https://yoomoney.ru/checkout/{id}")),
        payment_id: ours,
        user_id: None,
        created_at: None,
        test: true,
        ..Default::default()
    }
}

/// The gateway's answer about a refund it knows nothing else of.
fn refund_reply(id: &str, status: RefundStatus) -> GatewayRefund {
    GatewayRefund {
        refund_id: id.into(),
        status,
        provider_payment_id: None,
        amount: None,
    }
}

fn transient(message: &str) -> ProviderError {
    ProviderError::Transient {
        message: message.into(),
    }
}

fn invalid(message: &str) -> ProviderError {
    ProviderError::InvalidRequest {
        message: message.into(),
    }
}

/// Expects one creation, made as `id` (pending) for our return URL.
fn expect_creating(g: &mut MockPaymentGateway, id: &'static str) {
    g.expect_create_payment().times(1).returning(move |req| {
        assert_eq!(req.return_url, "https://t.me/ReiBot");
        Ok(remote(
            id,
            GatewayStatus::Pending,
            req.amount.kopecks(),
            Some(req.payment_id),
        ))
    });
}

fn gateway_creating(id: &'static str) -> MockPaymentGateway {
    let mut g = MockPaymentGateway::new();
    expect_creating(&mut g, id);
    g
}

/// The refund requests a gateway was sent, in order.
type Sent = Arc<std::sync::Mutex<Vec<RefundRequest>>>;

/// A gateway whose refund calls get `answers` in order (exactly that many calls); the
/// requests it is sent are kept.
fn gateway_refunding(
    answers: Vec<Result<GatewayRefund, ProviderError>>,
) -> (MockPaymentGateway, Sent) {
    let mut g = MockPaymentGateway::new();
    let sent = Sent::default();
    let kept = sent.clone();
    let calls = answers.len();
    let mut answers = answers.into_iter();
    g.expect_refund().times(calls).returning(move |r| {
        kept.lock().unwrap().push(r.clone());
        answers.next().unwrap()
    });
    (g, sent)
}

async fn balance(w: &World) -> i64 {
    w.store.balance(w.user).await.unwrap().available.kopecks()
}

/// The next poller round finishes the refund of `p`: refunded, the money taken back,
/// the ledger sound.
async fn the_poller_finishes_the_refund(w: &World, svc: &PaymentService, p: &Payment) {
    let report = svc.poll().await.unwrap();
    assert_eq!(report.refunds_done, 1, "{report:?}");
    assert_eq!(
        svc.payment(p.id).await.unwrap().state,
        PaymentState::Refunded
    );
    assert_eq!(balance(w).await, 0);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_top_up_gets_a_link_then_the_webhook_credits_once() {
    let w = world().await;
    let mut g = gateway_creating("yk-1");
    g.expect_get_payment()
        .times(3)
        .returning(|id| Ok(remote(id, GatewayStatus::Succeeded, 50_000, None)));
    let svc = service(&w, Some(g), config());
    let p = svc.create_topup(w.user, m(50_000), None).await.unwrap();
    assert_eq!(
        p.confirmation_url.as_deref(),
        Some("https://yoomoney.ru/checkout/yk-1")
    );
    assert_eq!(p.provider_payment_id.as_deref(), Some("yk-1"));
    let first = svc.sync_provider_payment("yk-1").await.unwrap();
    assert!(first.credited);
    for _ in 0..2 {
        let dup = svc.sync_provider_payment("yk-1").await.unwrap();
        assert!(!dup.credited, "duplicate webhooks credit nothing");
    }
    assert_eq!(balance(&w).await, 50_000);
    assert_eq!(
        w.told_of(|n| matches!(n, Notice::PaymentCredited { .. }))
            .await,
        1,
        "the user is told once"
    );
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn the_check_button_asks_the_gateway_only_for_pending_payments() {
    let w = world().await;
    let mut g = gateway_creating("yk-1");
    g.expect_get_payment()
        .times(1)
        .returning(|id| Ok(remote(id, GatewayStatus::WaitingForCapture, 10_000, None)));
    let svc = service(&w, Some(g), config());
    let p = svc.create_topup(w.user, m(10_000), None).await.unwrap();
    // Another user's press: unknown to them, and YooKassa is not asked (`times(1)`).
    let stranger = UserId::new(999_999).unwrap();
    assert!(matches!(
        svc.check(stranger, p.id).await,
        Err(PaymentError::UnknownPayment(id)) if id == p.id.to_string()
    ));
    let checked = svc.check(w.user, p.id).await.unwrap();
    assert_eq!(
        (checked.payment.state, checked.credited),
        (PaymentState::Pending, false)
    );
    assert_eq!(balance(&w).await, 0);
}

#[tokio::test]
async fn a_refused_creation_cancels_the_local_payment_but_an_unknown_outcome_stays_pending() {
    let w = world().await;
    let mut g = MockPaymentGateway::new();
    let mut answers = [Err(invalid("amount.value")), Err(transient("503"))].into_iter();
    g.expect_create_payment()
        .times(2)
        .returning(move |_| answers.next().unwrap());
    let svc = service(&w, Some(g), config());
    let refused = svc.create_topup(w.user, m(10_000), None).await;
    assert!(
        matches!(
            refused,
            Err(PaymentError::Provider(ProviderError::InvalidRequest { .. }))
        ),
        "{refused:?}"
    );
    let unknown = svc.create_topup(w.user, m(10_000), None).await;
    assert!(
        matches!(
            unknown,
            Err(PaymentError::Provider(ProviderError::Transient { .. }))
        ),
        "{unknown:?}"
    );
    let all = w.store.payments(PaymentFilter::default()).await.unwrap();
    let states: Vec<_> = all.iter().map(|p| p.state).collect();
    // Newest first: the unknown outcome may exist at YooKassa and stays pending, so its
    // webhook can still register and credit it; the refused one is cancelled.
    assert_eq!(states, vec![PaymentState::Pending, PaymentState::Cancelled]);
}

#[tokio::test]
async fn a_crash_before_storing_the_provider_id_is_healed_by_metadata() {
    let w = world().await;
    let svc = service(&w, None, config());
    // Simulate: payment created locally, gateway created it, we crashed before Registered.
    let ours = w
        .store
        .create_payment(NewPayment {
            id: PaymentId::from_uuid(Uuid::from_u128(5)),
            user_id: w.user,
            provider: PaymentProvider::Yookassa,
            amount: m(30_000),
            provider_units: None,
            created_at: t(0),
        })
        .await
        .unwrap();
    let applied = svc
        .apply_gateway_payment(&remote(
            "yk-9",
            GatewayStatus::Succeeded,
            30_000,
            Some(ours.id),
        ))
        .await
        .unwrap();
    assert!(applied.credited);
    assert_eq!(applied.payment.provider_payment_id.as_deref(), Some("yk-9"));
    assert_eq!(balance(&w).await, 30_000);
}

#[tokio::test]
async fn foreign_payments_and_wrong_amounts_are_never_credited() {
    let w = world().await;
    let mut g = gateway_creating("yk-1");
    g.expect_get_payment()
        .returning(|id| Ok(remote(id, GatewayStatus::Succeeded, 1, None)));
    let svc = service(&w, Some(g), config());
    svc.create_topup(w.user, m(10_000), None).await.unwrap();
    assert!(matches!(
        svc.sync_provider_payment("yk-1").await,
        Err(PaymentError::Transition(
            PaymentTransitionError::AmountMismatch { .. }
        ))
    ));
    assert!(matches!(
        svc.sync_provider_payment("someone-else").await,
        Err(PaymentError::UnknownPayment(_))
    ));
    assert_eq!(balance(&w).await, 0);
}

#[tokio::test]
async fn bad_top_up_requests_change_nothing() {
    let w = world().await;
    let mut g = MockPaymentGateway::new();
    g.expect_create_payment().never();
    let svc = service(&w, Some(g), receipts_config());
    assert!(matches!(
        svc.create_topup(w.user, m(50), None).await,
        Err(PaymentError::AmountOutOfRange { .. })
    ));
    assert!(matches!(
        svc.create_topup(w.user, m(10_000), None).await,
        Err(PaymentError::EmailRequired)
    ));
    assert!(matches!(
        svc.create_topup(UserId::new(404).unwrap(), m(10_000), None)
            .await,
        Err(PaymentError::UnknownUser(_))
    ));
    let none = service(&w, None, config());
    assert!(matches!(
        none.create_topup(w.user, m(10_000), None).await,
        Err(PaymentError::MethodUnavailable)
    ));
    assert!(
        w.store
            .payments(PaymentFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn stars_credit_by_rate_once_per_charge() {
    let w = world().await;
    let svc = service(&w, None, stars_config(150));
    let p = svc.create_stars_topup(w.user, 100).await.unwrap();
    assert_eq!(
        (p.amount, p.provider),
        (m(15_000), PaymentProvider::TelegramStars)
    );
    assert!(svc.stars_paid(p.id, "stx-1", 100).await.unwrap().credited);
    assert!(!svc.stars_paid(p.id, "stx-1", 100).await.unwrap().credited);
    assert_eq!(balance(&w).await, 15_000);
    let q = svc.create_stars_topup(w.user, 10).await.unwrap();
    assert!(
        matches!(
            svc.stars_paid(q.id, "stx-2", 9).await,
            Err(PaymentError::StarsMismatch {
                invoiced: 10,
                paid: 9
            })
        ),
        "a short payment is not credited"
    );
    let off = service(&w, None, config());
    assert!(matches!(
        off.create_stars_topup(w.user, 10).await,
        Err(PaymentError::MethodUnavailable)
    ));
}

/// A top-up of `k` kopecks, paid: `g` (with the test's refund expectations) creates it
/// as `yk-1` and then reports it paid.
async fn paid_topup(w: &World, g: MockPaymentGateway, k: i64) -> (PaymentService, Payment) {
    let mut g = g;
    expect_creating(&mut g, "yk-1");
    g.expect_get_payment()
        .returning(move |id| Ok(remote(id, GatewayStatus::Succeeded, k, None)));
    let svc = service(w, Some(g), config());
    let p = svc.create_topup(w.user, m(k), None).await.unwrap();
    svc.sync_provider_payment("yk-1").await.unwrap();
    (svc, p)
}

#[tokio::test]
async fn a_refund_takes_the_money_back_once() {
    let w = world().await;
    let (g, sent) = gateway_refunding(vec![Ok(refund_reply("rf-1", RefundStatus::Succeeded))]);
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    let out = svc.refund(p.id, None).await.unwrap();
    assert!(matches!(out, RefundOutcome::Refunded(ref r) if r.state == PaymentState::Refunded));
    assert_eq!(sent.lock().unwrap()[0].amount, m(20_000));
    assert_eq!(balance(&w).await, 0);
    assert!(
        matches!(
            svc.refund(p.id, None).await.unwrap(),
            RefundOutcome::Refunded(_)
        ),
        "repeat is a no-op"
    );
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_refund_of_spent_money_is_refused_with_a_clear_error() {
    let w = world().await;
    let (g, _) = gateway_refunding(Vec::new());
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    let spend = NewEntry {
        user_id: w.user,
        kind: EntryKind::Debit,
        amount: m(5_000),
        ref_type: RefType::Admin,
        ref_id: "x".into(),
        description: "spent".into(),
        idempotency_key: IdempotencyKey::new("spend").unwrap(),
        created_at: t(1),
    };
    w.store.post(spend, None).await.unwrap();
    match svc.refund(p.id, None).await {
        Err(PaymentError::RefundExceedsBalance { needed, available }) => {
            assert_eq!((needed, available), (m(20_000), m(15_000)))
        }
        other => panic!("expected RefundExceedsBalance, got {other:?}"),
    }
    assert_eq!(balance(&w).await, 15_000);
    assert_eq!(svc.payment(p.id).await.unwrap().state, PaymentState::Paid);
}

#[tokio::test]
async fn a_refused_refund_releases_the_hold_and_a_later_one_can_succeed() {
    let w = world().await;
    let refused = RefundStatus::Canceled {
        reason: Some("rejected_by_payee".into()),
    };
    let (g, sent) = gateway_refunding(vec![
        Ok(refund_reply("rf", refused)),
        Ok(refund_reply("rf2", RefundStatus::Succeeded)),
    ]);
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::RefundRefused { .. })
    ));
    assert_eq!(balance(&w).await, 20_000, "the hold was released");
    assert!(matches!(
        svc.refund(p.id, None).await.unwrap(),
        RefundOutcome::Refunded(_)
    ));
    let sent = sent.lock().unwrap().clone();
    assert_ne!(
        sent[0].idempotency_key, sent[1].idempotency_key,
        "a new attempt after a refusal uses a new key"
    );
    assert_eq!(balance(&w).await, 0);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_transient_refund_failure_keeps_the_hold_for_a_safe_retry() {
    let w = world().await;
    let (g, sent) = gateway_refunding(vec![
        Err(transient("timeout")),
        Ok(refund_reply("rf", RefundStatus::Succeeded)),
    ]);
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::Provider(_))
    ));
    let held = svc.payment(p.id).await.unwrap().refund_hold().unwrap();
    assert_eq!(w.hold_state(held).await, ReservationState::Held);
    assert_eq!(
        balance(&w).await,
        0,
        "the amount stays held while the result is unknown"
    );
    svc.refund(p.id, None).await.unwrap();
    assert_eq!(
        w.hold_state(held).await,
        ReservationState::Captured,
        "the same hold is captured"
    );
    assert!(w.store.verify().await.unwrap().is_ok());
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].idempotency_key, sent[1].idempotency_key,
        "a retried refund reuses its idempotency key"
    );
}

#[tokio::test]
async fn unpaid_payments_cannot_be_refunded() {
    let w = world().await;
    let g = gateway_creating("yk-1");
    let svc = service(&w, Some(g), config());
    let p = svc.create_topup(w.user, m(10_000), None).await.unwrap();
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::WrongState {
            state: PaymentState::Pending,
            ..
        })
    ));
}

#[test]
fn a_late_registration_after_the_webhook_is_a_repeat() {
    let paid = ok_step(&pending(), succeeded("yk", 50_000)).after().clone();
    let same = PaymentEvent::Registered {
        provider_payment_id: "yk".into(),
        confirmation_url: None,
    };
    assert!(!ok_step(&paid, same).changed());
    let other = PaymentEvent::Registered {
        provider_payment_id: "other".into(),
        confirmation_url: None,
    };
    assert!(paid.apply(other, t(1)).is_err());
}

#[tokio::test]
async fn stars_are_credited_at_the_invoiced_rate_even_after_a_rate_change() {
    let w = world().await;
    let old = service(&w, None, stars_config(150));
    let p = old.create_stars_topup(w.user, 100).await.unwrap();
    assert_eq!(p.provider_units, Some(100));
    let new = service(&w, None, stars_config(200));
    assert!(matches!(
        new.stars_paid(p.id, "stx-1", 99).await,
        Err(PaymentError::StarsMismatch {
            invoiced: 100,
            paid: 99
        })
    ));
    assert!(new.stars_paid(p.id, "stx-1", 100).await.unwrap().credited);
    assert_eq!(
        balance(&w).await,
        15_000,
        "the invoiced amount, not 100 × the new rate"
    );
}

#[tokio::test]
async fn a_refund_error_of_any_kind_keeps_the_hold() {
    let w = world().await;
    let (g, _) = gateway_refunding(vec![Err(invalid("payment already refunded"))]);
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    assert!(matches!(
        svc.refund(p.id, None).await,
        Err(PaymentError::Provider(ProviderError::InvalidRequest { .. }))
    ));
    let held = svc.payment(p.id).await.unwrap().refund_hold().unwrap();
    assert_eq!(
        w.hold_state(held).await,
        ReservationState::Held,
        "a 4xx may hide a refund that happened: the money stays held, never handed back twice"
    );
    assert_eq!(balance(&w).await, 0);
    assert!(w.store.verify().await.unwrap().is_ok());
}

#[tokio::test]
async fn two_refunds_at_once_ask_the_provider_once_and_take_the_money_back_once() {
    let w = world().await;
    let mut g = MockPaymentGateway::new();
    g.expect_refund().times(1).returning(|r| {
        Ok(GatewayRefund {
            amount: Some(r.amount),
            ..refund_reply("rf", RefundStatus::Succeeded)
        })
    });
    let (svc, p) = paid_topup(&w, g, 20_000).await;
    let (a, b) = tokio::join!(svc.refund(p.id, None), svc.refund(p.id, None));
    let outcomes = [a, b];
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Ok(RefundOutcome::Refunded(_)))),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Ok(RefundOutcome::Refunded(_)) | Err(PaymentError::RefundInProgress { .. })
        )),
        "{outcomes:?}"
    );
    assert_eq!(balance(&w).await, 0, "taken back once");
    assert!(w.store.verify().await.unwrap().is_ok());
}
