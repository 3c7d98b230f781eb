//! Builds adapters, then services, then the runnable parts, once. The only place that
//! picks technologies (through `rei_adapters::app::backends::connect`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rei_adapters::app::backends::{Backends, BackendsConfig};
use rei_adapters::inbound::http::{IpList, Metrics, WebState};
use rei_adapters::inbound::telegram::{FrontEnd, TelegramWebhook, UpdateSource};
use rei_adapters::inbound::worker::{Worker, WorkerConfig};
use rei_adapters::outbound::files::AssetStore;
use rei_adapters::outbound::gemini::{GeminiClient, GeminiConfig};
use rei_adapters::outbound::kling::{KlingClient, KlingConfig, KlingCredentials, KlingModel};
use rei_adapters::outbound::system::{RandomIds, SystemClock};
use rei_adapters::outbound::telegram::{
    BotClients, Locales, SendRate, TelegramMedia, TelegramNotifier, TelegramNotifierConfig,
    TelegramStars,
};
use rei_adapters::outbound::yookassa::{VatCode, YooKassaClient, YooKassaConfig};
use rei_core::conversation::{Conversation, ConversationConfig, ConversationPorts, VideoModel};
use rei_core::job::VideoMode;
use rei_core::job::{JobLimits, JobPorts, JobRunner, JobService, RunnerConfig, RunnerPorts};
use rei_core::ledger::LedgerService;
use rei_core::notice::{DispatchConfig, NoticeDispatcher};
use rei_core::payment::{PaymentConfig, PaymentPorts, PaymentService, PollConfig};
use rei_core::ports::{Clock, ImageGenerator, LeaseStore, VideoGenerator};
use rei_core::ports::{IdGenerator, PaymentGateway};
use rei_core::user::{AdminPorts, AdminService, UserService};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use tracing::Instrument;

use crate::config::{Config, TelegramMode};

/// Everything `main` runs.
pub(crate) struct App {
    backends: Backends,
    worker: Worker,
    jobs: Arc<JobService>,
    assets: AssetStore,
    retention: Duration,
    front: FrontEnd,
    payments: Option<Arc<PaymentService>>,
    admin: AdminService,
    http_addr: std::net::SocketAddr,
    telegram_mode: TelegramMode,
    public_url: Option<url::Url>,
    webhook_secret: SecretString,
    yookassa_ips: IpList,
    metrics_ips: IpList,
    trusted_proxies: IpList,
    poll_every: Duration,
    notices: Arc<NoticeDispatcher>,
}

