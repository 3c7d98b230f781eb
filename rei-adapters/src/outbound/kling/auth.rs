//! Kling API credentials and the HS256 JWT signed from them (providers.md §1.2).

use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use rei_core::ports::ProviderError;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The JOSE header of every token: HS256 (providers.md §1.2).
const HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

/// Lifetime of a token: `exp` = now + 1800 s, as in Kling's sample.
pub(crate) const TOKEN_LIFETIME_SECS: u64 = 1800;
/// `nbf` = now − 5 s, as in Kling's sample (tolerates small clock skew).
pub(crate) const NOT_BEFORE_SKEW_SECS: u64 = 5;
/// After Kling calls a token "not yet valid" (1003, our clock is ahead of Kling's), `nbf`
/// goes back at least this far…
pub(crate) const RESIGN_NOT_BEFORE_SKEW_SECS: u64 = 60;
/// …growing fourfold with every further 1003, up to this.
pub(crate) const MAX_NOT_BEFORE_SKEW_SECS: u64 = 600;
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
    /// The key that signs task callback URLs, derived from the secret key.
    #[must_use]
    pub fn callback_key(&self) -> super::CallbackKey {
        super::CallbackKey::derive(self.secret_key.expose_secret().as_bytes())
    }

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

/// Why Kling refused a token (401 with code 1003 or 1004).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 1003: `nbf` is in Kling's future (our clock runs ahead): sign with an earlier `nbf`.
    NotYetValid,
    /// 1004: expired: sign a new one.
    Expired,
}

struct SignerState {
    cached: Option<CachedToken>,
    /// How far before "now" `nbf` is put; grows after a 1003 and stays (the skew does).
    not_before_skew: u64,
}

