//! The Telegram adapter: the notifier that edits a job's status message and delivers
//! results, the bot's texts (Fluent, Russian and English), and — with the bot issue —
//! the dialogue front end. Only this module knows teloxide.

mod locale;
mod notifier;

pub use locale::{Arg, LocaleError, Locales};
pub use notifier::{TelegramNotifier, TelegramNotifierConfig};
