//! Fresh databases per test: a new SQLite file, a new PostgreSQL database.

use std::sync::Arc;

use rei_adapters::sql::{PostgresStore, SqliteStore};
use uuid::Uuid;

/// A new SQLite file in a temp dir that lives until the process exits.
pub async fn sqlite() -> Arc<SqliteStore> {
    let path = sqlite_path();
    Arc::new(SqliteStore::open_path(&path).await.expect("open sqlite"))
}

/// A path for a new SQLite file.
pub fn sqlite_path() -> String {
    let dir = tempfile::Builder::new()
        .prefix("rei-sqlite-")
        .tempdir()
        .expect("temp dir")
        .keep();
    dir.join("rei.db").to_string_lossy().into_owned()
}

/// The admin URL of the test server, or `None` (with a note) when it is not configured.
/// Under `CI=true` a missing server is a failure, never a silent skip.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("REI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "REI_TEST_POSTGRES_URL is not set under CI=true: run scripts/test"
            );
            eprintln!(
                "skipped: REI_TEST_POSTGRES_URL is not set (scripts/test starts PostgreSQL and sets it)"
            );
            None
        }
    }
}

/// A URL of a new, empty PostgreSQL database.
pub async fn postgres_url() -> Option<String> {
    let admin = postgres_admin_url()?;
    let name = format!("rei_test_{}", Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect to the test server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin).expect("admin url");
    url.set_path(&name);
    Some(url.to_string())
}

/// A store over a new PostgreSQL database.
pub async fn postgres() -> Option<Arc<PostgresStore>> {
    let url = postgres_url().await?;
    Some(Arc::new(
        PostgresStore::connect(&url).await.expect("connect store"),
    ))
}
