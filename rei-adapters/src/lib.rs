//! # rei-adapters
//!
//! Implementations of `rei-core`'s ports over real technology. Only this crate knows
//! SQL, HTTP wire formats and Redis; nothing here holds business rules.
//!
//! ## Layout
//!
//! - `sql`: SQLite (embedded default) and PostgreSQL stores, with embedded migrations.
//! - `http`: the shared `reqwest` client builder and the retry policy of provider calls.
//! - `kling`: Kling video generation (`VideoGenerator`).
//! - `gemini`: Nano Banana Pro image generation (`ImageGenerator`).
//! - `yookassa`: YooKassa payments (`PaymentGateway`).
//! - `files`: the asset store under `ASSET_DIR`.
//! - `system`: the wall clock, random ids, a logging notifier.

pub mod files;
pub mod gemini;
pub mod http;
pub mod kling;
pub mod sql;
pub mod system;
pub mod yookassa;
