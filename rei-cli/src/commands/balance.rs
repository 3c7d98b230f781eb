//! `rei-cli balance add|sub`: audited adjustments, never below zero, safe to retry.
//!
//! Every adjustment has an idempotency key: `--key K` (also `--idempotency-key`), or a new
//! one made for this run. It is printed on stderr **before** anything is written, and
//! again with the result (and in `--json`) and with every failure: repeating the command
//! with `--key K` applies it at most once, so an operator whose command was cut off can
//! simply run it again.
//!
//! Without `--key`, an adjustment identical to one made in the last ten minutes (same
//! user, direction, amount and reason) is refused: that is a command run twice by
//! mistake. `--again` makes it anyway.

use clap::{Args, Subcommand};
use rei_core::ids::{IdempotencyKey, UserId};
use rei_core::ledger::EntryKind;
use rei_core::money::Money;
use rei_core::user::{Adjustment, REPEAT_WINDOW, Repeats, UserError};
use serde_json::json;

use super::{Ctx, admin_failure};
use crate::Failure;

/// What an adjustment takes, either way.
#[derive(Debug, Args)]
pub(crate) struct AdjustArgs {
    /// Telegram id.
    tg_id: UserId,
    /// Rubles, up to two decimals.
    amount: Money,
    /// Why (kept in the audit log).
    #[arg(long)]
    reason: String,
    /// Makes the command apply at most once however often it runs (a new key per run
    /// when absent; the key used is always printed, before anything is written).
    #[arg(long, visible_alias = "idempotency-key")]
    key: Option<String>,
    /// Make it even if an identical adjustment was made in the last ten minutes.
    #[arg(long)]
    again: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BalanceCommand {
    /// Credits rubles (e.g. 50 or 12.50); the user is told when BOT_TOKEN is set.
    #[command(
        after_help = "Example: rei-cli balance add 123456789 150 --reason \"support ticket 4411\""
    )]
    Add(AdjustArgs),
    /// Debits rubles; refused when the balance is smaller.
    #[command(
        after_help = "Example: rei-cli balance sub 123456789 50 --reason \"chargeback\" --key ticket-4411"
    )]
    Sub(AdjustArgs),
}

pub(crate) async fn run(ctx: &Ctx, c: &BalanceCommand) -> Result<(), Failure> {
    let (BalanceCommand::Add(args) | BalanceCommand::Sub(args)) = c;
    let AdjustArgs {
        tg_id,
        amount,
        reason,
        key,
        again,
    } = args;
    let shown = key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let idempotency_key = IdempotencyKey::new(format!("cli:{shown}"))
        .map_err(|e| Failure::Usage(format!("--key: {e}")))?;
    // Before anything is written: a command cut off (a timeout, a lost terminal) can be
    // repeated with this key and applies at most once.
    eprintln!("idempotency key: {shown} (to repeat this command safely: --key {shown})");
    let repeats = if key.is_some() || *again {
        Repeats::Allow
    } else {
        Repeats::RefuseWithin(REPEAT_WINDOW)
    };
    let request = Adjustment {
        actor: Ctx::actor(),
        user: *tg_id,
        kind: match c {
            BalanceCommand::Add { .. } => EntryKind::Credit,
            BalanceCommand::Sub { .. } => EntryKind::Debit,
        },
        amount: *amount,
        reason: reason.clone(),
        key: idempotency_key,
        repeats,
    };
    let posted = ctx
        .app.services
        .admin
        .adjust_balance(request)
        .await
        .map_err(|e| {
            if let UserError::RepeatedAdjustment { key, .. } = &e {
                let earlier = key.as_str().strip_prefix("cli:").unwrap_or(key.as_str());
                return Failure::Usage(format!(
                    "{e}: not made again. To make a second one, add --again; to finish that one if unsure it went through, run with --key {earlier}"
                ));
            }
            let retry = format!(
                " (idempotency key {shown}: to retry safely, run the same command with --key {shown})"
            );
            match admin_failure(e) {
                Failure::Usage(m) => Failure::Usage(m + &retry),
                Failure::Operational(m) => Failure::Operational(m + &retry),
                Failure::Reported => Failure::Reported,
            }
        })?;
    let notices_sent = ctx.send_notices().await;
    let value = json!({
        "tg_id": tg_id.get(),
        "entry_id": posted.entry.id,
        "amount_kopecks": posted.entry.amount.kopecks(),
        "type": posted.entry.kind.as_str(),
        "balance_kopecks": posted.balance.kopecks(),
        "replayed": posted.replayed,
        "idempotency_key": shown,
        // The user's notice was written with the entry (the outbox); it goes out at
        // once with BOT_TOKEN set, else when the bot next looks.
        "notice": if posted.replayed { "none" } else { "queued" },
        "notices_sent": notices_sent,
    });
    let verb = if posted.entry.kind == EntryKind::Credit {
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
