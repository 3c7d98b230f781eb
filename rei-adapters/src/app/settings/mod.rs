//! Settings: every environment variable of the contract (`shared/spec/interfaces.md`)
//! and the few beyond it, parsed into domain types once, for both binaries (`rei-bot`
//! and `rei-cli` flatten [`Settings`] into their command line), so a malformed value
//! stops the process with a message naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use crate::inbound::http::IpList;
use clap::ValueEnum;
use rei_core::ids::UserId;
use rei_core::job::VideoDeadlines;
use rei_core::money::Money;
use rei_core::pricing::{PriceList, PricingError, Resolution};
use secrecy::SecretString;

use crate::outbound::secret_url::SecretUrl;

/// Telegram update delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TelegramMode {
    /// `getUpdates` long polling.
    Polling,
    /// `setWebhook` to `PUBLIC_URL/webhooks/telegram`.
    Webhook,
}

/// Log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Every setting. Each option is also an environment variable (and may be set in
/// `.env`). `rei-bot` needs `BOT_TOKEN` and `ADMIN_IDS` ([`Settings::require_bot`]);
/// for `rei-cli` every one is optional, and a command that needs one it lacks says
/// which.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Telegram bot token from @BotFather (`rei-cli`: users are told of manual credits
    /// and debits at once, Stars refunds work).
    #[arg(long, env = "BOT_TOKEN", hide_env_values = true)]
    pub bot_token: Option<SecretString>,
    /// Comma-separated Telegram ids of admins.
    #[arg(long, env = "ADMIN_IDS", value_parser = parse_user_id, value_delimiter = ',')]
    pub admin_ids: Vec<UserId>,
    /// Nano Banana Pro (Gemini) API key; image features are off without it.
    #[arg(long, env = "NANO_BANANA_API_KEY", hide_env_values = true)]
    pub nano_banana_api_key: Option<SecretString>,
    /// Kling `ACCESS_KEY:SECRET_KEY`; video features are off without Kling keys.
    #[arg(long, env = "KLING_API_KEY", hide_env_values = true)]
    pub kling_api_key: Option<SecretString>,
    /// Kling access key (with `KLING_SECRET_KEY`, instead of `KLING_API_KEY`).
    #[arg(long, env = "KLING_ACCESS_KEY", hide_env_values = true)]
    pub kling_access_key: Option<SecretString>,
    /// Kling secret key.
    #[arg(long, env = "KLING_SECRET_KEY", hide_env_values = true)]
    pub kling_secret_key: Option<SecretString>,
    /// YooKassa shop id; card payments are off without it.
    #[arg(long, env = "YOOKASSA_SHOP_ID")]
    pub yookassa_shop_id: Option<String>,
    /// YooKassa secret key.
    #[arg(long, env = "YOOKASSA_SECRET_KEY", hide_env_values = true)]
    pub yookassa_secret_key: Option<SecretString>,
    /// SQLite file (created if absent, WAL mode).
    #[arg(long, env = "DATABASE_PATH", default_value = "rei_bot.db")]
    pub database_path: String,
    /// `sqlite://…` or `postgres://…`; wins over `DATABASE_PATH`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretUrl>,
    /// Redis for the queue and rate limiter; unset: the database queue and an in-process limiter.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretUrl>,
    /// `api_model_name:Label,…` in menu order.
    #[arg(
        long,
        env = "KLING_MODELS",
        default_value = "kling-v3:Kling 3.0,kling-v2-6:Kling 2.6,kling-v1-5:Kling 1.5"
    )]
    pub kling_models: String,
    /// Model for video→video (omni-video endpoint).
    #[arg(long, env = "KLING_OMNI_MODEL", default_value = "kling-v3-omni")]
    pub kling_omni_model: String,
    /// `std` (720p) or `pro` (1080p).
    #[arg(long, env = "KLING_MODE", default_value = "std")]
    pub kling_mode: String,
    /// Rubles per generated image.
    #[arg(long, env = "IMAGE_GENERATION_PRICE", default_value = "50", value_parser = parse_price)]
    pub image_generation_price: Money,
    /// Rubles per edited image.
    #[arg(long, env = "IMAGE_EDIT_PRICE", default_value = "30", value_parser = parse_price)]
    pub image_edit_price: Money,
    /// A 2K image's price, in percent of the 1K price (generation and editing).
    #[arg(long, env = "IMAGE_2K_PRICE_PERCENT", default_value = "150", value_parser = clap::value_parser!(u32).range(100..=10_000))]
    pub image_2k_price_percent: u32,
    /// A 4K image's price, in percent of the 1K price (generation and editing).
    #[arg(long, env = "IMAGE_4K_PRICE_PERCENT", default_value = "200", value_parser = clap::value_parser!(u32).range(100..=10_000))]
    pub image_4k_price_percent: u32,
    /// Rubles per 5 s video.
    #[arg(long, env = "VIDEO_5SEC_PRICE", default_value = "100", value_parser = parse_price)]
    pub video_5sec_price: Money,
    /// 10 s price = 5 s price × this.
    #[arg(long, env = "VIDEO_10SEC_MULTIPLIER", default_value = "2", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub video_10sec_multiplier: u32,
    /// Pending + processing jobs per user.
    #[arg(long, env = "MAX_ACTIVE_JOBS_PER_USER", default_value = "3", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_active_jobs_per_user: u32,
    /// Updates per user per minute.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value = "10", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate_limit_per_minute: u32,
    /// Rubles offered by /pay.
    #[arg(long, env = "TOPUP_AMOUNTS", default_value = "100,300,500,1000", value_parser = parse_price, value_delimiter = ',')]
    pub topup_amounts: Vec<Money>,
    /// Jobs at once per process.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value = "4", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub worker_concurrency: u32,
    /// How long a worker's claim holds a job before another worker may take it over
    /// (renewed every third of it while the job runs).
    #[arg(long, env = "WORKER_LEASE_SECS", default_value = "60", value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub worker_lease_secs: u64,
    /// Wait between two status polls of a running video.
    #[arg(long, env = "VIDEO_POLL_INTERVAL_MS", default_value = "10000", value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub video_poll_interval_ms: u64,
    /// Address of the HTTP server (webhooks, health, metrics).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Connections the HTTP server serves at once; more wait in the backlog. Idle and
    /// slow clients are cut off after 10 s.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub http_max_connections: u32,
    /// https base URL for webhooks (Telegram webhook mode, Kling callbacks, video→video inputs).
    #[arg(long, env = "PUBLIC_URL", value_parser = parse_https_url)]
    pub public_url: Option<url::Url>,
    /// The secret `/assets/…` links are signed with (at least 32 characters, the same in
    /// every process); unset: derived from `BOT_TOKEN`.
    #[arg(long, env = "ASSET_SIGNING_KEY", hide_env_values = true, value_parser = parse_signing_key)]
    pub asset_signing_key: Option<SecretString>,
    /// The key before the last rotation: links it signed still open until it is unset.
    #[arg(long, env = "ASSET_SIGNING_KEY_PREVIOUS", hide_env_values = true, value_parser = parse_signing_key)]
    pub asset_signing_key_previous: Option<SecretString>,
    /// `polling` or `webhook` (needs `PUBLIC_URL`).
    #[arg(long, env = "TELEGRAM_MODE", value_enum, default_value = "polling")]
    pub telegram_mode: TelegramMode,
    /// Checked against `X-Telegram-Bot-Api-Secret-Token`; random per start when unset.
    #[arg(long, env = "TELEGRAM_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_webhook_secret)]
    pub telegram_webhook_secret: Option<SecretString>,
    /// Where the payer returns (default `https://t.me/<bot username>`).
    #[arg(long, env = "YOOKASSA_RETURN_URL", value_parser = parse_https_url)]
    pub yookassa_return_url: Option<url::Url>,
    /// CIDR list allowed to call the payment webhook (default: YooKassa's published ranges).
    #[arg(long, env = "YOOKASSA_WEBHOOK_ALLOWED_IPS", default_value = crate::inbound::http::DEFAULT_YOOKASSA_IPS)]
    pub yookassa_webhook_allowed_ips: IpList,
    /// CIDR list allowed to read `/metrics` (default: loopback and private networks).
    #[arg(long, env = "METRICS_ALLOWED_IPS", default_value = crate::inbound::http::DEFAULT_METRICS_IPS)]
    pub metrics_allowed_ips: IpList,
    /// CIDR list of reverse proxies whose `X-Forwarded-For` is believed for the payment
    /// webhook's allow-list (empty: the TCP peer address counts, forwarded headers never).
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: IpList,
    /// How often the payment poller runs (lost webhooks, abandoned payments, unfinished
    /// refunds); also its first wait before asking about a new payment.
    #[arg(long, env = "PAYMENT_POLL_INTERVAL_SECS", default_value = "30", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub payment_poll_interval_secs: u64,
    /// Downloaded inputs and results.
    #[arg(long, env = "ASSET_DIR", default_value = "./assets")]
    pub asset_dir: String,
    /// The most `ASSET_DIR` may hold before users' uploads are refused (admins are told;
    /// results of paid jobs are still written, nothing is deleted); unset: no cap.
    #[arg(long, env = "ASSET_DIR_MAX_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub asset_dir_max_bytes: Option<u64>,
    /// Days to keep assets.
    #[arg(long, env = "ASSET_RETENTION_DAYS", default_value = "7", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub asset_retention_days: u32,
    /// Telegram Bot API base URL.
    #[arg(
        long,
        env = "TELEGRAM_API_URL",
        default_value = "https://api.telegram.org"
    )]
    pub telegram_api_url: url::Url,
    /// How long to keep trying to reach Telegram at start (network down, DNS not ready)
    /// before giving up; a rejected token stops the bot at once.
    #[arg(long, env = "TELEGRAM_START_RETRY_SECS", default_value = "300", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub telegram_start_retry_secs: u64,
    /// Messages per second the bot sends overall (Telegram's limit is about 30); 0 = no
    /// proactive limit, only Telegram's 429 `retry_after`.
    #[arg(long, env = "TELEGRAM_SEND_RATE", default_value = "30", value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub telegram_send_rate: u32,
    /// Kling API base URL.
    #[arg(
        long,
        env = "KLING_API_URL",
        default_value = "https://api-singapore.klingai.com"
    )]
    pub kling_api_url: url::Url,
    /// Gemini API base URL.
    #[arg(
        long,
        env = "NANO_BANANA_API_URL",
        default_value = "https://generativelanguage.googleapis.com"
    )]
    pub nano_banana_api_url: url::Url,
    /// Longest wait for one Kling API exchange, in seconds (a create whose answer does
    /// not come in time is looked up by the job's id before it is sent again).
    #[arg(long, env = "KLING_TIMEOUT_SECS", default_value = "60", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub kling_timeout_secs: u64,
    /// Longest wait for one image generation call, in seconds (a call that times out
    /// may have been billed: its job is refunded, never sent again).
    #[arg(long, env = "NANO_BANANA_TIMEOUT_SECS", default_value = "180", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub nano_banana_timeout_secs: u64,
    /// Image model id.
    #[arg(
        long,
        env = "NANO_BANANA_MODEL",
        default_value = "gemini-3-pro-image-preview"
    )]
    pub nano_banana_model: String,
    /// YooKassa API base URL.
    #[arg(
        long,
        env = "YOOKASSA_API_URL",
        default_value = "https://api.yookassa.ru/v3"
    )]
    pub yookassa_api_url: url::Url,
    /// Rubles credited per Telegram Star; set to enable top-up with Stars.
    #[arg(long, env = "STARS_RUB_RATE", value_parser = parse_price)]
    pub stars_rub_rate: Option<Money>,
    /// VAT code (1–6) for 54-FZ receipts; the payer's e-mail is then asked once.
    #[arg(long, env = "YOOKASSA_RECEIPT_VAT_CODE", value_parser = clap::value_parser!(u8).range(1..=6))]
    pub yookassa_receipt_vat_code: Option<u8>,
    /// `pretty` or `json`; the level comes from `RUST_LOG`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// How long a video task may run at Kling before the job is refunded, for a 5 s
    /// video (10 s: twice that): `3600`, or with per-model values `3600,kling-v3=5400`.
    /// A result that still comes later is delivered free.
    #[arg(long, env = "KLING_TASK_DEADLINE_SECS", default_value = "3600", value_parser = parse_deadlines)]
    pub kling_task_deadline_secs: VideoDeadlines,
    /// Rubles given once to each new user, apart from paid money (`0`: none).
    #[arg(long, env = "SIGNUP_BONUS", default_value = "0", value_parser = parse_amount_or_zero)]
    pub signup_bonus: Money,
    /// The share, in percent, of each paid top-up of a referred user that their
    /// referrer earns (`0`: no rewards).
    #[arg(long, env = "REFERRAL_PERCENT", default_value = "0", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub referral_percent: u8,
    /// How often each process reads the live prices again, in seconds (a price set with
    /// `rei-cli prices set` is in force everywhere within this).
    #[arg(long, env = "PRICES_REFRESH_SECS", default_value = "5", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub prices_refresh_secs: u64,
    /// How long a draft keeps the price it quoted, in seconds; Confirm on an older one
    /// prices it again at today's prices and asks again.
    #[arg(long, env = "DRAFT_TTL_SECS", default_value = "900", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub draft_ttl_secs: u64,
    /// How long a result's download link works (`7d`, `48h`): results too large for
    /// Telegram are delivered as such a link, and `/history` lists them.
    #[arg(long, env = "ASSET_LINK_TTL", default_value = "7d", value_parser = parse_duration)]
    pub asset_link_ttl: Duration,
    /// On SIGTERM: how long in-flight provider calls may finish before the process
    /// exits (a step cut off later resumes without sending its call again).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value = "60", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_secs: u64,
    /// How long a money notice being sent is kept from other processes (longer than a
    /// send may take: Telegram sends time out after 120 s). A process killed in the
    /// middle of a send leaves its notices this long before another sends them.
    #[arg(long, env = "OUTBOX_HOLD_SECS", default_value = "180", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub outbox_hold_secs: u64,
    /// `1`: the sandbox. No paid provider is called: images are drawn locally, videos are
    /// a bundled clip, a top-up opens a checkout page of our own HTTP server that pays
    /// on a click (play money, marked in the ledger). Every message says so. Refused
    /// together with real YooKassa keys.
    #[arg(long, env = "SANDBOX", default_value = "0", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub sandbox: bool,
    /// `1`: the web admin under `/admin` on the HTTP server; admins sign in with the
    /// bot's one-time `/web` link (under `PUBLIC_URL`, else `HTTP_ADDR`).
    #[arg(long, env = "ADMIN_WEB", default_value = "0", value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub admin_web: bool,
}

