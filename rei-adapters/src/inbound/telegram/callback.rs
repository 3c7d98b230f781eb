//! The `callback_data` of inline buttons: a compact, versioned text form of core's
//! [`Action`].
//!
//! Telegram takes 1–64 bytes per button (providers.md §4.3), so every form is short
//! ASCII: `<version>:<letter>:<value>`.
//!
//! | Action | Form |
//! |---|---|
//! | `Confirm(DraftId(n))` | `1:c:<n in lowercase hex>` |
//! | `Discard(DraftId(n))` | `1:x:<n in lowercase hex>` |
//! | `VideoModel(name)` | `1:n:<API name: a-z 0-9 - . _, at most 48 bytes>` |
//! | `VideoDuration(d)` | `1:d:5`, `1:d:10` |
//! | `TopUp(amount)` | `1:k:<kopecks in decimal>` |
//! | `TopUpStars(amount)` | `1:z:<kopecks in decimal>` |
//! | `CheckPayment(id)` | `1:p:<uuid as 32 lowercase hex digits>` |
//! | `SetLanguage(l)` | `1:l:ru`, `1:l:en` |
//! | `AdminStats` | `1:a:s` |
//! | `Repeat(job)` | `1:r:<uuid as 32 lowercase hex digits>` |
//! | `SendAgain(job)` | `1:g:<uuid as 32 lowercase hex digits>` |
//! | `HistoryPage(n)` | `1:h:<n in decimal>` |
//! | `DraftAspect(DraftId(n), ratio)` | `1:f:<n in lowercase hex>.<ratio with x: 1x1, 3x4, 4x3, 9x16, 16x9, 21x9>` |
//! | `DraftResolution(DraftId(n), size)` | `1:q:<n in lowercase hex>.<1k, 2k or 4k>` |
//! | `BroadcastSegment(n, s)` | `1:b:g.<n in decimal>.<all, paid, active30, ru or en>` |
//! | `BroadcastStart(n)`, `…Pause`, `…Cancel`, `…Progress` | `1:b:s.<n>`, `1:b:p.<n>`, `1:b:c.<n>`, `1:b:r.<n>` |
//! | `Menu(item)` | `1:u:image`, `1:u:video`, `1:u:balance`, `1:u:topup`, `1:u:history`, `1:u:lang`, `1:u:help` |
//!
//! Decoding is strict: each action has exactly one accepted form (no leading zeros, no
//! upper case, no extra fields), and anything else — including a button from another
//! version of this format — decodes to `None`, which the front end answers with "this
//! button has expired" instead of guessing. Changing a form means bumping [`VERSION`].
//!
//! Buttons carry what they choose — a model's name, an amount — never a position in a
//! menu: a button shown before the menu changed picks what it showed, or nothing. The
//! letters `m`, `t` and `s` held menu positions in an earlier release and are never
//! reused: such buttons decode to `None`.

use rei_core::broadcast::Segment;
use rei_core::conversation::{Action, DraftId, MenuItem};
use rei_core::ids::{JobId, PaymentId};
use rei_core::money::Money;
use rei_core::pricing::{AspectRatio, Resolution, VideoDuration};
use rei_core::user::Language;
use uuid::Uuid;

/// The format version: the prefix of every encoding. Bump it when any form changes, so
/// buttons already shown decode to `None` rather than to a different action.
const VERSION: &str = "1";

