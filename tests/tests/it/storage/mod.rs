//! Storage adapters against real databases: the conformance suite on SQLite and
//! PostgreSQL, multi-threaded and multi-process concurrency, and SIGKILL crash safety.

mod conformance_sqlite {
    rei_core::conformance_tests!(async { rei_tests::sqlite().await.unwrap() });
}

mod conformance_postgres {
    rei_core::conformance_tests!(async { rei_tests::postgres().await.unwrap() });
}

mod concurrency;
mod crash;
mod open;
mod verify;