/// Opens the backends, checks the ledger, and builds the services and workers.
pub(crate) async fn build(config: &Config) -> anyhow::Result<App> {
    let prices = config.validate().context("invalid configuration")?;
    for feature in config.disabled_features() {
        tracing::warn!(feature, "feature disabled");
    }
    let database = rei_adapters::outbound::sql::DatabaseTarget::from_config(
        config.database_url.as_deref(),
        &config.database_path,
    )?;
    tracing::info!(database = ?database, redis = config.redis_url.is_some(), "opening backends");
    let backends = rei_adapters::app::backends::connect(&BackendsConfig {
        database,
        redis_url: config.redis_url.clone(),
        rate_limit_per_minute: config.rate_limit_per_minute,
        lease_for: Duration::from_secs(config.worker_lease_secs),
    })
    .await
    .context("opening the database and queue")?;
    let report = backends
        .stores
        .ledger
        .verify()
        .await
        .context("verifying the ledger")?;
    if report.is_ok() {
        tracing::info!(
            users = report.users_checked,
            entries = report.entries_checked,
            "ledger verified"
        );
    } else {
        tracing::error!(violations = ?report.violations, "the ledger has violations: run `rei-cli ledger verify`");
    }

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stores = &backends.stores;
    let jobs = Arc::new(JobService::new(
        JobPorts {
            users: stores.users.clone(),
            jobs: stores.jobs.clone(),
            queue: backends.queue.clone(),
            clock: clock.clone(),
            ids: Arc::new(RandomIds),
        },
        prices,
        JobLimits {
            max_active_per_user: config.max_active_jobs_per_user,
            ..JobLimits::default()
        },
    ));
    let mut assets = AssetStore::new(&config.asset_dir);
    if let Some(base) = &config.public_url {
        // Signed links Kling can fetch video→video sources from; every process derives
        // the same signing key from the bot token.
        assets =
            assets.with_public_links(base.clone(), config.bot_token.expose_secret().as_bytes());
    }
    let clients = BotClients::new(
        config.bot_token.expose_secret(),
        config.telegram_api_url.clone(),
    )?;
    let bot = clients.send.clone();
    let locales = Arc::new(Locales::load()?);
    let send_rate = SendRate::per_second(config.telegram_send_rate);
    let notifier = Arc::new(TelegramNotifier::new(
        bot.clone(),
        stores.users.clone(),
        assets.clone(),
        locales.clone(),
        TelegramNotifierConfig {
            admins: config.admin_ids.clone(),
            send_rate: send_rate.clone(),
        },
    ));
    let runner_config = RunnerConfig {
        lease_for: Duration::from_secs(config.worker_lease_secs),
        poll_interval: Duration::from_millis(config.video_poll_interval_ms),
        video_deadlines: config.kling_task_deadline_secs.clone(),
        // A refunded task is asked about less often than a running one.
        watch_poll: Duration::from_millis(config.video_poll_interval_ms.saturating_mul(6)),
        result_link_ttl: config.asset_link_ttl,
        ..RunnerConfig::default()
    };
    let images = images(config)?;
    let videos = videos(config, &assets)?;
    let ids: Arc<dyn IdGenerator> = Arc::new(RandomIds);
    let users = UserService::new(stores.users.clone(), clock.clone());
    let payments = payment_service(
        config,
        &bot,
        &backends,
        notifier.clone(),
        clock.clone(),
        ids.clone(),
    )?;
    let admin = AdminService::new(AdminPorts {
        users: stores.users.clone(),
        ledger: stores.ledger.clone(),
        queue: backends.queue.clone(),
        clock: clock.clone(),
    });
    let conversation = Arc::new(Conversation::new(
        ConversationPorts {
            users: users.clone(),
            ledger: LedgerService::new(stores.ledger.clone()),
            jobs: jobs.clone(),
            payments: payments.clone(),
            admin: admin.clone(),
            dialogues: stores.dialogues.clone(),
            limiter: backends.limiter.clone(),
            media: Arc::new(TelegramMedia::new(bot.clone(), assets.clone())),
            assets: Arc::new(assets.clone()),
            clock: clock.clone(),
            ids,
        },
        conversation_config(config, images.is_some(), videos.is_some())?,
    ));
    let notices = Arc::new(NoticeDispatcher::new(
        stores.outbox.clone(),
        notifier.clone(),
        clock.clone(),
        DispatchConfig {
            hold_for: Duration::from_secs(config.outbox_hold_secs),
            ..DispatchConfig::default()
        },
    ));
    let runner = Arc::new(JobRunner::new(
        RunnerPorts {
            jobs: jobs.clone(),
            images,
            videos,
            assets: Arc::new(assets.clone()),
            notifier,
            clock: clock.clone(),
        },
        runner_config,
    ));
    let worker = Worker::new(
        jobs.clone(),
        runner,
        clock,
        WorkerConfig {
            name: worker_name(),
            concurrency: usize::try_from(config.worker_concurrency).unwrap_or(1),
            grace: Duration::from_secs(config.shutdown_grace_secs),
            ..WorkerConfig::default()
        },
    );
    Ok(App {
        backends,
        worker,
        jobs: jobs.clone(),
        assets,
        retention: Duration::from_secs(u64::from(config.asset_retention_days) * 86_400),
        front: FrontEnd {
            clients,
            start_retry: Duration::from_secs(config.telegram_start_retry_secs),
            send_rate,
            conversation,
            jobs,
            users,
            locales,
        },
        payments,
        admin,
        http_addr: config.http_addr,
        telegram_mode: config.telegram_mode,
        public_url: config.public_url.clone(),
        webhook_secret: config
            .telegram_webhook_secret
            .clone()
            .unwrap_or_else(random_secret),
        yookassa_ips: config.yookassa_webhook_allowed_ips.clone(),
        metrics_ips: config.metrics_allowed_ips.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        poll_every: Duration::from_secs(config.payment_poll_interval_secs),
        notices,
    })
}

