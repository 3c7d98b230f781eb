//! REI end-to-end tests: one test binary (one link step on 2 cores), a module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;
mod jobs;
mod limiter;
mod notifier;
mod storage;
