//! What `rei-cli` reads from the environment (and `.env`), beyond the database: the same
//! variables as `rei-bot`, so that both build the same services. Every one is optional
//! here; a command that needs one it lacks says which.

use rei_core::ids::UserId;
use rei_core::money::Money;
use secrecy::SecretString;

/// Settings shared by every command (environment variables; hidden from `--help`).
#[derive(Debug, clap::Args)]
pub(crate) struct Settings {
    /// SQLite file (created if absent).
    #[arg(
        long,
        env = "DATABASE_PATH",
        default_value = "rei_bot.db",
        global = true,
        hide = true
    )]
    pub database_path: String,
    /// `sqlite://…` or `postgres://…`; wins over `DATABASE_PATH`.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        global = true,
        hide = true
    )]
    pub database_url: Option<String>,
    /// Redis of the bot's job queue, if it uses one (queue depth, requeues).
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        global = true,
        hide = true
    )]
    pub redis_url: Option<String>,
    /// The bot's token: users are told of manual credits and debits, Stars refunds work.
    #[arg(
        long,
        env = "BOT_TOKEN",
        hide_env_values = true,
        global = true,
        hide = true
    )]
    pub bot_token: Option<SecretString>,
    /// Admins told of refused refunds.
    #[arg(
        long,
        env = "ADMIN_IDS",
        value_delimiter = ',',
        global = true,
        hide = true
    )]
    pub admin_ids: Vec<UserId>,
    /// Telegram Bot API base URL.
    #[arg(
        long,
        env = "TELEGRAM_API_URL",
        default_value = "https://api.telegram.org",
        global = true,
        hide = true
    )]
    pub telegram_api_url: url::Url,
    /// YooKassa shop id (reconcile, refunds).
    #[arg(long, env = "YOOKASSA_SHOP_ID", global = true, hide = true)]
    pub yookassa_shop_id: Option<String>,
    /// YooKassa secret key.
    #[arg(
        long,
        env = "YOOKASSA_SECRET_KEY",
        hide_env_values = true,
        global = true,
        hide = true
    )]
    pub yookassa_secret_key: Option<SecretString>,
    /// YooKassa API base URL.
    #[arg(
        long,
        env = "YOOKASSA_API_URL",
        default_value = "https://api.yookassa.ru/v3",
        global = true,
        hide = true
    )]
    pub yookassa_api_url: url::Url,
    /// VAT code (1–6) of 54-FZ receipts: refunds then carry a receipt too.
    #[arg(long, env = "YOOKASSA_RECEIPT_VAT_CODE", global = true, hide = true)]
    pub yookassa_receipt_vat_code: Option<u8>,
    /// Rubles credited per Telegram Star.
    #[arg(long, env = "STARS_RUB_RATE", global = true, hide = true)]
    pub stars_rub_rate: Option<Money>,
    /// Rubles per generated image.
    #[arg(
        long,
        env = "IMAGE_GENERATION_PRICE",
        default_value = "50",
        global = true,
        hide = true
    )]
    pub image_generation_price: Money,
    /// Rubles per edited image.
    #[arg(
        long,
        env = "IMAGE_EDIT_PRICE",
        default_value = "30",
        global = true,
        hide = true
    )]
    pub image_edit_price: Money,
    /// Rubles per 5 s video.
    #[arg(
        long,
        env = "VIDEO_5SEC_PRICE",
        default_value = "100",
        global = true,
        hide = true
    )]
    pub video_5sec_price: Money,
    /// 10 s price = 5 s price × this.
    #[arg(
        long,
        env = "VIDEO_10SEC_MULTIPLIER",
        default_value = "2",
        global = true,
        hide = true
    )]
    pub video_10sec_multiplier: u32,
    /// Pending + processing jobs per user.
    #[arg(
        long,
        env = "MAX_ACTIVE_JOBS_PER_USER",
        default_value = "3",
        global = true,
        hide = true
    )]
    pub max_active_jobs_per_user: u32,
    /// Downloaded inputs and results.
    #[arg(
        long,
        env = "ASSET_DIR",
        default_value = "./assets",
        global = true,
        hide = true
    )]
    pub asset_dir: String,
    /// Days to keep assets (`assets cleanup` default).
    #[arg(
        long,
        env = "ASSET_RETENTION_DAYS",
        default_value = "7",
        global = true,
        hide = true
    )]
    pub asset_retention_days: u32,
}
