//! The Telegram notifier against the fake Bot API: status messages edited, results sent
//! by size (photo, document, video, or a size notice), failures in plain words, blocked
//! users unreachable, admin alerts at most once per hour per kind.

use std::sync::Arc;

use rei_adapters::outbound::files::AssetStore;
use rei_adapters::outbound::locale::Locales;
use rei_adapters::outbound::sql::connect;
use rei_adapters::outbound::telegram::{SendRate, TelegramNotifier, TelegramNotifierConfig};
use rei_core::job::{AssetRef, FailureReason, JobKind, Progress};
use rei_core::ports::{AdminAlert, MessageRef, Notice, Notifier, NotifyError, ProviderErrorKind};
use rei_core::prelude::*;
use rei_tests::fakes::telegram::{Call, FakeTelegram};

const ANNA: i64 = 4242;
const ADMIN: i64 = 1;

struct World {
    stores: rei_adapters::outbound::sql::Stores,
    telegram: FakeTelegram,
    notifier: TelegramNotifier,
    assets: AssetStore,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let telegram = FakeTelegram::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stores = connect(&rei_adapters::outbound::sql::DatabaseTarget::SqlitePath(
        dir.path().join("rei.db").to_string_lossy().into_owned(),
    ))
    .await
    .unwrap();
    rei_tests::funded_user(
        &stores,
        ANNA,
        Money::ZERO.checked_add("1".parse().unwrap()).unwrap(),
    )
    .await
    .unwrap();
    let assets = AssetStore::new(dir.path().join("assets"));
    let bot = teloxide::Bot::new("123456:TEST").set_api_url(telegram.url.parse().unwrap());
    let notifier = TelegramNotifier::new(
        bot,
        stores.users.clone(),
        assets.clone(),
        Arc::new(Locales::load().unwrap()),
        TelegramNotifierConfig {
            admins: vec![UserId::new(ADMIN).unwrap()],
            send_rate: SendRate::per_second(0),
        },
    );
    World {
        stores,
        telegram,
        notifier,
        assets,
        _dir: dir,
    }
}

fn user() -> UserId {
    UserId::new(ANNA).unwrap()
}

fn job() -> JobId {
    JobId::from_uuid(uuid::Uuid::from_u128(7))
}

impl World {
    /// Tells Anna her job is at `progress`, editing `status_message` when given; the status
    /// message sent, if a new one was.
    async fn progress(
        &self,
        progress: Progress,
        status_message: Option<MessageRef>,
    ) -> Option<MessageRef> {
        let notice = Notice::JobProgress {
            job_id: job(),
            progress,
            status_message,
        };
        self.notifier.notify(user(), notice).await.unwrap()
    }

    /// The one `editMessageText` so far, which must have edited `message`.
    fn only_edit_of(&self, message: &MessageRef) -> Call {
        let edits = self.telegram.calls_of("editMessageText");
        assert_eq!(edits.len(), 1);
        assert_eq!(
            edits[0].message_id.map(|m| m.to_string()),
            Some(message.as_str().to_owned())
        );
        edits[0].clone()
    }
}

async fn result(w: &World, key: &str, bytes: usize) -> AssetRef {
    w.assets.write(key, &vec![0_u8; bytes]).await.unwrap()
}

#[tokio::test]
async fn progress_starts_a_status_message_and_then_edits_it() {
    let w = world().await;
    let first = w.progress(Progress::Started, None).await;
    let first = first.expect("a new status message");
    let again = w.progress(Progress::Generating, Some(first.clone())).await;
    assert_eq!(again, None, "edited, not sent again");
    let edit = w.only_edit_of(&first);
    assert!(edit.text.as_deref().unwrap_or_default().contains("50%"));
}

/// A confirmed job's status message is started by the notifier (its one writer), which
/// then edits that same message with the progress.
#[tokio::test]
async fn a_queued_job_starts_the_status_message_that_progress_edits() {
    let w = world().await;
    let started = w
        .notifier
        .notify(
            user(),
            Notice::JobQueued {
                job_id: job(),
                price: "50".parse().unwrap(),
            },
        )
        .await
        .unwrap()
        .expect("the status message");
    let sent = w.telegram.calls_to("sendMessage", ANNA);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("50.00 ₽"),
        "{sent:?}"
    );
    let progress = w
        .progress(Progress::Generating, Some(started.clone()))
        .await;
    assert_eq!(progress, None, "edited, not sent again");
    w.only_edit_of(&started);
}

