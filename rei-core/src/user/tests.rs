//! `UserService` and `AdminService` tests.

use std::sync::Arc;

use super::service::{Access, UserError};
use super::*;
use crate::ids::{IdempotencyKey, UserId};
use crate::job::StoreQueue;
use crate::memory::{ManualClock, MemoryStore, RecordingNotifier};
use crate::money::Money;
use crate::ports::{
    LedgerStore, MockJobQueue, MockLedgerStore, MockUserStore, Notice, QueueError, StoreError,
};
use crate::time::Timestamp;

fn m(k: i64) -> Money {
    Money::from_kopecks(k).unwrap()
}

struct World {
    clock: Arc<ManualClock>,
    store: Arc<MemoryStore>,
    notifier: Arc<RecordingNotifier>,
    users: UserService,
    admin: AdminService,
    alice: UserId,
}

impl World {
    /// Sends what the outbox holds (as the dispatcher would), then every notice so far.
    async fn told(&self) -> Vec<(UserId, Notice)> {
        crate::notice::flush(
            self.store.clone(),
            self.notifier.clone(),
            self.clock.clone(),
        )
        .await;
        self.notifier.notices()
    }
}

async fn world() -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000)));
    let notifier = Arc::new(RecordingNotifier::default());
    let queue = Arc::new(StoreQueue::new(store.clone()));
    let users = UserService::new(store.clone(), clock.clone());
    let admin = AdminService::new(AdminPorts {
        users: store.clone(),
        ledger: store.clone(),
        queue,
        clock: clock.clone(),
    });
    let alice = UserId::new(5).unwrap();
    users
        .register(UserProfile {
            id: alice,
            username: Some("alice".into()),
            first_name: None,
            language: Language::Ru,
        })
        .await
        .unwrap();
    World {
        clock,
        store,
        notifier,
        users,
        admin,
        alice,
    }
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

fn admin() -> Actor {
    Actor::Admin(UserId::new(1).unwrap())
}

#[tokio::test]
async fn admin_credit_and_debit_are_audited_and_notified() {
    let w = world().await;
    let posted = w
        .admin
        .credit(admin(), w.alice, m(10_000), "bonus", key("a1"))
        .await
        .unwrap();
    assert_eq!(posted.balance, m(10_000));
    w.admin
        .debit(admin(), w.alice, m(2_500), "correction", key("a2"))
        .await
        .unwrap();
    assert_eq!(w.store.balance(w.alice).await.unwrap().available, m(7_500));
    let log = w.admin.audit_log(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].action, log[0].amount, log[0].reason.as_str()),
        (AuditAction::BalanceSub, Some(m(2_500)), "correction")
    );
    assert_eq!(log[1].actor, admin());
    assert_eq!(
        w.told()
            .await
            .into_iter()
            .map(|(_, n)| n)
            .collect::<Vec<_>>(),
        vec![
            Notice::BalanceCredited {
                amount: m(10_000),
                balance: m(10_000)
            },
            Notice::BalanceDebited {
                amount: m(2_500),
                balance: m(7_500)
            }
        ]
    );
}

