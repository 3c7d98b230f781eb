//! What the console prints outside a reply (a job's status lines, its result, money
//! notices), and how it reads a user's local files.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rei_core::conversation::{Media, Text};
use rei_core::ids::{JobId, UserId};
use rei_core::job::AssetRef;
use rei_core::ports::{
    AdminAlert, Assets, MediaError, MediaFetcher, MessageRef, Notice, Notifier, NotifyError,
    UserStore,
};
use rei_core::user::Language;

use super::ConsoleOutput;
use crate::outbound::files::AssetStore;
use crate::outbound::locale::{Arg, Locales};

/// The largest file the console takes (as Telegram's Bot API: 20 MB).
const MAX_FILE_BYTES: u64 = 20 * 1024 * 1024;

/// Prints notices: what each says is core's ([`Notice::text`]); a result is shown as the
/// path of its file.
#[derive(Clone)]
pub struct ConsoleNotifier {
    output: ConsoleOutput,
    locales: Arc<Locales>,
    users: Arc<dyn UserStore>,
    assets: AssetStore,
    open: Arc<Mutex<HashSet<JobId>>>,
}

rei_core::opaque_debug!(ConsoleNotifier);

impl ConsoleNotifier {
    /// Prints to `output` in each user's language (from `users`); results are files
    /// under `assets`.
    #[must_use]
    pub fn new(
        output: ConsoleOutput,
        locales: Arc<Locales>,
        users: Arc<dyn UserStore>,
        assets: AssetStore,
    ) -> Self {
        Self {
            output,
            locales,
            users,
            assets,
            open: Arc::default(),
        }
    }

    /// Jobs queued whose outcome has not been printed yet.
    #[must_use]
    pub fn jobs_under_way(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    async fn language(&self, user: UserId) -> Language {
        match self.users.user(user).await {
            Ok(Some(user)) => user.language,
            _ => Language::default(),
        }
    }

    fn print(&self, text: &str) -> Result<(), NotifyError> {
        self.output
            .line(text)
            .map_err(|e| NotifyError::Unavailable(Box::new(e)))
    }

    fn result_line(&self, language: Language, result: &AssetRef) -> String {
        let path = self
            .assets
            .path(result)
            .map_or_else(|_| result.as_str().to_owned(), |p| p.display().to_string());
        self.locales
            .text(language, "console-result", &[("path", Arg::Text(path))])
    }

    fn settle(&self, job: JobId) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&job);
    }
}

#[async_trait]
impl Notifier for ConsoleNotifier {
    async fn notify(
        &self,
        user: UserId,
        notice: Notice,
    ) -> Result<Option<MessageRef>, NotifyError> {
        let language = self.language(user).await;
        let text = self.locales.render(language, &notice.text());
        match &notice {
            Notice::JobQueued { job_id, .. } => {
                self.open
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(*job_id);
                self.print(&text)?;
                // The console's "status message" is the line of this job.
                Ok(Some(MessageRef::new(format!("console:{job_id}"))))
            }
            Notice::JobProgress { .. } => self.print(&text).map(|()| None),
            Notice::JobCompleted { job_id, result, .. }
            | Notice::JobLateResult { job_id, result, .. } => {
                self.print(&format!("{text}\n{}", self.result_line(language, result)))?;
                self.settle(*job_id);
                Ok(None)
            }
            Notice::JobFailed { job_id, .. } | Notice::JobCancelled { job_id, .. } => {
                self.print(&text)?;
                self.settle(*job_id);
                Ok(None)
            }
            Notice::PaymentCredited { .. }
            | Notice::PaymentRefunded { .. }
            | Notice::BalanceCredited { .. }
            | Notice::BalanceDebited { .. }
            | Notice::ReferralRewarded { .. } => self.print(&text).map(|()| None),
        }
    }

    fn upload_limit(&self) -> Option<u64> {
        None
    }

    async fn alert_admins(&self, alert: AdminAlert) -> Result<(), NotifyError> {
        let text = self.locales.render(
            Language::default(),
            &Text::key("admin-alert")
                .arg(
                    "provider",
                    rei_core::conversation::Arg::Text(alert.provider),
                )
                .arg(
                    "kind",
                    rei_core::conversation::Arg::Text(alert.kind.as_str().to_owned()),
                )
                .arg("message", rei_core::conversation::Arg::Text(alert.message)),
        );
        self.print(&text)
    }
}

/// Reads the files a console user names (`+photo PATH`) into the asset store.
#[derive(Clone, Debug)]
pub struct LocalFiles {
    assets: AssetStore,
}

impl LocalFiles {
    /// Stores what it reads under `assets`.
    #[must_use]
    pub const fn new(assets: AssetStore) -> Self {
        Self { assets }
    }
}

#[async_trait]
impl MediaFetcher for LocalFiles {
    async fn fetch(&self, media: &Media, key: &str) -> Result<AssetRef, MediaError> {
        let unavailable = |e: std::io::Error| MediaError::Unavailable(Box::new(e));
        let size = tokio::fs::metadata(&media.reference)
            .await
            .map_err(unavailable)?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(MediaError::TooLarge {
                limit_bytes: MAX_FILE_BYTES,
            });
        }
        match self.assets.has_room(size).await {
            Ok(true) => {}
            Ok(false) => return Err(MediaError::StorageFull),
            Err(e) => return Err(MediaError::Unavailable(Box::new(e))),
        }
        let bytes = tokio::fs::read(&media.reference)
            .await
            .map_err(unavailable)?;
        Assets::write(&self.assets, key, &bytes)
            .await
            .map_err(|e| MediaError::Unavailable(Box::new(e)))
    }

    fn max_bytes(&self) -> u64 {
        MAX_FILE_BYTES
    }
}
