//! Reads the v2.0 Python bot's SQLite file (schema in `shared/seed/README.ru.md`: users,
//! ledger, jobs, payments) into core's typed [`LegacySnapshot`]. Only this module knows
//! the legacy column names and their loose types: amounts may be stored as integer or
//! real rubles or as text (`"150.50"`), times as ISO text or Unix seconds. Every row
//! that cannot be read is named (table, id, column); nothing is guessed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime};
use rei_core::UserId;
use rei_core::ledger::EntryKind;
use rei_core::legacy::{
    LegacyEntry, LegacyJob, LegacyPayment, LegacyRef, LegacySnapshot, LegacyUser,
};
use rei_core::money::Money;
use rei_core::payment::PaymentState;
use rei_core::time::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, Row, SqliteConnection};

/// Why a legacy file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// The file cannot be opened as SQLite (it is opened read-only).
    #[error("cannot open {path} as a SQLite database")]
    Open {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A table or column of the v2.0 schema is missing.
    #[error("not a v2.0 bot database: {0}")]
    Schema(String),
    /// Rows that cannot be read, each named.
    #[error("{} row(s) cannot be read: {}", .0.len(), .0.join("; "))]
    Rows(Vec<String>),
}

/// A cell of SQLite's loose typing.
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

fn cell(row: &SqliteRow, column: &str) -> Result<Cell, String> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(column) {
        return Ok(v.map_or(Cell::Null, Cell::Int));
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(column) {
        return Ok(v.map_or(Cell::Null, Cell::Real));
    }
    match row.try_get::<Option<String>, _>(column) {
        Ok(v) => Ok(v.map_or(Cell::Null, Cell::Text)),
        Err(e) => Err(format!("column {column}: {e}")),
    }
}

fn text(row: &SqliteRow, column: &str) -> Result<Option<String>, String> {
    Ok(match cell(row, column)? {
        Cell::Null => None,
        Cell::Int(i) => Some(i.to_string()),
        Cell::Real(r) => Some(r.to_string()),
        Cell::Text(t) => Some(t),
    })
}

fn int(row: &SqliteRow, column: &str) -> Result<i64, String> {
    match cell(row, column)? {
        Cell::Int(i) => Ok(i),
        Cell::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| format!("{column} `{t}` is not a whole number")),
        Cell::Real(_) | Cell::Null => Err(format!("{column} is not a whole number")),
    }
}

/// Rubles as stored by the old bot; `signed` lets a debit be stored negative.
fn money(row: &SqliteRow, column: &str, signed: bool) -> Result<Option<Money>, String> {
    Ok(signed_money(row, column, signed)?.map(|(m, _)| m))
}

/// Rubles and whether they were stored negative.
fn signed_money(
    row: &SqliteRow,
    column: &str,
    signed: bool,
) -> Result<Option<(Money, bool)>, String> {
    let kopecks = match cell(row, column)? {
        Cell::Null => return Ok(None),
        Cell::Int(rubles) => rubles
            .checked_mul(100)
            .ok_or_else(|| format!("{column} {rubles} is too large"))?,
        Cell::Real(rubles) => {
            let scaled = rubles * 100.0;
            let rounded = scaled.round();
            if (scaled - rounded).abs() > 1e-6 || !rounded.is_finite() {
                return Err(format!("{column} {rubles} is not a sum of whole kopecks"));
            }
            #[allow(clippy::cast_possible_truncation)] // finite, whole, checked below
            let k = rounded as i64;
            k
        }
        Cell::Text(t) => {
            let t = t.trim();
            let (negative, digits) = t.strip_prefix('-').map_or((false, t), |d| (true, d));
            let m = Money::parse_rubles(digits).map_err(|e| format!("{column} `{t}`: {e}"))?;
            if negative { -m.kopecks() } else { m.kopecks() }
        }
    };
    if kopecks < 0 && !signed {
        return Err(format!("{column} is negative"));
    }
    Money::from_kopecks(kopecks.abs())
        .map(|m| Some((m, kopecks < 0)))
        .map_err(|e| format!("{column}: {e}"))
}

