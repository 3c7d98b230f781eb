//! Identifiers as newtypes, so a job id can never be passed where a payment id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}")]
pub struct IdError {
    what: &'static str,
    value: String,
}

impl IdError {
    fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.chars().take(64).collect(),
        }
    }
}

/// A Telegram user id (positive, as Telegram assigns them to users).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct UserId(i64);

impl UserId {
    /// A user id from Telegram's number.
    ///
    /// # Errors
    /// When the number is not positive.
    pub fn new(id: i64) -> Result<Self, IdError> {
        if id > 0 {
            Ok(Self(id))
        } else {
            Err(IdError::new("Telegram user id", &id.to_string()))
        }
    }

    /// The Telegram number.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for UserId {
    type Error = IdError;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<UserId> for i64 {
    fn from(v: UserId) -> Self {
        v.0
    }
}

impl FromStr for UserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<i64>()
            .ok()
            .and_then(|n| Self::new(n).ok())
            .ok_or_else(|| IdError::new("Telegram user id", s))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            #[must_use]
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The UUID inside.
            #[must_use]
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| IdError::new($what, s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// A generation job. Also sent to Kling as `external_task_id`, so a restarted worker
    /// can find the task it already paid for.
    JobId,
    "job id"
);
uuid_id!(
    /// A top-up payment. Also the YooKassa `Idempotence-Key` of its creation.
    PaymentId,
    "payment id"
);
uuid_id!(
    /// A hold on a user's balance, settled exactly once.
    ReservationId,
    "reservation id"
);

/// A key that makes a money-moving operation safe to repeat: the first call with a key
/// decides the outcome, later calls return that outcome and post nothing.
///
/// 1 to 128 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest accepted key.
    pub const MAX_LEN: usize = 128;

    /// A key from text.
    ///
    /// # Errors
    /// When empty, longer than [`Self::MAX_LEN`] or not printable ASCII.
    pub fn new(key: impl Into<String>) -> Result<Self, IdError> {
        let key = key.into();
        if key.is_empty() || key.len() > Self::MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(IdError::new("idempotency key", &key));
        }
        Ok(Self(key))
    }

    /// A key derived from a namespace and an id, e.g. `job:<uuid>:capture`.
    /// Both parts are our own (ids and constant names), so the result is always valid.
    #[must_use]
    pub fn derived(namespace: &str, id: &dyn fmt::Display, step: &str) -> Self {
        let mut key: String = format!("{namespace}:{id}:{step}")
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        key.truncate(Self::MAX_LEN);
        Self(key)
    }

    /// The key text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Namespaces of the keys REI derives itself ([`Self::derived`]).
    pub const RESERVED_NAMESPACES: [&'static str; 4] =
        ["job:", "payment:", "reservation:", "refund:"];

    /// True when the key lies in a namespace REI derives keys in. Services refuse such
    /// keys from callers, so an outside key can never take the place of, say, a
    /// reservation's refund entry and make it impossible to settle.
    #[must_use]
    pub fn is_reserved(&self) -> bool {
        Self::RESERVED_NAMESPACES
            .iter()
            .any(|ns| self.0.starts_with(ns))
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = IdError;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<IdempotencyKey> for String {
    fn from(v: IdempotencyKey) -> Self {
        v.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The task id a provider (Kling) gave to a submitted generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderTaskId(String);

impl ProviderTaskId {
    /// Wraps the provider's id.
    ///
    /// # Errors
    /// When empty or longer than 256 characters.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        if id.is_empty() || id.len() > 256 {
            return Err(IdError::new("provider task id", &id));
        }
        Ok(Self(id))
    }

    /// The provider's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderTaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_must_be_positive_numbers() {
        assert_eq!("42".parse::<UserId>().map(UserId::get), Ok(42));
        assert!("0".parse::<UserId>().is_err());
        assert!("-5".parse::<UserId>().is_err());
        assert!("abc".parse::<UserId>().is_err());
        assert!(serde_json::from_str::<UserId>("-1").is_err());
    }

    #[test]
    fn uuid_ids_round_trip_through_text() {
        let id = JobId::from_uuid(Uuid::from_u128(7));
        assert_eq!(id.to_string().parse::<JobId>(), Ok(id));
        assert!("not-a-uuid".parse::<PaymentId>().is_err());
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        assert!(IdempotencyKey::new("tg:cb:123").is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("with space").is_err());
        assert!(IdempotencyKey::new("x".repeat(129)).is_err());
        let k = IdempotencyKey::derived("job", &JobId::from_uuid(Uuid::nil()), "capture");
        assert_eq!(
            k.as_str(),
            "job:00000000-0000-0000-0000-000000000000:capture"
        );
    }
}
