//! `BroadcastStore`: segments, recipients chosen at the start, each claimed once.

use super::*;
use crate::broadcast::{BroadcastState, Delivery, NewBroadcast, Segment};

fn new_broadcast(segment: Segment) -> NewBroadcast {
    NewBroadcast {
        text: "news".into(),
        photo: None,
        button: None,
        segment,
        created_at: at(1),
    }
}

fn broadcast_audit(action: AuditAction) -> AuditRecord {
    AuditRecord {
        actor: Actor::Cli("ops".into()),
        action,
        target_user: None,
        amount: None,
        reason: "test".into(),
        created_at: at(2),
    }
}

pub async fn broadcasts_reach_their_segment_and_claim_each_recipient_once<S: Backend>(s: Store<S>) {
    let users: Vec<UserId> = {
        let mut v = Vec::new();
        for n in 1..=8 {
            v.push(user(&*s, n).await);
        }
        v
    };
    s.set_language(users[1], Language::En).await.unwrap();
    s.set_banned(users[2], true, audit(users[2], AuditAction::Ban))
        .await
        .unwrap();
    s.set_unreachable(users[3], Some(at(3))).await.unwrap();
    paid_payment(&*s, 1, users[4], 1_000, "yk-b").await;
    let now = at(10);
    assert_eq!(s.segment_size(Segment::All, now).await.unwrap(), 6);
    assert_eq!(s.segment_size(Segment::Paid, now).await.unwrap(), 1);
    assert_eq!(
        s.segment_size(Segment::Language(Language::En), now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.segment_size(Segment::Active { days: 1 }, now)
            .await
            .unwrap(),
        6,
        "registered just now"
    );
    let draft = s
        .create_broadcast(
            new_broadcast(Segment::All),
            broadcast_audit(AuditAction::BroadcastCreate),
        )
        .await
        .unwrap();
    assert_eq!((draft.state, draft.recipients), (BroadcastState::Draft, 0));
    assert_eq!(
        s.claim_recipient(draft.id, now).await.unwrap(),
        None,
        "not running"
    );
    let moved = s
        .move_broadcast(
            draft.id,
            &[BroadcastState::Paused],
            BroadcastState::Running,
            now,
            broadcast_audit(AuditAction::BroadcastStart),
        )
        .await
        .unwrap();
    assert_eq!(moved, None, "not from draft");
    let running = s
        .move_broadcast(
            draft.id,
            &[BroadcastState::Draft],
            BroadcastState::Running,
            now,
            broadcast_audit(AuditAction::BroadcastStart),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (running.state, running.recipients),
        (BroadcastState::Running, 6)
    );
    assert_eq!(s.running_broadcasts().await.unwrap(), [draft.id]);
    // Four claimers at once: four different users.
    let claimed: Vec<UserId> = join_all((0..4).map(|_| s.claim_recipient(draft.id, now)))
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<_> = claimed.iter().collect();
    assert_eq!(distinct.len(), 4, "{claimed:?}");
    for (i, u) in claimed.iter().enumerate() {
        let delivery = if i == 0 {
            Delivery::Blocked
        } else {
            Delivery::Sent
        };
        s.record_delivery(draft.id, *u, delivery, now)
            .await
            .unwrap();
    }
    // Paused: nothing more is claimed.
    s.move_broadcast(
        draft.id,
        &[BroadcastState::Running],
        BroadcastState::Paused,
        now,
        broadcast_audit(AuditAction::BroadcastPause),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(s.claim_recipient(draft.id, now).await.unwrap(), None);
    assert!(!s.finish_broadcast(draft.id, now).await.unwrap());
    s.move_broadcast(
        draft.id,
        &[BroadcastState::Paused],
        BroadcastState::Running,
        now,
        broadcast_audit(AuditAction::BroadcastStart),
    )
    .await
    .unwrap()
    .unwrap();
    // One claimed and never recorded (its process died): it stays unknown.
    let lost = s.claim_recipient(draft.id, now).await.unwrap().unwrap();
    let last = s.claim_recipient(draft.id, now).await.unwrap().unwrap();
    assert_ne!(lost, last);
    s.record_delivery(draft.id, last, Delivery::Failed, now)
        .await
        .unwrap();
    assert_eq!(s.claim_recipient(draft.id, now).await.unwrap(), None);
    assert!(s.finish_broadcast(draft.id, now).await.unwrap());
    let done = s.broadcast(draft.id).await.unwrap().unwrap();
    assert_eq!(
        (
            done.state,
            done.sent,
            done.blocked,
            done.failed,
            done.unknown,
            done.pending()
        ),
        (BroadcastState::Done, 3, 1, 1, 1, 0)
    );
    assert!(s.running_broadcasts().await.unwrap().is_empty());
    let unknown = s
        .move_broadcast(
            999,
            &[BroadcastState::Draft],
            BroadcastState::Running,
            now,
            broadcast_audit(AuditAction::BroadcastStart),
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(Missing::Broadcast(999)))),
        "{unknown:?}"
    );
    assert_eq!(
        s.audit_log(20)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.action.as_str().starts_with("broadcast_"))
            .count(),
        4
    );
}
