//! [`TelegramNotifier`]: core's `Notifier` over the Bot API.
//!
//! - Progress edits the job's one status message (sent on the first notice, its id then
//!   stored with the job by core); "message is not modified" is success, and a status
//!   message that is gone is replaced by a new one.
//! - Every final outcome (a result, a failure with its refund, a cancel) is a new
//!   message, since Telegram notifies nobody of an edit; the status message is edited
//!   to match as well.
//! - A result goes as a photo (≤ 10 MB, else a document) or a video (≤ 50 MB); a larger
//!   one, which the cloud Bot API cannot upload, as a signed download link (`PUBLIC_URL`,
//!   valid for `ASSET_LINK_TTL`).
//! - A blocked bot or a deactivated user is `Unreachable` (recorded, never retried);
//!   429 and network failures are `Unavailable` (the job's worker retries with backoff).
//! - Admin alerts reach every `ADMIN_IDS` chat, at most once per hour per provider and
//!   kind in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rei_core::UserId;
use rei_core::job::JobKind;
use rei_core::ports::{
    AdminAlert, MessageRef, Notice, Notifier, NotifyError, ProviderErrorKind, UserStore,
};
use rei_core::user::Language;
use teloxide::payloads::{
    SendDocumentSetters, SendMessageSetters, SendPhotoSetters, SendVideoSetters,
};
use teloxide::prelude::Requester;
use teloxide::types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId};
use teloxide::{ApiError, Bot, RequestError};

use crate::outbound::files::AssetStore;
use crate::outbound::locale::{Arg, Locales};

/// Largest photo the Bot API takes by upload; larger images go as documents.
const MAX_PHOTO_BYTES: u64 = 10 * 1024 * 1024;
/// Largest file the cloud Bot API takes by upload.
const MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
/// One alert per provider and kind per this long.
const ALERT_EVERY: Duration = Duration::from_secs(3600);

/// What the notifier needs besides the bot.
#[derive(Clone, Debug)]
pub struct TelegramNotifierConfig {
    /// Who gets provider alerts (`ADMIN_IDS`).
    pub admins: Vec<UserId>,
    /// `TELEGRAM_SEND_RATE`, shared with the front end.
    pub send_rate: super::SendRate,
}

/// Tells users and admins through Telegram.
#[derive(Clone)]
pub struct TelegramNotifier {
    bot: Bot,
    users: Arc<dyn UserStore>,
    assets: AssetStore,
    locales: Arc<Locales>,
    config: TelegramNotifierConfig,
    alerted: Arc<Mutex<HashMap<(String, ProviderErrorKind), Instant>>>,
}

impl std::fmt::Debug for TelegramNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bot holds the token: never print it.
        f.debug_struct("TelegramNotifier")
            .field("admins", &self.config.admins)
            .finish_non_exhaustive()
    }
}