/// A configuration that parsed but does not hold together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A variable `rei-bot` cannot run without.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// Webhook mode without a public URL.
    #[error("TELEGRAM_MODE=webhook needs PUBLIC_URL")]
    WebhookWithoutPublicUrl,
    /// Prices do not make a price list.
    #[error("invalid prices: {0}")]
    Prices(#[from] PricingError),
    /// Only one of the Kling key pair.
    #[error("KLING_ACCESS_KEY and KLING_SECRET_KEY must be set together")]
    HalfKlingKeys,
    /// The sandbox's play money beside a real shop: a user could not tell them apart.
    #[error(
        "SANDBOX=1 cannot run with real YooKassa keys (YOOKASSA_SHOP_ID / YOOKASSA_SECRET_KEY): unset them, or SANDBOX"
    )]
    SandboxWithRealPayments,
    /// Only one of the YooKassa pair.
    #[error("YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY must be set together")]
    HalfYookassaKeys,
    /// The models list is malformed.
    #[error("KLING_MODELS: {0}")]
    KlingModels(String),
    /// The mode is neither std nor pro.
    #[error("KLING_MODE: {0}")]
    KlingMode(String),
    /// Download links would outlive the files they point to.
    #[error(
        "ASSET_LINK_TTL ({link_days} days) is longer than ASSET_RETENTION_DAYS ({retention_days}): links would point at deleted files"
    )]
    LinksOutliveFiles {
        /// `ASSET_LINK_TTL`, in whole days (rounded up).
        link_days: u64,
        /// `ASSET_RETENTION_DAYS`.
        retention_days: u32,
    },
}

