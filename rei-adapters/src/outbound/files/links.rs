//! Signed links to assets under `PUBLIC_URL/assets/…` (`ASSET_SIGNING_KEY`, rotation).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use rei_core::job::AssetRef;
use sha2::Sha256;

use super::{AssetStore, validate_key};

/// How long a public link to an asset works.
const PUBLIC_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

/// Links to assets under `PUBLIC_URL/assets/…`, signed (HMAC-SHA256 of the key and the
/// expiry) so that only links REI made, and only until they expire, open a file.
#[derive(Clone)]
pub(super) struct PublicLinks {
    pub(super) base: url::Url,
    /// Signs new links, and opens them.
    secret: Arc<[u8; 32]>,
    /// Opens links signed before a key rotation (`ASSET_SIGNING_KEY_PREVIOUS`).
    previous: Option<Arc<[u8; 32]>>,
}

/// The label of the link key derived from a secret (HKDF-SHA256 `info`): the same
/// secret used elsewhere (the bot token) never signs links itself.
const LINK_KEY_LABEL: &[u8] = b"rei/asset-links/v1";

/// The link key of `secret`.
fn link_key(secret: &[u8]) -> Arc<[u8; 32]> {
    Arc::new(crate::outbound::secret_url::derive_key(
        secret,
        LINK_KEY_LABEL,
    ))
}

impl AssetStore {
    /// Also hands out signed links under `base` (`PUBLIC_URL`), served by the HTTP
    /// server's `GET /assets/…`. `secret` (`ASSET_SIGNING_KEY`, else the bot token) must
    /// be the same in every process; links are signed with a key derived from it.
    #[must_use]
    pub fn with_public_links(mut self, base: url::Url, secret: &[u8]) -> Self {
        self.public = Some(PublicLinks {
            base,
            secret: link_key(secret),
            previous: None,
        });
        self
    }

    /// Also opens links signed with `secret` before a rotation
    /// (`ASSET_SIGNING_KEY_PREVIOUS`); new links use the current key only.
    #[must_use]
    pub fn with_previous_link_secret(mut self, secret: &[u8]) -> Self {
        if let Some(links) = &mut self.public {
            links.previous = Some(link_key(secret));
        }
        self
    }

    fn signature(secret: &[u8; 32], key: &str, expires: u64) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_slice()).ok()?;
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        Some(mac)
    }

    /// A signed link to `asset` that works until `now + 24 h`; `None` without
    /// `PUBLIC_URL` or for an unsafe key.
    #[must_use]
    pub fn public_link(&self, asset: &AssetRef, now: SystemTime) -> Option<String> {
        let expires = now
            .checked_add(PUBLIC_LINK_TTL)?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_secs();
        self.signed_link(asset, expires)
    }

    /// A signed link to `asset` that works until `expires` (Unix seconds); `None` without
    /// `PUBLIC_URL` or for an unsafe key.
    #[must_use]
    pub fn signed_link(&self, asset: &AssetRef, expires: u64) -> Option<String> {
        let links = self.public.as_ref()?;
        validate_key(asset.as_str()).ok()?;
        let sig = hex::encode(
            Self::signature(&links.secret, asset.as_str(), expires)?
                .finalize()
                .into_bytes(),
        );
        let mut url = links
            .base
            .join(&format!("assets/{}", asset.as_str()))
            .ok()?;
        url.query_pairs_mut()
            .append_pair("exp", &expires.to_string())
            .append_pair("sig", &sig);
        Some(url.to_string())
    }

    /// Whether a link's `exp` and `sig` are ours and still valid for `key`.
    #[must_use]
    pub fn link_is_valid(&self, key: &str, expires: u64, sig: &str, now: SystemTime) -> bool {
        let (Some(links), Ok(sig)) = (self.public.as_ref(), hex::decode(sig)) else {
            return false;
        };
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(u64::MAX, |d| d.as_secs());
        // Constant-time comparisons (`verify_slice`), with the current key, then the
        // previous one.
        let opens = |secret: &[u8; 32]| {
            Self::signature(secret, key, expires).is_some_and(|mac| mac.verify_slice(&sig).is_ok())
        };
        validate_key(key).is_ok()
            && expires >= now
            && (opens(&links.secret) || links.previous.as_deref().is_some_and(opens))
    }
}
