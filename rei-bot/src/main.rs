//! `rei-bot`: the Telegram bot, HTTP server and workers in one process (`rei-bot run`,
//! the default), or workers only (`rei-bot worker`). Wiring only: see `wiring.rs`.

mod config;
mod shutdown;
mod telemetry;
mod wiring;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::config::{Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dotenvy::dotenv().ok();
    let config = Config::parse();
    telemetry::init(config.log_format);
    let app = wiring::build(&config).await.context("starting rei-bot")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown::on_signal(shutdown.clone()));
    match config.command.unwrap_or(Command::Run) {
        Command::Worker => app.run_workers(shutdown).await,
        Command::Run => app.run_all(shutdown).await,
    }
}
