//! Shared helpers for REI's end-to-end tests and benchmarks: fresh databases per test.
//!
//! PostgreSQL comes from `REI_TEST_POSTGRES_URL` and Redis from `REI_TEST_REDIS_URL`
//! (set by `scripts/test`, which starts throwaway servers). When one is unset its tests
//! fail: a test never passes without its server. To leave them out knowingly, filter
//! them out (`cargo test -- --skip postgres --skip redis`): the count then shows them
//! as filtered out, never as passed.

pub mod fakes;
pub mod process;

use std::sync::Arc;

use anyhow::Context;
use rei_adapters::outbound::sql::{SqlStore, Stores};
use rei_core::ledger::{EntryKind, NewEntry, RefType};
use rei_core::payment::{PaymentConfig, PaymentPorts, PaymentService};
use rei_core::ports::{Clock, IdGenerator};
use rei_core::user::{Language, UserProfile};
use rei_core::{IdempotencyKey, Money, Timestamp, UserId};
use uuid::Uuid;

/// A path for a new SQLite file, in a temp dir kept until the machine cleans it.
///
/// # Errors
/// When no temp dir can be made.
/// A bench's `--write` flag: `default`, `direct` or `batched`.
///
/// # Errors
/// On any other value.
pub fn write_mode(value: &str) -> anyhow::Result<Option<rei_adapters::outbound::sql::WriteMode>> {
    use rei_adapters::outbound::sql::WriteMode;
    Ok(match value {
        "default" => None,
        "direct" => Some(WriteMode::Direct),
        "batched" => Some(WriteMode::Batched),
        other => anyhow::bail!("--write default|direct|batched, not {other}"),
    })
}

pub fn sqlite_path() -> anyhow::Result<String> {
    let dir = tempfile::Builder::new()
        .prefix("rei-sqlite-")
        .tempdir()
        .context("temp dir")?
        .keep();
    Ok(dir.join("rei.db").to_string_lossy().into_owned())
}

/// A store over a new SQLite file.
///
/// # Errors
/// When the file cannot be created.
pub async fn sqlite() -> anyhow::Result<Arc<SqlStore>> {
    Ok(Arc::new(SqlStore::open_sqlite_path(&sqlite_path()?).await?))
}

/// The URL of a test server from `var`.
///
/// # Panics
/// When `var` is unset: a test never passes without its server.
#[must_use]
pub fn server_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{var} is not set: run the tests through scripts/test (which starts the server), \
             or leave them out knowingly with `cargo test -- --skip postgres --skip redis`"
        ),
    }
}

/// The admin URL of the PostgreSQL test server (see [`server_url`]).
#[must_use]
pub fn postgres_admin_url() -> String {
    server_url("REI_TEST_POSTGRES_URL")
}

