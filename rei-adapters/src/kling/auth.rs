//! Kling API credentials and the HS256 JWT signed from them (providers.md §1.2).

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rei_core::ports::ProviderError;
use secrecy::{ExposeSecret, SecretString};

/// Lifetime of a token: `exp` = now + 1800 s, as in Kling's sample.
pub(crate) const TOKEN_LIFETIME_SECS: u64 = 1800;
/// `nbf` = now − 5 s, as in Kling's sample (tolerates small clock skew).
pub(crate) const NOT_BEFORE_SKEW_SECS: u64 = 5;
/// A cached token is replaced this long before it expires.
pub(crate) const REFRESH_MARGIN_SECS: u64 = 300;

/// Kling's access key (the JWT issuer) and secret key (the HS256 signing key).
#[derive(Clone)]
pub struct KlingCredentials {
    access_key: SecretString,
    secret_key: SecretString,
}

/// Why a `KLING_API_KEY` value is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected ACCESS_KEY:SECRET_KEY with both parts non-empty")]
pub struct CredentialsError;

impl KlingCredentials {
    /// Credentials from the two keys (`KLING_ACCESS_KEY`, `KLING_SECRET_KEY`).
    ///
    /// # Errors
    /// [`CredentialsError`] when either key is empty.
    pub fn new(
        access_key: SecretString,
        secret_key: SecretString,
    ) -> Result<Self, CredentialsError> {
        if access_key.expose_secret().trim().is_empty()
            || secret_key.expose_secret().trim().is_empty()
        {
            return Err(CredentialsError);
        }
        Ok(Self {
            access_key,
            secret_key,
        })
    }

    /// Credentials from the combined form `ACCESS_KEY:SECRET_KEY` (`KLING_API_KEY`).
    ///
    /// # Errors
    /// [`CredentialsError`] without a `:` or with an empty part.
    pub fn from_combined(combined: &SecretString) -> Result<Self, CredentialsError> {
        let (access, secret) = combined
            .expose_secret()
            .trim()
            .split_once(':')
            .ok_or(CredentialsError)?;
        Self::new(
            SecretString::from(access.trim()),
            SecretString::from(secret.trim()),
        )
    }
}

impl fmt::Debug for KlingCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KlingCredentials(<redacted>)")
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    exp: u64,
    nbf: u64,
}

struct CachedToken {
    token: SecretString,
    expires_at: u64,
}

/// Signs tokens and caches one until shortly before it expires.
pub(crate) struct TokenSigner {
    credentials: KlingCredentials,
    cached: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSigner(<redacted>)")
    }
}

impl TokenSigner {
    pub(crate) fn new(credentials: KlingCredentials) -> Self {
        Self {
            credentials,
            cached: Mutex::new(None),
        }
    }

    /// A valid token: the cached one while it has more than [`REFRESH_MARGIN_SECS`] left,
    /// a freshly signed one otherwise.
    pub(crate) fn token(&self) -> Result<SecretString, ProviderError> {
        let now = now_secs();
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cached
            .as_ref()
            .filter(|c| c.expires_at > now + REFRESH_MARGIN_SECS)
        {
            return Ok(c.token.clone());
        }
        let expires_at = now + TOKEN_LIFETIME_SECS;
        let token = self.sign(now, expires_at)?;
        *cached = Some(CachedToken {
            token: token.clone(),
            expires_at,
        });
        Ok(token)
    }

    /// Forgets the cached token (after Kling said it is not yet valid or expired).
    pub(crate) fn invalidate(&self) {
        *self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn sign(&self, now: u64, expires_at: u64) -> Result<SecretString, ProviderError> {
        let claims = Claims {
            iss: self.credentials.access_key.expose_secret(),
            exp: expires_at,
            nbf: now.saturating_sub(NOT_BEFORE_SKEW_SECS),
        };
        let key = EncodingKey::from_secret(self.credentials.secret_key.expose_secret().as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map(SecretString::from)
            .map_err(|e| ProviderError::Auth {
                message: format!("cannot sign the Kling token: {e}"),
            })
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_keys_split_at_the_colon() {
        assert!(KlingCredentials::from_combined(&SecretString::from("ak:sk")).is_ok());
        assert_eq!(
            KlingCredentials::from_combined(&SecretString::from("aksk")).err(),
            Some(CredentialsError)
        );
        assert_eq!(
            KlingCredentials::from_combined(&SecretString::from(":sk")).err(),
            Some(CredentialsError)
        );
        let creds = KlingCredentials::from_combined(&SecretString::from("ak:sk")).unwrap();
        assert!(!format!("{creds:?}").contains("sk"));
    }

    #[test]
    fn tokens_are_cached_until_invalidated() {
        let creds = KlingCredentials::from_combined(&SecretString::from("ak:sk")).unwrap();
        let signer = TokenSigner::new(creds);
        let first = signer.token().unwrap();
        assert_eq!(
            first.expose_secret(),
            signer.token().unwrap().expose_secret()
        );
        signer.invalidate();
        assert!(signer.cached.lock().unwrap().is_none());
        assert_eq!(
            signer.token().unwrap().expose_secret().split('.').count(),
            3
        );
    }
}
