//! The bot's texts, for every front end (Telegram, the console): Fluent files per
//! language (`ru.ftl`, `en.ftl`), compiled into the binary, with CLDR plural rules
//! (Russian one / few / many). Core says what to tell (a key and typed arguments);
//! [`Locales::render`] says it in a language.

use std::collections::HashMap;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use rei_core::conversation::{Arg as CoreArg, Text};
use rei_core::user::Language;

const RU: &str = include_str!("ru.ftl");
const EN: &str = include_str!("en.ftl");

/// Why the locale files could not be loaded (a build bug: they are compiled in).
#[derive(Debug, thiserror::Error)]
#[error("locale {language}: {message}")]
pub struct LocaleError {
    language: &'static str,
    message: String,
}

/// One bundle per language.
pub struct Locales {
    bundles: HashMap<Language, FluentBundle<FluentResource>>,
    /// `SANDBOX=1`: every message starts with the sandbox banner.
    sandbox: bool,
}

impl std::fmt::Debug for Locales {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locales").finish_non_exhaustive()
    }
}

/// A text argument: a word or a number (numbers choose plural forms).
#[derive(Clone, Debug)]
pub enum Arg {
    /// Shown as is (amounts arrive formatted by `Money`).
    Text(String),
    /// A count.
    Number(i64),
}

impl Locales {
    /// Loads the compiled-in files.
    ///
    /// # Errors
    /// [`LocaleError`] when a file does not parse.
    pub fn load() -> Result<Self, LocaleError> {
        let mut bundles = HashMap::new();
        for (language, tag, text) in [(Language::Ru, "ru", RU), (Language::En, "en", EN)] {
            let error = |message: String| LocaleError {
                language: tag,
                message,
            };
            let resource = FluentResource::try_new(text.to_owned())
                .map_err(|(_, errors)| error(format!("{errors:?}")))?;
            let id: unic_langid::LanguageIdentifier =
                tag.parse().map_err(|e| error(format!("{e}")))?;
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            // Telegram shows the isolation marks Fluent would add around arguments.
            bundle.set_use_isolating(false);
            bundle
                .add_resource(resource)
                .map_err(|errors| error(format!("{errors:?}")))?;
            bundles.insert(language, bundle);
        }
        Ok(Self {
            bundles,
            sandbox: false,
        })
    }

    /// In the sandbox, every message [`Self::stamp`]s says so.
    #[must_use]
    pub const fn sandboxed(mut self, sandbox: bool) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// A message about to be sent, as the user will see it: in the sandbox, with the
    /// banner (`sandbox-banner`) on its first line; otherwise as it is.
    #[must_use]
    pub fn stamp(&self, language: Language, message: String) -> String {
        if self.sandbox {
            format!(
                "{}\n\n{message}",
                self.text(language, "sandbox-banner", &[])
            )
        } else {
            message
        }
    }

    /// The text of `key` in `language` with `args`; the key itself when missing (a test
    /// checks that every key exists in every language).
    #[must_use]
    pub fn text(&self, language: Language, key: &str, args: &[(&str, Arg)]) -> String {
        let Some(bundle) = self.bundles.get(&language) else {
            return key.to_owned();
        };
        let Some(pattern) = bundle.get_message(key).and_then(|m| m.value()) else {
            return key.to_owned();
        };
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            let value = match value {
                Arg::Text(t) => FluentValue::from(t.clone()),
                Arg::Number(n) => FluentValue::from(*n),
            };
            fluent_args.set(*name, value);
        }
        let mut errors = Vec::new();
        bundle
            .format_pattern(pattern, Some(&fluent_args), &mut errors)
            .into_owned()
    }

    /// Every key the locale files must hold: the conversation's
    /// ([`TEXT_KEYS`](rei_core::conversation::TEXT_KEYS)), the notices'
    /// ([`NOTICE_KEYS`](rei_core::notice::NOTICE_KEYS)) and the front ends' own
    /// ([`FRONT_END_KEYS`]).
    pub fn required_keys() -> impl Iterator<Item = &'static str> {
        rei_core::conversation::TEXT_KEYS
            .iter()
            .chain(rei_core::notice::NOTICE_KEYS)
            .chain(FRONT_END_KEYS)
            .copied()
    }

    /// A core text in a language: arguments are formatted here (money by `Money`'s
    /// display, lists one per line, keys looked up in the same locale).
    #[must_use]
    pub fn render(&self, language: Language, text: &Text) -> String {
        let args: Vec<(&str, Arg)> = text
            .args
            .iter()
            .map(|(name, arg)| (*name, self.arg(language, arg)))
            .collect();
        self.text(language, text.key, &args)
    }

    fn arg(&self, language: Language, arg: &CoreArg) -> Arg {
        match arg {
            CoreArg::Money(m) => Arg::Text(m.to_string()),
            CoreArg::Number(n) => Arg::Number(*n),
            CoreArg::Text(t) => Arg::Text(t.clone()),
            CoreArg::Date(at) => Arg::Text(date(language, *at)),
            CoreArg::Key(k) => Arg::Text(self.text(language, k, &[])),
            // Front ends with links of their own replace these before rendering.
            CoreArg::StartLink(payload) => Arg::Text(format!("/start {payload}")),
            CoreArg::List(items) => Arg::Text(
                items
                    .iter()
                    .map(|t| self.render(language, t))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        }
    }

    /// Every message key of a language, sorted.
    #[must_use]
    pub fn keys(language: Language) -> Vec<String> {
        let text = match language {
            Language::Ru => RU,
            Language::En => EN,
        };
        let mut keys: Vec<String> = text
            .lines()
            .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
            .filter_map(|l| l.split_once(" =").map(|(k, _)| k.trim().to_owned()))
            .collect();
        keys.sort();
        keys
    }
}