#[tokio::test]
async fn results_go_as_photo_document_or_video_by_size() {
    let w = world().await;
    let small = result(&w, "results/small.png", 1_000).await;
    let big = result(&w, "results/big.png", 11 * 1024 * 1024).await;
    let video = result(&w, "results/v.mp4", 2_000).await;
    for (kind, asset) in [
        (JobKind::ImageGeneration, small),
        (JobKind::ImageEdit, big),
        (JobKind::VideoGeneration, video),
    ] {
        let notice = Notice::JobCompleted {
            job_id: job(),
            kind,
            result: asset,
            charged: "50".parse().unwrap(),
            download_link: None,
            resent: false,
            status_message: Some(MessageRef::new("100")),
        };
        w.notifier.notify(user(), notice).await.unwrap();
    }
    assert_eq!(w.telegram.calls_to("sendPhoto", ANNA).len(), 1);
    assert_eq!(
        w.telegram.calls_to("sendDocument", ANNA).len(),
        1,
        "an image over 10 MB is a document"
    );
    let videos = w.telegram.calls_to("sendVideo", ANNA);
    assert_eq!(videos.len(), 1);
    assert!(
        videos[0]
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("50.00 ₽"),
        "the caption shows the charge"
    );
}

#[tokio::test]
async fn a_failure_is_told_in_plain_words_with_the_refund() {
    let w = world().await;
    let notice = Notice::JobFailed {
        job_id: job(),
        reason: FailureReason::TooManyAttempts { attempts: 3 },
        refunded: "100".parse().unwrap(),
        status_message: None,
    };
    w.notifier.notify(user(), notice).await.unwrap();
    let sent = w.telegram.calls_to("sendMessage", ANNA);
    let text = sent[0].text.as_deref().unwrap_or_default();
    assert!(
        text.contains("после 3 попыток") && text.contains("100.00 ₽"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failure_with_a_status_message_is_a_new_message_not_only_an_edit() {
    let w = world().await;
    let status = w.progress(Progress::Started, None).await;
    let status = status.expect("a status message");
    for notice in [
        Notice::JobFailed {
            job_id: job(),
            reason: FailureReason::TooManyAttempts { attempts: 3 },
            refunded: "100".parse().unwrap(),
            status_message: Some(status.clone()),
        },
        Notice::JobCancelled {
            job_id: job(),
            refunded: "100".parse().unwrap(),
            status_message: Some(status.clone()),
        },
    ] {
        let before = w.telegram.calls_to("sendMessage", ANNA).len();
        w.notifier.notify(user(), notice).await.unwrap();
        let sent = w.telegram.calls_to("sendMessage", ANNA);
        assert_eq!(sent.len(), before + 1, "a new message notifies the user");
        let told = sent[before].text.as_deref().unwrap_or_default();
        assert!(told.contains("100.00 ₽"), "{told}");
        let edits = w.telegram.calls_of("editMessageText");
        assert_eq!(
            edits.last().and_then(|e| e.text.clone()).as_deref(),
            Some(told),
            "the status message shows the outcome too"
        );
    }
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_unreachable() {
    let w = world().await;
    w.telegram.block(ANNA);
    let r = w
        .notifier
        .notify(
            user(),
            Notice::BalanceCredited {
                amount: "1".parse().unwrap(),
                balance: "1".parse().unwrap(),
            },
        )
        .await;
    assert!(
        matches!(r, Err(NotifyError::Unreachable(u)) if u == user()),
        "{r:?}"
    );
    let anna = w.stores.users.user(user()).await.unwrap().unwrap();
    assert_eq!(
        anna.unreachable_since, None,
        "the notifier reports it; core records it (one place, at its clock)"
    );
    // Core records it; writing to the bot again clears it.
    let users = UserService::new(
        w.stores.users.clone(),
        Arc::new(rei_adapters::outbound::system::SystemClock),
    );
    users.mark_unreachable(user()).await.unwrap();
    let anna = w.stores.users.user(user()).await.unwrap().unwrap();
    assert!(anna.unreachable_since.is_some(), "recorded on the user");
    users.access(user()).await.unwrap();
    let anna = w.stores.users.user(user()).await.unwrap().unwrap();
    assert_eq!(anna.unreachable_since, None);
}

#[tokio::test]
async fn admin_alerts_are_sent_at_most_once_per_hour_per_kind() {
    let w = world().await;
    let alert = |kind| AdminAlert {
        provider: "kling".into(),
        kind,
        message: "resource pack depleted".into(),
        subject: None,
    };
    w.notifier
        .alert_admins(alert(ProviderErrorKind::OutOfFunds))
        .await
        .unwrap();
    w.notifier
        .alert_admins(alert(ProviderErrorKind::OutOfFunds))
        .await
        .unwrap();
    w.notifier
        .alert_admins(alert(ProviderErrorKind::Auth))
        .await
        .unwrap();
    let sent = w.telegram.calls_to("sendMessage", ADMIN);
    assert_eq!(sent.len(), 2, "one per kind: {sent:?}");
    assert!(
        sent[0]
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("resource pack depleted")
    );
}
