//! What differs between SQLite and PostgreSQL, in one place. The SQL is otherwise the
//! same for both (sqlx binds `$N` placeholders on SQLite too), run through sqlx's `Any`
//! driver:
//!
//! - how a write transaction begins: SQLite `BEGIN IMMEDIATE` takes the write lock up
//!   front, so concurrent writers queue on the busy timeout instead of failing;
//! - the row lock of a read inside a write (PostgreSQL `FOR UPDATE`, serialising
//!   writers per row; SQLite's write lock already does);
//! - a claim's `FOR UPDATE SKIP LOCKED` (PostgreSQL);
//! - the snapshot level of `verify` (PostgreSQL `REPEATABLE READ`);
//! - the insertion-order column (`rowid` / `seq`).

/// The database behind a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The dialect of a connection of the `Any` driver.
    pub(crate) fn of(connection: &sqlx::AnyConnection) -> Self {
        if connection.backend_name() == "PostgreSQL" {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }

    /// The statement that begins a write transaction.
    pub(crate) const fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// The statement that makes `verify`'s reads one snapshot, where one is needed
    /// (a SQLite read transaction is one already).
    pub(crate) const fn snapshot(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
        }
    }
}

/// One statement in both dialects, as `&'static str`: the parts `[before]`, then what
/// differs — `lock` (PostgreSQL ` FOR UPDATE`), `skip_locked` (PostgreSQL
/// ` FOR UPDATE SKIP LOCKED`) or `order_col` (`rowid` / `seq`) — then the parts
/// `[after]`.
macro_rules! dialect_sql {
    ($dialect:expr, [$($before:expr),+ $(,)?], lock $(, [$($after:expr),* $(,)?])?) => {
        $crate::outbound::sql::dialect::dialect_sql!(@pick $dialect, [$($before),+], "", " FOR UPDATE", [$($($after),*)?])
    };
    ($dialect:expr, [$($before:expr),+ $(,)?], skip_locked $(, [$($after:expr),* $(,)?])?) => {
        $crate::outbound::sql::dialect::dialect_sql!(@pick $dialect, [$($before),+], "", " FOR UPDATE SKIP LOCKED", [$($($after),*)?])
    };
    ($dialect:expr, [$($before:expr),+ $(,)?], order_col $(, [$($after:expr),* $(,)?])?) => {
        $crate::outbound::sql::dialect::dialect_sql!(@pick $dialect, [$($before),+], "rowid", "seq", [$($($after),*)?])
    };
    (@pick $dialect:expr, [$($before:expr),+], $sqlite:literal, $postgres:literal, [$($after:expr),*]) => {
        match $dialect {
            $crate::outbound::sql::dialect::Dialect::Sqlite => concat!($($before,)+ $sqlite $(, $after)*),
            $crate::outbound::sql::dialect::Dialect::Postgres => concat!($($before,)+ $postgres $(, $after)*),
        }
    };
}

pub(crate) use dialect_sql;