impl Settings {
    /// What `rei-bot` cannot run without: `BOT_TOKEN` and `ADMIN_IDS`.
    ///
    /// # Errors
    /// [`SettingsError::Missing`] naming the first one that is not set.
    pub fn require_bot(&self) -> Result<&SecretString, SettingsError> {
        let token = self
            .bot_token
            .as_ref()
            .ok_or(SettingsError::Missing("BOT_TOKEN"))?;
        // The sandbox runs with only BOT_TOKEN (it has no admin then).
        if self.admin_ids.is_empty() && !self.sandbox {
            return Err(SettingsError::Missing("ADMIN_IDS"));
        }
        Ok(token)
    }

    /// Cross-field checks and derived values.
    ///
    /// # Errors
    /// [`SettingsError`] naming what does not hold together.
    pub fn validate(&self) -> Result<PriceList, SettingsError> {
        if self.telegram_mode == TelegramMode::Webhook && self.public_url.is_none() {
            return Err(SettingsError::WebhookWithoutPublicUrl);
        }
        if self.kling_access_key.is_some() != self.kling_secret_key.is_some() {
            return Err(SettingsError::HalfKlingKeys);
        }
        if self.yookassa_shop_id.is_some() != self.yookassa_secret_key.is_some() {
            return Err(SettingsError::HalfYookassaKeys);
        }
        if self.sandbox && (self.yookassa_shop_id.is_some() || self.yookassa_secret_key.is_some()) {
            return Err(SettingsError::SandboxWithRealPayments);
        }
        crate::outbound::kling::KlingModel::parse_list(&self.kling_models)
            .map_err(|e| SettingsError::KlingModels(e.to_string()))?;
        self.kling_mode
            .parse::<crate::outbound::kling::KlingMode>()
            .map_err(|e| SettingsError::KlingMode(e.to_string()))?;
        let retention = Duration::from_secs(u64::from(self.asset_retention_days) * 86_400);
        if self.asset_link_ttl > retention {
            return Err(SettingsError::LinksOutliveFiles {
                link_days: self.asset_link_ttl.as_secs().div_ceil(86_400),
                retention_days: self.asset_retention_days,
            });
        }
        Ok(PriceList::new(
            self.image_generation_price,
            self.image_edit_price,
            self.video_5sec_price,
            self.video_10sec_multiplier,
        )?
        .with_resolution_percent(Resolution::TwoK, self.image_2k_price_percent)?
        .with_resolution_percent(Resolution::FourK, self.image_4k_price_percent)?)
    }

