//! `rei-cli balance add|sub`: audited adjustments, never below zero, safe to retry.
//!
//! Every adjustment has an idempotency key: `--idempotency-key K`, or a new one made for
//! this run. It is printed with the result (and in `--json`), and with every failure:
//! repeating the command with `--idempotency-key K` applies it at most once, so an
//! operator who is unsure whether a run went through can simply run it again.

use clap::Subcommand;
use rei_core::ids::{IdempotencyKey, UserId};
use rei_core::money::Money;
use serde_json::json;

use super::{Ctx, admin_failure};
use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum BalanceCommand {
    /// Credits rubles (e.g. 50 or 12.50); the user is told when BOT_TOKEN is set.
    #[command(
        after_help = "Example: rei-cli balance add 123456789 150 --reason \"support ticket 4411\""
    )]
    Add {
        /// Telegram id.
        tg_id: UserId,
        /// Rubles, up to two decimals.
        amount: Money,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        /// Makes the command apply at most once however often it runs (a new key per run
        /// when absent; the key used is always printed).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Debits rubles; refused when the balance is smaller.
    #[command(
        after_help = "Example: rei-cli balance sub 123456789 50 --reason \"chargeback\" --idempotency-key ticket-4411"
    )]
    Sub {
        /// Telegram id.
        tg_id: UserId,
        /// Rubles, up to two decimals.
        amount: Money,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        /// Makes the command apply at most once however often it runs (a new key per run
        /// when absent; the key used is always printed).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

pub(crate) async fn run(ctx: &Ctx, c: &BalanceCommand) -> Result<(), Failure> {
    let (BalanceCommand::Add {
        tg_id,
        amount,
        reason,
        idempotency_key,
    }
    | BalanceCommand::Sub {
        tg_id,
        amount,
        reason,
        idempotency_key,
    }) = c;
    let shown = idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let key = IdempotencyKey::new(format!("cli:{shown}"))
        .map_err(|e| Failure::Usage(format!("--idempotency-key: {e}")))?;
    let admin = &ctx.services.admin;
    let result = match c {
        BalanceCommand::Add { .. } => {
            admin
                .credit(Ctx::actor(), *tg_id, *amount, reason, key)
                .await
        }
        BalanceCommand::Sub { .. } => {
            admin
                .debit(Ctx::actor(), *tg_id, *amount, reason, key)
                .await
        }
    };
    let posted = result.map_err(|e| {
        let retry = format!(
            " (idempotency key {shown}: to retry safely, run the same command with --idempotency-key {shown})"
        );
        match admin_failure(e) {
            Failure::Usage(m) => Failure::Usage(m + &retry),
            Failure::Operational(m) => Failure::Operational(m + &retry),
            Failure::Reported => Failure::Reported,
        }
    })?;
    let value = json!({
        "tg_id": tg_id.get(),
        "entry_id": posted.entry.id,
        "amount_kopecks": posted.entry.amount.kopecks(),
        "type": posted.entry.kind.as_str(),
        "balance_kopecks": posted.balance.kopecks(),
        "replayed": posted.replayed,
        "idempotency_key": shown,
        "user_told": ctx.services.tells_users && !posted.replayed,
    });
    let verb = if posted.entry.kind == rei_core::ledger::EntryKind::Credit {
        "credited"
    } else {
        "debited"
    };
    let note = if posted.replayed {
        " (already applied earlier; nothing changed)"
    } else {
        ""
    };
    ctx.out.message(
        &value,
        &format!(
            "{verb} {} to {tg_id}; balance {}{note}\nidempotency key: {shown}",
            posted.entry.amount, posted.balance
        ),
    );
    Ok(())
}
