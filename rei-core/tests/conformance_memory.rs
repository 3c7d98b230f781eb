//! The store contract, run against the in-memory adapters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rei_core::memory::MemoryStore;

rei_core::conformance_tests!(async { Arc::new(MemoryStore::new()) });
