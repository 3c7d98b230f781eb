//! Command groups; each returns data that `output` renders.

mod balance;
mod jobs;
mod ledger;
mod payments;
mod user;

use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use rei_adapters::backends::{BackendsConfig, connect};
use rei_adapters::sql::{DatabaseTarget, Stores};
use rei_adapters::system::{LogNotifier, SystemClock};
use rei_core::ids::UserId;
use rei_core::ports::JobQueue;
use rei_core::user::{Actor, AdminPorts, AdminService};

use crate::Failure;
use crate::output::Output;

/// Every command.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Applies database migrations (also done at every start of the bot).
    Migrate,
    /// Users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Balance adjustments (audited).
    #[command(subcommand)]
    Balance(balance::BalanceCommand),
    /// The ledger.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Users, balances total, payments, jobs by status, queue depth.
    Stats,
    /// Payments.
    #[command(subcommand)]
    Payments(payments::PaymentsCommand),
    /// Jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
}

/// What every command can use.
pub(crate) struct Ctx {
    pub stores: Stores,
    pub queue: Arc<dyn JobQueue>,
    pub out: Output,
}

impl Ctx {
    /// The actor of audited commands: `cli:<OS user>`.
    pub(crate) fn actor() -> Actor {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        Actor::Cli(user)
    }

    pub(crate) fn admin(&self) -> AdminService {
        let clock = Arc::new(SystemClock);
        AdminService::new(AdminPorts {
            users: self.stores.users.clone(),
            ledger: self.stores.ledger.clone(),
            queue: self.queue.clone(),
            notifier: Arc::new(LogNotifier),
            clock,
        })
    }

    /// Fails with a usage error when the user is not registered.
    pub(crate) async fn known_user(&self, id: UserId) -> Result<rei_core::user::User, Failure> {
        self.stores
            .users
            .user(id)
            .await
            .map_err(operational)?
            .ok_or_else(|| Failure::Usage(format!("user {id} is not registered")))
    }
}

/// A store failure is operational (exit 1).
pub(crate) fn operational(e: impl std::fmt::Display) -> Failure {
    Failure::Operational(e.to_string())
}

/// Maps an admin operation's error: backend failures are operational (exit 1),
/// everything else — unknown user, zero amount, insufficient balance — is the caller's
/// (exit 2).
pub(crate) fn admin_failure(e: rei_core::user::UserError) -> Failure {
    match e {
        rei_core::user::UserError::Store(s) => operational(s),
        rei_core::user::UserError::Queue(q) => operational(q),
        usage => Failure::Usage(usage.to_string()),
    }
}

/// Parses `7d`, `24h`, `30m`, `45s`.
pub(crate) fn parse_age(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not an age like 7d, 24h, 30m or 45s"))?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    };
    secs.map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is not an age like 7d, 24h, 30m or 45s"))
}

/// Opens the database (and the queue) and runs a command.
pub(crate) async fn run(
    command: &Command,
    url: Option<&str>,
    path: &str,
    redis_url: Option<String>,
    out: &Output,
) -> Result<(), Failure> {
    let database =
        DatabaseTarget::from_config(url, path).map_err(|e| Failure::Usage(e.to_string()))?;
    let backends = connect(&BackendsConfig {
        database,
        redis_url,
        rate_limit_per_minute: 1,
        lease_for: Duration::from_secs(60),
    })
    .await
    .map_err(|e| operational(format!("{e}: {}", source_chain(&e))))?;
    let ctx = Ctx {
        stores: backends.stores,
        queue: backends.queue,
        out: *out,
    };
    match command {
        Command::Migrate => {
            out.message(
                &serde_json::json!({ "migrated": true }),
                "migrations applied",
            );
            Ok(())
        }
        Command::User(c) => user::run(&ctx, c).await,
        Command::Balance(c) => balance::run(&ctx, c).await,
        Command::Ledger(c) => ledger::run(&ctx, c).await,
        Command::Stats => ledger::stats(&ctx).await,
        Command::Payments(c) => payments::run(&ctx, c).await,
        Command::Jobs(c) => jobs::run(&ctx, c).await,
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1_800)));
        assert!(parse_age("7w").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("").is_err());
    }
}
