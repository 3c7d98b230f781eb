//! `verify` on a real SQLite file: each kind of violation, planted with raw SQL behind
//! the domain's back (dropping the schema's guards where they would refuse it), is
//! found by the store's own queries and reported by the one shared checker.

use std::sync::Arc;
use std::time::Duration;

use rei_adapters::outbound::sql::{DatabaseTarget, Stores, connect};
use rei_core::job::{
    AssetRef, JobEvent, JobGuard, JobLimits, JobPorts, JobSpec, Prompt, StoreQueue,
};
use rei_core::ledger::Violation;
use rei_core::memory::{ManualClock, SequentialIds};
use rei_core::prelude::*;
use sqlx::Connection;

struct Planted {
    path: String,
    stores: Stores,
    /// A completed job (captured 50 ₽) and a pending one (held 50 ₽).
    done_job: JobId,
    pending_job: JobId,
    reservation: String,
    payment: PaymentId,
}

/// A sound store: 100 ₽ credited by a Stars payment, one image captured, one pending.
async fn sound() -> Planted {
    let path = rei_tests::sqlite_path().unwrap();
    let stores = connect(&DatabaseTarget::SqlitePath(path.clone()))
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_767_225_600_000)));
    let ids = Arc::new(SequentialIds::default());
    let users = UserService::new(stores.users.clone(), clock.clone());
    let jobs = JobService::new(
        JobPorts {
            users: stores.users.clone(),
            jobs: stores.jobs.clone(),
            queue: Arc::new(StoreQueue::new(stores.jobs.clone())),
            clock: clock.clone(),
            ids: ids.clone(),
        },
        PriceList::seed_defaults(),
        JobLimits::default(),
    );
    let pay = rei_tests::stars_payments(
        &stores,
        clock.clone(),
        ids,
        Money::from_kopecks(100).unwrap(),
    );
    let u = UserId::new(1).unwrap();
    users.register(rei_tests::profile(u)).await.unwrap();
    let topup = pay.create_stars_topup(u, 100).await.unwrap();
    pay.stars_paid(topup.id, "charge-1", 100).await.unwrap();
    let spec = JobSpec::image(Prompt::parse("fox").unwrap());
    let quote = jobs.quote(&spec);
    jobs.create(u, spec.clone(), &quote, IdempotencyKey::new("a").unwrap())
        .await
        .unwrap();
    let claimed = jobs
        .claim("w", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let done = jobs
        .write(
            claimed.id,
            JobEvent::Succeeded {
                result: AssetRef::new("results/a.png"),
                actual_cost: quote.amount,
                result_url: None,
            },
            JobGuard::Lease(claimed.lease.clone().unwrap().token),
        )
        .await
        .unwrap()
        .job;
    let pending = jobs
        .create(u, spec, &quote, IdempotencyKey::new("b").unwrap())
        .await
        .unwrap();
    let report = stores.ledger.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    Planted {
        path,
        stores,
        done_job: done.id,
        pending_job: pending.id,
        reservation: done.reservation_id.to_string(),
        payment: topup.id,
    }
}

async fn plant(p: &Planted, statements: &[String]) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", p.path))
        .await
        .unwrap();
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn found(p: &Planted) -> Vec<Violation> {
    p.stores.ledger.verify().await.unwrap().violations
}

fn entry(kind: &str, amount: i64, ref_type: &str, ref_id: &str, key: &str) -> String {
    format!(
        "INSERT INTO ledger (user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at) \
         VALUES (1, '{kind}', {amount}, '{ref_type}', '{ref_id}', 'planted', '{key}', 0)"
    )
}

#[tokio::test]
async fn a_cached_balance_off_its_entries_is_found() {
    let p = sound().await;
    plant(&p, &["UPDATE users SET balance = balance + 1".into()]).await;
    let v = found(&p).await;
    assert!(
        matches!(v.as_slice(), [Violation::CachedBalanceMismatch { cached, sum, .. }] if cached - sum == 1),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_negative_sum_is_found() {
    let p = sound().await;
    plant(
        &p,
        &[
            "DROP TRIGGER ledger_updates_balance".into(),
            entry("debit", 1_000_000, "admin", "x", "planted-debit"),
        ],
    )
    .await;
    let v = found(&p).await;
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::NegativeBalance { sum, .. } if *sum < 0)),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_second_refund_of_a_reservation_is_found() {
    let p = sound().await;
    let r = p.reservation.clone();
    plant(
        &p,
        &[entry("refund", 5_000, "reservation", &r, "planted-refund")],
    )
    .await;
    let v = found(&p).await;
    assert!(
        matches!(v.as_slice(), [Violation::SettlementMismatch { reservation_id, .. }] if reservation_id.to_string() == r),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_second_credit_of_a_payment_is_found() {
    let p = sound().await;
    let id = p.payment.to_string();
    plant(
        &p,
        &[entry("credit", 10_000, "payment", &id, "planted-credit")],
    )
    .await;
    let v = found(&p).await;
    assert!(
        matches!(v.as_slice(), [Violation::PaymentCreditMismatch { payment_id, .. }] if *payment_id == id),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_finished_job_whose_money_is_still_held_is_found() {
    let p = sound().await;
    let job = p.pending_job.to_string();
    plant(
        &p,
        &[format!(
            "UPDATE jobs SET status = 'failed', delivery = 'pending', run_after = NULL WHERE id = '{job}'"
        )],
    )
    .await;
    let v = found(&p).await;
    assert!(
        matches!(v.as_slice(), [Violation::DanglingReservation { job_id: Some(j), .. }] if *j == p.pending_job),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_job_charged_other_than_its_capture_is_found() {
    let p = sound().await;
    let job = p.done_job.to_string();
    plant(
        &p,
        &[format!(
            "UPDATE jobs SET cost_actual = cost_actual - 1 WHERE id = '{job}'"
        )],
    )
    .await;
    let v = found(&p).await;
    assert!(
        matches!(v.as_slice(), [Violation::JobCostMismatch { job_id, cost_actual: Some(c), captured: Some(k) }] if *job_id == p.done_job && c + 1 == *k),
        "{v:?}"
    );
}
