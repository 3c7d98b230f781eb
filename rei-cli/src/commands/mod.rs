//! Command groups. Each goes through a core service built by `App::build` and hands its
//! result to `output` (a table for people, JSON with `--json`).

mod assets;
mod balance;
mod broadcast;
mod import;
mod jobs;
mod ledger;
mod payments;
mod prices;
mod promo;
mod user;

use std::time::Duration;

use clap::Subcommand;
use rei_core::ids::UserId;
use rei_core::user::Actor;

use crate::Failure;
use crate::output::Output;
use rei_adapters::app::{App, AppError, Settings};

/// Every command.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Applies database migrations (also done at every start of the bot).
    #[command(after_help = "Example: rei-cli migrate")]
    Migrate,
    /// Users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Balance adjustments (audited; the user is told when BOT_TOKEN is set).
    #[command(subcommand)]
    Balance(balance::BalanceCommand),
    /// The ledger.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Users, balances total, payments, jobs by status, queue depth.
    #[command(after_help = "Example: rei-cli --json stats")]
    Stats,
    /// Payments.
    #[command(subcommand)]
    Payments(payments::PaymentsCommand),
    /// Jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Promo codes (`/promo CODE` in the bot).
    #[command(subcommand)]
    Promo(promo::PromoCommand),
    /// Live prices: listed and changed without a restart.
    #[command(subcommand)]
    Prices(prices::PricesCommand),
    /// Broadcasts: a message to a segment of users, sent by `rei-bot run`.
    #[command(subcommand)]
    Broadcast(broadcast::BroadcastCommand),
    /// Downloaded inputs and generated results under ASSET_DIR.
    #[command(subcommand)]
    Assets(assets::AssetsCommand),
    /// Imports users, ledger, jobs and payments from the v2.0 Python bot's SQLite file.
    /// Checks everything first (a file whose balances do not add up is refused, naming
    /// each problem, and nothing changes); running it twice imports nothing new;
    /// amounts become kopecks; YooKassa payment ids are kept. Ends with `ledger verify`.
    #[command(after_help = "Example: rei-cli import-legacy ./old/bot.db")]
    ImportLegacy {
        /// The v2.0 bot's SQLite file (opened read-only).
        path: std::path::PathBuf,
    },
}

/// What every command can use.
pub(crate) struct Ctx {
    pub app: App,
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

    /// After a money change: sends what the outbox holds when `BOT_TOKEN` is set (the
    /// user hears at once, even with no bot running); returns how many went. Without
    /// it the notices wait in the outbox for the bot.
    pub(crate) async fn send_notices(&self) -> u32 {
        match self.app.notices() {
            Some(dispatcher) => rei_adapters::inbound::notices::drain(dispatcher).await.sent,
            None => 0,
        }
    }

    /// Checks the ledger's invariants (`ledger verify`, and after an import).
    pub(crate) async fn verify_ledger(&self) -> Result<rei_core::ledger::VerifyReport, Failure> {
        let ledger = &self.app.services.ledger;
        ledger.verify().await.map_err(ledger_failure)
    }

    /// Fails with a usage error when the user is not registered.
    pub(crate) async fn known_user(&self, id: UserId) -> Result<rei_core::user::User, Failure> {
        self.app
            .services
            .users
            .user(id)
            .await
            .map_err(admin_failure)?
            .ok_or_else(|| Failure::Usage(format!("user {id} is not registered")))
    }
}

/// A backend failure is operational (exit 1).
pub(crate) fn operational(e: impl std::fmt::Display) -> Failure {
    Failure::Operational(e.to_string())
}

/// A user or admin operation's error: backend failures are operational (exit 1),
/// everything else — unknown user, zero amount, insufficient balance — is the caller's
/// (exit 2).
pub(crate) fn admin_failure(e: rei_core::user::UserError) -> Failure {
    match e {
        rei_core::user::UserError::Store(s) => operational(s),
        rei_core::user::UserError::Queue(q) => operational(q),
        usage => Failure::Usage(usage.to_string()),
    }
}

/// A job operation's error, split the same way.
pub(crate) fn job_failure(e: rei_core::job::JobError) -> Failure {
    use rei_core::job::JobError;
    match e {
        e @ (JobError::Store(_) | JobError::Queue(_) | JobError::LeaseLost(_)) => operational(e),
        usage => Failure::Usage(usage.to_string()),
    }
}

/// A payment operation's error: the database or a provider failing is operational.
pub(crate) fn payment_failure(e: rei_core::payment::PaymentError) -> Failure {
    use rei_core::payment::PaymentError;
    match e {
        e @ (PaymentError::Store(_) | PaymentError::Provider(_)) => operational(e),
        PaymentError::MethodUnavailable => Failure::Usage(
            "the payment provider is not configured here (YOOKASSA_SHOP_ID / YOOKASSA_SECRET_KEY, or BOT_TOKEN for Stars)".into(),
        ),
        usage => Failure::Usage(usage.to_string()),
    }
}

/// A ledger read's error.
pub(crate) fn ledger_failure(e: rei_core::ledger::LedgerError) -> Failure {
    use rei_core::ledger::LedgerError;
    match e {
        LedgerError::UnknownUser(u) => Failure::Usage(format!("user {u} is not registered")),
        LedgerError::Store(s) => operational(s),
    }
}

/// Parses `7d`, `24h`, `30m`, `45s`.
pub(crate) fn parse_age(s: &str) -> Result<Duration, String> {
    // Split where the digits end (a char boundary whatever the unit is written in).
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
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

/// Settings that do not hold together, or a database URL of no known kind, are the
/// caller's to fix (exit 2); a backend that does not answer is operational (exit 1).
fn build_failure(e: AppError) -> Failure {
    use rei_adapters::app::backends::BackendsError;
    use rei_adapters::outbound::sql::SqlError;
    let message = source_chain(&e);
    match e {
        AppError::Settings(_)
        | AppError::Setting { .. }
        | AppError::Backends(
            BackendsError::Database(SqlError::BadUrl(_)) | BackendsError::ZeroRateLimit,
        ) => Failure::Usage(message),
        _ => Failure::Operational(message),
    }
}

/// An error and its causes, on one line.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Opens the backends, builds the services and runs a command.
pub(crate) async fn run(
    command: &Command,
    settings: &Settings,
    out: &Output,
) -> Result<(), Failure> {
    let app = App::build(settings).await.map_err(build_failure)?;
    let ctx = Ctx { app, out: *out };
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
        Command::Assets(c) => assets::run(&ctx, c).await,
        Command::Promo(c) => promo::run(&ctx, c).await,
        Command::Prices(c) => prices::run(&ctx, c).await,
        Command::Broadcast(c) => broadcast::run(&ctx, c).await,
        Command::ImportLegacy { path } => import::run(&ctx, path).await,
    }
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

    /// [edge] Every string of up to three characters from digits, units, signs and
    /// multibyte letters (the `7д` that once panicked): an age or a message, never a panic.
    #[test]
    fn no_short_string_panics_the_age_parser() {
        let alphabet = [
            '0', '7', '9', 'd', 'h', 'm', 's', 'w', 'д', 'ч', '-', '+', ' ', '.', '😀',
        ];
        let mut checked = 0;
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for s in [
                        a.to_string(),
                        format!("{a}{b}"),
                        format!("{a}{b}{c}"),
                        format!("99999999999999999999{a}"),
                    ] {
                        if let Ok(age) = parse_age(&s) {
                            assert!(s.ends_with(['d', 'h', 'm', 's']), "{s} → {age:?}");
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 4 * 15 * 15 * 15);
    }
}
