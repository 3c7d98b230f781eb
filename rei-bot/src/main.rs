//! `rei-bot`: validates the configuration, opens the database and applies migrations.
//!
//! The Telegram dialogue, the HTTP server and the workers arrive with their own issues;
//! until then this binary stops after start-up checks with a clear message.

mod config;

use anyhow::Context;
use clap::Parser;

use crate::config::{Config, LogFormat};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dotenvy::dotenv().ok();
    let config = Config::parse();
    init_tracing(config.log_format);
    let prices = config.validate().context("invalid configuration")?;
    for feature in config.disabled_features() {
        tracing::warn!(feature, "feature disabled");
    }
    let target = rei_adapters::sql::DatabaseTarget::from_config(
        config.database_url.as_deref(),
        &config.database_path,
    )?;
    tracing::info!(database = ?target, "opening database");
    let stores = rei_adapters::sql::connect(&target)
        .await
        .context("opening the database")?;
    let report = stores
        .ledger
        .verify()
        .await
        .context("verifying the ledger")?;
    tracing::info!(
        users = report.users_checked,
        entries = report.entries_checked,
        violations = report.violations.len(),
        image_price_kopecks = prices.price(&rei_core::Product::ImageGeneration).kopecks(),
        "database ready"
    );
    anyhow::bail!(
        "the Telegram front end is not part of this build yet (see README, Status); the database is migrated and verified"
    )
}
