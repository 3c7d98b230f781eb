//! What calls us: the front ends (Telegram, the console), the HTTP server, and the
//! loops that run on their own (the worker, the payment poller, the outbox dispatcher).

#[cfg(feature = "telegram")]
pub mod broadcasts;
#[cfg(feature = "console")]
pub mod console;
#[cfg(feature = "http")]
pub mod http;
pub mod notices;
pub mod poller;
pub mod prices;
#[cfg(feature = "telegram")]
pub mod telegram;
pub mod worker;