/// The `callback_data` for `action`: 1–64 bytes of ASCII (at most 36 today).
#[must_use]
pub fn encode(action: &Action) -> String {
    let (tag, value) = match action {
        Action::Confirm(DraftId(id)) => ('c', format!("{id:x}")),
        Action::Discard(DraftId(id)) => ('x', format!("{id:x}")),
        Action::VideoModel(name) => ('n', name.clone()),
        Action::VideoDuration(duration) => ('d', duration.seconds().to_string()),
        Action::TopUp(amount) => ('k', amount.kopecks().to_string()),
        Action::TopUpStars(amount) => ('z', amount.kopecks().to_string()),
        Action::CheckPayment(payment) => ('p', payment.as_uuid().simple().to_string()),
        Action::SetLanguage(Language::Ru) => ('l', "ru".to_owned()),
        Action::SetLanguage(Language::En) => ('l', "en".to_owned()),
        Action::AdminStats => ('a', "s".to_owned()),
        Action::Repeat(job) => ('r', job.as_uuid().simple().to_string()),
        Action::SendAgain(job) => ('g', job.as_uuid().simple().to_string()),
        Action::HistoryPage(page) => ('h', page.to_string()),
        Action::DraftAspect(DraftId(id), aspect) => {
            ('f', format!("{id:x}.{}", aspect_word(*aspect)))
        }
        Action::DraftResolution(DraftId(id), size) => (
            'q',
            format!("{id:x}.{}", size.as_str().to_ascii_lowercase()),
        ),
        Action::BroadcastSegment(id, segment) => {
            ('b', format!("g.{id}.{}", segment_word(*segment)))
        }
        Action::BroadcastStart(id) => ('b', format!("s.{id}")),
        Action::BroadcastPause(id) => ('b', format!("p.{id}")),
        Action::BroadcastCancel(id) => ('b', format!("c.{id}")),
        Action::BroadcastProgress(id) => ('b', format!("r.{id}")),
        Action::Menu(item) => ('u', menu_word(*item).to_owned()),
    };
    format!("{VERSION}:{tag}:{value}")
}

/// The action `data` encodes, or `None` when it is not a button of this version (stale,
/// from an older format, forged or garbled). Never panics.
#[must_use]
pub fn decode(data: &str) -> Option<Action> {
    let rest = data.strip_prefix(VERSION)?.strip_prefix(':')?;
    let (tag, value) = rest.split_once(':')?;
    match tag {
        "c" => hex_u64(value).map(|id| Action::Confirm(DraftId(id))),
        "x" => hex_u64(value).map(|id| Action::Discard(DraftId(id))),
        "n" => model_name(value).map(|name| Action::VideoModel(name.to_owned())),
        "d" => match value {
            "5" => Some(Action::VideoDuration(VideoDuration::Five)),
            "10" => Some(Action::VideoDuration(VideoDuration::Ten)),
            _ => None,
        },
        "k" => kopecks(value).map(Action::TopUp),
        "z" => kopecks(value).map(Action::TopUpStars),
        "p" => simple_uuid(value).map(|id| Action::CheckPayment(PaymentId::from_uuid(id))),
        "l" => match value {
            "ru" => Some(Action::SetLanguage(Language::Ru)),
            "en" => Some(Action::SetLanguage(Language::En)),
            _ => None,
        },
        "a" if value == "s" => Some(Action::AdminStats),
        "r" => simple_uuid(value).map(|id| Action::Repeat(JobId::from_uuid(id))),
        "g" => simple_uuid(value).map(|id| Action::SendAgain(JobId::from_uuid(id))),
        "h" => decimal_u32(value).map(Action::HistoryPage),
        "f" => {
            let (id, word) = value.split_once('.')?;
            let aspect = AspectRatio::IMAGES
                .into_iter()
                .find(|a| aspect_word(*a) == word)?;
            hex_u64(id).map(|id| Action::DraftAspect(DraftId(id), aspect))
        }
        "b" => {
            let (op, rest) = value.split_once('.')?;
            let (id, word) = match rest.split_once('.') {
                Some((id, word)) => (id, Some(word)),
                None => (rest, None),
            };
            let id = i64::from(decimal_u32(id)?);
            match (op, word) {
                ("g", Some(word)) => SEGMENTS
                    .into_iter()
                    .find(|s| segment_word(*s) == word)
                    .map(|s| Action::BroadcastSegment(id, s)),
                ("s", None) => Some(Action::BroadcastStart(id)),
                ("p", None) => Some(Action::BroadcastPause(id)),
                ("c", None) => Some(Action::BroadcastCancel(id)),
                ("r", None) => Some(Action::BroadcastProgress(id)),
                _ => None,
            }
        }
        "q" => {
            let (id, word) = value.split_once('.')?;
            let size = Resolution::ALL
                .into_iter()
                .find(|r| r.as_str().to_ascii_lowercase() == word)?;
            hex_u64(id).map(|id| Action::DraftResolution(DraftId(id), size))
        }
        "u" => MenuItem::ALL
            .into_iter()
            .find(|item| menu_word(*item) == value)
            .map(Action::Menu),
        _ => None,
    }
}