/// A day as `language` writes it (UTC): `04.12.2026` in Russian, `2026-12-04` in English.
fn date(language: Language, at: rei_core::time::Timestamp) -> String {
    let Some(day) = chrono::DateTime::from_timestamp_millis(at.millis()) else {
        return String::new();
    };
    match language {
        Language::Ru => day.format("%d.%m.%Y").to_string(),
        Language::En => day.format("%Y-%m-%d").to_string(),
    }
}

/// The texts front ends write themselves, beside the conversation's and the notices':
/// a result's delivery and admin alerts (the notifiers), the command menu and "something
/// went wrong" (the Telegram front end), the console's usage line and result path. Tests check that the front ends use no other
/// key and that both locale files hold every one.
pub const FRONT_END_KEYS: &[&str] = &[
    "admin-alert",
    "console-result",
    "console-usage",
    "command-balance",
    "command-cancel",
    "command-help",
    "command-history",
    "command-lang",
    "command-pay",
    "command-promo",
    "command-ref",
    "command-start",
    "command-video",
    "error-generic",
    "job-done-status",
    "job-download",
    "job-download-button",
    "job-too-large",
    "sandbox-banner",
    "sandbox-checkout-body",
    "sandbox-checkout-cancel",
    "sandbox-checkout-cancelled",
    "sandbox-checkout-later",
    "sandbox-checkout-paid",
    "sandbox-checkout-pay",
    "sandbox-checkout-title",
    "sandbox-checkout-unknown",
];

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The key-shaped literals (`job-done-status`) of a source file.
    pub(crate) fn keys_in(source: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for (at, _) in source.match_indices('"') {
            let rest = &source[at + 1..];
            let Some(end) = rest.find('"') else { continue };
            let literal = &rest[..end];
            let key_shaped = literal.contains('-')
                && !literal.starts_with('-')
                && literal
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if key_shaped {
                found.insert(literal.to_owned());
            }
        }
        found
    }

    fn text(lang: Language, key: &str, args: &[(&str, Arg)]) -> String {
        Locales::load().unwrap().text(lang, key, args)
    }

    #[test]
    fn every_key_exists_in_every_language() {
        let ru = Locales::keys(Language::Ru);
        assert!(ru.len() > 10, "{ru:?}");
        assert_eq!(ru, Locales::keys(Language::En));
    }

    #[test]
    fn the_locale_files_hold_exactly_the_required_keys_in_both_languages() {
        let required: BTreeSet<String> = Locales::required_keys().map(str::to_owned).collect();
        for language in [Language::Ru, Language::En] {
            let present: BTreeSet<String> = Locales::keys(language).into_iter().collect();
            let missing: Vec<&String> = required.difference(&present).collect();
            assert!(missing.is_empty(), "{language:?} lacks {missing:?}");
            let unused: Vec<&String> = present.difference(&required).collect();
            assert!(
                unused.is_empty(),
                "{language:?} has keys no code lists: {unused:?}"
            );
        }
    }

    #[test]
    fn dates_are_written_as_each_language_writes_them() {
        // 2026-12-04 23:59 UTC.
        let at = rei_core::time::Timestamp::from_millis(1_796_428_740_000);
        assert_eq!(date(Language::Ru, at), "04.12.2026");
        assert_eq!(date(Language::En, at), "2026-12-04");
        let locales = Locales::load().unwrap();
        let line = Text::key("history-job")
            .arg("n", CoreArg::Number(3))
            .arg("date", CoreArg::Date(at))
            .arg("what", CoreArg::Text("image".into()))
            .arg("status", CoreArg::Text("completed".into()))
            .arg(
                "price",
                CoreArg::Money(rei_core::money::Money::from_kopecks(5_000).unwrap()),
            );
        assert_eq!(
            locales.render(Language::Ru, &line),
            "3. 04.12.2026 image: completed, 50.00 ₽"
        );
    }

    #[test]
    fn every_key_renders_without_errors() {
        let locales = Locales::load().unwrap();
        for lang in [Language::Ru, Language::En] {
            for key in Locales::keys(lang) {
                assert_ne!(
                    locales.text(lang, &key, &[]),
                    key,
                    "{key} is missing in {lang:?}"
                );
            }
        }
    }

    #[test]
    fn russian_plurals_follow_cldr() {
        let n = |k: i64| {
            text(
                Language::Ru,
                "failure-too-many-attempts",
                &[("attempts", Arg::Number(k))],
            )
        };
        assert_eq!(n(1), "не удалось после 1 попытки");
        assert_eq!(n(3), "не удалось после 3 попыток");
        assert_eq!(n(5), "не удалось после 5 попыток");
        assert_eq!(n(21), "не удалось после 21 попытки");
        let m = |k: i64| {
            text(
                Language::En,
                "failure-deadline",
                &[("minutes", Arg::Number(k))],
            )
        };
        assert_eq!(m(1), "generation took longer than 1 minute");
        assert_eq!(m(15), "generation took longer than 15 minutes");
    }

    #[test]
    fn arguments_are_not_wrapped_in_isolation_marks() {
        let t = text(
            Language::Ru,
            "job-progress",
            &[("percent", Arg::Number(50))],
        );
        assert_eq!(t, "⏳ Генерация: 50%");
    }
}
