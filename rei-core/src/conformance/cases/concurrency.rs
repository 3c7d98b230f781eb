//! Many writers at once: no overdraft, one credit, the cap, one settlement.

use super::*;

pub async fn concurrent_spends_never_overdraw<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100).await;
    let spends = (0..100u128).map(|i| {
        let s = s.clone();
        async move { s.reserve(hold(i + 1, u, 10)).await }
    });
    let results = join_all(spends).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        assert!(
            matches!(r, Ok(_) | Err(StoreError::InsufficientFunds { .. })),
            "unexpected outcome: {r:?}"
        );
    }
    assert_eq!(ok, 10, "exactly ten 10-kopeck holds fit in 100");
    assert_eq!(available(&*s, u).await, 0);
    assert_sound(&*s).await;
}

pub async fn concurrent_duplicate_credits_post_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let p = s.create_payment(new_payment(1, u, 50_000)).await.unwrap();
    let credits = (0..50).map(|_| {
        let s = s.clone();
        let p = p.clone();
        async move { pay(&*s, &p, succeeded("yk-1", 50_000)).await }
    });
    let results = join_all(credits).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "one webhook wins"
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict { .. })))
    );
    let posts = (0..50).map(|_| {
        let s = s.clone();
        async move {
            s.post(entry(u, EntryKind::Credit, 700, "same-key"), None)
                .await
        }
    });
    let posted = join_all(posts).await;
    assert!(
        posted.iter().all(Result::is_ok),
        "replays are not errors: {posted:?}"
    );
    assert_eq!(
        posted
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|p| !p.replayed))
            .count(),
        1
    );
    assert_eq!(available(&*s, u).await, 50_700);
    assert_sound(&*s).await;
}

pub async fn concurrent_job_creation_respects_the_cap<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 100_000).await;
    let creates = (0..20u128).map(|i| {
        let s = s.clone();
        async move { s.create_job(new_job(i + 1, u, 100), 3).await }
    });
    let results = join_all(creates).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(StoreError::ActiveJobLimit { .. }))),
        "{results:?}"
    );
    assert_eq!(available(&*s, u).await, 99_700);
    assert_sound(&*s).await;
}

pub async fn concurrent_settlements_settle_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let r = s.reserve(hold(1, u, 600)).await.unwrap();
    let settles = (0..30).map(|i| {
        let s = s.clone();
        let how = if i % 2 == 0 {
            Settlement::Release
        } else {
            Settlement::Capture { actual: m(600) }
        };
        async move { s.settle(r.id, how, at(9)).await }
    });
    let results = join_all(settles).await;
    let state = hold_state(&*s, r.id).await;
    assert_ne!(state, ReservationState::Held, "one settlement won");
    let (wins, losses): (Vec<_>, Vec<_>) = results.iter().partition(|r| r.is_ok());
    assert_eq!(
        wins.len(),
        15,
        "every settlement the winner's way succeeds (the first, then its repeats)"
    );
    assert!(
        wins.iter()
            .all(|w| w.as_ref().is_ok_and(|x| x.state == state))
    );
    for l in &losses {
        assert!(
            matches!(
                l,
                Err(StoreError::Settlement(
                    crate::ledger::SettlementError::AlreadySettled { .. }
                ))
            ),
            "the other way is refused as already settled, not failed: {l:?}"
        );
    }
    assert_eq!(
        available(&*s, u).await,
        if state == ReservationState::Released {
            1_000
        } else {
            400
        }
    );
    assert_sound(&*s).await;
}
