//! Money: an exact, non-negative number of kopecks.
//!
//! Users type and read rubles with up to two decimals ("50", "12.50", "12,50");
//! inside, every amount is an integer number of kopecks. There is no float anywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Kopecks in one ruble.
const KOPECKS_PER_RUBLE: i64 = 100;

/// A non-negative amount of money in kopecks.
///
/// A `Money` that exists is valid: it is never negative. Arithmetic is checked and
/// returns `None` instead of overflowing or going below zero.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Money(i64);

/// Why a text or a number is not a valid amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is empty.
    #[error("the amount is empty")]
    Empty,
    /// The amount is below zero.
    #[error("the amount must not be negative")]
    Negative,
    /// More than two digits after the decimal separator.
    #[error("the amount has more than two decimals")]
    TooManyDecimals,
    /// Not a number of the form `123`, `123.45` or `123,45`.
    #[error("`{0}` is not an amount of rubles (expected e.g. 50, 12.50 or 12,50)")]
    Malformed(String),
    /// The amount does not fit in 64 bits of kopecks.
    #[error("the amount is too large")]
    Overflow,
}

impl Money {
    /// Zero kopecks.
    pub const ZERO: Self = Self(0);

    /// Money from a constant known to be non-negative (for `const` items in this crate).
    pub(crate) const fn from_nonnegative_const(kopecks: i64) -> Self {
        assert!(kopecks >= 0, "money constants are non-negative");
        Self(kopecks)
    }

    /// Money from kopecks; fails on a negative number.
    ///
    /// # Errors
    /// [`MoneyError::Negative`] when `kopecks < 0`.
    pub const fn from_kopecks(kopecks: i64) -> Result<Self, MoneyError> {
        if kopecks < 0 {
            Err(MoneyError::Negative)
        } else {
            Ok(Self(kopecks))
        }
    }

    /// Money from whole rubles.
    ///
    /// # Errors
    /// [`MoneyError::Negative`] for a negative number, [`MoneyError::Overflow`] when too large.
    pub const fn from_rubles(rubles: i64) -> Result<Self, MoneyError> {
        match rubles.checked_mul(KOPECKS_PER_RUBLE) {
            Some(k) => Self::from_kopecks(k),
            None => Err(MoneyError::Overflow),
        }
    }

    /// The amount in kopecks.
    #[must_use]
    pub const fn kopecks(self) -> i64 {
        self.0
    }

    /// True for zero kopecks.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, other: Self) -> Option<Self> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - other`, or `None` when the result would be negative.
    #[must_use]
    pub const fn checked_sub(self, other: Self) -> Option<Self> {
        if other.0 > self.0 {
            None
        } else {
            Some(Self(self.0 - other.0))
        }
    }

