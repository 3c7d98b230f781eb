//! The Bot API as something we call: the clients of a process, the notifier that edits
//! a job's status message and delivers results, Stars refunds, media downloads, the
//! overall send rate. Only the `telegram` modules know teloxide; the texts are in
//! `outbound::locale`.

mod broadcast;
mod client;
mod media;
mod notifier;
mod send_rate;
mod stars;

pub use broadcast::TelegramBroadcaster;
pub use client::{BotClients, BotStartError, LONG_POLL};
pub use media::TelegramMedia;
pub use notifier::{TelegramNotifier, TelegramNotifierConfig};
pub use send_rate::SendRate;
pub use stars::{STARS_CURRENCY, TelegramStars, invoice_payload, payment_of_invoice};

#[cfg(test)]
mod tests {
    use crate::outbound::locale::{Locales, tests::keys_in};

    /// Every key-shaped literal in the Telegram adapter's text-writing code is a listed
    /// key, and every command of the menu has its description.
    #[test]
    fn every_key_the_telegram_adapter_uses_is_listed() {
        let mut found = keys_in(include_str!("notifier.rs"));
        found.extend(keys_in(include_str!(
            "../../inbound/telegram/frontend/mod.rs"
        )));
        found.extend(keys_in(include_str!(
            "../../inbound/telegram/frontend/replies.rs"
        )));
        for command in crate::inbound::telegram::COMMANDS {
            found.insert(format!("command-{command}"));
        }
        let listed: std::collections::BTreeSet<&str> = Locales::required_keys().collect();
        let missing: Vec<&String> = found
            .iter()
            .filter(|k| !listed.contains(k.as_str()))
            .collect();
        assert!(missing.is_empty(), "keys used but not listed: {missing:?}");
        assert!(found.len() >= 12, "the scan found {} keys", found.len());
    }
}