impl TelegramNotifier {
    /// A notifier sending through `bot`, reading users' languages from `users` and
    /// results from `assets`.
    #[must_use]
    pub fn new(
        bot: Bot,
        users: Arc<dyn UserStore>,
        assets: AssetStore,
        locales: Arc<Locales>,
        config: TelegramNotifierConfig,
    ) -> Self {
        Self {
            bot,
            users,
            assets,
            locales,
            config,
            alerted: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn language(&self, user: UserId) -> Language {
        match self.users.user(user).await {
            Ok(Some(u)) => u.language,
            Ok(None) => Language::default(),
            Err(e) => {
                tracing::warn!(user_id = user.get(), error = %e, "cannot read the user's language");
                Language::default()
            }
        }
    }

    fn text(&self, language: Language, key: &str, args: &[(&str, Arg)]) -> String {
        self.locales.text(language, key, args)
    }

    /// Edits the status message, or sends a new one when there is none (or it is gone).
    /// Returns the new message when one was sent.
    async fn show_status(
        &self,
        chat: ChatId,
        status: Option<&MessageRef>,
        text: String,
    ) -> Result<Option<MessageRef>, NotifyError> {
        if let Some(id) = status.and_then(|m| m.as_str().parse::<i32>().ok()) {
            match self
                .bot
                .edit_message_text(chat, MessageId(id), text.clone())
                .await
            {
                Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => return Ok(None),
                Err(RequestError::Api(
                    ApiError::MessageToEditNotFound | ApiError::MessageCantBeEdited,
                )) => {}
                Err(e) => return Err(map_error(e, chat)),
            }
        }
        self.config.send_rate.wait().await;
        let sent = self
            .bot
            .send_message(chat, text)
            .await
            .map_err(|e| map_error(e, chat))?;
        Ok(Some(MessageRef::new(sent.id.0.to_string())))
    }

    async fn send_text(&self, chat: ChatId, text: String) -> Result<(), NotifyError> {
        self.config.send_rate.wait().await;
        self.bot
            .send_message(chat, text)
            .await
            .map(|_| ())
            .map_err(|e| map_error(e, chat))
    }

    /// Marks the status message done (best effort), then sends the result file: a photo
    /// (≤ 10 MB, else a document) or a video; a file over the Bot API's upload limit as
    /// a download link (`caption` says what was charged, or that it is free).
    async fn deliver(
        &self,
        chat: ChatId,
        language: Language,
        result: Delivered<'_>,
        caption: String,
        status: Option<&MessageRef>,
    ) -> Result<(), NotifyError> {
        let done = self
            .locales
            .stamp(language, self.text(language, "job-done-status", &[]));
        self.edit_status(chat, status, done).await;
        let path = self
            .assets
            .path(result.asset)
            .map_err(|e| NotifyError::Unavailable(Box::new(e)))?;
        let size = tokio::fs::metadata(&path)
            .await
            .map_err(|e| NotifyError::Unavailable(Box::new(e)))?
            .len();
        if size > MAX_UPLOAD_BYTES {
            let megabytes = i64::try_from(size.div_ceil(1024 * 1024)).unwrap_or(i64::MAX);
            let Some(link) = result.download_link else {
                let text = self.text(
                    language,
                    "job-too-large",
                    &[
                        ("megabytes", Arg::Number(megabytes)),
                        ("caption", Arg::Text(caption)),
                    ],
                );
                return self.send_text(chat, text).await;
            };
            let text = self.text(
                language,
                "job-download",
                &[
                    ("megabytes", Arg::Number(megabytes)),
                    ("link", Arg::Text(link.to_owned())),
                    ("caption", Arg::Text(caption)),
                ],
            );
            let button = self.text(language, "job-download-button", &[]);
            self.config.send_rate.wait().await;
            let request = self.bot.send_message(chat, text);
            let sent = match link.parse() {
                Ok(url) => {
                    request
                        .reply_markup(InlineKeyboardMarkup::new([[InlineKeyboardButton::url(
                            button, url,
                        )]]))
                        .await
                }
                Err(_) => request.await,
            };
            return sent.map(|_| ()).map_err(|e| map_error(e, chat));
        }
        let file = InputFile::file(path);
        self.config.send_rate.wait().await;
        let sent = match result.kind {
            JobKind::ImageGeneration | JobKind::ImageEdit if size <= MAX_PHOTO_BYTES => self
                .bot
                .send_photo(chat, file)
                .caption(caption)
                .await
                .map(|_| ()),
            JobKind::ImageGeneration | JobKind::ImageEdit => self
                .bot
                .send_document(chat, file)
                .caption(caption)
                .await
                .map(|_| ()),
            JobKind::VideoGeneration => self
                .bot
                .send_video(chat, file)
                .caption(caption)
                .supports_streaming(true)
                .await
                .map(|_| ()),
        };
        sent.map_err(|e| map_error(e, chat))
    }

    /// A final outcome (a failure, a cancel): the status message shows it too, but the
    /// outcome itself is a new message, because Telegram notifies nobody of an edit.
    async fn finish(
        &self,
        chat: ChatId,
        status: Option<&MessageRef>,
        text: String,
    ) -> Result<(), NotifyError> {
        self.edit_status(chat, status, text.clone()).await;
        self.send_text(chat, text).await
    }

    /// Edits the status message, if there is one, best effort: the new message that
    /// follows is what tells the user.
    async fn edit_status(&self, chat: ChatId, status: Option<&MessageRef>, text: String) {
        let Some(id) = status.and_then(|m| m.as_str().parse::<i32>().ok()) else {
            return;
        };
        match self.bot.edit_message_text(chat, MessageId(id), text).await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {}
            Err(e) => tracing::debug!(error = %e, "the status message could not be edited"),
        }
    }

    fn should_alert(&self, alert: &AdminAlert) -> bool {
        if alert.subject.is_some() {
            return true;
        }
        let mut alerted = self.alerted.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (alert.provider.clone(), alert.kind);
        let now = Instant::now();
        match alerted.get(&key) {
            Some(last) if now.duration_since(*last) < ALERT_EVERY => false,
            _ => {
                alerted.insert(key, now);
                true
            }
        }
    }
}

/// Maps a Bot API failure: a user who blocked the bot is unreachable, everything else
/// is worth another try later.
fn map_error(e: RequestError, chat: ChatId) -> NotifyError {
    match (e, UserId::new(chat.0)) {
        (
            RequestError::Api(
                ApiError::BotBlocked | ApiError::UserDeactivated | ApiError::ChatNotFound,
            ),
            Ok(user),
        ) => NotifyError::Unreachable(user),
        (other, _) => NotifyError::Unavailable(Box::new(other)),
    }
}

#[async_trait]
impl Notifier for TelegramNotifier {
    #[tracing::instrument(skip_all, fields(user_id = user.get(), notice = notice_name(&notice)))]
    async fn notify(
        &self,
        user: UserId,
        notice: Notice,
    ) -> Result<Option<MessageRef>, NotifyError> {
        // A user who blocked the bot comes back as `Unreachable`: core records it.
        self.send_notice(user, notice).await
    }

