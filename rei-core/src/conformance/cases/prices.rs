//! `PriceStore`: seeded once, set with its audit line.

use super::*;

fn price_list(pairs: &[(&str, i64)]) -> Vec<(String, Money)> {
    pairs
        .iter()
        .map(|(p, k)| ((*p).to_owned(), m(*k)))
        .collect()
}

fn price_audit(reason: &str) -> AuditRecord {
    AuditRecord {
        actor: Actor::Cli("ops".into()),
        action: AuditAction::PriceSet,
        target_user: None,
        amount: None,
        reason: reason.into(),
        created_at: at(5),
    }
}

pub async fn prices_are_seeded_once_and_set_with_their_audit_line<S: Backend>(s: Store<S>) {
    assert!(s.prices().await.unwrap().is_empty());
    let seed = price_list(&[("image_edit", 3_000), ("image_generation", 5_000)]);
    // Two first starts at once: one seeds.
    let seeded = join_all((0..4).map(|_| s.seed_prices(&seed, at(1)))).await;
    let wins = seeded.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(wins, 1);
    assert!(
        !s.seed_prices(&price_list(&[("image_generation", 1)]), at(2))
            .await
            .unwrap()
    );
    assert_eq!(s.prices().await.unwrap(), seed);
    s.set_price(
        "image_generation",
        m(7_000),
        price_audit("image_generation: 50 -> 70"),
    )
    .await
    .unwrap();
    s.set_price("video:kling-v3:5s", m(12_000), price_audit("video"))
        .await
        .unwrap();
    let zero = s
        .set_price("image_edit", Money::ZERO, price_audit("zero"))
        .await;
    assert!(matches!(zero, Err(StoreError::Invalid(_))), "{zero:?}");
    let mut now = s.prices().await.unwrap();
    now.sort();
    assert_eq!(
        now,
        price_list(&[
            ("image_edit", 3_000),
            ("image_generation", 7_000),
            ("video:kling-v3:5s", 12_000)
        ])
    );
    let audit = s.audit_log(10).await.unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|a| a.action == AuditAction::PriceSet));
}

pub async fn offer_options_are_seeded_per_key_and_set_with_their_audit_line<S: Backend>(
    s: Store<S>,
) {
    assert!(s.offer_options().await.unwrap().is_empty());
    let seed = vec![
        ("models_off".to_owned(), String::new()),
        ("topup_amounts".to_owned(), "100,300".to_owned()),
    ];
    // Two first starts at once: one writes, the other finds the options.
    let seeded = join_all((0..4).map(|_| s.seed_offer_options(&seed, at(1)))).await;
    let wins = seeded.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(wins, 1);
    // A later seed keeps what is set and adds nothing.
    let later = vec![("topup_amounts".to_owned(), "999".to_owned())];
    assert!(!s.seed_offer_options(&later, at(2)).await.unwrap());
    assert_eq!(s.offer_options().await.unwrap(), seed);
    s.set_offer_option("models_off", "kling-v1-5", price_audit("model off"))
        .await
        .unwrap();
    s.set_offer_option("topup_amounts", "300,500", price_audit("topups"))
        .await
        .unwrap();
    assert_eq!(
        s.offer_options().await.unwrap(),
        vec![
            ("models_off".to_owned(), "kling-v1-5".to_owned()),
            ("topup_amounts".to_owned(), "300,500".to_owned()),
        ]
    );
    assert_eq!(s.audit_log(10).await.unwrap().len(), 2);
}
