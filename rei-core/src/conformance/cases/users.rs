//! Users, bans, languages, receipt e-mails, statistics.

use super::*;

pub async fn register_creates_then_refreshes<S: Backend>(s: Store<S>) {
    let id = UserId::new(7).unwrap();
    let p = UserProfile {
        id,
        username: Some("a".into()),
        first_name: None,
        language: Language::En,
    };
    let (u, created) = s.register(p.clone(), at(0)).await.unwrap();
    assert!(created);
    assert_eq!(
        (u.language, u.balance, u.is_banned),
        (Language::En, Money::ZERO, false)
    );
    s.set_language(id, Language::Ru).await.unwrap();
    let again = UserProfile {
        username: Some("b".into()),
        language: Language::En,
        ..p
    };
    let (u2, created2) = s.register(again, at(5)).await.unwrap();
    assert!(!created2);
    assert_eq!(u2.username.as_deref(), Some("b"));
    assert_eq!(
        u2.language,
        Language::Ru,
        "re-registration keeps the chosen language"
    );
    assert_eq!(u2.created_at, at(0));
}

pub async fn ban_is_audited_and_noticed_once<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    assert!(
        !s.mark_ban_notified(u).await.unwrap(),
        "no notice for users who are not banned"
    );
    let banned = s
        .set_banned(u, true, audit(u, AuditAction::Ban))
        .await
        .unwrap();
    assert!(banned.is_banned);
    assert!(s.mark_ban_notified(u).await.unwrap());
    assert!(!s.mark_ban_notified(u).await.unwrap());
    s.set_banned(u, false, audit(u, AuditAction::Unban))
        .await
        .unwrap();
    s.set_banned(u, true, audit(u, AuditAction::Ban))
        .await
        .unwrap();
    assert!(
        s.mark_ban_notified(u).await.unwrap(),
        "a new ban gets a new notice"
    );
    let log = s.audit_log(10).await.unwrap();
    assert_eq!(
        log.iter().map(|a| a.action).collect::<Vec<_>>(),
        vec![AuditAction::Ban, AuditAction::Unban, AuditAction::Ban]
    );
    assert_eq!(log[0].actor, Actor::Cli("tester".into()));
}

pub async fn language_is_kept<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    s.set_language(u, Language::En).await.unwrap();
    assert_eq!(s.user(u).await.unwrap().unwrap().language, Language::En);
}

pub async fn unknown_users_are_not_found<S: Backend>(s: Store<S>) {
    let ghost = UserId::new(404).unwrap();
    assert!(s.user(ghost).await.unwrap().is_none());
    assert!(matches!(
        s.set_language(ghost, Language::En).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    assert!(matches!(
        s.set_banned(ghost, true, audit(ghost, AuditAction::Ban))
            .await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    assert!(matches!(
        s.balance(ghost).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    let r = s
        .post(entry(ghost, EntryKind::Credit, 100, "k"), None)
        .await;
    assert!(
        matches!(r, Err(StoreError::NotFound(Missing::User(_)))),
        "{r:?}"
    );
    assert!(
        s.audit_log(10).await.unwrap().is_empty(),
        "a refused ban writes no audit"
    );
}

pub async fn stats_count_everything<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let v = user(&*s, 2).await;
    fund(&*s, u, 1_000).await;
    s.set_banned(v, true, audit(v, AuditAction::Ban))
        .await
        .unwrap();
    s.create_job(new_job(1, u, 300), 3).await.unwrap();
    let p = s.create_payment(new_payment(1, v, 5_000)).await.unwrap();
    pay(&*s, &p, succeeded("x", 5_000)).await.unwrap();
    s.save_dialogue(v, "{}", None, at(20)).await.unwrap();
    s.set_unreachable(v, Some(at(21))).await.unwrap();
    let stats = s.stats(at(0)).await.unwrap();
    assert_eq!((stats.users, stats.banned_users), (2, 1));
    assert_eq!(
        (
            stats.active_since,
            stats.failed_since,
            stats.unreachable_users
        ),
        (2, 0, 1),
        "u ordered a job, v wrote to the bot; v blocked it"
    );
    assert_eq!(
        s.stats(at(1_000_000)).await.unwrap().active_since,
        0,
        "nothing since"
    );
    s.set_unreachable(v, None).await.unwrap();
    assert_eq!(s.stats(at(0)).await.unwrap().unreachable_users, 0);
    assert!(matches!(
        s.set_unreachable(UserId::new(404).unwrap(), None).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    let stats = s.stats(at(0)).await.unwrap();
    assert_eq!(stats.balances_total, m(5_700));
    assert_eq!(stats.held_total, m(300));
    let jobs = |st: JobState| {
        stats
            .jobs_by_state
            .iter()
            .find(|(s, _)| *s == st)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!((jobs(JobState::Pending), jobs(JobState::Completed)), (1, 0));
    let paid = stats
        .payments_by_state
        .iter()
        .find(|(s, _, _)| *s == PaymentState::Paid)
        .copied();
    assert_eq!(paid, Some((PaymentState::Paid, 1, m(5_000))));
}

pub async fn receipt_emails_are_kept_per_user<S: Backend>(s: Store<S>) {
    use crate::user::Email;
    let u = user(&*s, 1).await;
    assert_eq!(s.user(u).await.unwrap().unwrap().receipt_email, None);
    let first = Email::parse("anna@example.com").unwrap();
    s.set_receipt_email(u, &first).await.unwrap();
    assert_eq!(s.user(u).await.unwrap().unwrap().receipt_email, Some(first));
    let second = Email::parse("anna@example.org").unwrap();
    s.set_receipt_email(u, &second).await.unwrap();
    assert_eq!(
        s.user(u).await.unwrap().unwrap().receipt_email,
        Some(second.clone())
    );
    let ghost = UserId::new(404).unwrap();
    assert!(matches!(
        s.set_receipt_email(ghost, &second).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
}