fn time(row: &SqliteRow, column: &str) -> Result<Option<Timestamp>, String> {
    match cell(row, column)? {
        Cell::Null => Ok(None),
        // Seconds, or milliseconds when that large.
        Cell::Int(n) if n > 100_000_000_000 => Ok(Some(Timestamp::from_millis(n))),
        Cell::Int(n) => Ok(Some(Timestamp::from_millis(n.saturating_mul(1000)))),
        #[allow(clippy::cast_possible_truncation)] // seconds since 1970 fit easily
        Cell::Real(s) => Ok(Some(Timestamp::from_millis((s * 1000.0).round() as i64))),
        Cell::Text(t) => {
            let t = t.trim();
            if let Ok(d) = DateTime::parse_from_rfc3339(t) {
                return Ok(Some(Timestamp::from_millis(d.timestamp_millis())));
            }
            for format in [
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S",
            ] {
                if let Ok(d) = NaiveDateTime::parse_from_str(t, format) {
                    return Ok(Some(Timestamp::from_millis(d.and_utc().timestamp_millis())));
                }
            }
            Err(format!("{column} `{t}` is not a time"))
        }
    }
}

/// A row that cannot be read, named by its table and id.
fn row_problem(table: &str, row: &SqliteRow, id_column: &str, problem: &str) -> String {
    let id = text(row, id_column).ok().flatten().unwrap_or_default();
    format!("{table} row {id}: {problem}")
}

fn user_id(row: &SqliteRow, column: &str) -> Result<UserId, String> {
    let id = int(row, column)?;
    UserId::new(id).map_err(|_| format!("{column} {id} is not a Telegram user id"))
}

