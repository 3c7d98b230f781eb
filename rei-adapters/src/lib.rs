//! # rei-adapters
//!
//! Implementations of `rei-core`'s ports over real technology, grouped by direction.
//! Only this crate knows SQL, HTTP wire formats, Redis and the Bot API; nothing here
//! holds business rules.
//!
//! ## Layout
//!
//! - `app` (feature `app`): the composition root both binaries use — `Settings` (every
//!   environment variable), `App::build` (settings → the whole application),
//!   `App::run_all` / `App::run_workers`, and `backends::connect`.
//! - `inbound`: what calls us.
//!   - `telegram` (feature `telegram`): the front end (updates → core's conversation →
//!     Bot API calls): command syntax, the compact button encoding, keyboard layout,
//!     Stars invoices, webhook-mode updates.
//!   - `console` (feature `console`): a second front end over the same engine, in a
//!     terminal (`cargo run -p rei-adapters --example console`).
//!   - `http` (feature `http`): the HTTP server (axum): webhooks (YooKassa, Telegram,
//!     Kling), `/healthz`, `/readyz`, `/metrics`, signed asset links.
//!   - `worker`: the worker loop (claim, heartbeat, run core's job steps, shutdown).
//!   - `poller`: the payment poller's loop (one process per deployment, by a lease).
//!   - `notices`: the outbox dispatcher's loop (money notices, sent after their commit).
//! - `outbound`: what we call.
//!   - `sql`: SQLite (embedded default) and PostgreSQL stores, with embedded migrations.
//!   - `redis` (feature `redis`): the Redis Streams job queue (`RedisQueue`) and the
//!     rate limiter shared by processes (`RedisLimiter`).
//!   - `kling`, `gemini`, `yookassa`: Kling video (`VideoGenerator`), Nano Banana Pro
//!     images (`ImageGenerator`), YooKassa payments (`PaymentGateway`).
//!   - `client`: the shared `reqwest` client builder and the retry policy of provider
//!     calls.
//!   - `telegram` (feature `telegram`): the Bot API clients, the notifier, Stars refunds
//!     and the invoice payload, media downloads (and their 20 MB limit), the send rate.
//!   - `locale` (feature `locale`): the bot's texts (Fluent, ru and en) for every front
//!     end, and the checked list of keys.
//!   - `files`: the asset store under `ASSET_DIR`.
//!   - `legacy`: reads the v2.0 bot's SQLite file.
//!   - `limiter`: the in-process rate limiter (`InProcessLimiter`).
//!   - `system`: the wall clock, random ids, a logging notifier.

pub mod app;
pub mod inbound;
pub mod outbound;

#[cfg(all(test, feature = "app"))]
mod parsers_fuzz;
