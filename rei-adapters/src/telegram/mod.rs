//! The Telegram adapter: the front end (updates → core's conversation → replies), the
//! notifier that edits a job's status message and delivers results, the compact button
//! encoding, and the bot's texts (Fluent, Russian and English). Only this module knows
//! teloxide.

mod callback;
mod client;
mod frontend;
mod locale;
mod notifier;
mod outbound;
mod stars;
mod webhook;

pub use callback::{decode, encode};
pub use client::{BotClients, BotStartError, LONG_POLL};
pub use frontend::{FrontEnd, FrontendError, TelegramMedia, UpdateSource, render};
pub use locale::{Arg, LocaleError, Locales};
pub use notifier::{TelegramNotifier, TelegramNotifierConfig};
pub use outbound::SendRate;
pub use stars::TelegramStars;
pub use webhook::{Pushed, Stopped, TelegramWebhook, WebhookUpdates};
