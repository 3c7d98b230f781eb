//! `ReferralStore`: codes and bindings kept once; rewards written with the credit they
//! belong to and taken back with the refunds, never below zero.

use super::*;
use crate::referral::{self, ReferralCode, ReferralMove, ReferralSummary};

fn code(c: &str) -> ReferralCode {
    ReferralCode::parse(c).unwrap()
}

pub async fn referral_codes_and_bindings_are_kept_once<S: Backend>(s: Store<S>) {
    let (a, b, c) = (user(&*s, 1).await, user(&*s, 2).await, user(&*s, 3).await);
    let mine = s.referral_code(a, &code("aaaa1111"), at(1)).await.unwrap();
    assert_eq!(mine, code("aaaa1111"));
    let again = s.referral_code(a, &code("bbbb2222"), at(2)).await.unwrap();
    assert_eq!(again, mine, "a user keeps their first code");
    let taken = s.referral_code(b, &code("aaaa1111"), at(3)).await;
    assert!(
        matches!(taken, Err(StoreError::Conflict { .. })),
        "{taken:?}"
    );
    assert_eq!(
        s.user_by_referral_code(&code("aaaa1111")).await.unwrap(),
        Some(a)
    );
    assert_eq!(
        s.user_by_referral_code(&code("bbbb2222")).await.unwrap(),
        None
    );
    let unknown = s
        .referral_code(UserId::new(99).unwrap(), &code("cccc3333"), at(3))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(Missing::User(_)))),
        "{unknown:?}"
    );
    // B is bound to A once; a later binding changes nothing.
    assert!(s.bind_referrer(b, a, at(4)).await.unwrap());
    assert!(!s.bind_referrer(b, c, at(5)).await.unwrap());
    assert_eq!(s.referrer_of(b).await.unwrap(), Some(a));
    assert_eq!(s.referrer_of(a).await.unwrap(), None);
    // A user bound before they had a code still gets one, and keeps their referrer.
    let theirs = s.referral_code(b, &code("dddd4444"), at(6)).await.unwrap();
    assert_eq!(theirs, code("dddd4444"));
    assert_eq!(s.referrer_of(b).await.unwrap(), Some(a));
    assert!(s.bind_referrer(c, b, at(7)).await.unwrap());
    let unknown = s.bind_referrer(UserId::new(98).unwrap(), a, at(8)).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(Missing::User(_)))),
        "{unknown:?}"
    );
    let unknown = s.bind_referrer(a, UserId::new(97).unwrap(), at(8)).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(Missing::User(_)))),
        "{unknown:?}"
    );
    assert_eq!(s.referrer_of(a).await.unwrap(), None);
    assert_eq!(
        s.referral_summary(a).await.unwrap(),
        ReferralSummary {
            invited: 1,
            ..ReferralSummary::default()
        }
    );
}

pub async fn concurrent_bindings_bind_once<S: Backend>(s: Store<S>) {
    let referee = user(&*s, 100).await;
    let mut referrers = Vec::new();
    for n in 1..=6 {
        referrers.push(user(&*s, n).await);
    }
    let results = join_all(
        referrers
            .iter()
            .map(|r| s.bind_referrer(referee, *r, at(10))),
    )
    .await;
    let won: Vec<UserId> = results
        .into_iter()
        .zip(&referrers)
        .filter_map(|(r, who)| r.unwrap().then_some(*who))
        .collect();
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(s.referrer_of(referee).await.unwrap(), Some(won[0]));
}

/// Pays `p` with its referrer's reward of `reward` kopecks.
async fn pay_rewarded<S: Backend>(
    s: &S,
    p: &Payment,
    referrer: UserId,
    reward: i64,
) -> Result<Payment, StoreError> {
    let t = p
        .apply(succeeded("yk-ref", p.amount.kopecks()), at(50))
        .unwrap()
        .with_referral(ReferralMove::Reward {
            referee: p.user_id,
            entry: referral::reward_entry(referrer, p.id, m(reward), at(50)).unwrap(),
        });
    s.save_payment_transition(&t).await
}

/// Finishes the refund under way on `p`, taking back up to `due` kopecks of the reward.
async fn refund_taking_back<S: Backend>(s: &S, p: &Payment, referrer: UserId, due: i64) -> Payment {
    let hold = p.refund_hold().unwrap();
    let t = p
        .apply(PaymentEvent::RefundSucceeded { hold }, at(60))
        .unwrap();
    let entry =
        referral::take_back_entry(referrer, p.id, t.after().refunded, m(due), at(60)).unwrap();
    let t = t.with_referral(ReferralMove::TakeBack { entry });
    s.save_payment_transition(&t).await.unwrap()
}

