//! `rei-cli`: the admin tool. Talks to the same database as the bot.
//!
//! Exit codes: 0 success, 1 operational failure (e.g. a broken invariant, an unreachable
//! database), 2 usage error (bad arguments, unknown user). Every mutating command is
//! written to the admin audit log as `cli:<OS user>`.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use rei_adapters::app::Settings;

/// REI admin tool. Reads the bot's settings from the environment or `.env`:
/// `DATABASE_URL` / `DATABASE_PATH` and `REDIS_URL` (the same backends as the bot),
/// `BOT_TOKEN` (users are told of manual credits and debits; Stars refunds),
/// `YOOKASSA_SHOP_ID` / `YOOKASSA_SECRET_KEY` (reconcile, refunds), the prices,
/// `ASSET_DIR` and `ASSET_RETENTION_DAYS`.
#[derive(Debug, Parser)]
#[command(
    name = "rei-cli",
    version,
    about,
    after_help = "Exit codes: 0 success, 1 operational failure, 2 usage error.\nExample: rei-cli --json stats"
)]
struct Cli {
    /// Machine-readable output (one JSON value on stdout; errors as {"error": …}).
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: commands::Command,
}

/// How a command failed, deciding the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad arguments, unknown user: exit 2.
    Usage(String),
    /// Broken invariant, unreachable database: exit 1.
    Operational(String),
    /// Exit 1, the output already said why (a report that found problems).
    Reported,
}

/// The command line: the bot's settings are read from the environment and accepted as
/// flags anywhere on the line, but left out of `--help` (they are the bot's, listed in
/// `docs/configuration.md`).
fn parse() -> Result<Cli, clap::Error> {
    let command = Cli::command().mut_args(|arg| {
        if arg.get_env().is_some() {
            arg.global(true).hide(true)
        } else {
            arg
        }
    });
    let mut matches = command.try_get_matches()?;
    Cli::from_arg_matches_mut(&mut matches)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    dotenvy::dotenv().ok();
    // Logs go to stderr (warnings by default; `RUST_LOG` for more), so stdout stays the
    // command's output, e.g. clean JSON.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = match parse() {
        Ok(cli) => cli,
        // --help and --version print in full; a usage error is one line naming the
        // problem (clap's own first line), with a hint to --help.
        Err(e) if !e.use_stderr() => {
            return if e.print().is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let out = output::Output { json: cli.json };
    match commands::run(&cli.command, &cli.settings, &out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            out.error(&msg);
            ExitCode::from(2)
        }
        Err(Failure::Operational(msg)) => {
            out.error(&msg);
            ExitCode::from(1)
        }
        Err(Failure::Reported) => ExitCode::from(1),
    }
}
