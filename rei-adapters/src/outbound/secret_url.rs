//! URLs that may carry credentials (`DATABASE_URL`, `REDIS_URL`): one redaction for all
//! of them, in `Debug`, `Display`, logs and error messages.

use std::fmt;
use std::str::FromStr;

/// Query parameters whose values are credentials (`?password=…`, `?sslpassword=…`).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "sslpassword",
    "token",
    "secret",
    "key",
    "auth",
];

/// `url` with its password and credential query parameters replaced by `***`; a value
/// that is not a URL is not shown at all.
#[must_use]
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparseable url>".to_owned();
    };
    if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
        return "<url with a password>".to_owned();
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str());
                let v = if secret {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// A URL that may carry credentials: shown only redacted ([`redact`]); [`Self::expose`]
/// hands the real one to the driver that connects with it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, for the driver; never for a log.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", redact(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// A key of `N` bytes derived from `secret` for one purpose (`label`, HKDF-SHA256 `info`):
/// a secret used for several things (a bot token, Kling's key) never signs anything
/// itself, and each purpose gets a key of its own.
#[must_use]
pub fn derive_key<const N: usize>(secret: &[u8], label: &[u8]) -> [u8; N] {
    const { assert!(N <= 255 * 32, "HKDF-SHA256 derives at most 8160 bytes") };
    let mut key = [0_u8; N];
    // Within HKDF-SHA256's output limit (asserted above), so `expand` does not fail.
    match hkdf::Hkdf::<sha2::Sha256>::new(None, secret).expand(label, &mut key) {
        Ok(()) => key,
        Err(_) => [0_u8; N],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let cases = [
            (
                "postgres://rei:hunter2@db:5432/rei",
                "postgres://rei:***@db:5432/rei",
            ),
            (
                "postgres://db/rei?user=rei&password=hunter2&sslmode=verify-full",
                "postgres://db/rei?user=rei&password=***&sslmode=verify-full",
            ),
            (
                "postgres://db/rei?sslpassword=hunter2",
                "postgres://db/rei?sslpassword=***",
            ),
            (
                "rediss://:hunter2@cache:6380/0",
                "rediss://:***@cache:6380/0",
            ),
            (
                "redis://default:hunter2@cache/",
                "redis://default:***@cache/",
            ),
            ("redis://cache:6379/", "redis://cache:6379/"),
            ("not a url hunter2", "<unparseable url>"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
            let secret = SecretUrl::new(url);
            assert!(!format!("{secret:?}").contains("hunter2"), "{secret:?}");
            assert!(!secret.to_string().contains("hunter2"), "{secret}");
            assert_eq!(secret.expose(), url);
        }
    }
}
