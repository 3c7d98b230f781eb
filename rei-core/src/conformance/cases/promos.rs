//! `PromoStore`: codes created once, redeemed atomically within their uses and time.

use super::*;
use crate::promo::{NewPromo, PromoCode, Redeemed};

fn code(c: &str) -> PromoCode {
    PromoCode::parse(c).unwrap()
}

fn new_promo(c: &str, kopecks: i64, uses: Option<u32>, expires: Option<i64>) -> NewPromo {
    NewPromo {
        code: code(c),
        amount: m(kopecks),
        max_uses: uses,
        expires_at: expires.map(at),
        created_at: at(1),
    }
}

fn audit(action: AuditAction, c: &str) -> AuditRecord {
    AuditRecord {
        actor: Actor::System,
        action,
        target_user: None,
        amount: None,
        reason: c.into(),
        created_at: at(1),
    }
}

fn redemption(user: UserId, c: &str, kopecks: i64) -> NewEntry {
    NewEntry {
        ref_type: RefType::Promo,
        ref_id: c.into(),
        ..entry(
            user,
            EntryKind::Credit,
            kopecks,
            &format!("promo:{c}:{user}"),
        )
    }
}

pub async fn promo_codes_are_created_once_listed_and_disabled<S: Backend>(s: Store<S>) {
    let first = s
        .create_promo(
            new_promo("SPRING", 5_000, Some(10), Some(1_000)),
            audit(AuditAction::PromoCreate, "SPRING"),
        )
        .await
        .unwrap();
    assert_eq!(
        (first.used, first.disabled, first.max_uses),
        (0, false, Some(10))
    );
    assert_eq!(first.expires_at, Some(at(1_000)));
    let again = s
        .create_promo(
            new_promo("SPRING", 1, None, None),
            audit(AuditAction::PromoCreate, "SPRING"),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    s.create_promo(
        new_promo("SUMMER", 100, None, None),
        audit(AuditAction::PromoCreate, "SUMMER"),
    )
    .await
    .unwrap();
    let codes: Vec<String> = s
        .promos()
        .await
        .unwrap()
        .iter()
        .map(|p| p.code.to_string())
        .collect();
    assert_eq!(codes, ["SUMMER", "SPRING"], "newest first");
    assert_eq!(s.promo(&code("SPRING")).await.unwrap(), Some(first.clone()));
    assert_eq!(s.promo(&code("WINTER")).await.unwrap(), None);
    let off = s
        .disable_promo(&code("SPRING"), audit(AuditAction::PromoDisable, "SPRING"))
        .await
        .unwrap()
        .unwrap();
    assert!(off.disabled);
    assert!(s.promo(&code("SPRING")).await.unwrap().unwrap().disabled);
    assert_eq!(
        s.disable_promo(&code("WINTER"), audit(AuditAction::PromoDisable, "WINTER"))
            .await
            .unwrap(),
        None
    );
    let actions: Vec<AuditAction> = s
        .audit_log(10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == AuditAction::PromoCreate)
            .count(),
        2,
        "one audit line per code created: {actions:?}"
    );
    assert!(actions.contains(&AuditAction::PromoDisable));
}

