//! `rei-cli balance add|sub`: audited adjustments, never below zero.

use clap::Subcommand;
use rei_core::ids::{IdempotencyKey, UserId};
use rei_core::money::Money;
use serde_json::json;

use super::{Ctx, admin_failure};
use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum BalanceCommand {
    /// Credits rubles (e.g. 50 or 12.50).
    Add {
        tg_id: UserId,
        amount: Money,
        #[arg(long)]
        reason: String,
        /// Makes a retried command apply once (default: a new key per run).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Debits rubles; refused when the balance is smaller.
    Sub {
        tg_id: UserId,
        amount: Money,
        #[arg(long)]
        reason: String,
        /// Makes a retried command apply once (default: a new key per run).
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
    let key = match idempotency_key {
        Some(k) => {
            IdempotencyKey::new(format!("cli:{k}")).map_err(|e| Failure::Usage(e.to_string()))?
        }
        None => IdempotencyKey::derived("cli", &uuid::Uuid::new_v4(), "adjust"),
    };
    let admin = ctx.admin();
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
    let posted = result.map_err(admin_failure)?;
    let value = json!({
        "tg_id": tg_id.get(),
        "entry_id": posted.entry.id,
        "amount_kopecks": posted.entry.amount.kopecks(),
        "type": posted.entry.kind.as_str(),
        "balance_kopecks": posted.balance.kopecks(),
        "replayed": posted.replayed,
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
            "{verb} {} to {tg_id}; balance {}{note}",
            posted.entry.amount, posted.balance
        ),
    );
    Ok(())
}
