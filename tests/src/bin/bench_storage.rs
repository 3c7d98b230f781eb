//! Storage benchmark: reserve + capture pairs per second on SQLite and PostgreSQL, next
//! to the raw rate of single-row insert commits with the same settings, in the same run.
//!
//! ```text
//! cargo run --release -p rei-tests --bin rei-bench-storage -- [--pairs N] [--writers W] \
//!     [--write default|direct|batched]
//! ```
//! PostgreSQL is measured when `REI_BENCH_POSTGRES_URL` (or `REI_TEST_POSTGRES_URL`) names
//! a server where databases may be created.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use rei_adapters::outbound::sql::{DatabaseTarget, Stores, WriteMode, connect_with};
use rei_core::ledger::{NewReservation, Settlement};
use rei_core::prelude::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use uuid::Uuid;

#[derive(Clone, Copy)]
struct Args {
    pairs: u32,
    writers: u32,
    write: Option<WriteMode>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        pairs: 2_000,
        writers: 1,
        write: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pairs" => a.pairs = value.parse()?,
            "--writers" => a.writers = value.parse()?,
            "--write" => a.write = rei_tests::write_mode(&value)?,
            other => anyhow::bail!(
                "unknown flag {other} (use --pairs N --writers W --write default|direct|batched)"
            ),
        }
    }
    Ok(a)
}

/// Runs `per_writer` reserve + capture pairs on each of `writers` users concurrently.
async fn pairs(stores: &Stores, args: Args) -> anyhow::Result<f64> {
    let mut users = Vec::new();
    for w in 0..args.writers {
        let funds = Money::from_kopecks(1_000_000_000)?;
        let key = format!("bench-seed-{w}");
        users.push(rei_tests::seeded_user(stores, i64::from(w) + 1, funds, &key).await?);
    }
    let per_writer = args.pairs / args.writers;
    let started = Instant::now();
    let tasks: Vec<_> = users
        .into_iter()
        .map(|u| {
            let ledger = stores.ledger.clone();
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    let id = ReservationId::from_uuid(Uuid::new_v4());
                    let hold = NewReservation {
                        id,
                        user_id: u,
                        amount: Money::from_kopecks(5_000)?,
                        job_id: None,
                        description: "bench".into(),
                        idempotency_key: IdempotencyKey::new(format!("bench-{id}"))?,
                        created_at: Timestamp::from_millis(1),
                    };
                    ledger.reserve(hold).await?;
                    ledger
                        .settle(
                            id,
                            Settlement::Capture {
                                actual: Money::from_kopecks(4_000)?,
                            },
                            Timestamp::from_millis(2),
                        )
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let report = stores.ledger.verify().await?;
    anyhow::ensure!(
        report.is_ok(),
        "benchmark broke the ledger: {:?}",
        report.violations
    );
    Ok(f64::from(per_writer * args.writers) / secs)
}

/// Single-row insert commits into a `bench_raw` table made by `create`, as many as the
/// pairs' transactions, through `args.writers` connections, each in its own transaction
/// begun the way the store begins writes (`begin`), so the baseline pays the same
/// transaction and durability costs and differs only in the work inside.
async fn raw_commits<DB>(
    pool: sqlx::Pool<DB>,
    begin: &'static str,
    create: &'static str,
    args: Args,
) -> anyhow::Result<f64>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'c> &'c mut <DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(create).execute(&pool).await?;
    let writers = args.writers;
    let per_writer = args.pairs * 2 / writers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let mut tx = pool.begin_with(begin).await?;
                    sqlx::query("INSERT INTO bench_raw (v) VALUES ($1)")
                        .bind(i64::from(w * per_writer + i))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(f64::from(per_writer * writers) / started.elapsed().as_secs_f64())
}

fn row(backend: &str, writers: u32, pairs: f64, raw: f64, stores: &Stores, mode: WriteMode) {
    let stats = stores.sql.write_stats();
    #[allow(clippy::cast_precision_loss)]
    let per_commit = stats.writes as f64 / stats.commits.max(1) as f64;
    println!(
        "| {backend} | {writers} | {mode:?} | {pairs:.0} | {:.0} | {raw:.0} | {:.0} % | {:.2}× | {per_commit:.1} |",
        pairs * 2.0,
        100.0 * pairs / raw,
        2.0 * pairs / raw
    );
}

async fn sqlite(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db").to_string_lossy().into_owned();
    let target = DatabaseTarget::SqlitePath(path.clone());
    let mode = args
        .write
        .unwrap_or_else(|| WriteMode::default_for(&target));
    let stores = connect_with(&target, mode).await?;
    let pair_rate = pairs(&stores, args).await?;
    // The same settings as the store: WAL, synchronous=FULL, busy timeout, same file.
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    let create = "CREATE TABLE bench_raw (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)";
    let raw = raw_commits(pool, "BEGIN IMMEDIATE", create, args).await?;
    row("SQLite", args.writers, pair_rate, raw, &stores, mode);
    Ok(())
}

async fn postgres(args: Args, admin: &str) -> anyhow::Result<()> {
    let name = format!("rei_bench_{}", Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let mut url = url::Url::parse(admin)?;
    url.set_path(&name);
    let target = DatabaseTarget::from_config(Some(url.as_str()), "")?;
    let mode = args
        .write
        .unwrap_or_else(|| WriteMode::default_for(&target));
    let stores = connect_with(&target, mode).await?;
    let pair_rate = pairs(&stores, args).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(url.as_str())
        .await?;
    let create = "CREATE TABLE bench_raw (id BIGSERIAL PRIMARY KEY, v BIGINT NOT NULL)";
    let raw = raw_commits(pool, "BEGIN", create, args).await?;
    row("PostgreSQL", args.writers, pair_rate, raw, &stores, mode);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    println!(
        "reserve + capture pairs vs raw single-row insert commits ({} pairs, {} writer(s))",
        args.pairs, args.writers
    );
    println!(
        "(a pair is two store transactions: the hold at confirmation, the capture at delivery)"
    );
    println!();
    println!(
        "| backend | writers | write mode | pairs/s | transactions/s | raw commits/s | pairs / raw | transactions / raw | writes per commit |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    sqlite(args).await?;
    let pg =
        std::env::var("REI_BENCH_POSTGRES_URL").or_else(|_| std::env::var("REI_TEST_POSTGRES_URL"));
    match pg {
        Ok(url) if !url.is_empty() => postgres(args, &url).await?,
        _ => println!("| PostgreSQL | - | skipped: set REI_BENCH_POSTGRES_URL | | | | | | |"),
    }
    Ok(())
}