    /// Which provider features are off for lack of credentials (for start-up warnings).
    #[must_use]
    pub fn disabled_features(&self) -> Vec<&'static str> {
        let mut off = Vec::new();
        if self.sandbox {
            // Every feature runs on the sandbox's stand-ins; real keys are not used.
            if self.nano_banana_api_key.is_some() {
                off.push("NANO_BANANA_API_KEY (ignored: SANDBOX=1 draws images locally)");
            }
            if self.kling_api_key.is_some() || self.kling_access_key.is_some() {
                off.push("Kling keys (ignored: SANDBOX=1 delivers a bundled clip)");
            }
            if self.stars_rub_rate.is_some() {
                off.push("Telegram Stars (off: SANDBOX=1 takes only play money)");
            }
            return off;
        }
        if self.nano_banana_api_key.is_none() {
            off.push("image generation (NANO_BANANA_API_KEY is not set)");
        }
        if self.kling_api_key.is_none() && self.kling_access_key.is_none() {
            off.push("video generation (KLING_API_KEY is not set)");
        }
        if self.yookassa_shop_id.is_none() {
            off.push("card payments (YOOKASSA_SHOP_ID / YOOKASSA_SECRET_KEY are not set)");
        }
        off
    }
}

/// A switch: `0` or `1` (also `false`/`true`).
fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        other => Err(format!("`{other}` is not 0 or 1")),
    }
}

