//! Legacy import: checks, idempotence, and old payments staying deduplicated.

use std::sync::Arc;

use super::*;
use crate::memory::MemoryStore;
use crate::payment::PaymentTransition;

fn m(k: i64) -> Money {
    Money::from_kopecks(k).unwrap()
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_millis(s * 1000)
}

fn u(id: i64) -> UserId {
    UserId::new(id).unwrap()
}

fn entry(id: i64, user: i64, kind: EntryKind, k: i64, reference: LegacyRef) -> LegacyEntry {
    LegacyEntry {
        id,
        user_id: u(user),
        kind,
        amount: m(k),
        reference,
        description: format!("row {id}"),
        created_at: t(id),
    }
}

fn job(id: i64, user: i64, status: &str) -> LegacyJob {
    LegacyJob {
        id,
        user_id: u(user),
        kind: "image_generation".into(),
        status: status.into(),
        params: r#"{"prompt":"a fox"}"#.into(),
        result_url: None,
        error_message: None,
        cost_estimate: Some(m(5_000)),
        cost_actual: Some(m(5_000)),
        created_at: t(10),
        completed_at: Some(t(20)),
    }
}

/// Anna paid 300 ₽ (payment 1), spent 50 ₽ on job 1, got 30 ₽ back for failed job 2;
/// Boris is banned with an admin credit of 10 ₽.
fn snapshot() -> LegacySnapshot {
    LegacySnapshot {
        users: vec![
            LegacyUser {
                id: u(1),
                username: Some("anna".into()),
                first_name: None,
                banned: false,
                created_at: t(1),
            },
            LegacyUser {
                id: u(2),
                username: None,
                first_name: Some("Boris".into()),
                banned: true,
                created_at: t(2),
            },
        ],
        entries: vec![
            entry(1, 1, EntryKind::Credit, 30_000, LegacyRef::Payment(1)),
            entry(2, 1, EntryKind::Debit, 5_000, LegacyRef::Job(1)),
            entry(3, 1, EntryKind::Debit, 3_000, LegacyRef::Job(2)),
            entry(4, 1, EntryKind::Refund, 3_000, LegacyRef::Job(2)),
            entry(
                5,
                2,
                EntryKind::Credit,
                1_000,
                LegacyRef::Admin("42".into()),
            ),
        ],
        payments: vec![
            LegacyPayment {
                id: 1,
                provider_payment_id: Some("2f9e-old-1".into()),
                user_id: u(1),
                amount: m(30_000),
                state: PaymentState::Paid,
                created_at: t(1),
                paid_at: Some(t(2)),
            },
            LegacyPayment {
                id: 2,
                provider_payment_id: Some("2f9e-old-2".into()),
                user_id: u(1),
                amount: m(10_000),
                state: PaymentState::Cancelled,
                created_at: t(3),
                paid_at: None,
            },
        ],
        jobs: vec![job(1, 1, "completed"), job(2, 1, "failed")],
    }
}

fn ports(store: &Arc<MemoryStore>) -> ImportPorts {
    ImportPorts {
        users: store.clone(),
        ledger: store.clone(),
        payments: store.clone(),
        jobs: store.clone(),
    }
}

/// A store the old bot's files are imported into, by an operator.
struct Target {
    store: Arc<MemoryStore>,
}

impl Target {
    fn new() -> Self {
        Target {
            store: Arc::new(MemoryStore::new()),
        }
    }

    async fn import(&self, s: &LegacySnapshot, at: i64) -> Result<ImportReport, ImportError> {
        import(&ports(&self.store), s, Actor::Cli("ops".into()), t(at)).await
    }

    /// Imports `s` at `at` seconds; panics when refused.
    async fn imported(&self, s: &LegacySnapshot, at: i64) -> ImportReport {
        self.import(s, at).await.unwrap()
    }

    async fn balance(&self, user: i64) -> Money {
        self.store.balance(u(user)).await.unwrap().available
    }

    async fn assert_sound(&self) {
        let report = self.store.verify().await.unwrap();
        assert!(report.is_ok(), "{:?}", report.violations);
    }

    /// One more run of `s`: nothing new, nothing credited twice; Anna keeps `anna`.
    async fn assert_rerun_changes_nothing(&self, s: &LegacySnapshot, anna: Money) {
        let rerun = self.imported(s, 300).await;
        assert_eq!((rerun.entries_new, rerun.payments_credited), (0, 0));
        assert_eq!(self.balance(1).await, anna);
        self.assert_sound().await;
    }

