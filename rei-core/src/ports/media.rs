//! Fetching what users send (photos, videos) from the messenger into the asset store.

use async_trait::async_trait;

use super::BoxError;
use crate::conversation::Media;
use crate::job::AssetRef;

/// Why a file could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Larger than the messenger lets bots download (Telegram: 20 MB).
    #[error("the file is larger than {limit_bytes} bytes")]
    TooLarge {
        /// The limit.
        limit_bytes: u64,
    },
    /// The asset store is at its cap (`ASSET_DIR_MAX_BYTES`): no new uploads for now.
    #[error("the asset store is full")]
    StorageFull,
    /// The messenger or the asset store failed; the user may send it again.
    #[error("the file could not be fetched")]
    Unavailable(#[source] BoxError),
}

/// Downloads users' files.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait MediaFetcher: Send + Sync {
    /// Downloads `media` and stores it under `key`.
    ///
    /// # Errors
    /// `TooLarge` above the messenger's download limit, `Unavailable` otherwise.
    async fn fetch(&self, media: &Media, key: &str) -> Result<AssetRef, MediaError>;

    /// The largest file this fetcher can download (Telegram's Bot API: 20 MB): larger
    /// ones are refused before anything is downloaded or charged.
    fn max_bytes(&self) -> u64;
}
