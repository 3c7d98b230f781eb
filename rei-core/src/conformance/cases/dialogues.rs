//! Dialogue state and named leases.

use super::*;

pub async fn dialogue_state_round_trips<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    assert_eq!(s.load_dialogue(u).await.unwrap(), None);
    let v1 = s
        .save_dialogue(u, r#"{"step":"model"}"#, None, at(1))
        .await
        .unwrap();
    let v2 = s
        .save_dialogue(u, r#"{"step":"duration"}"#, Some(v1), at(2))
        .await
        .unwrap();
    assert_ne!(v1, v2);
    assert_eq!(
        s.load_dialogue(u).await.unwrap(),
        Some(crate::ports::DialogueRecord {
            state: r#"{"step":"duration"}"#.into(),
            version: v2
        })
    );
    s.clear_dialogue(u).await.unwrap();
    s.clear_dialogue(u).await.unwrap();
    assert_eq!(s.load_dialogue(u).await.unwrap(), None);
}

pub async fn a_stale_dialogue_save_is_refused<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let v1 = s.save_dialogue(u, "a", None, at(1)).await.unwrap();
    // Two handlers read v1; the first save wins, the second is refused.
    s.save_dialogue(u, "b", Some(v1), at(2)).await.unwrap();
    let late = s.save_dialogue(u, "c", Some(v1), at(3)).await;
    assert!(
        matches!(
            late,
            Err(StoreError::Conflict {
                what: "dialogue",
                ..
            })
        ),
        "{late:?}"
    );
    let first = s.save_dialogue(u, "d", None, at(4)).await;
    assert!(
        matches!(first, Err(StoreError::Conflict { .. })),
        "a 'first' save over an existing state: {first:?}"
    );
    assert_eq!(s.load_dialogue(u).await.unwrap().unwrap().state, "b");
}

pub async fn dialogue_of_an_unknown_user_is_not_found<S: Backend>(s: Store<S>) {
    let ghost = UserId::new(404).unwrap();
    let r = s.save_dialogue(ghost, "{}", None, at(1)).await;
    assert!(
        matches!(r, Err(StoreError::NotFound(Missing::User(_)))),
        "{r:?}"
    );
    assert_eq!(s.load_dialogue(ghost).await.unwrap(), None);
}

/// One holder at a time; renewable by its holder; taken over once it ran out; given up.
pub async fn a_lease_has_one_holder_until_it_runs_out<S: Backend>(s: Store<S>) {
    assert!(s.hold_lease("poller", "a", at(100), at(0)).await.unwrap());
    assert!(!s.hold_lease("poller", "b", at(100), at(50)).await.unwrap());
    assert!(
        s.hold_lease("poller", "a", at(200), at(60)).await.unwrap(),
        "renewed by its holder"
    );
    assert!(
        !s.hold_lease("poller", "b", at(300), at(150)).await.unwrap(),
        "still a's: renewed until 200"
    );
    assert!(
        s.hold_lease("other", "b", at(300), at(150)).await.unwrap(),
        "leases are per name"
    );
    assert!(
        s.hold_lease("poller", "b", at(400), at(200)).await.unwrap(),
        "taken over once it ran out"
    );
    s.release_lease("poller", "a").await.unwrap();
    assert!(
        !s.hold_lease("poller", "c", at(500), at(250)).await.unwrap(),
        "only its holder gives it up"
    );
    s.release_lease("poller", "b").await.unwrap();
    assert!(s.hold_lease("poller", "c", at(500), at(250)).await.unwrap());
}
