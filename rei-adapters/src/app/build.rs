//! Building the application from its settings.

use std::sync::Arc;
use std::time::Duration;

use rei_core::conversation::{Conversation, ConversationConfig, ConversationPorts, VideoModel};
use rei_core::job::{
    JobLimits, JobPorts, JobRunner, JobService, RunnerConfig, RunnerPorts, VideoMode,
};
use rei_core::ledger::LedgerService;
use rei_core::notice::{DispatchConfig, NoticeDispatcher};
use rei_core::payment::{PaymentConfig, PaymentPorts, PaymentProvider, PaymentService, PollConfig};
use rei_core::ports::{Clock, IdGenerator, Notifier, PaymentGateway, StarsGateway};
use rei_core::user::{AdminPorts, AdminService, UserService};
use secrecy::{ExposeSecret, SecretString};

use super::error::AppError;
use super::settings::{Settings, TelegramMode};

use super::backends::{self, Backends, BackendsConfig};
use super::providers::{gateway, images, kling_credentials, local_base, sold_models, videos};
use crate::inbound::http::IpList;
use crate::inbound::telegram::FrontEnd;
use crate::inbound::worker::{Worker, WorkerConfig};
use crate::outbound::files::AssetStore;
use crate::outbound::kling::KlingModel;
use crate::outbound::locale::Locales;
use crate::outbound::sandbox::SandboxCheckout;
use crate::outbound::secret_url::SecretUrl;
use crate::outbound::sql::DatabaseTarget;
use crate::outbound::system::{LogNotifier, RandomIds, SystemClock};
use crate::outbound::telegram::{
    BotClients, SendRate, TelegramMedia, TelegramNotifier, TelegramNotifierConfig, TelegramStars,
};

/// The core services, over the stores of one database.
#[derive(Debug)]
pub struct Services {
    /// Registration, bans, languages.
    pub users: UserService,
    /// Audited credits and debits, bans, statistics.
    pub admin: AdminService,
    /// Balances, history, verification.
    pub ledger: LedgerService,
    /// Quotes, jobs, the queue.
    pub jobs: Arc<JobService>,
    /// Top-ups, refunds, the poller, reconciliation (with or without a gateway).
    pub payments: Arc<PaymentService>,
    /// Promo codes.
    pub promos: rei_core::promo::PromoService,
    /// Referral links and bindings.
    pub referrals: rei_core::referral::ReferralService,
    /// Live prices (`rei-cli prices`, `/setprice`).
    pub prices: rei_core::prices::PriceService,
    /// Broadcasts (`rei-cli broadcast`).
    pub broadcasts: rei_core::broadcast::BroadcastService,
    /// Web admin sign-in links and sessions.
    pub web: rei_core::web::WebAdminService,
    /// The stores an import of the v2.0 bot's data writes to.
    pub import: rei_core::legacy::ImportPorts,
}

/// What only a process with `BOT_TOKEN` has: the Bot API, the front end, the workers.
pub(super) struct Bot {
    pub(super) front: FrontEnd,
    pub(super) worker: Worker,
    pub(super) notices: Arc<NoticeDispatcher>,
    pub(super) telegram_mode: TelegramMode,
    pub(super) webhook_secret: SecretString,
    /// Sends broadcasts (at the front end's send rate).
    pub(super) broadcaster: Arc<crate::outbound::telegram::TelegramBroadcaster>,
    pub(super) send_rate: SendRate,
}

/// Where the HTTP server listens and whom it admits.
pub(super) struct Http {
    pub(super) addr: std::net::SocketAddr,
    pub(super) yookassa_ips: IpList,
    pub(super) metrics_ips: IpList,
    pub(super) trusted_proxies: IpList,
    pub(super) limits: crate::inbound::http::ServerLimits,
    /// Kling is configured: its callback route is mounted, checking this key.
    pub(super) kling_callbacks: Option<crate::outbound::kling::CallbackKey>,
}

