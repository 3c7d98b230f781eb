//! `rei-bot`: the Telegram bot, HTTP server and workers in one process (`rei-bot run`,
//! the default), or workers only (`rei-bot worker`). Settings → `App::build` → run.

mod shutdown;
mod telemetry;

use anyhow::Context;
use clap::Parser;
use rei_adapters::app::{App, Settings};
use tokio_util::sync::CancellationToken;

/// REI bot: Telegram bot, HTTP server and workers. Every option is also an environment
/// variable (and may be set in `.env`).
#[derive(Debug, Parser)]
#[command(name = "rei-bot", version, about)]
struct Cli {
    /// `run` (default) or `worker`.
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::Subcommand)]
enum Command {
    /// The bot, the HTTP server and the workers in one process (the default).
    Run,
    /// Workers only (scale-out: several processes on one PostgreSQL and Redis).
    Worker,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dotenvy::dotenv().ok();
    let cli = Cli::parse();
    telemetry::init(cli.settings.log_format);
    cli.settings.require_bot().context("starting rei-bot")?;
    let app = App::build(&cli.settings)
        .await
        .context("starting rei-bot")?;
    app.check_ledger().await.context("starting rei-bot")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown::on_signal(shutdown.clone()));
    match cli.command.unwrap_or(Command::Run) {
        Command::Worker => app.run_workers(shutdown).await?,
        Command::Run => app.run_all(shutdown).await?,
    }
    Ok(())
}