    fn upload_limit(&self) -> Option<u64> {
        Some(MAX_UPLOAD_BYTES)
    }

    #[tracing::instrument(skip_all, fields(provider = %alert.provider, kind = alert.kind.as_str()))]
    async fn alert_admins(&self, alert: AdminAlert) -> Result<(), NotifyError> {
        if !self.should_alert(&alert) {
            tracing::debug!("admin alert suppressed: one was sent within the hour");
            return Ok(());
        }
        let mut last_error = None;
        for admin in &self.config.admins {
            let language = self.language(*admin).await;
            let text = self.locales.stamp(
                language,
                self.text(
                    language,
                    "admin-alert",
                    &[
                        ("provider", Arg::Text(alert.provider.clone())),
                        ("kind", Arg::Text(alert.kind.as_str().to_owned())),
                        ("message", Arg::Text(alert.message.clone())),
                    ],
                ),
            );
            if let Err(e) = self.send_text(ChatId(admin.get()), text).await {
                tracing::warn!(admin = admin.get(), error = %e, "admin alert not delivered");
                last_error = Some(e);
            }
        }
        last_error.map_or(Ok(()), Err)
    }
}

impl TelegramNotifier {
    async fn send_notice(
        &self,
        user: UserId,
        notice: Notice,
    ) -> Result<Option<MessageRef>, NotifyError> {
        let chat = ChatId(user.get());

        let language = self.language(user).await;
        // What it says is core's; how it is shown (a new message, an edit of the status
        // message, a caption) is decided here.
        let text = self
            .locales
            .stamp(language, self.locales.render(language, &notice.text()));
        match notice {
            Notice::JobQueued { .. } => self.show_status(chat, None, text).await,
            Notice::JobProgress { status_message, .. } => {
                self.show_status(chat, status_message.as_ref(), text).await
            }
            Notice::JobCompleted {
                kind,
                result,
                download_link,
                status_message,
                ..
            }
            | Notice::JobLateResult {
                kind,
                result,
                download_link,
                status_message,
                ..
            } => {
                let result = Delivered {
                    kind,
                    asset: &result,
                    download_link: download_link.as_deref(),
                };
                self.deliver(chat, language, result, text, status_message.as_ref())
                    .await
                    .map(|()| None)
            }
            Notice::JobFailed { status_message, .. }
            | Notice::JobCancelled { status_message, .. } => self
                .finish(chat, status_message.as_ref(), text)
                .await
                .map(|()| None),
            Notice::PaymentCredited { .. }
            | Notice::PaymentRefunded { .. }
            | Notice::BalanceCredited { .. }
            | Notice::BalanceDebited { .. }
            | Notice::ReferralRewarded { .. } => self.send_text(chat, text).await.map(|()| None),
        }
    }
}

/// A result to send.
struct Delivered<'a> {
    kind: JobKind,
    asset: &'a rei_core::job::AssetRef,
    download_link: Option<&'a str>,
}

const fn notice_name(notice: &Notice) -> &'static str {
    match notice {
        Notice::JobQueued { .. } => "job_queued",
        Notice::JobProgress { .. } => "job_progress",
        Notice::JobCompleted { .. } => "job_completed",
        Notice::JobLateResult { .. } => "job_late_result",
        Notice::JobFailed { .. } => "job_failed",
        Notice::JobCancelled { .. } => "job_cancelled",
        Notice::PaymentCredited { .. } => "payment_credited",
        Notice::PaymentRefunded { .. } => "payment_refunded",
        Notice::BalanceCredited { .. } => "balance_credited",
        Notice::BalanceDebited { .. } => "balance_debited",
        Notice::ReferralRewarded { .. } => "referral_rewarded",
    }
}