/// A webhook secret for this start (`TELEGRAM_WEBHOOK_SECRET` unset).
fn random_secret() -> SecretString {
    use rand::Rng;
    let secret: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    SecretString::from(secret)
}

/// What the dialogue offers, from configuration.
fn conversation_config(
    config: &Config,
    images: bool,
    videos: bool,
) -> anyhow::Result<ConversationConfig> {
    let models = KlingModel::parse_list(&config.kling_models).context("KLING_MODELS")?;
    Ok(ConversationConfig {
        admins: config.admin_ids.clone(),
        topup_amounts: config.topup_amounts.clone(),
        images,
        videos,
        video_models: models
            .iter()
            .map(|m| VideoModel {
                api_name: m.api_name().to_owned(),
                label: m.label().to_owned(),
                text_to_video: m.supports(VideoMode::TextToVideo),
                image_to_video: m.supports(VideoMode::ImageToVideo),
            })
            .collect(),
        omni_model: config.kling_omni_model.clone(),
        // Kling fetches a video→video source from a signed link under PUBLIC_URL.
        video_to_video: config.public_url.is_some(),
        draft_ttl: Duration::from_secs(3600),
        result_link_ttl: config.asset_link_ttl,
    })
}

/// YooKassa top-ups when configured (and Stars when `STARS_RUB_RATE` is set).
fn payment_service(
    config: &Config,
    bot: &teloxide::Bot,
    backends: &Backends,
    notifier: Arc<TelegramNotifier>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
) -> anyhow::Result<Option<Arc<PaymentService>>> {
    let gateway: Option<Arc<dyn PaymentGateway>> =
        match (&config.yookassa_shop_id, &config.yookassa_secret_key) {
            (Some(shop), Some(key)) => {
                let mut yookassa = YooKassaConfig::new(shop.clone(), key.clone());
                yookassa.base_url = config.yookassa_api_url.to_string();
                yookassa.receipt_vat_code = config
                    .yookassa_receipt_vat_code
                    .map(VatCode::new)
                    .transpose()
                    .context("YOOKASSA_RECEIPT_VAT_CODE")?;
                Some(Arc::new(
                    YooKassaClient::new(yookassa).context("YOOKASSA_API_URL")?,
                ))
            }
            _ => None,
        };
    if gateway.is_none() && config.stars_rub_rate.is_none() {
        return Ok(None);
    }
    let stores = &backends.stores;
    Ok(Some(Arc::new(PaymentService::new(
        PaymentPorts {
            users: stores.users.clone(),
            payments: stores.payments.clone(),
            gateway,
            stars: Some(Arc::new(TelegramStars::new(bot.clone()))),
            notifier,
            clock,
            ids,
        },
        PaymentConfig {
            return_url: config
                .yookassa_return_url
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            receipts: config.yookassa_receipt_vat_code.is_some(),
            stars_rate: config.stars_rub_rate,
            poll: PollConfig {
                first_backoff: Duration::from_secs(config.payment_poll_interval_secs),
                ..PollConfig::default()
            },
            ..PaymentConfig::default()
        },
    ))))
}