#[tokio::test]
async fn a_repeated_admin_command_applies_once() {
    let w = world().await;
    w.admin
        .credit(admin(), w.alice, m(100), "x", key("same"))
        .await
        .unwrap();
    let again = w
        .admin
        .credit(admin(), w.alice, m(100), "x", key("same"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(w.store.balance(w.alice).await.unwrap().available, m(100));
    assert_eq!(w.admin.audit_log(10).await.unwrap().len(), 1);
    assert_eq!(w.told().await.len(), 1);
    assert!(matches!(
        w.admin
            .credit(admin(), w.alice, m(200), "x", key("same"))
            .await,
        Err(UserError::DuplicateKey)
    ));
}

#[tokio::test]
async fn an_identical_adjustment_under_a_new_key_is_refused_for_ten_minutes() {
    let w = world().await;
    let request = |k: &str, repeats| Adjustment {
        actor: Actor::Cli("ops".into()),
        user: w.alice,
        kind: crate::ledger::EntryKind::Credit,
        amount: m(5_000),
        reason: "ticket 7".into(),
        key: key(k),
        repeats,
    };
    let guarded = Repeats::RefuseWithin(REPEAT_WINDOW);
    w.admin
        .adjust_balance(request("k1", guarded))
        .await
        .unwrap();
    w.clock.advance(std::time::Duration::from_secs(9 * 60));
    let refused = w.admin.adjust_balance(request("k2", guarded)).await;
    assert!(
        matches!(&refused, Err(UserError::RepeatedAdjustment { minutes_ago: 9, key }) if key.as_str() == "k1"),
        "{refused:?}"
    );
    // The same key is a replay, not a repeat; another reason or amount is another one.
    let replay = w
        .admin
        .adjust_balance(request("k1", guarded))
        .await
        .unwrap();
    assert!(replay.replayed);
    let mut other = request("k3", guarded);
    other.reason = "ticket 8".into();
    w.admin.adjust_balance(other).await.unwrap();
    // Asked for on purpose, or after the window: made.
    w.admin
        .adjust_balance(request("k4", Repeats::Allow))
        .await
        .unwrap();
    w.clock.advance(std::time::Duration::from_secs(11 * 60));
    w.admin
        .adjust_balance(request("k5", guarded))
        .await
        .unwrap();
    assert_eq!(w.store.balance(w.alice).await.unwrap().available, m(20_000));
}

#[tokio::test]
async fn admin_debit_never_goes_below_zero() {
    let w = world().await;
    w.admin
        .credit(admin(), w.alice, m(100), "", key("a"))
        .await
        .unwrap();
    let r = w.admin.debit(admin(), w.alice, m(101), "", key("b")).await;
    assert!(
        matches!(r, Err(UserError::InsufficientFunds { needed, available }) if needed == m(101) && available == m(100))
    );
    assert_eq!(w.store.balance(w.alice).await.unwrap().available, m(100));
    assert_eq!(
        w.admin.audit_log(10).await.unwrap().len(),
        1,
        "a refused debit leaves no audit line"
    );
}

#[tokio::test]
async fn bad_admin_input_changes_nothing() {
    let w = world().await;
    let ghost = UserId::new(999).unwrap();
    assert!(
        matches!(w.admin.credit(admin(), ghost, m(1), "", key("g")).await, Err(UserError::UnknownUser(id)) if id == ghost)
    );
    assert!(matches!(
        w.admin
            .credit(admin(), w.alice, Money::ZERO, "", key("z"))
            .await,
        Err(UserError::ZeroAmount)
    ));
    assert!(matches!(
        w.admin
            .credit(admin(), w.alice, m(1), &"x".repeat(501), key("l"))
            .await,
        Err(UserError::ReasonTooLong { max: 500 })
    ));
    assert!(matches!(
        w.admin.ban(admin(), ghost).await,
        Err(UserError::UnknownUser(_))
    ));
    assert!(w.admin.audit_log(10).await.unwrap().is_empty());
    assert!(w.told().await.is_empty());
}

#[tokio::test]
async fn banned_users_get_one_notice_then_silence() {
    let w = world().await;
    assert_eq!(w.users.access(w.alice).await.unwrap(), Access::Allowed);
    w.admin.ban(admin(), w.alice).await.unwrap();
    assert_eq!(
        w.users.access(w.alice).await.unwrap(),
        Access::Banned { notify: true }
    );
    assert_eq!(
        w.users.access(w.alice).await.unwrap(),
        Access::Banned { notify: false }
    );
    w.admin.unban(admin(), w.alice).await.unwrap();
    assert_eq!(w.users.access(w.alice).await.unwrap(), Access::Allowed);
    assert_eq!(
        w.users.access(UserId::new(3).unwrap()).await.unwrap(),
        Access::Unknown
    );
}

#[tokio::test]
async fn language_and_stats() {
    let w = world().await;
    w.users.set_language(w.alice, Language::En).await.unwrap();
    assert_eq!(
        w.users.user(w.alice).await.unwrap().unwrap().language,
        Language::En
    );
    assert!(matches!(
        w.users
            .set_language(UserId::new(77).unwrap(), Language::En)
            .await,
        Err(UserError::UnknownUser(_))
    ));
    w.admin
        .credit(admin(), w.alice, m(300), "", key("s"))
        .await
        .unwrap();
    let report = w.admin.stats().await.unwrap();
    assert_eq!(
        (
            report.stats.users,
            report.stats.balances_total,
            report.queue_depth
        ),
        (1, m(300), 0)
    );
}

#[tokio::test]
async fn backend_outages_are_surfaced() {
    let mut ledger = MockLedgerStore::new();
    ledger.expect_post_adjustment().returning(|_, _| {
        Err(StoreError::Unavailable(Box::new(std::io::Error::other(
            "db gone",
        ))))
    });
    let mut users = MockUserStore::new();
    users.expect_stats().returning(|_| Ok(Stats::default()));
    let mut queue = MockJobQueue::new();
    queue.expect_depth().returning(|| {
        Err(QueueError::Unavailable(Box::new(std::io::Error::other(
            "redis gone",
        ))))
    });
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
    let admin_svc = AdminService::new(AdminPorts {
        users: Arc::new(users),
        ledger: Arc::new(ledger),
        queue: Arc::new(queue),
        clock,
    });
    let r = admin_svc
        .credit(admin(), UserId::new(1).unwrap(), m(1), "", key("k"))
        .await;
    assert!(
        matches!(r, Err(UserError::Store(StoreError::Unavailable(_)))),
        "{r:?}"
    );
    assert!(matches!(admin_svc.stats().await, Err(UserError::Queue(_))));
}

#[test]
fn actors_print_as_audit_strings() {
    assert_eq!(Actor::Cli("root".into()).to_string(), "cli:root");
    assert_eq!(
        "admin:12".parse::<Actor>().unwrap(),
        Actor::Admin(UserId::new(12).unwrap())
    );
    assert_eq!(
        "cli:ops".parse::<Actor>().unwrap(),
        Actor::Cli("ops".into())
    );
}

#[tokio::test]
async fn admin_keys_cannot_take_a_reserved_namespace() {
    let w = world().await;
    let key = IdempotencyKey::new("payment:x:credit").unwrap();
    assert!(matches!(
        w.admin.credit(admin(), w.alice, m(1), "", key).await,
        Err(UserError::DuplicateKey)
    ));
    assert!(w.admin.audit_log(10).await.unwrap().is_empty());
}

#[test]
fn receipt_emails_are_checked_and_never_shown_whole() {
    use super::Email;
    let e = Email::parse("  anna.k+rei@mail.example.ru ").unwrap();
    assert_eq!(e.as_str(), "anna.k+rei@mail.example.ru");
    assert_eq!(format!("{e:?}"), "Email(…@mail.example.ru)");
    for bad in [
        "",
        "anna",
        "anna@",
        "@example.com",
        "anna@example",
        "anna@.com",
        "anna@example.",
        "an na@example.com",
        "a@b@example.com",
        "anna@exa..mple.com",
    ] {
        assert!(Email::parse(bad).is_err(), "{bad:?}");
    }
    assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
}
