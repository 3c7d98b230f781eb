//! Builds the backends and the core services once, from the same settings and through
//! the same `backends::connect` as the bot. Commands use only what is built here.

use std::sync::Arc;
use std::time::Duration;

use rei_adapters::app::backends::{BackendsConfig, connect};
use rei_adapters::outbound::files::AssetStore;
use rei_adapters::outbound::sql::DatabaseTarget;
use rei_adapters::outbound::system::{LogNotifier, RandomIds, SystemClock};
use rei_adapters::outbound::telegram::{
    BotClients, Locales, SendRate, TelegramNotifier, TelegramNotifierConfig, TelegramStars,
};
use rei_adapters::outbound::yookassa::{YooKassaClient, YooKassaConfig};
use rei_core::job::{JobLimits, JobPorts, JobService};
use rei_core::ledger::LedgerService;
use rei_core::notice::{DispatchConfig, NoticeDispatcher};
use rei_core::payment::{PaymentConfig, PaymentPorts, PaymentService};
use rei_core::ports::{Clock, Notifier, PaymentGateway, StarsGateway};
use rei_core::pricing::PriceList;
use rei_core::user::{AdminPorts, AdminService, UserService};
use secrecy::ExposeSecret;

use crate::Failure;
use crate::settings::Settings;

/// The services every command works through.
pub(crate) struct Services {
    pub users: UserService,
    pub admin: AdminService,
    pub ledger: LedgerService,
    pub jobs: Arc<JobService>,
    pub payments: Arc<PaymentService>,
    pub assets: AssetStore,
    pub retention: Duration,
    /// The stores an import of the v2.0 bot's data writes to.
    pub import: rei_core::legacy::ImportPorts,
    /// Sends the outbox's notices (`BOT_TOKEN` set); without it the bot sends them.
    pub notices: Option<NoticeDispatcher>,
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Opens the database (migrating it) and the queue, and builds the services.
pub(crate) async fn build(s: &Settings) -> Result<Services, Failure> {
    let database = DatabaseTarget::from_config(s.database_url.as_deref(), &s.database_path)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let backends = connect(&BackendsConfig {
        database,
        redis_url: s.redis_url.clone(),
        rate_limit_per_minute: 1,
        lease_for: Duration::from_secs(60),
    })
    .await
    .map_err(|e| Failure::Operational(source_chain(&e)))?;
    let stores = backends.stores.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let assets = AssetStore::new(&s.asset_dir);
    let bot = s
        .bot_token
        .as_ref()
        .map(|token| BotClients::new(token.expose_secret(), s.telegram_api_url.clone()))
        .transpose()
        .map_err(|e| Failure::Operational(source_chain(&e)))?
        .map(|clients| clients.send);
    let notifier: Arc<dyn Notifier> = match &bot {
        Some(bot) => {
            let locales = Locales::load().map_err(|e| Failure::Operational(e.to_string()))?;
            Arc::new(TelegramNotifier::new(
                bot.clone(),
                stores.users.clone(),
                assets.clone(),
                Arc::new(locales),
                TelegramNotifierConfig {
                    admins: s.admin_ids.clone(),
                    send_rate: SendRate::per_second(0),
                },
            ))
        }
        None => Arc::new(LogNotifier),
    };
    let gateway: Option<Arc<dyn PaymentGateway>> =
        match (&s.yookassa_shop_id, &s.yookassa_secret_key) {
            (Some(shop), Some(key)) => {
                let mut config = YooKassaConfig::new(shop.clone(), key.clone());
                config.base_url = s.yookassa_api_url.to_string();
                config.receipt_vat_code = s
                    .yookassa_receipt_vat_code
                    .map(rei_adapters::outbound::yookassa::VatCode::new)
                    .transpose()
                    .map_err(|e| Failure::Usage(format!("YOOKASSA_RECEIPT_VAT_CODE: {e}")))?;
                Some(Arc::new(YooKassaClient::new(config).map_err(|e| {
                    Failure::Usage(format!("YOOKASSA_API_URL: {e}"))
                })?))
            }
            (None, None) => None,
            _ => {
                return Err(Failure::Usage(
                    "YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY must be set together".into(),
                ));
            }
        };
    let stars: Option<Arc<dyn StarsGateway>> = bot
        .as_ref()
        .map(|bot| Arc::new(TelegramStars::new(bot.clone())) as Arc<dyn StarsGateway>);
    let prices = PriceList::new(
        s.image_generation_price,
        s.image_edit_price,
        s.video_5sec_price,
        s.video_10sec_multiplier,
    )
    .map_err(|e| Failure::Usage(format!("invalid prices: {e}")))?;
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
            max_active_per_user: s.max_active_jobs_per_user,
            ..JobLimits::default()
        },
    ));
    let payments = Arc::new(PaymentService::new(
        PaymentPorts {
            users: stores.users.clone(),
            payments: stores.payments.clone(),
            gateway,
            stars,
            notifier: notifier.clone(),
            clock: clock.clone(),
            ids: Arc::new(RandomIds),
        },
        PaymentConfig {
            stars_rate: s.stars_rub_rate,
            receipts: s.yookassa_receipt_vat_code.is_some(),
            ..PaymentConfig::default()
        },
    ));
    let notices = bot.is_some().then(|| {
        NoticeDispatcher::new(
            stores.outbox.clone(),
            notifier.clone(),
            clock.clone(),
            DispatchConfig::default(),
        )
    });
    Ok(Services {
        users: UserService::new(stores.users.clone(), clock.clone()),
        admin: AdminService::new(AdminPorts {
            users: stores.users.clone(),
            ledger: stores.ledger.clone(),
            queue: backends.queue.clone(),
            clock,
        }),
        ledger: LedgerService::new(stores.ledger.clone()),
        jobs,
        payments,
        import: rei_core::legacy::ImportPorts {
            users: stores.users.clone(),
            ledger: stores.ledger.clone(),
            payments: stores.payments.clone(),
            jobs: stores.jobs.clone(),
        },
        assets,
        retention: Duration::from_secs(u64::from(s.asset_retention_days) * 86_400),
        notices,
    })
}