/// The segments an admin picks from in the bot.
const SEGMENTS: [Segment; 5] = [
    Segment::All,
    Segment::Paid,
    Segment::Active { days: 30 },
    Segment::Language(Language::Ru),
    Segment::Language(Language::En),
];

/// A segment in a button's data (only those of [`SEGMENTS`] have buttons).
const fn segment_word(segment: Segment) -> &'static str {
    match segment {
        Segment::All => "all",
        Segment::Paid => "paid",
        Segment::Active { .. } => "active30",
        Segment::Language(Language::Ru) => "ru",
        Segment::Language(Language::En) => "en",
    }
}

/// A shape in a button's data: `16x9` (no `:`, which separates the fields).
fn aspect_word(aspect: AspectRatio) -> String {
    aspect.as_str().replace(':', "x")
}

/// The word of a main-menu item in its button's data.
const fn menu_word(item: MenuItem) -> &'static str {
    match item {
        MenuItem::Image => "image",
        MenuItem::Video => "video",
        MenuItem::Balance => "balance",
        MenuItem::TopUp => "topup",
        MenuItem::History => "history",
        MenuItem::Language => "lang",
        MenuItem::Help => "help",
    }
}

/// `0` or a decimal without leading zeros, fitting a `u32`.
fn decimal_u32(value: &str) -> Option<u32> {
    let canonical = !value.is_empty()
        && value.len() <= 10
        && (value == "0" || !value.starts_with('0'))
        && value.bytes().all(|b| b.is_ascii_digit());
    if !canonical {
        return None;
    }
    value.parse().ok()
}

/// `0` or lowercase hex without leading zeros, fitting a `u64`.
fn hex_u64(value: &str) -> Option<u64> {
    let canonical = !value.is_empty()
        && value.len() <= 16
        && (value == "0" || !value.starts_with('0'))
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical {
        return None;
    }
    u64::from_str_radix(value, 16).ok()
}

/// The longest model name a button carries (`KLING_MODELS` refuses longer ones).
pub const MAX_MODEL_NAME: usize = 48;

// Every name `KLING_MODELS` accepts fits in a button.
const _: () = assert!(crate::outbound::kling::MAX_NAME_BYTES <= MAX_MODEL_NAME);

/// A model's API name: 1–48 bytes of `a-z`, `0-9`, `-`, `.`, `_`.
fn model_name(value: &str) -> Option<&str> {
    let canonical = !value.is_empty()
        && value.len() <= MAX_MODEL_NAME
        && value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        });
    canonical.then_some(value)
}

/// An amount: `0` or kopecks in decimal without leading zeros.
fn kopecks(value: &str) -> Option<Money> {
    let canonical = !value.is_empty()
        && value.len() <= 18
        && (value == "0" || !value.starts_with('0'))
        && value.bytes().all(|b| b.is_ascii_digit());
    if !canonical {
        return None;
    }
    Money::from_kopecks(value.parse().ok()?).ok()
}

