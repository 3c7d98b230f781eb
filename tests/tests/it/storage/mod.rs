//! Storage adapters against real databases: the conformance suite on SQLite and
//! PostgreSQL, multi-threaded and multi-process concurrency, and SIGKILL crash safety.

mod conformance_sqlite {
    rei_core::conformance_tests!(async { rei_tests::sqlite().await.unwrap() });
}

mod conformance_postgres {
    rei_core::conformance_tests!(async { rei_tests::postgres().await.unwrap() });
}

/// The same suite with PostgreSQL writes through group commit (the default there is a
/// pool of writers; the batching write path is proven on both databases).
mod conformance_postgres_batched {
    rei_core::conformance_tests!(async {
        let url = rei_tests::postgres_url().await.unwrap();
        std::sync::Arc::new(
            rei_adapters::outbound::sql::SqlStore::connect_postgres_with(
                &url,
                rei_adapters::outbound::sql::WriteMode::Batched,
            )
            .await
            .unwrap(),
        )
    });
}

mod batch;
mod concurrency;
mod crash;
mod open;
mod upgrade;
mod verify;