/// The URL of a new, empty PostgreSQL database.
///
/// # Errors
/// When the server refuses to create the database.
pub async fn postgres_url() -> anyhow::Result<String> {
    let admin = postgres_admin_url();
    let name = format!("rei_test_{}", Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .context("connect to the test server")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .context("create database")?;
    let mut url = url::Url::parse(&admin)?;
    url.set_path(&name);
    Ok(url.to_string())
}

/// A store over a new PostgreSQL database.
///
/// # Errors
/// When the database cannot be created or migrated.
pub async fn postgres() -> anyhow::Result<Arc<SqlStore>> {
    Ok(Arc::new(
        SqlStore::connect_postgres(&postgres_url().await?).await?,
    ))
}

/// The profile of user `id` as the tests register it: no names, Russian.
#[must_use]
pub fn profile(id: UserId) -> UserProfile {
    UserProfile {
        id,
        username: None,
        first_name: None,
        language: Language::Ru,
    }
}

/// Registers user `id` at time 0 and posts `amount` to them as an admin credit keyed
/// `key`, straight through the stores (no service, no audit).
///
/// # Errors
/// When the store refuses.
pub async fn seeded_user(
    stores: &Stores,
    id: i64,
    amount: Money,
    key: &str,
) -> anyhow::Result<UserId> {
    let user = UserId::new(id)?;
    let start = Timestamp::from_millis(0);
    stores.users.register(profile(user), start).await?;
    let seed = NewEntry {
        user_id: user,
        kind: EntryKind::Credit,
        amount,
        ref_type: RefType::Admin,
        ref_id: "test".into(),
        description: "seed".into(),
        idempotency_key: IdempotencyKey::new(key)?,
        created_at: start,
    };
    stores.ledger.post(seed, None).await?;
    Ok(user)
}

/// A payment service over `stores` that takes Telegram Stars only (no YooKassa), at
/// `stars_rate` a Star; admin alerts are recorded, not sent.
#[must_use]
pub fn stars_payments(
    stores: &Stores,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    stars_rate: Money,
) -> PaymentService {
    let ports = PaymentPorts {
        users: stores.users.clone(),
        payments: stores.payments.clone(),
        gateway: None,
        stars: None,
        notifier: Arc::new(rei_core::memory::RecordingNotifier::default()),
        clock,
        ids,
    };
    let config = PaymentConfig {
        stars_rate: Some(stars_rate),
        ..PaymentConfig::default()
    };
    PaymentService::new(ports, config)
}

/// Registers user `id` and credits `amount` to them (audited as `system`), through the
/// services, as the bot would.
///
/// # Errors
/// When the store refuses.
pub async fn funded_user(
    stores: &rei_adapters::outbound::sql::Stores,
    id: i64,
    amount: rei_core::Money,
) -> anyhow::Result<rei_core::UserId> {
    use rei_core::prelude::*;
    let clock: Arc<dyn Clock> = Arc::new(rei_adapters::outbound::system::SystemClock);
    let user = UserId::new(id)?;
    UserService::new(stores.users.clone(), clock.clone())
        .register(UserProfile {
            id: user,
            username: None,
            first_name: Some("Test".into()),
            language: Language::Ru,
        })
        .await?;
    AdminService::new(AdminPorts {
        users: stores.users.clone(),
        ledger: stores.ledger.clone(),
        queue: Arc::new(rei_core::job::StoreQueue::new(stores.jobs.clone())),
        clock,
    })
    .credit(
        Actor::System,
        user,
        amount,
        "test funds",
        IdempotencyKey::new(format!("test-funds-{id}"))?,
    )
    .await?;
    Ok(user)
}

/// A job service over `stores` with the seed's prices, the database queue and the
/// system clock.
#[must_use]
pub fn job_service(
    stores: &rei_adapters::outbound::sql::Stores,
    limits: rei_core::job::JobLimits,
) -> rei_core::JobService {
    let queue = Arc::new(rei_core::job::StoreQueue::new(stores.jobs.clone()));
    job_service_on(stores, queue, limits)
}

/// [`job_service`] that hands new jobs to `queue` (Redis, as a deployment with
/// `REDIS_URL` does).
pub fn job_service_on(
    stores: &rei_adapters::outbound::sql::Stores,
    queue: Arc<dyn rei_core::ports::JobQueue>,
    limits: rei_core::job::JobLimits,
) -> rei_core::JobService {
    rei_core::JobService::new(
        rei_core::job::JobPorts {
            users: stores.users.clone(),
            jobs: stores.jobs.clone(),
            queue,
            clock: Arc::new(rei_adapters::outbound::system::SystemClock),
            ids: Arc::new(rei_adapters::outbound::system::RandomIds),
        },
        rei_core::PriceList::seed_defaults(),
        limits,
    )
}

/// A payment service over `stores` that creates card top-ups at the YooKassa at `url`
/// (a fake), as `rei-bot` would; notices are recorded, not sent.
///
/// # Errors
/// When the YooKassa client cannot be built.
pub fn yookassa_payments(
    stores: &rei_adapters::outbound::sql::Stores,
    url: &str,
) -> anyhow::Result<PaymentService> {
    use rei_adapters::outbound::yookassa::{YooKassaClient, YooKassaConfig};
    let mut config = YooKassaConfig::new("123456", "test_secret".to_owned().into());
    config.base_url = url.to_owned();
    let client = YooKassaClient::new(config)?;
    Ok(PaymentService::new(
        PaymentPorts {
            users: stores.users.clone(),
            payments: stores.payments.clone(),
            gateway: Some(Arc::new(client)),
            stars: None,
            notifier: Arc::new(rei_core::memory::RecordingNotifier::default()),
            clock: Arc::new(rei_adapters::outbound::system::SystemClock),
            ids: Arc::new(rei_adapters::outbound::system::RandomIds),
        },
        PaymentConfig {
            return_url: "https://t.me/rei_test_bot".into(),
            ..PaymentConfig::default()
        },
    ))
}

/// Polls `check` every 25 ms until it holds.
///
/// # Panics
/// When it does not hold within `limit`, naming `what`.
pub async fn eventually<F, Fut>(what: &str, limit: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