pub async fn a_promo_is_redeemed_once_per_user_within_its_uses_and_time<S: Backend>(s: Store<S>) {
    let (a, b, c) = (user(&*s, 1).await, user(&*s, 2).await, user(&*s, 3).await);
    s.create_promo(
        new_promo("TWICE", 5_000, Some(2), Some(1_000)),
        audit(AuditAction::PromoCreate, "TWICE"),
    )
    .await
    .unwrap();
    let Redeemed::Credited(posted) = s
        .redeem_promo(&code("TWICE"), redemption(a, "TWICE", 5_000), at(10))
        .await
        .unwrap()
    else {
        panic!("not credited")
    };
    assert_eq!(
        (posted.balance, posted.entry.ref_type),
        (m(5_000), RefType::Promo)
    );
    assert_eq!(
        s.redeem_promo(&code("TWICE"), redemption(a, "TWICE", 5_000), at(11))
            .await
            .unwrap(),
        Redeemed::AlreadyUsed
    );
    assert!(matches!(
        s.redeem_promo(&code("TWICE"), redemption(b, "TWICE", 5_000), at(12))
            .await
            .unwrap(),
        Redeemed::Credited(_)
    ));
    assert_eq!(
        s.redeem_promo(&code("TWICE"), redemption(c, "TWICE", 5_000), at(13))
            .await
            .unwrap(),
        Redeemed::Exhausted
    );
    assert_eq!(available(&*s, c).await, 0, "a refusal writes nothing");
    assert_eq!(s.promo(&code("TWICE")).await.unwrap().unwrap().used, 2);
    // Time, switch, existence.
    s.create_promo(
        new_promo("LATE", 100, None, Some(100)),
        audit(AuditAction::PromoCreate, "LATE"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.redeem_promo(&code("LATE"), redemption(c, "LATE", 100), at(100))
            .await
            .unwrap(),
        Redeemed::Expired
    );
    s.create_promo(
        new_promo("OFF", 100, None, None),
        audit(AuditAction::PromoCreate, "OFF"),
    )
    .await
    .unwrap();
    s.disable_promo(&code("OFF"), audit(AuditAction::PromoDisable, "OFF"))
        .await
        .unwrap();
    assert_eq!(
        s.redeem_promo(&code("OFF"), redemption(c, "OFF", 100), at(20))
            .await
            .unwrap(),
        Redeemed::Disabled
    );
    assert_eq!(
        s.redeem_promo(&code("NOPE"), redemption(c, "NOPE", 100), at(20))
            .await
            .unwrap(),
        Redeemed::Unknown
    );
    // Another amount than the code's, or an unknown user: refused, nothing written.
    s.create_promo(
        new_promo("OPEN", 300, None, None),
        audit(AuditAction::PromoCreate, "OPEN"),
    )
    .await
    .unwrap();
    assert!(
        s.redeem_promo(&code("OPEN"), redemption(c, "OPEN", 999), at(20))
            .await
            .is_err()
    );
    let nobody = UserId::new(99).unwrap();
    assert!(
        s.redeem_promo(&code("OPEN"), redemption(nobody, "OPEN", 300), at(20))
            .await
            .is_err()
    );
    assert_eq!(s.promo(&code("OPEN")).await.unwrap().unwrap().used, 0);
    assert_eq!(available(&*s, c).await, 0);
    assert_sound(&*s).await;
}

pub async fn fifty_users_redeeming_ten_uses_get_ten_credits<S: Backend>(s: Store<S>) {
    let mut users = Vec::new();
    for n in 1..=50 {
        users.push(user(&*s, n).await);
    }
    s.create_promo(
        new_promo("RUSH", 1_000, Some(10), None),
        audit(AuditAction::PromoCreate, "RUSH"),
    )
    .await
    .unwrap();
    let outcomes = join_all(users.iter().map(|u| {
        let s = s.clone();
        let u = *u;
        async move {
            s.redeem_promo(&code("RUSH"), redemption(u, "RUSH", 1_000), at(5))
                .await
                .unwrap()
        }
    }))
    .await;
    let credited = outcomes
        .iter()
        .filter(|o| matches!(o, Redeemed::Credited(_)))
        .count();
    let exhausted = outcomes
        .iter()
        .filter(|o| **o == Redeemed::Exhausted)
        .count();
    assert_eq!((credited, exhausted), (10, 40), "{outcomes:?}");
    let mut total = 0;
    for u in &users {
        total += available(&*s, *u).await;
    }
    assert_eq!(total, 10_000, "exactly ten credits");
    assert_eq!(s.promo(&code("RUSH")).await.unwrap().unwrap().used, 10);
    assert_sound(&*s).await;
}