    /// `self * factor`, or `None` on overflow.
    #[must_use]
    pub const fn checked_mul(self, factor: u32) -> Option<Self> {
        match self.0.checked_mul(factor as i64) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The amount as rubles with exactly two decimals and a dot, e.g. `"12.50"`
    /// (the format YooKassa wants for `amount.value`).
    #[must_use]
    pub fn to_decimal_string(self) -> String {
        format!(
            "{}.{:02}",
            self.0 / KOPECKS_PER_RUBLE,
            self.0 % KOPECKS_PER_RUBLE
        )
    }

    /// Parses rubles: `"50"`, `"12.50"`, `"12,50"`, `"0.5"`. Surrounding spaces are ignored.
    ///
    /// # Errors
    /// See [`MoneyError`]: empty, negative, more than two decimals, malformed, overflow.
    pub fn parse_rubles(text: &str) -> Result<Self, MoneyError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(MoneyError::Empty);
        }
        if t.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let malformed = || MoneyError::Malformed(t.chars().take(32).collect());
        let (whole, frac) = match t.find(['.', ',']) {
            Some(i) => (&t[..i], Some(&t[i + 1..])),
            None => (t, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let mut kopecks: i64 = 0;
        for b in whole.bytes() {
            kopecks = kopecks
                .checked_mul(10)
                .and_then(|k| k.checked_add(i64::from(b - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        kopecks = kopecks
            .checked_mul(KOPECKS_PER_RUBLE)
            .ok_or(MoneyError::Overflow)?;
        if let Some(frac) = frac {
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            if frac.len() > 2 {
                return Err(MoneyError::TooManyDecimals);
            }
            let mut digits = frac.bytes().map(|b| i64::from(b - b'0'));
            let tens = digits.next().unwrap_or(0);
            let ones = digits.next().unwrap_or(0);
            kopecks = kopecks
                .checked_add(tens * 10 + ones)
                .ok_or(MoneyError::Overflow)?;
        }
        Ok(Self(kopecks))
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rubles(s)
    }
}

impl TryFrom<i64> for Money {
    type Error = MoneyError;

    fn try_from(kopecks: i64) -> Result<Self, Self::Error> {
        Self::from_kopecks(kopecks)
    }
}

impl From<Money> for i64 {
    fn from(m: Money) -> Self {
        m.0
    }
}

impl fmt::Display for Money {
    /// Rubles with two decimals and the ruble sign: `12.50 ₽`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ₽", self.to_decimal_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<i64, MoneyError>) {
        assert_eq!(
            Money::parse_rubles(input).map(Money::kopecks),
            expected,
            "input {input:?}"
        );
    }

    #[test]
    fn whole_rubles_parse() {
        check("50", Ok(5000));
        check(" 7 ", Ok(700));
        check("0", Ok(0));
    }

    #[test]
    fn decimals_with_dot_or_comma_parse() {
        check("12.50", Ok(1250));
        check("12,50", Ok(1250));
        check("12.5", Ok(1250));
        check("0.01", Ok(1));
        check("0,05", Ok(5));
    }

    #[test]
    fn negatives_are_rejected() {
        check("-1", Err(MoneyError::Negative));
        check("-0.50", Err(MoneyError::Negative));
        assert_eq!(Money::from_kopecks(-1), Err(MoneyError::Negative));
    }

    #[test]
    fn more_than_two_decimals_are_rejected() {
        check("12.505", Err(MoneyError::TooManyDecimals));
        check("1,000", Err(MoneyError::TooManyDecimals));
    }

    #[test]
    fn malformed_text_is_rejected() {
        for bad in ["abc", "1.2.3", "12.", ".5", "1e5", "+5", "12 50", "٣"] {
            assert!(
                matches!(
                    Money::parse_rubles(bad),
                    Err(MoneyError::Malformed(_) | MoneyError::TooManyDecimals)
                ),
                "{bad:?} must be rejected"
            );
        }
        check("", Err(MoneyError::Empty));
        check("   ", Err(MoneyError::Empty));
    }

    #[test]
    fn overflow_is_rejected() {
        check("92233720368547758.08", Err(MoneyError::Overflow));
        check("999999999999999999999", Err(MoneyError::Overflow));
        check("92233720368547758.07", Ok(i64::MAX));
        assert_eq!(Money::from_rubles(i64::MAX), Err(MoneyError::Overflow));
    }

    #[test]
    fn displays_as_rubles_with_sign() {
        assert_eq!(Money::parse_rubles("12.5").unwrap().to_string(), "12.50 ₽");
        assert_eq!(Money::from_kopecks(5).unwrap().to_string(), "0.05 ₽");
        assert_eq!(
            Money::from_rubles(500).unwrap().to_decimal_string(),
            "500.00"
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::from_kopecks(100).unwrap();
        let b = Money::from_kopecks(30).unwrap();
        assert_eq!(a.checked_sub(b), Some(Money::from_kopecks(70).unwrap()));
        assert_eq!(b.checked_sub(a), None);
        assert_eq!(Money::from_kopecks(i64::MAX).unwrap().checked_add(b), None);
        assert_eq!(b.checked_mul(2), Some(Money::from_kopecks(60).unwrap()));
    }

    #[test]
    fn serde_rejects_negative_kopecks() {
        assert!(serde_json::from_str::<Money>("-5").is_err());
        assert_eq!(serde_json::from_str::<Money>("5").unwrap().kopecks(), 5);
    }

    proptest::proptest! {
        #[test]
        fn display_and_parse_round_trip(k in 0i64..=i64::MAX) {
            let m = Money::from_kopecks(k).unwrap();
            proptest::prop_assert_eq!(Money::parse_rubles(&m.to_decimal_string()), Ok(m));
        }
    }
}
