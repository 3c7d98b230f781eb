//! Storage adapters against real databases: the conformance suite on SQLite and
//! PostgreSQL, multi-threaded and multi-process concurrency, and SIGKILL crash safety.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod conformance_sqlite {
    rei_core::conformance_tests!(crate::helpers::sqlite());
}

mod conformance_postgres {
    rei_core::conformance_tests!(optional: crate::helpers::postgres());
}

mod concurrency;
mod crash;
mod open;