/// Everything built from the settings.
pub struct App {
    /// The stores, the queue and the rate limiter.
    pub backends: Backends,
    /// The core services.
    pub services: Services,
    /// Downloaded inputs and results (`ASSET_DIR`).
    pub assets: AssetStore,
    /// `ASSET_RETENTION_DAYS`.
    pub retention: Duration,
    /// Top-ups are offered (YooKassa or Stars configured).
    pub(super) payments_offered: bool,
    /// `PAYMENT_POLL_INTERVAL_SECS`.
    pub(super) poll_every: Duration,
    /// How often the live prices are read again (`PRICES_REFRESH_SECS`).
    pub(super) prices_every: Duration,
    /// `PUBLIC_URL`.
    pub(super) public_url: Option<url::Url>,
    pub(super) http: Http,
    pub(super) disabled: Vec<&'static str>,
    pub(super) bot: Option<Bot>,
    /// `SANDBOX=1`: the checkout page's gateway (its address is set once the server is
    /// bound).
    pub(super) sandbox: Option<Arc<SandboxCheckout>>,
    /// `ADMIN_WEB=1`.
    pub(super) admin_web: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("bot", &self.bot.is_some())
            .finish_non_exhaustive()
    }
}

/// How often the outbox is looked at for notices written by other processes and for
/// retries (a commit in this process wakes its dispatcher at once).
pub(super) const NOTICE_ROUND: Duration = Duration::from_secs(2);