fn flag(row: &SqliteRow, column: &str) -> Result<bool, String> {
    Ok(match cell(row, column)? {
        Cell::Null => false,
        Cell::Int(i) => i != 0,
        Cell::Real(r) => r != 0.0,
        Cell::Text(t) => matches!(t.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"),
    })
}

async fn rows(
    conn: &mut SqliteConnection,
    table: &str,
    order: &str,
) -> Result<Vec<SqliteRow>, LegacyError> {
    let sql = format!("SELECT * FROM {table} ORDER BY {order}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await
        .map_err(|e| LegacyError::Schema(format!("table {table}: {e}")))
}

/// The longest a read of a prototype file may take; a statement still running then is
/// interrupted.
const MAX_READ_TIME: std::time::Duration = std::time::Duration::from_secs(300);

/// The tables of the v2.0 schema that are read.
const TABLES: [&str; 4] = ["users", "ledger", "jobs", "payments"];

/// The file must be the v2.0 schema as tables only: views (a `SELECT` that can run for
/// ever) and triggers have no place in it, and are refused before anything is read.
async fn check_schema(conn: &mut SqliteConnection) -> Result<(), LegacyError> {
    let objects: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view', 'trigger')",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| LegacyError::Schema(format!("cannot read the schema: {e}")))?;
    let odd: Vec<String> = objects
        .iter()
        .filter(|(kind, _)| kind != "table")
        .map(|(kind, name)| format!("{kind} {name}"))
        .collect();
    if !odd.is_empty() {
        return Err(LegacyError::Schema(format!(
            "the file holds {}: a v2.0 bot database has tables only",
            odd.join(", ")
        )));
    }
    for table in TABLES {
        if !objects.iter().any(|(_, name)| name == table) {
            return Err(LegacyError::Schema(format!("table {table} is missing")));
        }
    }
    Ok(())
}

/// Reads the whole file, read-only.
///
/// # Errors
/// [`LegacyError`] naming the file, the missing table, or every unreadable row.
pub async fn read(path: &Path) -> Result<LegacySnapshot, LegacyError> {
    if !path.is_file() {
        return Err(LegacyError::Open {
            path: path.display().to_string(),
            source: sqlx::Error::Configuration("no such file".into()),
        });
    }
    let options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|source| LegacyError::Open {
            path: path.display().to_string(),
            source,
        })?
        .filename(path)
        .read_only(true)
        // A crafted file must not run code of its own: no functions from its schema, no
        // writes even by accident.
        .pragma("trusted_schema", "OFF")
        .pragma("query_only", "ON");
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|source| LegacyError::Open {
            path: path.display().to_string(),
            source,
        })?;
    // Whatever the file holds, the whole read stops after MAX_READ_TIME.
    let deadline = std::time::Instant::now() + MAX_READ_TIME;
    conn.lock_handle()
        .await
        .map_err(|source| LegacyError::Open {
            path: path.display().to_string(),
            source,
        })?
        .set_progress_handler(10_000, move || std::time::Instant::now() < deadline);
    check_schema(&mut conn).await?;
    let mut problems = Vec::new();
    let mut snapshot = LegacySnapshot::default();

    for r in rows(&mut conn, "users", "tg_id").await? {
        let read = || -> Result<LegacyUser, String> {
            Ok(LegacyUser {
                id: user_id(&r, "tg_id")?,
                username: text(&r, "username")?,
                first_name: text(&r, "first_name")?,
                banned: flag(&r, "is_banned")?,
                created_at: time(&r, "created_at")?.unwrap_or(Timestamp::from_millis(0)),
            })
        };
        match read() {
            Ok(u) => snapshot.users.push(u),
            Err(e) => problems.push(row_problem("users", &r, "tg_id", &e)),
        }
    }

    let payment_rows = rows(&mut conn, "payments", "id").await?;
    let mut by_provider: HashMap<String, i64> = HashMap::new();
    let mut payment_ids: HashSet<i64> = HashSet::new();
    for r in &payment_rows {
        if let Ok(id) = int(r, "id") {
            payment_ids.insert(id);
            if let Ok(Some(p)) = text(r, "provider_payment_id") {
                by_provider.insert(p, id);
            }
        }
    }
    for r in &payment_rows {
        let read = || -> Result<LegacyPayment, String> {
            let state = match text(r, "status")?.unwrap_or_default().trim() {
                "pending" | "waiting_for_capture" => PaymentState::Pending,
                "paid" | "succeeded" => PaymentState::Paid,
                "cancelled" | "canceled" => PaymentState::Cancelled,
                "refunded" => PaymentState::Refunded,
                other => return Err(format!("status `{other}` is unknown")),
            };
            Ok(LegacyPayment {
                id: int(r, "id")?,
                provider_payment_id: text(r, "provider_payment_id")?
                    .filter(|p| !p.trim().is_empty()),
                user_id: user_id(r, "user_id")?,
                amount: money(r, "amount", false)?.ok_or("amount is empty")?,
                state,
                created_at: time(r, "created_at")?.unwrap_or(Timestamp::from_millis(0)),
                paid_at: time(r, "paid_at")?,
            })
        };
        match read() {
            Ok(p) if p.amount.is_zero() => {
                problems.push(format!("payments row {}: the amount is zero", p.id))
            }
            Ok(p) => snapshot.payments.push(p),
            Err(e) => problems.push(row_problem("payments", r, "id", &e)),
        }
    }

    let job_rows = rows(&mut conn, "jobs", "id").await?;
    for r in &job_rows {
        let read = || -> Result<LegacyJob, String> {
            Ok(LegacyJob {
                id: int(r, "id")?,
                user_id: user_id(r, "user_id")?,
                kind: text(r, "type")?.unwrap_or_default(),
                status: text(r, "status")?.unwrap_or_default(),
                params: text(r, "params")?.unwrap_or_else(|| "{}".to_owned()),
                result_url: text(r, "result_url")?,
                error_message: text(r, "error_message")?,
                cost_estimate: money(r, "cost_estimate", false)?,
                cost_actual: money(r, "cost_actual", false)?,
                created_at: time(r, "created_at")?.unwrap_or(Timestamp::from_millis(0)),
                completed_at: time(r, "completed_at")?,
            })
        };
        match read() {
            Ok(j) => snapshot.jobs.push(j),
            Err(e) => problems.push(row_problem("jobs", r, "id", &e)),
        }
    }

    // Debits are stored either all positive (the type gives the sign) or all negative
    // (the old bot's `SUM(amount)`); a file mixing both cannot be read safely.
    let (mut negative_debits, mut positive_debits) = (Vec::new(), Vec::new());
    for r in rows(&mut conn, "ledger", "id").await? {
        let mut read = || -> Result<LegacyEntry, String> {
            let kind = match text(&r, "type")?.unwrap_or_default().trim() {
                "credit" => EntryKind::Credit,
                "debit" => EntryKind::Debit,
                "refund" => EntryKind::Refund,
                other => return Err(format!("type `{other}` is unknown")),
            };
            let (amount, negative) =
                signed_money(&r, "amount", kind == EntryKind::Debit)?.ok_or("amount is empty")?;
            if amount.is_zero() {
                return Err("the amount is zero".into());
            }
            if kind == EntryKind::Debit {
                let id = int(&r, "id")?;
                if negative {
                    negative_debits.push(id);
                } else {
                    positive_debits.push(id);
                }
            }
            let ref_id = text(&r, "ref_id")?.unwrap_or_default();
            let ref_type = text(&r, "ref_type")?.unwrap_or_default();
            let number = ref_id.trim().parse::<i64>().ok();
            // A reference that names nothing is refused (core names unknown numeric ids).
            let reference = match ref_type.trim() {
                "payment" => match (number, by_provider.get(ref_id.trim())) {
                    (Some(n), _) if payment_ids.contains(&n) => LegacyRef::Payment(n),
                    (_, Some(id)) => LegacyRef::Payment(*id),
                    (Some(n), None) => LegacyRef::Payment(n),
                    (None, None) => return Err(format!("ref_id `{ref_id}` names no payment")),
                },
                "job" | "reservation" => match number {
                    Some(n) => LegacyRef::Job(n),
                    None => return Err(format!("ref_id `{ref_id}` names no job")),
                },
                "admin" => LegacyRef::Admin(ref_id.clone()),
                other => LegacyRef::Other(format!("{other} {ref_id}")),
            };
            Ok(LegacyEntry {
                id: int(&r, "id")?,
                user_id: user_id(&r, "user_id")?,
                kind,
                amount,
                reference,
                description: text(&r, "description")?.unwrap_or_default(),
                created_at: time(&r, "created_at")?.unwrap_or(Timestamp::from_millis(0)),
            })
        };
        match read() {
            Ok(e) => snapshot.entries.push(e),
            Err(e) => problems.push(row_problem("ledger", &r, "id", &e)),
        }
    }
    if !negative_debits.is_empty() && !positive_debits.is_empty() {
        let few = |ids: &[i64]| {
            ids.iter()
                .take(5)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        problems.push(format!(
            "ledger: debits are stored both negative (rows {}) and positive (rows {}); the balances cannot be read safely",
            few(&negative_debits),
            few(&positive_debits)
        ));
    }
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the legacy file failed");
    }
    if problems.is_empty() {
        Ok(snapshot)
    } else {
        Err(LegacyError::Rows(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prototype file made by `statements`.
    async fn file(statements: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(*sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn.close().await.unwrap();
        (dir, path)
    }

    const TABLES_SQL: [&str; 4] = [
        "CREATE TABLE users (tg_id INTEGER, username TEXT, first_name TEXT, is_banned INTEGER, created_at TEXT)",
        "CREATE TABLE ledger (id INTEGER, user_id INTEGER, kind TEXT, amount INTEGER, ref_type TEXT, ref_id TEXT, description TEXT, created_at TEXT)",
        "CREATE TABLE jobs (id INTEGER, user_id INTEGER)",
        "CREATE TABLE payments (id INTEGER, user_id INTEGER, amount INTEGER, status TEXT, provider_payment_id TEXT, created_at TEXT, paid_at TEXT)",
    ];

    /// [edge] A view that never ends (posing as a table of the v2.0 schema) is refused
    /// before anything is read: `import-legacy` cannot be made to hang.
    #[tokio::test]
    async fn a_view_posing_as_a_table_is_refused_at_once() {
        let (_dir, path) = file(&[
            TABLES_SQL[1],
            TABLES_SQL[2],
            TABLES_SQL[3],
            "CREATE VIEW users AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) \
             SELECT x AS tg_id, NULL AS username, NULL AS first_name, 0 AS is_banned, NULL AS created_at FROM n",
        ])
        .await;
        let started = std::time::Instant::now();
        let refused = read(&path).await;
        assert!(
            matches!(&refused, Err(LegacyError::Schema(m)) if m.contains("view users")),
            "{refused:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn triggers_and_missing_tables_are_refused() {
        let mut with_trigger = TABLES_SQL.to_vec();
        with_trigger.push("CREATE TRIGGER t AFTER INSERT ON users BEGIN DELETE FROM ledger; END");
        let (_dir, path) = file(&with_trigger).await;
        assert!(
            matches!(read(&path).await, Err(LegacyError::Schema(m)) if m.contains("trigger t")),
        );
        let (_dir, path) = file(&TABLES_SQL[..3]).await;
        assert!(
            matches!(read(&path).await, Err(LegacyError::Schema(m)) if m.contains("payments is missing")),
        );
        let (_dir, path) = file(&TABLES_SQL).await;
        let snapshot = read(&path).await.unwrap();
        assert!(
            snapshot.users.is_empty(),
            "an empty v2.0 file reads as empty"
        );
    }

    /// A loose SQLite value, as the prototype stored its cells.
    #[derive(Clone, Debug)]
    enum Loose {
        Null,
        Int(i64),
        Real(f64),
        Text(String),
    }

    fn loose() -> impl proptest::strategy::Strategy<Value = Loose> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Loose::Null),
            any::<i64>().prop_map(Loose::Int),
            (-1_000_000..1_000_000_i64).prop_map(Loose::Int),
            any::<f64>().prop_map(Loose::Real),
            prop_oneof![
                Just("150.50".to_owned()),
                Just("-12,5".to_owned()),
                Just("1e308".to_owned()),
                Just("2024-01-31T12:00:00".to_owned()),
                Just("2024-01-31 12:00:00.123456".to_owned()),
                Just("credit".to_owned()),
                Just("debit".to_owned()),
                Just("payment".to_owned()),
                Just("paid".to_owned()),
                Just("yk-1".to_owned()),
                any::<String>(),
            ]
            .prop_map(Loose::Text),
        ]
    }

    /// Rows of the v2.0 tables with every cell a loose value.
    async fn fill(path: &std::path::Path, rows: &[Vec<Loose>]) {
        let options = SqliteConnectOptions::new().filename(path);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        let tables: [(&str, usize); 4] =
            [("users", 5), ("ledger", 8), ("jobs", 2), ("payments", 7)];
        for (n, row) in rows.iter().enumerate() {
            let (table, width) = tables[n % tables.len()];
            let holes = vec!["?"; width].join(", ");
            let sql = format!("INSERT INTO {table} VALUES ({holes})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for cell in row.iter().cycle().take(width) {
                query = match cell.clone() {
                    Loose::Null => query.bind(None::<i64>),
                    Loose::Int(i) => query.bind(i),
                    Loose::Real(r) => query.bind(r),
                    Loose::Text(t) => query.bind(t),
                };
            }
            query.execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// [edge] Prototype rows of any loose type: the reader never panics; a row it
        /// cannot read is named, never guessed.
        #[test]
        fn any_prototype_rows_are_read_or_named(
            rows in proptest::collection::vec(proptest::collection::vec(loose(), 1..8), 0..24)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (_dir, path) = file(&TABLES_SQL).await;
                fill(&path, &rows).await;
                match read(&path).await {
                    Ok(_) | Err(LegacyError::Rows(_)) => {}
                    Err(other) => panic!("{other}"),
                }
            });
        }
    }
}
