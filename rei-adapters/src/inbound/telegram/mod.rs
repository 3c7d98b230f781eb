//! The Telegram front end: updates (long polling or webhook) → core's conversation →
//! Bot API calls, and the compact, versioned button encoding. What is sent outside a
//! conversation (the notifier, Stars refunds) is in `outbound::telegram`.

mod callback;
mod frontend;
mod webhook;

pub use callback::{decode, encode};
#[cfg(test)]
pub(crate) use frontend::text_input;
pub use frontend::{COMMANDS, FrontEnd, FrontendError, UpdateSource, render};
pub use webhook::{Pushed, Stopped, TelegramWebhook, WebhookUpdates};
