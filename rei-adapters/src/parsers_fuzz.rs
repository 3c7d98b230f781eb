//! [edge] Every parser of outside input, fed arbitrary bytes and near-miss strings
//! (thousands of cases each): none panics, and what is refused gets a typed error and
//! changes nothing. The callback codec has its own properties in `callback.rs`; money
//! parsing in `rei-core`.

use proptest::prelude::*;

use crate::app::parse_duration;
use crate::inbound::http::IpList;
use crate::inbound::telegram::{TelegramWebhook, text_input};
use crate::outbound::files::{AssetStore, validate_key};
use crate::outbound::kling::parse_callback;
use crate::outbound::secret_url::redact;
use crate::outbound::telegram::payment_of_invoice;
use crate::outbound::yookassa::parse_notification;

/// Cases per property: thousands, as CI runs them.
const CASES: u32 = 3_000;

/// JSON-ish text: near misses of the webhook bodies (braces, quotes, the field names).
fn jsonish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just("\"event\"".to_owned()),
            Just("\"payment.succeeded\"".to_owned()),
            Just("\"object\"".to_owned()),
            Just("\"id\"".to_owned()),
            Just("\"task_id\"".to_owned()),
            Just("\"task_status\"".to_owned()),
            Just("\"task_info\"".to_owned()),
            Just("\"external_task_id\"".to_owned()),
            Just("\"update_id\"".to_owned()),
            Just("\"message\"".to_owned()),
            Just("null".to_owned()),
            Just("1e999".to_owned()),
            Just("-1".to_owned()),
            "\"[a-z0-9._-]{0,12}\"".prop_map(|s| s),
            any::<i64>().prop_map(|n| n.to_string()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn webhook_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), text in jsonish()) {
        for body in [bytes.as_slice(), text.as_bytes()] {
            let _yookassa = parse_notification(body);
            let _kling = parse_callback(body);
        }
    }

    /// A Telegram update the webhook cannot read is dropped, never handled.
    #[test]
    fn unreadable_telegram_updates_are_dropped(text in jsonish()) {
        let (hook, _updates) = TelegramWebhook::new(secrecy::SecretString::from("s3cret"));
        if serde_json::from_str::<teloxide::types::Update>(&text).is_err() {
            prop_assert!(matches!(hook.push(text.as_bytes()), Ok(crate::inbound::telegram::Pushed::Unreadable)));
        }
    }

    #[test]
    fn message_texts_read_as_commands_or_texts_without_panicking(text in any::<String>()) {
        match text_input(&text) {
            rei_core::conversation::Input::Command { name, args } => {
                prop_assert!(text.trim().starts_with('/'));
                prop_assert!(!name.contains('@') && !name.contains(char::is_whitespace));
                prop_assert!(args.iter().all(|a| !a.is_empty()));
            }
            rei_core::conversation::Input::Text(t) => prop_assert_eq!(t, text),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn stars_payloads_name_our_payments_only(payload in any::<String>(), currency in "[A-Z]{0,4}") {
        if let Some(payment) = payment_of_invoice(&payload, &currency) {
            prop_assert_eq!(currency.as_str(), "XTR");
            prop_assert_eq!(payload, crate::outbound::telegram::invoice_payload(payment));
        }
    }

    /// Asset paths and link signatures from a stranger: only safe keys, and no link
    /// opens without REI's signature.
    #[test]
    fn asset_paths_and_signatures_are_refused_unless_ours(key in any::<String>(), sig in any::<String>(), exp in any::<u64>()) {
        if validate_key(&key).is_ok() {
            // A relative path of plain names: no `..`, no `.`, no hidden file, no root.
            prop_assert!(
                key.split('/').all(|part| !part.is_empty() && !part.starts_with('.')),
                "{}",
                key
            );
        }
        let store = AssetStore::new("/tmp/rei-fuzz")
            .with_public_links("https://bot.example.com/".parse().unwrap(), b"fuzz-key-0123456789abcdef0123456789");
        prop_assert!(!store.link_is_valid(&key, exp, &sig, std::time::UNIX_EPOCH));
    }

    #[test]
    fn settings_values_never_panic(text in any::<String>(), near in "[0-9]{0,6}[smhdw]?|[0-9a-f:./,]{0,40}") {
        for value in [text.as_str(), near.as_str()] {
            let _duration = parse_duration(value);
            let _ips = value.parse::<IpList>();
            let _shown = redact(value);
        }
    }

    /// A URL setting's password never shows, wherever it stands.
    #[test]
    fn url_passwords_never_show(password in "[A-Za-z0-9]{12}", host in "[a-z]{1,10}", param in "password|sslpassword|PASSWORD") {
        for url in [
            format!("postgres://rei:{password}@{host}:5432/rei"),
            format!("postgres://{host}/rei?{param}={password}&sslmode=verify-full"),
            format!("rediss://:{password}@{host}:6380/0"),
        ] {
            let shown = redact(&url);
            prop_assert!(!shown.contains(&password), "{} shows as {}", url, shown);
        }
    }
}
