//! # rei-adapters
//!
//! Implementations of `rei-core`'s ports over real technology. Only this crate knows
//! SQL, HTTP wire formats and Redis; nothing here holds business rules.
//!
//! ## Layout
//!
//! - `backends`: `connect`, the one choice of database, queue and rate limiter.
//! - `sql`: SQLite (embedded default) and PostgreSQL stores, with embedded migrations.
//! - `http`: the shared `reqwest` client builder and the retry policy of provider calls.
//! - `kling`: Kling video generation (`VideoGenerator`).
//! - `gemini`: Nano Banana Pro image generation (`ImageGenerator`).
//! - `yookassa`: YooKassa payments (`PaymentGateway`).
//! - `files`: the asset store under `ASSET_DIR`.
//! - `telegram` (feature `telegram`): the Telegram notifier and the bot's texts.
//! - `system`: the wall clock, random ids, a logging notifier.
//! - `redis` (feature `redis`, on by default): the Redis Streams job queue (`RedisQueue`)
//!   and the rate limiter shared by processes (`RedisLimiter`).
//! - `limiter`: the in-process rate limiter (`InProcessLimiter`).
//! - `web` (feature `web`): the HTTP server (axum): webhooks, `/healthz`, `/readyz`, `/metrics`.
//! - `notices`: the outbox dispatcher's loop (money notices, sent after their commit).
//! - `worker`: the worker loop (claim, heartbeat, run core's job steps, shutdown).

pub mod backends;
pub mod files;
pub mod gemini;
pub mod http;
pub mod kling;
pub mod legacy;
pub mod limiter;
pub mod notices;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sql;
pub mod system;
#[cfg(feature = "telegram")]
pub mod telegram;
#[cfg(feature = "web")]
pub mod web;
pub mod worker;
pub mod yookassa;