/// Signs tokens and caches one until shortly before it expires.
pub(crate) struct TokenSigner {
    credentials: KlingCredentials,
    state: Mutex<SignerState>,
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
            state: Mutex::new(SignerState {
                cached: None,
                not_before_skew: NOT_BEFORE_SKEW_SECS,
            }),
        }
    }

    /// A valid token now (see [`Self::token_at`]).
    pub(crate) fn token(&self) -> Result<SecretString, ProviderError> {
        self.token_at(now_secs())
    }

    /// A valid token at `now` (Unix seconds): the cached one while it has more than
    /// [`REFRESH_MARGIN_SECS`] left, a freshly signed one otherwise.
    pub(crate) fn token_at(&self, now: u64) -> Result<SecretString, ProviderError> {
        let mut state = self.lock();
        if let Some(c) = state
            .cached
            .as_ref()
            .filter(|c| c.expires_at > now.saturating_add(REFRESH_MARGIN_SECS))
        {
            return Ok(c.token.clone());
        }
        let expires_at = now.saturating_add(TOKEN_LIFETIME_SECS);
        let not_before = now.saturating_sub(state.not_before_skew);
        let token = self.sign(not_before, expires_at)?;
        state.cached = Some(CachedToken {
            token: token.clone(),
            expires_at,
        });
        Ok(token)
    }

    /// Forgets the cached token after Kling refused it. After a "not yet valid" the next
    /// tokens carry an earlier `nbf`, so the repeated call does not meet the same refusal.
    pub(crate) fn invalidate(&self, rejection: Rejection) {
        let mut state = self.lock();
        state.cached = None;
        if rejection == Rejection::NotYetValid {
            state.not_before_skew = state
                .not_before_skew
                .saturating_mul(4)
                .clamp(RESIGN_NOT_BEFORE_SKEW_SECS, MAX_NOT_BEFORE_SKEW_SECS);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SignerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sign(&self, not_before: u64, expires_at: u64) -> Result<SecretString, ProviderError> {
        let claims = Claims {
            iss: self.credentials.access_key.expose_secret(),
            exp: expires_at,
            nbf: not_before,
        };
        let refused = |e: &dyn fmt::Display| ProviderError::Auth {
            message: format!("cannot sign the Kling token: {e}"),
        };
        // A compact JWS (RFC 7515): base64url(header) . base64url(claims) . HMAC-SHA256.
        let claims = serde_json::to_vec(&claims).map_err(|e| refused(&e))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.credentials.secret_key.expose_secret().as_bytes())
                .map_err(|e| refused(&e))?;
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(SecretString::from(format!("{signing_input}.{signature}")))
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

    /// The token is a compact HS256 JWS: the header says so, the claims are Kling's, and
    /// the signature is HMAC-SHA256 of `header.claims` with the secret key.
    #[test]
    fn the_token_is_an_hs256_jwt_signed_with_the_secret_key() {
        let credentials =
            KlingCredentials::from_combined(&SecretString::from("ak-1:sk-1")).unwrap();
        let signer = TokenSigner::new(credentials);
        let token = signer.sign(100, 1900).unwrap();
        let parts: Vec<&str> = token.expose_secret().split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"iss": "ak-1", "exp": 1900, "nbf": 100})
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"sk-1").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&decode(parts[2])).unwrap();
    }

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

    const T0: u64 = 1_774_805_076;

    fn signer() -> TokenSigner {
        TokenSigner::new(KlingCredentials::from_combined(&SecretString::from("ak:sk")).unwrap())
    }

    /// The `(exp, nbf)` claims of a token.
    fn claims(token: &SecretString) -> (u64, u64) {
        use base64::Engine;
        let payload = token.expose_secret().split('.').nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["iss"], "ak");
        (json["exp"].as_u64().unwrap(), json["nbf"].as_u64().unwrap())
    }

    #[test]
    fn a_token_carries_the_samples_window() {
        let token = signer().token_at(T0).unwrap();
        assert_eq!(claims(&token), (T0 + 1800, T0 - 5));
    }

    #[test]
    fn a_cached_token_is_reused_well_before_it_expires() {
        let signer = signer();
        let first = signer.token_at(T0).unwrap();
        let later = signer.token_at(T0 + 1000).unwrap();
        assert_eq!(first.expose_secret(), later.expose_secret());
        assert_eq!(claims(&later), (T0 + 1800, T0 - 5));
    }

    #[test]
    fn a_token_is_replaced_within_the_refresh_margin() {
        let signer = signer();
        let first = signer.token_at(T0).unwrap();
        assert_eq!(
            signer.token_at(T0 + 1499).unwrap().expose_secret(),
            first.expose_secret(),
            "301 s left: still reused"
        );
        let renewed = signer.token_at(T0 + 1501).unwrap();
        assert_ne!(renewed.expose_secret(), first.expose_secret());
        assert_eq!(claims(&renewed), (T0 + 1501 + 1800, T0 + 1501 - 5));
    }

    #[test]
    fn an_invalidated_token_is_signed_again() {
        let signer = signer();
        let first = signer.token_at(T0).unwrap();
        signer.invalidate(Rejection::Expired);
        let fresh = signer.token_at(T0 + 10).unwrap();
        assert_ne!(fresh.expose_secret(), first.expose_secret());
        assert_eq!(claims(&fresh), (T0 + 10 + 1800, T0 + 10 - 5));
    }

    #[test]
    fn a_not_yet_valid_token_is_re_signed_with_an_earlier_nbf() {
        let signer = signer();
        let first = signer.token_at(T0).unwrap();
        signer.invalidate(Rejection::NotYetValid);
        let resigned = signer.token_at(T0).unwrap();
        assert_ne!(
            resigned.expose_secret(),
            first.expose_secret(),
            "the repeat in the same second differs"
        );
        assert_eq!(claims(&resigned), (T0 + 1800, T0 - 60));
        let mut nbfs = Vec::new();
        for _ in 0..3 {
            signer.invalidate(Rejection::NotYetValid);
            nbfs.push(T0 - claims(&signer.token_at(T0).unwrap()).1);
        }
        assert_eq!(nbfs, vec![240, 600, 600], "grows, then stays capped");
        assert_eq!(
            claims(&signer.token_at(T0 + 1501).unwrap()).1,
            T0 + 1501 - 600,
            "the learnt skew is kept for later tokens"
        );
    }
}
