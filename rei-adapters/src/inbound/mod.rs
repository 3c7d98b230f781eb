//! What calls us: the Telegram front end, the HTTP server, and the loops that run on
//! their own (the worker, the outbox dispatcher).

#[cfg(feature = "http")]
pub mod http;
pub mod notices;
#[cfg(feature = "telegram")]
pub mod telegram;
pub mod worker;
