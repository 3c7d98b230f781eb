//! The console wired to in-memory stores and an instant image generator: a whole bot in
//! one process, without a database, a network or a payment provider. The user starts
//! with a demo balance (an audited credit), so the image flow works without a top-up.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rei_core::JobService;
use rei_core::conversation::{Conversation, ConversationConfig, ConversationPorts, Sender};
use rei_core::ids::{IdempotencyKey, UserId};
use rei_core::job::{JobLimits, JobPorts, JobRunner, RunnerConfig, RunnerPorts, StoreQueue};
use rei_core::ledger::LedgerService;
use rei_core::memory::{InstantImages, MemoryStore};
use rei_core::money::Money;
use rei_core::notice::{DispatchConfig, NoticeDispatcher};
use rei_core::pricing::PriceList;
use rei_core::user::{Actor, AdminPorts, AdminService, Language, UserProfile, UserService};
use tokio::io::AsyncBufRead;
use tokio_util::sync::CancellationToken;

use super::{Console, ConsoleError, ConsoleNotifier, ConsoleOutput, LocalFiles};
use crate::inbound::notices::send_notices;
use crate::inbound::worker::{Worker, WorkerConfig};
use crate::outbound::files::AssetStore;
use crate::outbound::limiter::InProcessLimiter;
use crate::outbound::locale::Locales;
use crate::outbound::system::{RandomIds, SystemClock};

/// The console user's id (an admin of the demo: `/admin`, `/add` work).
pub const CONSOLE_USER: i64 = 1;

/// How the demo starts.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Where inputs and results are written.
    pub asset_dir: PathBuf,
    /// The balance the console user starts with (credited once, audited).
    pub balance: Money,
    /// How long to wait, after the input ends, for the jobs under way to finish.
    pub finish_within: Duration,
}

/// Runs the console over `input` until it ends and the jobs it started have finished
/// (or `finish_within` passed), printing to `output`.
///
/// # Errors
/// [`ConsoleError`] when the input or output fails or the demo cannot be set up.
pub async fn run(
    input: impl AsyncBufRead + Unpin,
    output: ConsoleOutput,
    config: DemoConfig,
) -> Result<(), ConsoleError> {
    let setup = |e: &dyn std::fmt::Display| ConsoleError::Setup(e.to_string());
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(SystemClock);
    let ids = Arc::new(RandomIds);
    let queue = Arc::new(StoreQueue::new(store.clone()));
    let locales = Arc::new(Locales::load()?);
    let assets = AssetStore::new(config.asset_dir.clone());
    let notifier = Arc::new(ConsoleNotifier::new(
        output.clone(),
        locales.clone(),
        store.clone(),
        assets.clone(),
    ));
    let users = UserService::new(store.clone(), clock.clone());
    let admin = AdminService::new(AdminPorts {
        users: store.clone(),
        ledger: store.clone(),
        queue: queue.clone(),
        clock: clock.clone(),
    });
    let jobs = Arc::new(JobService::new(
        JobPorts {
            users: store.clone(),
            jobs: store.clone(),
            queue,
            clock: clock.clone(),
            ids: ids.clone(),
        },
        PriceList::seed_defaults(),
        JobLimits::default(),
    ));
    let me = UserId::new(CONSOLE_USER).map_err(|e| setup(&e))?;
    let conversation = Arc::new(Conversation::new(
        ConversationPorts {
            users: users.clone(),
            ledger: LedgerService::new(store.clone()),
            jobs: jobs.clone(),
            payments: None,
            admin: admin.clone(),
            promos: rei_core::promo::PromoService::new(store.clone(), clock.clone()),
            referrals: rei_core::referral::ReferralService::new(
                store.clone(),
                store.clone(),
                clock.clone(),
                ids.clone(),
            ),
            broadcasts: rei_core::broadcast::BroadcastService::new(
                store.clone(),
                users.clone(),
                clock.clone(),
            ),
            web: rei_core::web::WebAdminService::new(
                store.clone(),
                vec![me],
                clock.clone(),
                ids.clone(),
            ),
            prices: rei_core::prices::PriceService::new(
                store.clone(),
                jobs.clone(),
                jobs.prices().as_ref().clone(),
                Vec::new(),
                clock.clone(),
            ),
            dialogues: store.clone(),
            limiter: Arc::new(InProcessLimiter::per_minute(
                NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN),
            )),
            media: Arc::new(LocalFiles::new(assets.clone())),
            notifier: notifier.clone(),
            assets: Arc::new(assets.clone()),
            clock: clock.clone(),
            ids,
        },
        ConversationConfig {
            admins: vec![me],
            topup_amounts: Vec::new(),
            images: true,
            videos: false,
            video_models: Vec::new(),
            omni_model: String::new(),
            video_to_video: false,
            draft_ttl: Duration::from_secs(3600),
            signup_bonus: Money::ZERO,
            result_link_ttl: Duration::from_secs(24 * 3600),
            web_admin_login: None,
        },
    ));
    let runner = Arc::new(JobRunner::new(
        RunnerPorts {
            jobs: jobs.clone(),
            images: Some(Arc::new(InstantImages)),
            videos: None,
            assets: Arc::new(assets.clone()),
            notifier: notifier.clone(),
            clock: clock.clone(),
        },
        RunnerConfig::default(),
    ));
    let dispatcher = Arc::new(NoticeDispatcher::new(
        store.clone(),
        store.clone(),
        notifier.clone(),
        clock.clone(),
        DispatchConfig::default(),
    ));
    let shutdown = CancellationToken::new();
    let worker = Worker::new(
        jobs,
        runner,
        clock,
        WorkerConfig {
            name: "console".into(),
            concurrency: 2,
            idle_poll: Duration::from_millis(50),
            ..WorkerConfig::default()
        },
    );
    let working = tokio::spawn(worker.run(shutdown.clone()));
    let telling = tokio::spawn(send_notices(
        dispatcher,
        Arc::new(tokio::sync::Notify::new()),
        Duration::from_millis(50),
        shutdown.clone(),
    ));

    let sender = Sender {
        id: me,
        username: Some("console".into()),
        first_name: Some("Console".into()),
        language_code: Some("ru".into()),
    };
    users
        .register(UserProfile {
            id: me,
            username: sender.username.clone(),
            first_name: sender.first_name.clone(),
            language: Language::Ru,
        })
        .await
        .map_err(|e| setup(&e))?;
    if !config.balance.is_zero() {
        let key = IdempotencyKey::new("console:demo-balance").map_err(|e| setup(&e))?;
        admin
            .credit(
                Actor::System,
                me,
                config.balance,
                "console demo balance",
                key,
            )
            .await
            .map_err(|e| setup(&e))?;
    }
    let console = Console::new(conversation, users, locales, sender, output);
    let outcome = console.run(input).await;
    // The input ended: let the jobs under way finish (their results are the point).
    let deadline = tokio::time::Instant::now() + config.finish_within;
    while notifier.jobs_under_way() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    for task in [working, telling] {
        task.await
            .map_err(|e| ConsoleError::Setup(format!("a background task failed: {e}")))?;
    }
    outcome
}
