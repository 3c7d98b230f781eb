//! A child process for the storage tests: spends from a shared SQLite file, or writes
//! money flows until it is killed with SIGKILL.
//!
//! ```text
//! rei-storage-child spend <sqlite-path> <tg-id> <attempts>
//! rei-storage-child crash-writer <sqlite-path | postgres-url> <round>
//! rei-storage-child batch-writer <sqlite-path | postgres-url> <round>
//! rei-storage-child limit <redis-url> <key-prefix> <tg-id> <per-minute> <attempts>
//! ```

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail};
use rei_adapters::outbound::sql::{DatabaseTarget, Stores, connect};
use rei_core::job::{
    AssetRef, FailureReason, JobEvent, JobGuard, JobLease, JobLimits, JobPorts, JobSpec, Prompt,
    StoreQueue,
};
use rei_core::ledger::NewReservation;
use rei_core::memory::{ManualClock, RecordingNotifier};
use rei_core::payment::PaymentConfig;
use rei_core::ports::{ClaimTarget, Clock, IdGenerator, StoreError};
use rei_core::prelude::*;
use uuid::Uuid;

fn target(arg: &str) -> anyhow::Result<DatabaseTarget> {
    if arg.starts_with("postgres") {
        Ok(DatabaseTarget::from_config(Some(arg), "")?)
    } else {
        Ok(DatabaseTarget::SqlitePath(arg.to_owned()))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("spend") if args.len() == 5 => {
            spend(&args[2], args[3].parse()?, args[4].parse()?).await
        }
        Some("crash-writer") if args.len() == 4 => crash_writer(&args[2], args[3].parse()?).await,
        Some("batch-writer") if args.len() == 4 => batch_writer(&args[2], args[3].parse()?).await,
        Some("limit") if args.len() == 7 => {
            limit(
                &args[2],
                &args[3],
                args[4].parse()?,
                args[5].parse()?,
                args[6].parse()?,
            )
            .await
        }
        _ => bail!(
            "usage: rei-storage-child spend <path> <tg-id> <attempts> | crash-writer <target> <round> \
             | batch-writer <target> <round> \
             | limit <redis-url> <prefix> <tg-id> <per-minute> <attempts>"
        ),
    }
}

/// Holds 10 kopecks `attempts` times; prints how many succeeded. Any error other than
/// insufficient funds (e.g. "database is locked") fails the process.
async fn spend(path: &str, user: i64, attempts: u32) -> anyhow::Result<()> {
    let stores = connect(&target(path)?).await?;
    let user = UserId::new(user)?;
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..attempts {
        let hold = NewReservation {
            id: ReservationId::from_uuid(Uuid::new_v4()),
            user_id: user,
            amount: Money::from_kopecks(10)?,
            job_id: None,
            description: "child spend".into(),
            idempotency_key: IdempotencyKey::new(format!("spend-{}", Uuid::new_v4()))?,
            created_at: Timestamp::from_millis(0),
        };
        match stores.ledger.reserve(hold).await {
            Ok(_) => ok += 1,
            Err(StoreError::InsufficientFunds { .. }) => refused += 1,
            Err(e) => bail!("unexpected store error: {e}"),
        }
    }
    println!("ok {ok} refused {refused}");
    Ok(())
}

/// Asks the Redis rate limiter `attempts` times for one user; prints how many were
/// allowed. Any limiter error fails the process.
async fn limit(
    url: &str,
    prefix: &str,
    user: i64,
    per_minute: u32,
    attempts: u32,
) -> anyhow::Result<()> {
    use rei_core::ports::{RateDecision, RateLimiter};
    let per_minute = std::num::NonZeroU32::new(per_minute).context("per-minute must be > 0")?;
    let limiter = rei_adapters::outbound::redis::RedisLimiter::new(url, prefix, per_minute)?;
    let user = UserId::new(user)?;
    let mut allowed = 0;
    for _ in 0..attempts {
        if limiter.check(user).await? == RateDecision::Allowed {
            allowed += 1;
        }
    }
    println!("allowed {allowed}");
    Ok(())
}