fn images(config: &Config) -> anyhow::Result<Option<Arc<dyn ImageGenerator>>> {
    let Some(key) = &config.nano_banana_api_key else {
        return Ok(None);
    };
    let mut gemini = GeminiConfig::new(key.clone());
    gemini.base_url = config.nano_banana_api_url.to_string();
    gemini.model.clone_from(&config.nano_banana_model);
    let client = GeminiClient::new(gemini).context("NANO_BANANA_API_URL")?;
    Ok(Some(Arc::new(client)))
}

fn videos(config: &Config, assets: &AssetStore) -> anyhow::Result<Option<Arc<dyn VideoGenerator>>> {
    let credentials = match (
        &config.kling_api_key,
        &config.kling_access_key,
        &config.kling_secret_key,
    ) {
        (Some(combined), _, _) => {
            KlingCredentials::from_combined(combined).context("KLING_API_KEY")?
        }
        (None, Some(access), Some(secret)) => KlingCredentials::new(access.clone(), secret.clone())
            .context("KLING_ACCESS_KEY / KLING_SECRET_KEY")?,
        _ => return Ok(None),
    };
    let mut kling = KlingConfig::new(credentials);
    kling.base_url = config.kling_api_url.to_string();
    kling.models = KlingModel::parse_list(&config.kling_models).context("KLING_MODELS")?;
    kling.omni_model.clone_from(&config.kling_omni_model);
    kling.mode = config.kling_mode.parse().context("KLING_MODE")?;
    kling.public_url = config.public_url.as_ref().map(ToString::to_string);
    let client = KlingClient::new(kling, assets.clone()).context("KLING_API_URL")?;
    Ok(Some(Arc::new(client)))
}

/// `host:pid`: unique per process, readable in logs.
fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "rei".to_owned());
    format!("{host}:{}", std::process::id())
}

impl App {
    /// Workers (and the queue's background sweep) until shutdown.
    pub(crate) async fn run_workers(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let maintenance = self.backends.spawn_maintenance(shutdown.clone());
        let wakeups = self.worker.wakeups();
        let listener = self.backends.spawn_wake_listener(
            move |job| {
                wakeups.wake(job);
            },
            shutdown.clone(),
        );
        // Every process sends the outbox's notices (money notices survive a crash
        // between their commit and the send: they wait there).
        let notices = tokio::spawn(rei_adapters::inbound::notices::send_notices(
            self.notices,
            self.backends.stores.outbox_signal.clone(),
            NOTICE_ROUND,
            shutdown.clone(),
        ));
        let sweeper = tokio::spawn(rei_adapters::inbound::worker::sweep_assets_daily(
            self.jobs,
            self.assets,
            self.retention,
            shutdown.clone(),
        ));
        self.worker.run(shutdown).await;
        maintenance.await.context("queue maintenance")?;
        listener.await.context("wake listener")?;
        sweeper.await.context("asset sweep")?;
        notices.await.context("outbox dispatcher")?;
        Ok(())
    }