impl App {
    /// Opens the backends (migrating the database) and builds everything the settings
    /// allow: without `BOT_TOKEN`, the services only (what `rei-cli` needs).
    ///
    /// # Errors
    /// [`AppError`] naming the setting or backend that failed.
    pub async fn build(settings: &Settings) -> Result<Self, AppError> {
        let prices = settings.validate()?;
        let database = DatabaseTarget::from_config(
            settings.database_url.as_ref().map(SecretUrl::expose),
            &settings.database_path,
        )
        .map_err(|e| AppError::Backends(e.into()))?;
        tracing::info!(database = ?database, redis = settings.redis_url.is_some(), "opening backends");
        let backends = backends::connect(&BackendsConfig {
            database,
            redis_url: settings.redis_url.clone(),
            rate_limit_per_minute: settings.rate_limit_per_minute,
            lease_for: Duration::from_secs(settings.worker_lease_secs),
            write_mode: None,
        })
        .await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ids: Arc<dyn IdGenerator> = Arc::new(RandomIds);
        let stores = &backends.stores;
        let base_prices = prices.clone();
        let jobs = Arc::new(JobService::new(
            JobPorts {
                users: stores.users.clone(),
                jobs: stores.jobs.clone(),
                queue: backends.queue.clone(),
                clock: clock.clone(),
                ids: ids.clone(),
            },
            prices,
            JobLimits {
                max_active_per_user: settings.max_active_jobs_per_user,
                ..JobLimits::default()
            },
        ));
        let mut assets = AssetStore::new(&settings.asset_dir);
        if let Some(max_bytes) = settings.asset_dir_max_bytes {
            assets = assets.with_cap(max_bytes);
        }
        let link_secret = settings
            .asset_signing_key
            .as_ref()
            .or(settings.bot_token.as_ref());
        if let (Some(base), Some(secret)) = (&settings.public_url, link_secret) {
            // Signed links Kling can fetch video→video sources from, and download links
            // of large results; every process derives the same key from the secret.
            assets = assets.with_public_links(base.clone(), secret.expose_secret().as_bytes());
            if let Some(previous) = &settings.asset_signing_key_previous {
                assets = assets.with_previous_link_secret(previous.expose_secret().as_bytes());
            }
        }
        let telegram = settings
            .bot_token
            .as_ref()
            .map(|token| telegram(settings, token, stores, &assets))
            .transpose()?;
        let notifier: Arc<dyn Notifier> = match &telegram {
            Some(t) => t.notifier.clone(),
            None => Arc::new(LogNotifier),
        };
        // The sandbox takes play money on its own checkout page, and never Stars.
        let sandbox = match settings.sandbox {
            true => Some(Arc::new(SandboxCheckout::new(
                std::path::Path::new(&settings.asset_dir),
                local_base(settings)?,
            ))),
            false => None,
        };
        let gateway = match &sandbox {
            Some(checkout) => Some(checkout.clone() as Arc<dyn PaymentGateway>),
            None => gateway(settings)?,
        };
        let stars_rate = settings.stars_rub_rate.filter(|_| !settings.sandbox);
        let payments_offered = gateway.is_some() || stars_rate.is_some();
        let stars: Option<Arc<dyn StarsGateway>> = telegram
            .as_ref()
            .filter(|_| !settings.sandbox)
            .map(|t| Arc::new(TelegramStars::new(t.clients.send.clone())) as Arc<dyn StarsGateway>);
        let payments = Arc::new(
            PaymentService::new(
                PaymentPorts {
                    users: stores.users.clone(),
                    payments: stores.payments.clone(),
                    gateway,
                    stars,
                    notifier: notifier.clone(),
                    clock: clock.clone(),
                    ids: ids.clone(),
                },
                PaymentConfig {
                    return_url: settings
                        .yookassa_return_url
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string),
                    receipts: settings.yookassa_receipt_vat_code.is_some(),
                    stars_rate,
                    gateway: if settings.sandbox {
                        PaymentProvider::Sandbox
                    } else {
                        PaymentProvider::Yookassa
                    },
                    poll: PollConfig {
                        first_backoff: Duration::from_secs(settings.payment_poll_interval_secs),
                        ..PollConfig::default()
                    },
                    ..PaymentConfig::default()
                },
            )
            .with_referrals(stores.referrals.clone(), settings.referral_percent),
        );
        let services = Services {
            users: UserService::new(stores.users.clone(), clock.clone()),
            admin: AdminService::new(AdminPorts {
                users: stores.users.clone(),
                ledger: stores.ledger.clone(),
                queue: backends.queue.clone(),
                clock: clock.clone(),
            }),
            ledger: LedgerService::new(stores.ledger.clone()),
            jobs: jobs.clone(),
            payments: payments.clone(),
            promos: rei_core::promo::PromoService::new(stores.promos.clone(), clock.clone()),
            referrals: rei_core::referral::ReferralService::new(
                stores.referrals.clone(),
                stores.jobs.clone(),
                clock.clone(),
                ids.clone(),
            ),
            broadcasts: rei_core::broadcast::BroadcastService::new(
                stores.broadcasts.clone(),
                UserService::new(stores.users.clone(), clock.clone()),
                clock.clone(),
            ),
            prices: rei_core::prices::PriceService::new(
                stores.prices.clone(),
                jobs.clone(),
                base_prices,
                sold_models(settings)?,
                clock.clone(),
            )
            .with_topups(settings.topup_amounts.clone()),
            web: rei_core::web::WebAdminService::new(
                stores.web.clone(),
                settings.admin_ids.clone(),
                clock.clone(),
                ids.clone(),
            ),
            import: rei_core::legacy::ImportPorts {
                users: stores.users.clone(),
                ledger: stores.ledger.clone(),
                payments: stores.payments.clone(),
                jobs: stores.jobs.clone(),
            },
        };
        // Play money must never pass for paid money: a sandbox database stays one.
        if !settings.sandbox {
            let sandbox_payments = stores
                .payments
                .payments(rei_core::payment::PaymentFilter {
                    provider: Some(PaymentProvider::Sandbox),
                    limit: 1,
                    ..rei_core::payment::PaymentFilter::default()
                })
                .await
                .map_err(AppError::Ledger)?;
            if !sandbox_payments.is_empty() {
                return Err(AppError::PlayMoneyDatabase);
            }
        }
        // The prices in the database (seeded from the settings on the first start) are
        // the ones in force, in every process.
        if services.prices.start().await.map_err(AppError::Prices)? {
            tracing::info!("live prices seeded from the settings");
        }
        let bot = match telegram {
            Some(t) => Some(bot(
                settings,
                t,
                &backends,
                &services,
                payments_offered.then(|| payments.clone()),
                &assets,
                clock,
                ids,
            )?),
            None => None,
        };
        Ok(Self {
            services,
            assets,
            retention: Duration::from_secs(u64::from(settings.asset_retention_days) * 86_400),
            payments_offered,
            poll_every: Duration::from_secs(settings.payment_poll_interval_secs),
            prices_every: Duration::from_secs(settings.prices_refresh_secs),
            public_url: settings.public_url.clone(),
            http: Http {
                addr: settings.http_addr,
                yookassa_ips: settings.yookassa_webhook_allowed_ips.clone(),
                metrics_ips: settings.metrics_allowed_ips.clone(),
                trusted_proxies: settings.trusted_proxies.clone(),
                kling_callbacks: kling_credentials(settings)?
                    .filter(|_| !settings.sandbox)
                    .map(|credentials| credentials.callback_key()),
                limits: crate::inbound::http::ServerLimits {
                    max_connections: usize::try_from(settings.http_max_connections)
                        .unwrap_or(usize::MAX),
                    ..crate::inbound::http::ServerLimits::default()
                },
            },
            disabled: settings.disabled_features(),
            backends,
            bot,
            sandbox,
            admin_web: settings.admin_web,
        })
    }

    /// The outbox's dispatcher: `None` without `BOT_TOKEN` (the bot sends the notices).
    #[must_use]
    pub fn notices(&self) -> Option<&NoticeDispatcher> {
        self.bot.as_ref().map(|b| b.notices.as_ref())
    }

    /// Checks every ledger invariant and logs the outcome (a running bot with a broken
    /// ledger is told to the operator at start).
    ///
    /// # Errors
    /// [`AppError::Ledger`] when the database cannot be read.
    pub async fn check_ledger(&self) -> Result<(), AppError> {
        let report = self
            .backends
            .stores
            .ledger
            .verify()
            .await
            .map_err(AppError::Ledger)?;
        if report.is_ok() {
            tracing::info!(
                users = report.users_checked,
                entries = report.entries_checked,
                "ledger verified"
            );
        } else {
            tracing::error!(violations = ?report.violations, "the ledger has violations: run `rei-cli ledger verify`");
        }
        Ok(())
    }
}