/// Runs credit → job → start → complete/fail → Stars top-up flows forever, printing
/// `op N` after each step, until killed.
async fn crash_writer(target_arg: &str, round: u32) -> anyhow::Result<()> {
    let Stores {
        users,
        ledger,
        jobs,
        payments,
        ..
    } = connect(&target(target_arg)?).await?;
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_767_225_600_000)));
    let queue = Arc::new(StoreQueue::new(jobs.clone()));
    let notifier = Arc::new(RecordingNotifier::default());
    // Random ids: children run concurrently and after each other on one database.
    let ids = Arc::new(rei_adapters::outbound::system::RandomIds);
    let user_svc = UserService::new(users.clone(), clock.clone());
    let admin = AdminService::new(AdminPorts {
        users: users.clone(),
        ledger: ledger.clone(),
        queue: queue.clone(),
        clock: clock.clone(),
    });
    let job_svc = JobService::new(
        JobPorts {
            users: users.clone(),
            jobs: jobs.clone(),
            queue,
            clock: clock.clone(),
            ids: ids.clone(),
        },
        PriceList::seed_defaults(),
        JobLimits {
            max_active_per_user: 50,
            max_attempts: 3,
            max_deliveries: 10,
        },
    );
    let pay = PaymentService::new(
        PaymentPorts {
            users,
            payments,
            gateway: None,
            stars: None,
            notifier,
            clock: clock.clone(),
            ids: ids.clone(),
        },
        PaymentConfig {
            stars_rate: Some(Money::from_kopecks(150)?),
            ..PaymentConfig::default()
        },
    );
    let mut out = std::io::stdout();
    let mut op = 0u64;
    let mut step = |out: &mut std::io::Stdout| -> anyhow::Result<()> {
        op += 1;
        writeln!(out, "op {op}")?;
        out.flush()?;
        Ok(())
    };
    for i in 0u64.. {
        let user = UserId::new(i64::try_from(i % 4 + 1)?)?;
        user_svc
            .register(UserProfile {
                id: user,
                username: None,
                first_name: None,
                language: Language::Ru,
            })
            .await?;
        step(&mut out)?;
        let key = IdempotencyKey::new(format!("credit-{round}-{i}"))?;
        admin
            .credit(
                Actor::System,
                user,
                Money::from_kopecks(7_000)?,
                "crash test",
                key,
            )
            .await?;
        step(&mut out)?;
        let spec = JobSpec::image(Prompt::parse("crash")?);
        let quote = job_svc.quote(&spec);
        let job = match job_svc
            .create(
                user,
                spec,
                &quote,
                IdempotencyKey::new(format!("job-{round}-{i}"))?,
            )
            .await
        {
            Ok(job) => job,
            Err(
                rei_core::job::JobError::InsufficientFunds { .. }
                | rei_core::job::JobError::TooManyActiveJobs { .. },
            ) => continue,
            Err(e) => return Err(e).context("create job"),
        };
        step(&mut out)?;
        let now = clock.now();
        let lease = JobLease::new(
            ids.lease_token(),
            now.plus(std::time::Duration::from_secs(60)),
        );
        let claimed = jobs
            .claim_job(ClaimTarget::Job(job.id), &lease, now)
            .await?
            .context("the new job is claimable")?;
        step(&mut out)?;
        let guard = JobGuard::Lease(lease.token);
        let event = if i % 3 == 0 {
            JobEvent::Failed {
                reason: FailureReason::ProviderFailed {
                    detail: "crash test".into(),
                },
            }
        } else {
            JobEvent::Succeeded {
                result: AssetRef::new("results/x.png"),
                actual_cost: Money::from_kopecks(4_000)?,
                result_url: None,
            }
        };
        job_svc.write(claimed.id, event, guard).await?;
        step(&mut out)?;
        let topup = pay.create_stars_topup(user, 10).await?;
        step(&mut out)?;
        pay.stars_paid(topup.id, &format!("stx-{round}-{i}"), 10)
            .await?;
        step(&mut out)?;
    }
    Ok(())
}

/// 32 tasks write at once through group commit (SQLite's default; PostgreSQL opened in
/// batched mode too) until killed: each posts an audited, notified credit and places
/// and captures a hold, printing every write as soon as its caller has the answer
/// (`credit <key>`, `hold <id>`, `captured <id>`).
async fn batch_writer(target_arg: &str, round: u32) -> anyhow::Result<()> {
    use rei_adapters::outbound::sql::{WriteMode, connect_with};
    use rei_core::ledger::{EntryKind, NewEntry, RefType, Settlement};
    use rei_core::user::{AuditAction, AuditRecord};

    {
        let stores = connect_with(&target(target_arg)?, WriteMode::Batched).await?;
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let say = move |line: String| -> anyhow::Result<()> {
            let mut out = out
                .lock()
                .map_err(|_| anyhow::anyhow!("stdout lock poisoned"))?;
            writeln!(out, "{line}")?;
            out.flush()?;
            Ok(())
        };
        for id in 1..=8 {
            let user = UserId::new(id)?;
            stores
                .users
                .register(rei_tests::profile(user), Timestamp::from_millis(0))
                .await?;
        }
        let mut tasks = Vec::new();
        for task in 0..32_i64 {
            let stores = stores.clone();
            let say = say.clone();
            tasks.push(tokio::spawn(async move {
                let user = UserId::new(task % 8 + 1)?;
                let at = Timestamp::from_millis(1_000);
                for i in 0u64.. {
                    let key = format!("bw-{round}-{task}-{i}");
                    let amount = Money::from_kopecks(100)?;
                    stores
                        .ledger
                        .post_adjustment(
                            NewEntry {
                                user_id: user,
                                kind: EntryKind::Credit,
                                amount,
                                ref_type: RefType::Admin,
                                ref_id: "crash-batch".into(),
                                description: "crash batch".into(),
                                idempotency_key: IdempotencyKey::new(key.clone())?,
                                created_at: at,
                            },
                            AuditRecord {
                                actor: Actor::System,
                                action: AuditAction::BalanceAdd,
                                target_user: Some(user),
                                amount: Some(amount),
                                reason: "crash-batch".into(),
                                created_at: at,
                            },
                        )
                        .await?;
                    say(format!("credit {key}"))?;
                    let held = stores
                        .ledger
                        .reserve(NewReservation {
                            id: ReservationId::from_uuid(Uuid::new_v4()),
                            user_id: user,
                            amount: Money::from_kopecks(60)?,
                            job_id: None,
                            description: "crash batch".into(),
                            idempotency_key: IdempotencyKey::new(format!("{key}-hold"))?,
                            created_at: at,
                        })
                        .await?;
                    say(format!("hold {}", held.id))?;
                    stores
                        .ledger
                        .settle(
                            held.id,
                            Settlement::Capture {
                                actual: Money::from_kopecks(60)?,
                            },
                            at,
                        )
                        .await?;
                    say(format!("captured {}", held.id))?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    }
}