    /// The whole bot: the HTTP server, the Telegram front end (long polling or webhook),
    /// the payment poller and the workers. A front end that stops (a second poller on
    /// the token) stops everything.
    pub(crate) async fn run_all(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let metrics = Metrics::install().context("installing the metrics recorder")?;
        let listener = tokio::net::TcpListener::bind(self.http_addr)
            .await
            .with_context(|| format!("HTTP_ADDR {}: cannot listen", self.http_addr))?;
        let (telegram, source) = match (self.telegram_mode, &self.public_url) {
            (TelegramMode::Webhook, Some(base)) => {
                let url = base
                    .join("webhooks/telegram")
                    .context("PUBLIC_URL: cannot add /webhooks/telegram")?;
                let (hook, updates) = TelegramWebhook::new(self.webhook_secret.clone());
                let source = UpdateSource::Webhook {
                    url,
                    secret: self.webhook_secret.clone(),
                    updates,
                };
                (Some(hook), source)
            }
            _ => (None, UpdateSource::Polling),
        };
        let web = WebState {
            backends: self.backends.clone(),
            payments: self.payments.clone().filter(|p| p.has_gateway()),
            yookassa_ips: self.yookassa_ips.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            telegram,
            kling: Some((self.jobs.clone(), self.worker.wakeups())),
            metrics: Some(metrics),
            metrics_ips: self.metrics_ips.clone(),
            admin: Some(self.admin.clone()),
            assets: self.public_url.is_some().then(|| self.assets.clone()),
        };
        let http = tokio::spawn(rei_adapters::inbound::http::serve(
            listener,
            web,
            shutdown.clone(),
        ));
        let front = tokio::spawn(self.front.clone().run(source, shutdown.clone()));
        let poller = self.payments.clone().map(|payments| {
            tokio::spawn(poll_payments(
                payments,
                self.backends.stores.leases.clone(),
                self.poll_every,
                shutdown.clone(),
            ))
        });
        let workers = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { self.run_workers(shutdown).await })
        };
        let stopped = front.await.context("the Telegram front end panicked")?;
        // Whatever stopped the front end stops the workers too.
        shutdown.cancel();
        workers.await.context("the workers panicked")??;
        if let Some(poller) = poller {
            poller.await.context("the payment poller panicked")?;
        }
        http.await
            .context("the HTTP server panicked")?
            .context("the HTTP server failed")?;
        stopped.context("the Telegram front end stopped")?;
        Ok(())
    }
}

/// How often the outbox is looked at for notices written by other processes and for
/// retries (a commit in this process wakes its dispatcher at once).
const NOTICE_ROUND: Duration = Duration::from_secs(2);

/// The name of the payment poller's lease.
const POLLER_LEASE: &str = "payment-poller";

/// The payment poller: one round every `every` until shutdown (lost webhooks,
/// abandoned payments, unfinished refunds), in one process of the deployment — the one
/// that holds the poller's lease in the database, renewed every round; another process
/// takes over when it runs out (a holder that died).
async fn poll_payments(
    payments: Arc<PaymentService>,
    leases: Arc<dyn LeaseStore>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let holder = worker_name();
    let lease_for = every.saturating_mul(3);
    let mut held = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => break,
        }
        let now = SystemClock.now();
        match leases
            .hold_lease(POLLER_LEASE, &holder, now.plus(lease_for), now)
            .await
        {
            Ok(true) => {
                if !held {
                    tracing::info!(holder = %holder, "this process runs the payment poller");
                }
                held = true;
                poll_once(&payments)
                    .instrument(tracing::info_span!("payment_poll"))
                    .await;
            }
            Ok(false) => {
                if held {
                    tracing::info!("another process runs the payment poller now");
                }
                held = false;
            }
            Err(e) => tracing::warn!(error = %e, "the payment poller's lease cannot be read"),
        }
    }
    if held {
        if let Err(e) = leases.release_lease(POLLER_LEASE, &holder).await {
            tracing::warn!(error = %e, "giving up the payment poller's lease failed");
        }
    }
}

async fn poll_once(payments: &PaymentService) {
    match payments.poll().await {
        Ok(report) => {
            for (payment_id, error) in &report.failures {
                tracing::warn!(%payment_id, %error, "a payment check failed; asked again later");
            }
            for (stored_id, error) in &report.unreadable {
                tracing::error!(%stored_id, %error, "a payment row cannot be read; skipped");
            }
            if report.checked + report.expired > 0 {
                tracing::info!(
                    checked = report.checked,
                    credited = report.credited,
                    cancelled = report.cancelled,
                    expired = report.expired,
                    refunds_done = report.refunds_done,
                    refunds_refused = report.refunds_refused,
                    errors = report.errors,
                    "payment poll"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, error.chain = ?e, "payment poll failed; retrying"),
    }
}
