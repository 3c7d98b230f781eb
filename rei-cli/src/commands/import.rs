//! `rei-cli import-legacy <path>`: the v2.0 Python bot's data into REI.

use std::path::Path;

use rei_adapters::outbound::legacy::{self, LegacyError};
use rei_core::legacy::ImportError;
use rei_core::ports::Clock;
use serde_json::json;

use super::{Ctx, operational};
use crate::Failure;

pub(crate) async fn run(ctx: &Ctx, path: &Path) -> Result<(), Failure> {
    let spinner = ctx.out.progress(0, "reading the legacy file");
    let snapshot = legacy::read(path).await.map_err(|e| match e {
        LegacyError::Open { .. } | LegacyError::Schema(_) | LegacyError::Rows(_) => {
            Failure::Usage(e.to_string())
        }
    })?;
    spinner.set_message("importing");
    let now = rei_adapters::outbound::system::SystemClock.now();
    let report = rei_core::legacy::import(&ctx.app.services.import, &snapshot, Ctx::actor(), now)
        .await
        .map_err(|e| match e {
            ImportError::Inconsistent(_) => Failure::Usage(format!("nothing imported: {e}")),
            ImportError::Store(s) => Failure::Operational(format!(
                "{s} (the import stopped part-way; run it again: it continues where it stopped)"
            )),
        })?;
    spinner.set_message("verifying the ledger");
    let verify = ctx.verify_ledger().await?;
    spinner.finish_and_clear();
    let value = json!({
        "users": report.users, "users_new": report.users_new,
        "entries": report.entries, "entries_new": report.entries_new,
        "payments": report.payments, "payments_new": report.payments_new,
        "jobs": report.jobs, "jobs_new": report.jobs_new,
        "balances_total_kopecks": report.balances_total.kopecks(),
        "payments_credited": report.payments_credited,
        "skipped": report.skipped,
        "ledger_verified": verify.is_ok(),
        "violations": serde_json::to_value(&verify.violations).map_err(operational)?,
    });
    let rows = vec![
        vec![
            "users".into(),
            report.users.to_string(),
            report.users_new.to_string(),
        ],
        vec![
            "ledger entries".into(),
            report.entries.to_string(),
            report.entries_new.to_string(),
        ],
        vec![
            "payments".into(),
            report.payments.to_string(),
            report.payments_new.to_string(),
        ],
        vec![
            "jobs (history)".into(),
            report.jobs.to_string(),
            report.jobs_new.to_string(),
        ],
    ];
    if ctx.out.json {
        ctx.out.message(&value, "");
    } else {
        ctx.out
            .table(&value, &["", "in the file", "imported now"], rows);
        if report.payments_credited > 0 {
            println!(
                "{} payment(s) imported before as unpaid were paid in the old bot: credited now, once",
                report.payments_credited
            );
        }
        for line in &report.skipped {
            println!("skipped: {line}");
        }
        println!(
            "balances total {}; ledger verify: {}",
            report.balances_total,
            if verify.is_ok() {
                "ok".to_owned()
            } else {
                format!(
                    "{} violation(s) — run `rei-cli ledger verify`",
                    verify.violations.len()
                )
            }
        );
    }
    if verify.is_ok() {
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}
