//! The Bot API as something we call: the clients of a process, the notifier that edits
//! a job's status message and delivers results, Stars refunds, media downloads, the
//! overall send rate, and the bot's texts (Fluent, Russian and English). Only the
//! `telegram` modules know teloxide.

mod client;
mod locale;
mod media;
mod notifier;
mod send_rate;
mod stars;

pub use client::{BotClients, BotStartError, LONG_POLL};
pub use locale::{Arg, LocaleError, Locales, TELEGRAM_KEYS};
pub use media::TelegramMedia;
pub use notifier::{TelegramNotifier, TelegramNotifierConfig};
pub use send_rate::SendRate;
pub use stars::{STARS_CURRENCY, TelegramStars, invoice_payload, payment_of_invoice};
