//! What we call: databases, Redis, the providers, the Bot API, files.

pub mod client;
pub mod files;
pub mod gemini;
pub mod kling;
pub mod legacy;
pub mod limiter;
#[cfg(feature = "locale")]
pub mod locale;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod secret_url;
pub mod sql;
pub mod system;
#[cfg(feature = "telegram")]
pub mod telegram;
pub mod yookassa;
