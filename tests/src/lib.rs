//! Shared helpers for REI's end-to-end tests and benchmarks: fresh databases per test.
//!
//! PostgreSQL comes from `REI_TEST_POSTGRES_URL` (set by `scripts/test`, which starts a
//! throwaway server). When it is unset, PostgreSQL tests print that they were skipped;
//! under `CI=true` they fail instead.

use std::sync::Arc;

use anyhow::Context;
use rei_adapters::sql::{PostgresStore, SqliteStore};
use uuid::Uuid;

/// A path for a new SQLite file, in a temp dir kept until the machine cleans it.
///
/// # Errors
/// When no temp dir can be made.
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
pub async fn sqlite() -> anyhow::Result<Arc<SqliteStore>> {
    Ok(Arc::new(SqliteStore::open_path(&sqlite_path()?).await?))
}

/// The admin URL of the test server, or `None` (with a note) when it is not configured.
///
/// # Panics
/// Under `CI=true` when the server is not configured: CI must never skip silently.
#[must_use]
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("REI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "REI_TEST_POSTGRES_URL is not set under CI=true: run the tests through scripts/test"
            );
            eprintln!(
                "skipped: REI_TEST_POSTGRES_URL is not set (scripts/test starts PostgreSQL and sets it)"
            );
            None
        }
    }
}

/// The URL of a new, empty PostgreSQL database, or `None` when no server is configured.
///
/// # Errors
/// When the server refuses to create the database.
pub async fn postgres_url() -> anyhow::Result<Option<String>> {
    let Some(admin) = postgres_admin_url() else {
        return Ok(None);
    };
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
    Ok(Some(url.to_string()))
}

/// A store over a new PostgreSQL database, or `None` when no server is configured.
///
/// # Errors
/// When the database cannot be created or migrated.
pub async fn postgres() -> anyhow::Result<Option<Arc<PostgresStore>>> {
    match postgres_url().await? {
        Some(url) => Ok(Some(Arc::new(PostgresStore::connect(&url).await?))),
        None => Ok(None),
    }
}
