//! Outbox dispatcher tests: notices written with their money change are sent once,
//! retried with backoff while Telegram is down, given up when the user blocked the bot,
//! and held from a second dispatcher while one sends them.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::ids::{IdempotencyKey, UserId};
use crate::ledger::{EntryKind, NewEntry, RefType};
use crate::memory::{Failure, ManualClock, MemoryStore, RecordingNotifier};
use crate::money::Money;
use crate::ports::{LedgerStore, Notice, OutboxStore, UserStore};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord, Language, UserProfile};

fn m(k: i64) -> Money {
    Money::from_kopecks(k).unwrap()
}

struct World {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    notifier: Arc<RecordingNotifier>,
    dispatcher: NoticeDispatcher,
    alice: UserId,
}

async fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
    let notifier = Arc::new(RecordingNotifier::default());
    let alice = UserId::new(7).unwrap();
    store
        .register(
            UserProfile {
                id: alice,
                username: None,
                first_name: None,
                language: Language::Ru,
            },
            clock.now(),
        )
        .await
        .unwrap();
    let dispatcher = NoticeDispatcher::new(
        store.clone(),
        store.clone(),
        notifier.clone(),
        clock.clone(),
        DispatchConfig {
            batch: 2,
            max_attempts: 3,
            ..DispatchConfig::default()
        },
    );
    World {
        store,
        clock,
        notifier,
        dispatcher,
        alice,
    }
}

/// A manual credit: the only way in this module to write a notice with its entry.
async fn adjust(w: &World, key: &str, kopecks: i64) {
    let at = w.clock.now();
    w.store
        .post_adjustment(
            NewEntry {
                user_id: w.alice,
                kind: EntryKind::Credit,
                amount: m(kopecks),
                ref_type: RefType::Admin,
                ref_id: key.into(),
                idempotency_key: IdempotencyKey::new(format!("admin:{key}")).unwrap(),
                description: "test".into(),
                created_at: at,
            },
            AuditRecord {
                actor: Actor::System,
                action: AuditAction::BalanceAdd,
                target_user: Some(w.alice),
                amount: Some(m(kopecks)),
                reason: "test".into(),
                created_at: at,
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_notice_written_with_its_credit_is_sent_once() {
    let w = world().await;
    adjust(&w, "a", 500).await;
    // Replaying the same adjustment writes no second notice.
    adjust(&w, "a", 500).await;
    assert_eq!(w.store.outbox_depth().await.unwrap(), 1);
    assert!(w.notifier.notices().is_empty(), "nothing is sent at commit");

    let report = w.dispatcher.dispatch_due().await.unwrap();
    assert_eq!(report.sent, 1);
    assert_eq!(
        w.notifier.notices(),
        vec![(
            w.alice,
            Notice::BalanceCredited {
                amount: m(500),
                balance: m(500)
            }
        )]
    );
    // A second round sends nothing again.
    let again = w.dispatcher.dispatch_due().await.unwrap();
    assert_eq!(again, DispatchReport::default());
    assert_eq!(w.notifier.notices().len(), 1);
    assert_eq!(w.store.outbox_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn a_failed_send_is_tried_again_after_a_growing_wait_and_given_up_at_last() {
    let w = world().await;
    adjust(&w, "a", 100).await;
    w.notifier
        .fail_next([Failure::Unavailable, Failure::Unavailable]);

    let first = w.dispatcher.dispatch_due().await.unwrap();
    assert_eq!((first.sent, first.retried, first.failures.len()), (0, 1, 1));
    // Not due before its first backoff (5 s).
    w.clock.advance(Duration::from_secs(4));
    assert_eq!(w.dispatcher.dispatch_due().await.unwrap().retried, 0);
    w.clock.advance(Duration::from_secs(1));
    assert_eq!(w.dispatcher.dispatch_due().await.unwrap().retried, 1);
    // The second wait is twice the first.
    w.clock.advance(Duration::from_secs(9));
    assert_eq!(w.dispatcher.dispatch_due().await.unwrap().sent, 0);
    w.clock.advance(Duration::from_secs(1));
    assert_eq!(w.dispatcher.dispatch_due().await.unwrap().sent, 1);
    assert_eq!(w.notifier.notices().len(), 1);

    // A notice that keeps failing is given up after `max_attempts` (3) tries.
    adjust(&w, "b", 100).await;
    w.notifier.fail_next([Failure::Unavailable; 3]);
    let mut given_up = 0;
    for _ in 0..10 {
        given_up += w.dispatcher.dispatch_due().await.unwrap().given_up;
        w.clock.advance(Duration::from_secs(60));
    }
    assert_eq!(given_up, 1);
    assert_eq!(
        w.notifier.notices().len(),
        1,
        "the failing notice never went"
    );
    assert_eq!(w.store.outbox_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_not_tried_again() {
    let w = world().await;
    adjust(&w, "a", 100).await;
    w.notifier.fail_next([Failure::Unreachable]);
    let report = w.dispatcher.dispatch_due().await.unwrap();
    assert_eq!((report.sent, report.given_up), (0, 1));
    let alice = UserStore::user(&*w.store, w.alice).await.unwrap().unwrap();
    assert_eq!(
        alice.unreachable_since,
        Some(w.clock.now()),
        "recorded by core, at the injected clock's time"
    );
    w.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        w.dispatcher.dispatch_due().await.unwrap(),
        DispatchReport::default()
    );
    assert!(w.notifier.notices().is_empty());
}

#[tokio::test]
async fn notices_go_oldest_first_a_batch_at_a_time_and_a_taken_one_is_held() {
    let w = world().await;
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        adjust(&w, key, 100 * (i as i64 + 1)).await;
        w.clock.advance(Duration::from_millis(1));
    }
    // Another dispatcher takes the oldest two (the batch) and has not sent them yet.
    let taken = w
        .store
        .claim_notices(w.clock.now(), Duration::from_secs(60), 2)
        .await
        .unwrap();
    let amounts: Vec<Money> = taken
        .iter()
        .map(|e| match e.notice {
            Notice::BalanceCredited { amount, .. } => amount,
            ref other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(amounts, vec![m(100), m(200)]);
    // This one gets only the third.
    assert_eq!(w.dispatcher.dispatch_due().await.unwrap().sent, 1);
    assert_eq!(
        w.notifier.notices(),
        vec![(
            w.alice,
            Notice::BalanceCredited {
                amount: m(300),
                balance: m(600)
            }
        )]
    );
    // The other dispatcher died: after its hold, the two are due again and sent once.
    w.clock.advance(Duration::from_secs(61));
    assert_eq!(w.dispatcher.dispatch_due().await.unwrap().sent, 2);
    assert_eq!(w.notifier.notices().len(), 3);
    assert_eq!(w.store.outbox_depth().await.unwrap(), 0);
}