/// The Bot API side of a process with `BOT_TOKEN`.
struct Telegram {
    clients: BotClients,
    locales: Arc<Locales>,
    send_rate: SendRate,
    notifier: Arc<TelegramNotifier>,
}

fn telegram(
    settings: &Settings,
    token: &SecretString,
    stores: &crate::outbound::sql::Stores,
    assets: &AssetStore,
) -> Result<Telegram, AppError> {
    let clients = BotClients::new(token.expose_secret(), settings.telegram_api_url.clone())
        .map_err(|e| AppError::setting("TELEGRAM_API_URL", e))?;
    let locales = Arc::new(Locales::load()?.sandboxed(settings.sandbox));
    let send_rate = SendRate::per_second(settings.telegram_send_rate);
    let notifier = Arc::new(TelegramNotifier::new(
        clients.send.clone(),
        stores.users.clone(),
        assets.clone(),
        locales.clone(),
        TelegramNotifierConfig {
            admins: settings.admin_ids.clone(),
            send_rate: send_rate.clone(),
        },
    ));
    Ok(Telegram {
        clients,
        locales,
        send_rate,
        notifier,
    })
}

/// The dialogue, the workers and the outbox dispatcher of a process with `BOT_TOKEN`.
#[allow(clippy::too_many_arguments)]
fn bot(
    settings: &Settings,
    telegram: Telegram,
    backends: &Backends,
    services: &Services,
    payments: Option<Arc<PaymentService>>,
    assets: &AssetStore,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
) -> Result<Bot, AppError> {
    let images = images(settings)?;
    let videos = videos(settings, assets)?;
    let conversation = Arc::new(Conversation::new(
        ConversationPorts {
            users: services.users.clone(),
            ledger: services.ledger.clone(),
            jobs: services.jobs.clone(),
            payments,
            admin: services.admin.clone(),
            promos: services.promos.clone(),
            referrals: services.referrals.clone(),
            prices: services.prices.clone(),
            broadcasts: services.broadcasts.clone(),
            web: services.web.clone(),
            dialogues: backends.stores.dialogues.clone(),
            limiter: backends.limiter.clone(),
            media: Arc::new(TelegramMedia::new(
                telegram.clients.send.clone(),
                assets.clone(),
            )),
            notifier: telegram.notifier.clone(),
            assets: Arc::new(assets.clone()),
            clock: clock.clone(),
            ids,
        },
        conversation_config(settings, images.is_some(), videos.is_some())?,
    ));
    let runner = Arc::new(JobRunner::new(
        RunnerPorts {
            jobs: services.jobs.clone(),
            images,
            videos,
            assets: Arc::new(assets.clone()),
            notifier: telegram.notifier.clone(),
            clock: clock.clone(),
        },
        RunnerConfig {
            lease_for: Duration::from_secs(settings.worker_lease_secs),
            poll_interval: Duration::from_millis(settings.video_poll_interval_ms),
            video_deadlines: settings.kling_task_deadline_secs.clone(),
            // A refunded task is asked about less often than a running one.
            watch_poll: Duration::from_millis(settings.video_poll_interval_ms.saturating_mul(6)),
            result_link_ttl: settings.asset_link_ttl,
            ..RunnerConfig::default()
        },
    ));
    let notices = Arc::new(NoticeDispatcher::new(
        backends.stores.outbox.clone(),
        backends.stores.users.clone(),
        telegram.notifier.clone(),
        clock.clone(),
        DispatchConfig {
            hold_for: Duration::from_secs(settings.outbox_hold_secs),
            ..DispatchConfig::default()
        },
    ));
    let worker = Worker::new(
        services.jobs.clone(),
        runner,
        clock,
        WorkerConfig {
            name: process_name(),
            concurrency: usize::try_from(settings.worker_concurrency).unwrap_or(1),
            grace: Duration::from_secs(settings.shutdown_grace_secs),
            ..WorkerConfig::default()
        },
    );
    // Broadcasts are one text for every language: the sandbox says so in both.
    let banner = settings.sandbox.then(|| {
        [rei_core::user::Language::Ru, rei_core::user::Language::En]
            .map(|l| telegram.locales.text(l, "sandbox-banner", &[]))
            .join("\n")
    });
    let broadcaster = Arc::new(
        crate::outbound::telegram::TelegramBroadcaster::new(
            telegram.clients.send.clone(),
            assets.clone(),
        )
        .with_banner(banner),
    );
    Ok(Bot {
        broadcaster,
        send_rate: telegram.send_rate.clone(),
        front: FrontEnd {
            clients: telegram.clients,
            start_retry: Duration::from_secs(settings.telegram_start_retry_secs),
            send_rate: telegram.send_rate,
            conversation,
            users: services.users.clone(),
            locales: telegram.locales,
        },
        worker,
        notices,
        telegram_mode: settings.telegram_mode,
        webhook_secret: settings
            .telegram_webhook_secret
            .clone()
            .unwrap_or_else(random_secret),
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

/// What the dialogue offers, from the settings.
fn conversation_config(
    settings: &Settings,
    images: bool,
    videos: bool,
) -> Result<ConversationConfig, AppError> {
    let models = KlingModel::parse_list(&settings.kling_models)
        .map_err(|e| AppError::setting("KLING_MODELS", e))?;
    Ok(ConversationConfig {
        admins: settings.admin_ids.clone(),
        topup_amounts: settings.topup_amounts.clone(),
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
        omni_model: settings.kling_omni_model.clone(),
        // Kling fetches a video→video source from a signed link under PUBLIC_URL.
        video_to_video: settings.public_url.is_some(),
        draft_ttl: Duration::from_secs(settings.draft_ttl_secs),
        signup_bonus: settings.signup_bonus,
        result_link_ttl: settings.asset_link_ttl,
        web_admin_login: if settings.admin_web {
            Some(
                local_base(settings)?
                    .join("/admin/login")
                    .map_err(|e| AppError::setting("PUBLIC_URL", e))?
                    .to_string(),
            )
        } else {
            None
        },
    })
}

/// `host:pid`: unique per process, readable in logs (worker and poller lease holder).
pub(super) fn process_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "rei".to_owned());
    format!("{host}:{}", std::process::id())
}
