//! Stored inputs and results (photos, videos), by key.

use async_trait::async_trait;

use super::BoxError;
use crate::job::AssetRef;

/// What the asset store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// No such file (deleted by the retention sweep, or never stored).
    #[error("asset {0} not found")]
    NotFound(AssetRef),
    /// The store failed.
    #[error("asset store unavailable")]
    Unavailable(#[source] BoxError),
}

/// Where job inputs and results are kept (`ASSET_DIR`).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Assets: Send + Sync {
    /// The bytes of an asset.
    ///
    /// # Errors
    /// MUST return `NotFound` for a missing asset.
    async fn read(&self, asset: &AssetRef) -> Result<Vec<u8>, AssetError>;

    /// Stores bytes under `key` (replacing what was there) and returns the asset.
    ///
    /// # Errors
    /// `Unavailable` when the bytes cannot be stored.
    async fn write(&self, key: &str, bytes: &[u8]) -> Result<AssetRef, AssetError>;

    /// A URL from which a provider can fetch the asset (video→video), or `None` when the
    /// deployment has no public URL.
    fn public_url(&self, asset: &AssetRef) -> Option<String>;

    /// A download link for a user, valid until `expires` (a result too large for the
    /// messenger), or `None` when the deployment has no public URL.
    fn download_link(&self, asset: &AssetRef, expires: crate::time::Timestamp) -> Option<String>;

    /// Whether the asset is here (a worker on another host may lack it).
    ///
    /// # Errors
    /// `Unavailable` when the store cannot tell.
    async fn exists(&self, asset: &AssetRef) -> Result<bool, AssetError>;

    /// Deletes an asset; one already gone is not an error.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot delete it.
    async fn remove(&self, asset: &AssetRef) -> Result<(), AssetError>;
}