    /// REI's webhook credits payment 3 at `at` seconds.
    async fn paid_here(&self, at: i64) {
        let paid = self.webhook_on_payment_3(at).await;
        self.store.save_payment_transition(&paid).await.unwrap();
    }

    /// REI's webhook about payment 3 (50 ₽) at `at` seconds, applied to what is stored;
    /// returns the transition.
    async fn webhook_on_payment_3(&self, at: i64) -> PaymentTransition {
        let stored = self.store.payment(payment_id_of(3)).await.unwrap().unwrap();
        stored.apply(payment_3_succeeded(), t(at)).unwrap()
    }
}

/// What YooKassa says of payment 3 once it is paid.
fn payment_3_succeeded() -> PaymentEvent {
    PaymentEvent::ProviderSucceeded {
        provider_payment_id: "2f9e-old-3".into(),
        amount: m(5_000),
    }
}

/// The new rows, users, payments and jobs a run imported.
fn news(r: &ImportReport) -> (usize, usize, usize, usize) {
    (r.users_new, r.entries_new, r.payments_new, r.jobs_new)
}

#[tokio::test]
async fn an_import_runs_once_and_keeps_old_payments_deduplicated() {
    let target = Target::new();
    let first = target.imported(&snapshot(), 100).await;
    assert_eq!(news(&first), (2, 5, 2, 2));
    assert_eq!(first.balances_total, m(26_000));
    let again = target.imported(&snapshot(), 200).await;
    assert_eq!(
        news(&again),
        (0, 0, 0, 0),
        "a second run imports nothing new"
    );
    assert_eq!(target.balance(1).await, m(25_000));
    let store = &target.store;
    assert!(store.user(u(2)).await.unwrap().unwrap().is_banned);
    let paid = store
        .payment_by_provider_id(PaymentProvider::Yookassa, "2f9e-old-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (paid.id, paid.state),
        (payment_id_of(1), PaymentState::Paid)
    );
    // A late webhook about the old payment credits nothing twice.
    let event = crate::payment::PaymentEvent::ProviderSucceeded {
        provider_payment_id: "2f9e-old-1".into(),
        amount: m(30_000),
    };
    assert!(!paid.apply(event, t(300)).unwrap().changed());
    target.assert_sound().await;
}

