//! `rei-cli ledger history|verify` and `rei-cli stats`.

use clap::Subcommand;
use rei_core::ids::UserId;
use serde_json::json;

use super::{Ctx, ledger_failure, operational};
use crate::Failure;
use crate::output::when;

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// A user's newest entries.
    #[command(after_help = "Example: rei-cli ledger history 123456789 --limit 50")]
    History {
        /// Telegram id.
        tg_id: UserId,
        /// How many entries.
        #[arg(long, default_value = "20")]
        limit: u32,
    },
    /// Checks every invariant across the database; exit 1 when any is broken.
    #[command(after_help = "Example: rei-cli ledger verify || alert-someone")]
    Verify,
}

pub(crate) async fn run(ctx: &Ctx, c: &LedgerCommand) -> Result<(), Failure> {
    match c {
        LedgerCommand::History { tg_id, limit } => {
            ctx.known_user(*tg_id).await?;
            let entries = ctx
                .app
                .services
                .ledger
                .history(*tg_id, (*limit).clamp(1, 1000))
                .await
                .map_err(ledger_failure)?;
            ctx.out
                .list(
                    &entries,
                    &[
                        "id",
                        "at (UTC)",
                        "type",
                        "amount",
                        "ref",
                        "ref id",
                        "description",
                    ],
                    |e| {
                        vec![
                            e.id.to_string(),
                            when(e.created_at),
                            e.kind.to_string(),
                            e.amount.to_string(),
                            e.ref_type.to_string(),
                            e.ref_id.clone(),
                            e.description.clone(),
                        ]
                    },
                )
                .map_err(operational)?;
            Ok(())
        }
        LedgerCommand::Verify => {
            let report = ctx.verify_ledger().await?;
            let value = serde_json::to_value(&report).map_err(operational)?;
            let mut text = format!(
                "checked {} users, {} entries, {} reservations: {} violation(s)",
                report.users_checked,
                report.entries_checked,
                report.reservations_checked,
                report.violations.len()
            );
            for v in &report.violations {
                text.push_str("\n  ");
                text.push_str(&serde_json::to_string(v).map_err(operational)?);
            }
            ctx.out.message(&value, &text);
            // The report said what is broken; the exit code says that something is.
            if report.is_ok() {
                Ok(())
            } else {
                Err(Failure::Reported)
            }
        }
    }
}

pub(crate) async fn stats(ctx: &Ctx) -> Result<(), Failure> {
    let report = ctx
        .app
        .services
        .admin
        .stats()
        .await
        .map_err(crate::commands::admin_failure)?;
    let s = &report.stats;
    let depth = report.queue_depth;
    let value = json!({
        "users": s.users,
        "banned_users": s.banned_users,
        "balances_total_kopecks": s.balances_total.kopecks(),
        "held_total_kopecks": s.held_total.kopecks(),
        "jobs": s.jobs_by_state.iter().map(|(st, n)| (st.as_str().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "payments": s.payments_by_state.iter().map(|(st, n, sum)| (st.as_str().to_owned(), json!({"count": n, "amount_kopecks": sum.kopecks()}))).collect::<serde_json::Map<_, _>>(),
        "queue_depth": depth,
        "active_24h": s.active_since,
        "failed_jobs_24h": s.failed_since,
        "unreachable_users": s.unreachable_users,
        "bonuses_total_kopecks": s.bonuses_total.kopecks(),
    });
    let mut rows = vec![
        vec!["users".into(), s.users.to_string()],
        vec!["banned users".into(), s.banned_users.to_string()],
        vec!["balances total".into(), s.balances_total.to_string()],
        vec!["held by running jobs".into(), s.held_total.to_string()],
        vec![
            "given as bonuses (not paid)".into(),
            s.bonuses_total.to_string(),
        ],
        vec![
            "queue depth (jobs with work left)".into(),
            depth.to_string(),
        ],
        vec!["active users (24 h)".into(), s.active_since.to_string()],
        vec!["failed jobs (24 h)".into(), s.failed_since.to_string()],
        vec![
            "users who blocked the bot".into(),
            s.unreachable_users.to_string(),
        ],
    ];
    rows.extend(
        s.jobs_by_state
            .iter()
            .map(|(st, n)| vec![format!("jobs {st}"), n.to_string()]),
    );
    rows.extend(
        s.payments_by_state
            .iter()
            .map(|(st, n, sum)| vec![format!("payments {st}"), format!("{n} ({sum})")]),
    );
    ctx.out.table(&value, &["metric", "value"], rows);
    Ok(())
}