pub async fn a_reward_comes_with_the_credit_and_goes_with_the_refunds<S: Backend>(s: Store<S>) {
    let (referrer, referee) = (user(&*s, 1).await, user(&*s, 2).await);
    assert!(s.bind_referrer(referee, referrer, at(1)).await.unwrap());
    let p = s
        .create_payment(new_payment(1, referee, 50_000))
        .await
        .unwrap();
    let paid = pay_rewarded(&*s, &p, referrer, 5_000).await.unwrap();
    assert_eq!(paid.state, PaymentState::Paid);
    assert_eq!(available(&*s, referee).await, 50_000);
    assert_eq!(available(&*s, referrer).await, 5_000);
    let given = s.referral_reward(p.id).await.unwrap().unwrap();
    assert_eq!(
        (
            given.referrer,
            given.referee,
            given.reward,
            given.taken_back
        ),
        (referrer, referee, m(5_000), Money::ZERO)
    );
    let told: Vec<Notice> = s
        .claim_notices(at(100), std::time::Duration::from_secs(60), 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.user_id == referrer)
        .map(|n| n.notice)
        .collect();
    assert_eq!(
        told,
        [Notice::ReferralRewarded {
            amount: m(5_000),
            balance: m(5_000)
        }]
    );
    // The referrer spends most of it; the referee's top-up is refunded in two parts.
    s.post(entry(referrer, EntryKind::Debit, 3_000, "spent"), None)
        .await
        .unwrap();
    let started = pay(&*s, &paid, refund_started(hold_id(7), 20_000))
        .await
        .unwrap();
    let part = refund_taking_back(&*s, &started, referrer, 2_000).await;
    assert_eq!(available(&*s, referrer).await, 0, "2 000 of 2 000 taken");
    let started = pay(&*s, &part, refund_started(hold_id(8), 30_000))
        .await
        .unwrap();
    let all = refund_taking_back(&*s, &started, referrer, 3_000).await;
    assert_eq!(all.state, PaymentState::Refunded);
    assert_eq!(available(&*s, referrer).await, 0, "never below zero");
    let after = s.referral_reward(p.id).await.unwrap().unwrap();
    assert_eq!(
        (after.taken_back, after.unrecovered),
        (m(2_000), m(3_000)),
        "what could not be taken is recorded"
    );
    assert_eq!(
        s.referral_summary(referrer).await.unwrap(),
        ReferralSummary {
            invited: 1,
            earned: m(3_000),
            unrecovered: m(3_000),
        }
    );
    assert_sound(&*s).await;
}

pub async fn referral_moves_that_do_not_fit_are_refused<S: Backend>(s: Store<S>) {
    let (referrer, referee, other) = (user(&*s, 1).await, user(&*s, 2).await, user(&*s, 3).await);
    let p = s
        .create_payment(new_payment(1, referee, 10_000))
        .await
        .unwrap();
    // Not bound: no reward, and the payment is not credited either.
    let r = pay_rewarded(&*s, &p, referrer, 1_000).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(s.payment(p.id).await.unwrap().unwrap(), p);
    assert_eq!(available(&*s, referee).await, 0);
    assert_eq!(available(&*s, referrer).await, 0);
    // Bound to someone else: the reward is theirs only.
    assert!(s.bind_referrer(referee, other, at(2)).await.unwrap());
    let r = pay_rewarded(&*s, &p, referrer, 1_000).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    let paid = pay_rewarded(&*s, &p, other, 1_000).await.unwrap();
    assert_eq!(available(&*s, other).await, 1_000);
    // A take-back larger than the reward is refused with the refund.
    let started = pay(&*s, &paid, refund_started(hold_id(9), 10_000))
        .await
        .unwrap();
    let t = started
        .apply(PaymentEvent::RefundSucceeded { hold: hold_id(9) }, at(60))
        .unwrap()
        .with_referral(ReferralMove::TakeBack {
            entry: referral::take_back_entry(other, p.id, m(10_000), m(1_001), at(60)).unwrap(),
        });
    let r = s.save_payment_transition(&t).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(s.payment(p.id).await.unwrap().unwrap(), started);
    assert_eq!(available(&*s, other).await, 1_000);
    assert_sound(&*s).await;
}