#[test]
fn a_file_that_does_not_add_up_is_refused_with_every_problem_named() {
    let mut s = snapshot();
    // Anna spends more than she has; Boris's credit is for a payment that is not there;
    // payment 1 is credited twice; a job of a stranger is still running.
    s.entries
        .push(entry(6, 1, EntryKind::Debit, 30_000, LegacyRef::Job(1)));
    s.entries.push(entry(
        7,
        1,
        EntryKind::Credit,
        30_000,
        LegacyRef::Payment(1),
    ));
    s.entries
        .push(entry(8, 2, EntryKind::Credit, 500, LegacyRef::Payment(9)));
    s.entries.push(entry(
        9,
        7,
        EntryKind::Credit,
        500,
        LegacyRef::Admin("1".into()),
    ));
    s.jobs.push(job(3, 1, "processing"));
    let Err(ImportError::Inconsistent(problems)) = check(&s) else {
        panic!("refused");
    };
    let text = problems.join("\n");
    for expected in [
        "ledger row 6 (user 1): the balance 250.00 ₽ cannot take debit 300.00 ₽",
        "ledger row 8: payment 9 is not in payments",
        "ledger row 9: user 7 is not in users",
        "payment 1 of 300.00 ₽ has 2 credit(s)",
        "job 3 is still processing",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[tokio::test]
async fn a_refused_import_writes_nothing() {
    let target = Target::new();
    let mut s = snapshot();
    s.payments[1].state = PaymentState::Paid;
    let err = target.import(&s, 1).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("payment 2 is paid but the ledger has no credit"),
        "{err}"
    );
    assert_eq!(
        target.store.user(u(1)).await.unwrap(),
        None,
        "nothing written"
    );
}

/// The snapshot plus payment 3 (50 ₽) still pending in the old bot.
fn with_pending_payment() -> LegacySnapshot {
    let mut s = snapshot();
    s.payments.push(LegacyPayment {
        id: 3,
        provider_payment_id: Some("2f9e-old-3".into()),
        user_id: u(1),
        amount: m(5_000),
        state: PaymentState::Pending,
        created_at: t(4),
        paid_at: None,
    });
    s
}

/// The old bot ran on: it saw payment 3 paid and wrote its own credit row.
fn paid_in_the_old_bot(s: &mut LegacySnapshot) {
    s.payments[2].state = PaymentState::Paid;
    s.payments[2].paid_at = Some(t(50));
    s.entries
        .push(entry(6, 1, EntryKind::Credit, 5_000, LegacyRef::Payment(3)));
}

#[tokio::test]
async fn a_payment_paid_here_and_in_the_old_bot_is_credited_once_on_reimport() {
    let target = Target::new();
    let mut s = with_pending_payment();
    target.imported(&s, 100).await;
    // REI's webhook credits payment 3 ...
    target.paid_here(150).await;
    assert_eq!(target.balance(1).await, m(30_000));
    // ... and the old bot, still running, credits it too.
    paid_in_the_old_bot(&mut s);
    let again = target.imported(&s, 200).await;
    assert_eq!(
        target.balance(1).await,
        m(30_000),
        "one credit, whichever side wrote it"
    );
    assert_eq!(again.entries_new, 0);
    assert!(
        again
            .skipped
            .iter()
            .any(|line| line.contains("ledger row 6") && line.contains("not credited twice")),
        "{:?}",
        again.skipped
    );
    // And once more: nothing new, nothing twice.
    target.assert_rerun_changes_nothing(&s, m(30_000)).await;
}

#[tokio::test]
async fn a_payment_the_old_bot_saw_paid_after_the_first_import_is_credited_once() {
    let target = Target::new();
    let mut s = with_pending_payment();
    target.imported(&s, 100).await;
    paid_in_the_old_bot(&mut s);
    let again = target.imported(&s, 200).await;
    assert_eq!(again.payments_credited, 1);
    let payment = target
        .store
        .payment(payment_id_of(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.state, PaymentState::Paid, "paid here too");
    assert_eq!(target.balance(1).await, m(30_000));
    // A late webhook about it changes nothing.
    assert!(!target.webhook_on_payment_3(250).await.changed());
    target.assert_rerun_changes_nothing(&s, m(30_000)).await;
}

#[tokio::test]
async fn a_payment_paid_here_but_cancelled_in_the_old_bot_stays_paid_and_is_reported() {
    let target = Target::new();
    let mut s = with_pending_payment();
    target.imported(&s, 100).await;
    target.paid_here(150).await;
    s.payments[2].state = PaymentState::Cancelled;
    let again = target.imported(&s, 200).await;
    assert!(
        again
            .skipped
            .iter()
            .any(|line| line.contains("payment 3: paid here, cancelled in the file")),
        "{:?}",
        again.skipped
    );
    assert_eq!(target.balance(1).await, m(30_000));
}

#[tokio::test]
async fn rows_an_earlier_import_posted_under_their_own_keys_are_not_posted_again() {
    // What an earlier version of the import wrote: every row under the row's own key,
    // payment credits included.
    let target = Target::new();
    let store = &target.store;
    let s = snapshot();
    for user in &s.users {
        let profile = UserProfile {
            id: user.id,
            username: None,
            first_name: None,
            language: Language::Ru,
        };
        store.register(profile, t(1)).await.unwrap();
    }
    for p in &s.payments {
        store
            .import_payment(&legacy_payment(p, t(100)))
            .await
            .unwrap();
    }
    for e in &s.entries {
        let (ref_type, ref_id) = match &e.reference {
            LegacyRef::Payment(p) => (RefType::Payment, payment_id_of(*p).to_string()),
            LegacyRef::Job(j) => (RefType::Job, format!("legacy-job-{j}")),
            LegacyRef::Admin(w) | LegacyRef::Other(w) => (RefType::Admin, format!("legacy:{w}")),
        };
        let old = NewEntry {
            user_id: e.user_id,
            kind: e.kind,
            amount: e.amount,
            ref_type,
            ref_id,
            description: e.description.clone(),
            idempotency_key: IdempotencyKey::derived("legacy", &e.id, "ledger"),
            created_at: e.created_at,
        };
        store.post(old, None).await.unwrap();
    }
    let again = target.imported(&s, 200).await;
    assert_eq!(again.entries_new, 0, "{again:?}");
    assert_eq!(target.balance(1).await, m(25_000));
    target.assert_sound().await;
}
