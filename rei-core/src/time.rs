//! Instants and durations as plain numbers, so the domain needs no clock of its own.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). Comes from the [`Clock`](crate::ports::Clock) port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `ms` milliseconds after the epoch.
    #[must_use]
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    #[must_use]
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This instant plus a duration (saturating).
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// This instant minus a duration (saturating).
    #[must_use]
    pub fn minus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(ms))
    }

    /// How long after `earlier` this instant is (zero if it is not later).
    #[must_use]
    pub fn since(self, earlier: Self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl Timestamp {
    /// The first moment (UTC) of the day after `year-month-day`: when something that
    /// works "until that day" stops. `None` for a day that does not exist.
    #[must_use]
    pub fn after_day(year: i32, month: u32, day: u32) -> Option<Self> {
        let days_in = |m: u32| match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
            2 => 28,
            _ => 0,
        };
        if !(1970..=9999).contains(&year) || day == 0 || day > days_in(month) {
            return None;
        }
        // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
        let y = i64::from(year) - i64::from(month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(Self::from_millis((days + 1) * 86_400_000))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod day_tests {
    use super::Timestamp;

    #[test]
    fn the_moment_after_a_day_is_midnight_utc_of_the_next() {
        // 2026-12-05T00:00:00Z, 2000-03-01T00:00:00Z (a leap year), 1970-01-02.
        assert_eq!(
            Timestamp::after_day(2026, 12, 4).unwrap().millis(),
            1_796_428_800_000
        );
        assert_eq!(
            Timestamp::after_day(2000, 2, 29).unwrap().millis(),
            951_868_800_000
        );
        assert_eq!(
            Timestamp::after_day(1970, 1, 1).unwrap().millis(),
            86_400_000
        );
        for (y, m, d) in [
            (2026, 2, 29),
            (2026, 13, 1),
            (2026, 4, 31),
            (1969, 12, 31),
            (2026, 1, 0),
        ] {
            assert_eq!(Timestamp::after_day(y, m, d), None, "{y}-{m}-{d}");
        }
    }
}
