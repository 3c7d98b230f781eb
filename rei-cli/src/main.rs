//! `rei-cli`: the admin tool. Talks to the same database as the bot.
//!
//! Exit codes: 0 success, 1 operational failure (e.g. a broken invariant, an unreachable
//! database), 2 usage error (bad arguments, unknown user). Every mutating command is
//! written to the admin audit log as `cli:<OS user>`.

mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// REI admin tool. Reads `DATABASE_URL` / `DATABASE_PATH` from the environment or `.env`.
#[derive(Debug, Parser)]
#[command(name = "rei-cli", version, about)]
struct Cli {
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// SQLite file (created if absent).
    #[arg(
        long,
        env = "DATABASE_PATH",
        default_value = "rei_bot.db",
        global = true
    )]
    database_path: String,
    /// `sqlite://…` or `postgres://…`; wins over `DATABASE_PATH`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// Redis of the bot's job queue, if it uses one (queue depth, requeues).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    redis_url: Option<String>,
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let out = output::Output { json: cli.json };
    match commands::run(
        &cli.command,
        cli.database_url.as_deref(),
        &cli.database_path,
        cli.redis_url,
        &out,
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            out.error(&msg);
            ExitCode::from(2)
        }
        Err(Failure::Operational(msg)) => {
            out.error(&msg);
            ExitCode::from(1)
        }
    }
}