/// Exactly 32 lowercase hex digits (a UUID in its "simple" form).
fn simple_uuid(value: &str) -> Option<Uuid> {
    let canonical = value.len() == 32
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical {
        return None;
    }
    Uuid::try_parse(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Telegram's limit on `callback_data`, in bytes.
    const MAX_BYTES: usize = 64;

    fn max_money() -> Money {
        Money::from_kopecks(999_999_999_999_999_999).unwrap()
    }

    fn rub(kopecks: i64) -> Money {
        Money::from_kopecks(kopecks).unwrap()
    }

    fn payment(n: u128) -> PaymentId {
        PaymentId::from_uuid(Uuid::from_u128(n))
    }

    /// Every variant, with the extreme values of its field.
    fn extremes() -> Vec<Action> {
        vec![
            Action::Confirm(DraftId(0)),
            Action::Confirm(DraftId(u64::MAX)),
            Action::Discard(DraftId(0)),
            Action::Discard(DraftId(u64::MAX)),
            Action::VideoModel("k".into()),
            Action::VideoModel("a".repeat(MAX_MODEL_NAME)),
            Action::VideoDuration(VideoDuration::Five),
            Action::VideoDuration(VideoDuration::Ten),
            Action::TopUp(Money::ZERO),
            Action::TopUp(max_money()),
            Action::TopUpStars(Money::ZERO),
            Action::TopUpStars(max_money()),
            Action::CheckPayment(payment(0)),
            Action::CheckPayment(payment(u128::MAX)),
            Action::CheckPayment(PaymentId::from_uuid(Uuid::new_v4())),
            Action::SetLanguage(Language::Ru),
            Action::SetLanguage(Language::En),
            Action::AdminStats,
            Action::Repeat(JobId::from_uuid(Uuid::from_u128(0))),
            Action::Repeat(JobId::from_uuid(Uuid::from_u128(u128::MAX))),
            Action::SendAgain(JobId::from_uuid(Uuid::from_u128(u128::MAX))),
            Action::HistoryPage(0),
            Action::HistoryPage(u32::MAX),
            Action::Menu(MenuItem::Image),
            Action::Menu(MenuItem::Video),
            Action::Menu(MenuItem::Balance),
            Action::Menu(MenuItem::TopUp),
            Action::Menu(MenuItem::History),
            Action::Menu(MenuItem::Language),
            Action::Menu(MenuItem::Help),
        ]
    }

    fn check(data: &str, expected: Option<Action>) {
        assert_eq!(decode(data), expected, "{data:?}");
    }

    #[test]
    fn every_variant_fits_in_callback_data_and_roundtrips() {
        for action in extremes() {
            let data = encode(&action);
            assert!(
                (1..=MAX_BYTES).contains(&data.len()),
                "{action:?} encodes to {} bytes: {data}",
                data.len()
            );
            assert!(data.is_ascii(), "{data}");
            assert_eq!(decode(&data), Some(action), "{data}");
        }
    }

    #[test]
    fn the_forms_are_the_documented_ones() {
        let cases = [
            (Action::Confirm(DraftId(255)), "1:c:ff"),
            (Action::Confirm(DraftId(u64::MAX)), "1:c:ffffffffffffffff"),
            (Action::Discard(DraftId(0)), "1:x:0"),
            (Action::VideoModel("kling-v2-6".into()), "1:n:kling-v2-6"),
            (Action::VideoDuration(VideoDuration::Five), "1:d:5"),
            (Action::VideoDuration(VideoDuration::Ten), "1:d:10"),
            (Action::TopUp(rub(30_000)), "1:k:30000"),
            (Action::TopUpStars(rub(10_050)), "1:z:10050"),
            (
                Action::CheckPayment(payment(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)),
                "1:p:0123456789abcdef0123456789abcdef",
            ),
            (Action::SetLanguage(Language::Ru), "1:l:ru"),
            (Action::SetLanguage(Language::En), "1:l:en"),
            (Action::AdminStats, "1:a:s"),
            (
                Action::BroadcastSegment(7, Segment::Active { days: 30 }),
                "1:b:g.7.active30",
            ),
            (Action::BroadcastStart(12), "1:b:s.12"),
            (Action::BroadcastProgress(0), "1:b:r.0"),
            (
                Action::DraftAspect(DraftId(255), AspectRatio::Wide16x9),
                "1:f:ff.16x9",
            ),
            (
                Action::DraftResolution(DraftId(0), Resolution::FourK),
                "1:q:0.4k",
            ),
            (
                Action::Repeat(JobId::from_uuid(Uuid::from_u128(0xff))),
                "1:r:000000000000000000000000000000ff",
            ),
            (Action::Menu(MenuItem::Image), "1:u:image"),
            (Action::Menu(MenuItem::TopUp), "1:u:topup"),
            (Action::Menu(MenuItem::Language), "1:u:lang"),
        ];
        for (action, data) in cases {
            assert_eq!(encode(&action), data);
            check(data, Some(action));
        }
    }

    #[test]
    fn history_pages_are_canonical_decimals() {
        check("1:h:0", Some(Action::HistoryPage(0)));
        check("1:h:12", Some(Action::HistoryPage(12)));
        for bad in [
            "1:h:",
            "1:h:012",
            "1:h:-1",
            "1:h:4294967296",
            "1:h:1a",
            "1:h: 1",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn another_version_is_stale() {
        check("0:c:ff", None);
        check("2:c:ff", None);
        check("11:c:ff", None);
        check("c:ff", None);
        check("1c:ff", None);
        check(":1:c:ff", None);
    }

    /// Buttons of the release whose buttons held menu positions are stale, never read
    /// as a model or an amount.
    #[test]
    fn positional_buttons_of_the_earlier_release_are_stale() {
        check("1:m:0", None);
        check("1:m:2", None);
        check("1:t:0", None);
        check("1:t:3", None);
        check("1:s:1", None);
    }

    #[test]
    fn unknown_letters_are_stale() {
        check("1:q:1", None);
        check("1:C:ff", None);
        check("1:cc:ff", None);
        check("1::ff", None);
        check("1:a:x", None);
        check("1:a:", None);
    }

    #[test]
    fn bad_hex_is_stale() {
        check("1:c:", None);
        check("1:c:FF", None);
        check("1:c:0ff", None);
        check("1:c:+ff", None);
        check("1:c:-1", None);
        check("1:c:fg", None);
        check("1:c: ff", None);
        check("1:x:10000000000000000", None);
        check("1:p:0123456789ABCDEF0123456789abcdef", None);
        check("1:p:0123456789abcdef0123456789abcde", None);
        check("1:p:01234567-89ab-cdef-0123-456789abcdef", None);
        check("1:f:ff.16:9", None);
        check("1:f:ff.2x3", None);
        check("1:f:0ff.16x9", None);
        check("1:f:ff", None);
        check("1:q:ff.4K", None);
        check("1:q:ff.8k", None);
        check("1:q:ff.1k.1k", None);
    }

    #[test]
    fn bad_numbers_are_stale() {
        check("1:k:01", None);
        check("1:k:+1", None);
        check("1:k:-1", None);
        check("1:k:", None);
        check("1:k:1.0", None);
        check("1:z:1000000000000000000", None);
        check("1:z:99999999999999999999", None);
        check("1:n:", None);
        check("1:n:Kling", None);
        check("1:n:kling v2", None);
        check(&format!("1:n:{}", "a".repeat(MAX_MODEL_NAME + 1)), None);
        check("1:d:7", None);
        check("1:d:05", None);
        check("1:l:de", None);
        check("1:l:RU", None);
        check("1:u:Image", None);
        check("1:u:", None);
        check("1:u:wallet", None);
    }

    #[test]
    fn extra_fields_are_stale() {
        check("1:c:ff:1", None);
        check("1:k:1:", None);
        check("1:d:5:5", None);
        check("1:a:s:", None);
        check("1:l:ru ", None);
        check("1:k:1\n", None);
    }

    #[test]
    fn empty_and_odd_input_is_stale() {
        check("", None);
        check("1", None);
        check("1:", None);
        check("1::", None);
        check("ёё:ё:ё", None);
        check("1:c:ф", None);
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            any::<u64>().prop_map(|n| Action::Confirm(DraftId(n))),
            any::<u64>().prop_map(|n| Action::Discard(DraftId(n))),
            "[a-z0-9._-]{1,48}".prop_map(Action::VideoModel),
            prop_oneof![Just(VideoDuration::Five), Just(VideoDuration::Ten)]
                .prop_map(Action::VideoDuration),
            (0..=999_999_999_999_999_999_i64).prop_map(|k| Action::TopUp(rub(k))),
            (0..=999_999_999_999_999_999_i64).prop_map(|k| Action::TopUpStars(rub(k))),
            any::<u128>().prop_map(|n| Action::CheckPayment(payment(n))),
            prop_oneof![Just(Language::Ru), Just(Language::En)].prop_map(Action::SetLanguage),
            Just(Action::AdminStats),
            any::<u128>().prop_map(|n| Action::Repeat(JobId::from_uuid(Uuid::from_u128(n)))),
            any::<u128>().prop_map(|n| Action::SendAgain(JobId::from_uuid(Uuid::from_u128(n)))),
            any::<u32>().prop_map(Action::HistoryPage),
            (
                any::<u64>(),
                proptest::sample::select(AspectRatio::IMAGES.to_vec())
            )
                .prop_map(|(n, a)| Action::DraftAspect(DraftId(n), a)),
            (
                any::<u64>(),
                proptest::sample::select(Resolution::ALL.to_vec())
            )
                .prop_map(|(n, r)| Action::DraftResolution(DraftId(n), r)),
            (any::<u32>(), proptest::sample::select(SEGMENTS.to_vec()))
                .prop_map(|(n, s)| Action::BroadcastSegment(i64::from(n), s)),
            any::<u32>().prop_map(|n| Action::BroadcastStart(i64::from(n))),
            any::<u32>().prop_map(|n| Action::BroadcastPause(i64::from(n))),
            any::<u32>().prop_map(|n| Action::BroadcastCancel(i64::from(n))),
            any::<u32>().prop_map(|n| Action::BroadcastProgress(i64::from(n))),
            proptest::sample::select(MenuItem::ALL.to_vec()).prop_map(Action::Menu),
        ]
    }

    proptest! {
        #[test]
        fn every_action_roundtrips_within_64_bytes(action in action()) {
            let data = encode(&action);
            prop_assert!((1..=MAX_BYTES).contains(&data.len()), "{}", data);
            prop_assert_eq!(decode(&data), Some(action));
        }

        #[test]
        fn arbitrary_text_never_panics(data in any::<String>()) {
            let _ = decode(&data);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&String::from_utf8_lossy(&bytes));
        }

        /// Near misses exercise every parser; whatever they accept is canonical, so one
        /// action never has two encodings.
        #[test]
        fn whatever_decodes_is_the_one_encoding_of_its_action(
            data in "[0-2]?:?[a-zA-Z]{0,2}:?[0-9a-fA-F:+-]{0,40}"
        ) {
            if let Some(action) = decode(&data) {
                prop_assert_eq!(encode(&action), data);
            }
        }

        #[test]
        fn a_changed_character_decodes_to_nothing_or_to_its_own_encoding(
            action in action(),
            position in any::<prop::sample::Index>(),
            replacement in any::<char>(),
        ) {
            let mut chars: Vec<char> = encode(&action).chars().collect();
            let at = position.index(chars.len());
            chars[at] = replacement;
            let data: String = chars.into_iter().collect();
            if let Some(decoded) = decode(&data) {
                prop_assert_eq!(encode(&decoded), data);
            }
        }
    }
}
