//! Users' files (photos, videos) downloaded through the Bot API into the asset store.

use async_trait::async_trait;
use rei_core::conversation::Media;
use rei_core::job::AssetRef;
use rei_core::ports::{MediaError, MediaFetcher};
use teloxide::net::Download;
use teloxide::prelude::Requester;
use teloxide::{ApiError, Bot, RequestError};

use crate::outbound::files::{AssetError, AssetStore};

/// Bots may download files up to this size (Bot API).
pub(crate) const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;

/// Downloads users' files through the Bot API into the asset store.
#[derive(Clone)]
pub struct TelegramMedia {
    bot: Bot,
    assets: AssetStore,
}

rei_core::opaque_debug!(TelegramMedia);

impl TelegramMedia {
    /// Fetches through `bot` into `assets`.
    #[must_use]
    pub const fn new(bot: Bot, assets: AssetStore) -> Self {
        Self { bot, assets }
    }
}

#[async_trait]
impl MediaFetcher for TelegramMedia {
    async fn fetch(&self, media: &Media, key: &str) -> Result<AssetRef, MediaError> {
        let unavailable = |e: Box<dyn std::error::Error + Send + Sync>| MediaError::Unavailable(e);
        let file = match self
            .bot
            .get_file(teloxide::types::FileId(media.reference.clone()))
            .await
        {
            Ok(file) => file,
            Err(RequestError::Api(ApiError::Unknown(text))) if text.contains("file is too big") => {
                return Err(MediaError::TooLarge {
                    limit_bytes: MAX_DOWNLOAD_BYTES,
                });
            }
            Err(e) => return Err(unavailable(Box::new(e))),
        };
        if u64::from(file.size) > MAX_DOWNLOAD_BYTES && file.size != u32::MAX {
            return Err(MediaError::TooLarge {
                limit_bytes: MAX_DOWNLOAD_BYTES,
            });
        }
        // At ASSET_DIR_MAX_BYTES no upload is taken (an unknown size counts as the most).
        let incoming = if file.size == u32::MAX {
            MAX_DOWNLOAD_BYTES
        } else {
            u64::from(file.size)
        };
        match self.assets.has_room(incoming).await {
            Ok(true) => {}
            Ok(false) => return Err(MediaError::StorageFull),
            Err(e) => return Err(unavailable(Box::new(e))),
        }
        let stream = self.bot.download_file_stream(&file.path);
        match self
            .assets
            .write_stream(key, stream, MAX_DOWNLOAD_BYTES)
            .await
        {
            Ok((asset, _)) => Ok(asset),
            Err(AssetError::TooLarge { .. }) => Err(MediaError::TooLarge {
                limit_bytes: MAX_DOWNLOAD_BYTES,
            }),
            Err(e) => Err(unavailable(Box::new(e))),
        }
    }

    fn max_bytes(&self) -> u64 {
        MAX_DOWNLOAD_BYTES
    }
}