/// A duration: `7d`, `48h`, `30m`, `90s`, or plain seconds.
///
/// # Errors
/// A message naming the value when it is not one.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 7d, 48h, 30m or 90s"))?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: the unit must be d, h, m or s")),
    };
    n.checked_mul(unit_secs)
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` must be greater than zero and not absurdly long"))
}

/// `KLING_TASK_DEADLINE_SECS`: `3600`, or `3600,kling-v3=5400,…`.
fn parse_deadlines(s: &str) -> Result<VideoDeadlines, String> {
    let secs = |v: &str| -> Result<Duration, String> {
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=7 * 86_400).contains(n))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("`{v}` must be a number of seconds from 1 to 604800"))
    };
    let mut parts = s.split(',');
    let five_secs = secs(parts.next().unwrap_or_default())?;
    let per_model = parts
        .map(|part| {
            let (model, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: per-model values are model=seconds"))?;
            let model = model.trim();
            if model.is_empty() {
                return Err(format!("`{part}`: the model name is empty"));
            }
            Ok((model.to_owned(), secs(value)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(VideoDeadlines {
        five_secs,
        per_model,
    })
}

fn parse_user_id(s: &str) -> Result<UserId, String> {
    s.parse::<UserId>().map_err(|e| e.to_string())
}

fn parse_price(s: &str) -> Result<Money, String> {
    let m = Money::parse_rubles(s).map_err(|e| e.to_string())?;
    if m.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(m)
    }
}

/// Rubles, zero allowed (`SIGNUP_BONUS=0`: none).
fn parse_amount_or_zero(s: &str) -> Result<Money, String> {
    Money::parse_rubles(s).map_err(|e| e.to_string())
}

fn parse_https_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| e.to_string())?;
    if u.scheme() == "https"
        || u.host_str()
            .is_some_and(|h| h == "localhost" || h == "127.0.0.1")
    {
        Ok(u)
    } else {
        Err("must be an https URL".into())
    }
}

/// The shortest `ASSET_SIGNING_KEY` accepted.
const MIN_SIGNING_KEY_CHARS: usize = 32;

fn parse_signing_key(s: &str) -> Result<SecretString, String> {
    if s.chars().count() < MIN_SIGNING_KEY_CHARS {
        return Err(format!(
            "must be at least {MIN_SIGNING_KEY_CHARS} characters (for example `openssl rand -hex 32`)"
        ));
    }
    Ok(SecretString::from(s.to_owned()))
}

fn parse_webhook_secret(s: &str) -> Result<SecretString, String> {
    let ok = (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(SecretString::from(s.to_owned()))
    } else {
        Err("must be 1-256 characters of A-Z a-z 0-9 _ -".into())
    }
}

#[cfg(test)]
mod tests;
