//! `rei-bot`: the Telegram bot, HTTP server and workers in one process (`rei-bot run`,
//! the default), or workers only (`rei-bot worker`). Wiring only: see `wiring.rs`.

mod config;
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
    tokio::spawn(stop_on_signal(shutdown.clone()));
    match config.command.unwrap_or(Command::Run) {
        Command::Worker => app.run_workers(shutdown).await,
        Command::Run => app.run_all(shutdown).await,
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the current steps");
    shutdown.cancel();
}
