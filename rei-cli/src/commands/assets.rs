//! `rei-cli assets cleanup`: deletes old inputs and results, never those of a job with
//! work left (queued, running, or a result still to deliver).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use rei_adapters::outbound::files::AssetStore;
use serde_json::json;

use super::{Ctx, job_failure, operational, parse_age};
use crate::Failure;

/// Jobs with work left whose files are kept, at most.
const IN_USE_LIMIT: u32 = 100_000;

#[derive(Debug, Subcommand)]
pub(crate) enum AssetsCommand {
    /// Deletes files under ASSET_DIR older than the age given (default
    /// ASSET_RETENTION_DAYS), except those of jobs with work left; prints what it freed.
    #[command(after_help = "Example: rei-cli assets cleanup --older-than 14d --dry-run")]
    Cleanup {
        /// Age like 7d, 24h (default: ASSET_RETENTION_DAYS).
        #[arg(long, value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) async fn run(ctx: &Ctx, c: &AssetsCommand) -> Result<(), Failure> {
    let AssetsCommand::Cleanup {
        older_than,
        dry_run,
    } = c;
    let age = older_than.unwrap_or(ctx.app.retention);
    let cutoff = SystemTime::now()
        .checked_sub(age)
        .ok_or_else(|| Failure::Usage("--older-than is too large".into()))?;
    let keep: HashSet<String> = ctx
        .app
        .services
        .jobs
        .assets_in_use(IN_USE_LIMIT)
        .await
        .map_err(job_failure)?
        .into_iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    let assets = &ctx.app.assets;
    let doomed = assets.plan(cutoff, &keep).await.map_err(operational)?;
    let bytes: u64 = doomed.iter().map(|f| f.bytes).sum();
    let mut deleted = 0_u64;
    if !dry_run {
        let bar = ctx.out.progress(doomed.len() as u64, "deleting");
        for file in &doomed {
            if AssetStore::delete(file).await.map_err(operational)? {
                deleted += 1;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    let value = json!({
        "dry_run": dry_run,
        "older_than_secs": age.as_secs(),
        "files": doomed.iter().map(|f| json!({"key": f.key, "bytes": f.bytes})).collect::<Vec<_>>(),
        "deleted": deleted,
        "bytes": bytes,
        "kept_in_use": keep.len(),
    });
    let mut text = if *dry_run {
        format!("would delete {} file(s), {}", doomed.len(), human(bytes))
    } else {
        format!("deleted {deleted} file(s), freed {}", human(bytes))
    };
    if *dry_run {
        for f in &doomed {
            text.push_str(&format!("\n  {} ({})", f.key, human(f.bytes)));
        }
    }
    ctx.out.message(&value, &text);
    Ok(())
}

fn human(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        format!("{}.{} MiB", bytes / MIB, (bytes % MIB) * 10 / MIB)
    } else {
        format!("{bytes} bytes")
    }
}
