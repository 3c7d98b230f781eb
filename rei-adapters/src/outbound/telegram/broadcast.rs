//! Broadcast messages through the Bot API: the text (or a photo with the text as its
//! caption) with an optional URL button. A 429 is waited out (`retry_after`) and the
//! same message tried again; a user who blocked the bot is reported as such; other
//! failures are tried a few times, then reported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rei_core::broadcast::{Broadcast, BroadcastId, BroadcastSender, SendFailure};
use rei_core::ids::UserId;
use rei_core::job::AssetRef;
use teloxide::payloads::{SendMessageSetters, SendPhotoSetters};
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile};
use teloxide::{ApiError, Bot, RequestError};

use crate::outbound::files::AssetStore;

/// 429s waited out for one message before it is given up.
const RATE_LIMITS_WAITED: u32 = 10;
/// Other failures tried again for one message.
const RETRIES: u32 = 2;

/// Sends broadcasts with the bot.
#[derive(Clone)]
pub struct TelegramBroadcaster {
    bot: Bot,
    assets: AssetStore,
    /// The photo of each broadcast once uploaded: sent again by its file id.
    uploaded: Arc<Mutex<HashMap<BroadcastId, FileId>>>,
    /// `SANDBOX=1`: a first line that says so.
    banner: Option<String>,
}

impl std::fmt::Debug for TelegramBroadcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bot holds the token: never print it.
        f.debug_struct("TelegramBroadcaster")
            .finish_non_exhaustive()
    }
}

impl TelegramBroadcaster {
    /// A sender over `bot`, photos read from `assets`.
    #[must_use]
    pub fn new(bot: Bot, assets: AssetStore) -> Self {
        Self {
            bot,
            assets,
            uploaded: Arc::new(Mutex::new(HashMap::new())),
            banner: None,
        }
    }

    /// Every broadcast starts with `banner` (the sandbox's).
    #[must_use]
    pub fn with_banner(mut self, banner: Option<String>) -> Self {
        self.banner = banner;
        self
    }

    fn text(&self, b: &Broadcast) -> String {
        match &self.banner {
            Some(banner) => format!("{banner}\n\n{}", b.text),
            None => b.text.clone(),
        }
    }

    async fn send_once(&self, chat: ChatId, b: &Broadcast) -> Result<(), RequestError> {
        let markup = b.button.as_ref().and_then(|button| {
            let url = button.url.parse().ok()?;
            Some(InlineKeyboardMarkup::new([[InlineKeyboardButton::url(
                button.label.clone(),
                url,
            )]]))
        });
        let Some(photo) = &b.photo else {
            let request = self.bot.send_message(chat, self.text(b));
            return match markup {
                Some(m) => request.reply_markup(m).await,
                None => request.await,
            }
            .map(|_| ());
        };
        let known = self
            .uploaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&b.id)
            .cloned();
        let file = match known {
            Some(id) => InputFile::file_id(id),
            None => {
                let path = self
                    .assets
                    .path(&AssetRef::new(photo.clone()))
                    .map_err(|e| {
                        RequestError::Io(Arc::new(std::io::Error::other(e.to_string())))
                    })?;
                InputFile::file(path)
            }
        };
        let request = self.bot.send_photo(chat, file).caption(self.text(b));
        let sent = match markup {
            Some(m) => request.reply_markup(m).await,
            None => request.await,
        }?;
        if let Some(largest) = sent.photo().and_then(|sizes| sizes.last()) {
            self.uploaded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(b.id, largest.file.id.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl BroadcastSender for TelegramBroadcaster {
    #[tracing::instrument(skip_all, fields(user_id = user.get(), broadcast_id = broadcast.id))]
    async fn send(&self, user: UserId, broadcast: &Broadcast) -> Result<(), SendFailure> {
        let chat = ChatId(user.get());
        let (mut limited, mut failed) = (0, 0);
        loop {
            match self.send_once(chat, broadcast).await {
                Ok(()) => return Ok(()),
                Err(RequestError::RetryAfter(wait)) if limited < RATE_LIMITS_WAITED => {
                    limited += 1;
                    tracing::info!(
                        retry_after_secs = wait.seconds(),
                        "Telegram asked to slow down"
                    );
                    tokio::time::sleep(wait.duration()).await;
                }
                Err(RequestError::Api(
                    ApiError::BotBlocked | ApiError::UserDeactivated | ApiError::ChatNotFound,
                )) => return Err(SendFailure::Blocked),
                Err(
                    e @ (RequestError::Network(_)
                    | RequestError::Io(_)
                    | RequestError::InvalidJson { .. }),
                ) if failed < RETRIES => {
                    failed += 1;
                    tracing::warn!(error = %e, "a broadcast message failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(SendFailure::Refused(e.to_string())),
            }
        }
    }
}
