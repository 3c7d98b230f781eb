//! The outbox: notices written with their money, taken and finished by dispatchers.

use super::*;

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
    let hold = hold_id(7);
    let started = pay(&*s, &paid, refund_started(hold, 10_000)).await.unwrap();
    let part = pay(&*s, &started, PaymentEvent::RefundSucceeded { hold })
        .await
        .unwrap();
    let again = hold_id(8);
    let started = pay(&*s, &part, refund_started(again, 5_000)).await.unwrap();
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
