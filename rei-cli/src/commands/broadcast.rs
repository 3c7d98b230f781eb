//! `rei-cli broadcast create|start|pause|cancel|status`.

use clap::Subcommand;
use rei_core::broadcast::{Broadcast, BroadcastError, Segment};
use serde_json::json;

use super::{Ctx, operational};
use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum BroadcastCommand {
    /// Composes a broadcast (not sent yet): shows it and how many users it would reach.
    /// Audited.
    #[command(
        after_help = "Example: rei-cli broadcast create --text \"New: 4K images\" --button \"Try=https://t.me/rei_bot\" --segment active:30d"
    )]
    Create {
        /// The message (up to 4096 characters; 1024 with a photo).
        #[arg(long)]
        text: String,
        /// A photo sent with the text as its caption.
        #[arg(long)]
        photo: Option<std::path::PathBuf>,
        /// A URL button: "label=https://…".
        #[arg(long)]
        button: Option<String>,
        /// Who gets it: all, paid, active:<N>d, lang:ru, lang:en.
        #[arg(long, default_value = "all", value_parser = parse_segment)]
        segment: Segment,
    },
    /// Starts a composed broadcast (its recipients are chosen now) or resumes a paused
    /// one; `rei-bot run` sends it at TELEGRAM_SEND_RATE. Audited.
    #[command(after_help = "Example: rei-cli broadcast start 3")]
    Start {
        /// The broadcast.
        id: i64,
    },
    /// Pauses a running broadcast. Audited.
    #[command(after_help = "Example: rei-cli broadcast pause 3")]
    Pause {
        /// The broadcast.
        id: i64,
    },
    /// Cancels a broadcast for good. Audited.
    #[command(after_help = "Example: rei-cli broadcast cancel 3")]
    Cancel {
        /// The broadcast.
        id: i64,
    },
    /// Progress: sent, blocked, failed, unknown (cut off by a crash, never sent twice)
    /// of all recipients, as a bar.
    #[command(after_help = "Example: rei-cli broadcast status 3")]
    Status {
        /// The broadcast.
        id: i64,
    },
}

fn parse_segment(s: &str) -> Result<Segment, String> {
    Segment::parse(s).map_err(|e| e.to_string())
}

fn failure(e: BroadcastError) -> Failure {
    match e {
        BroadcastError::Store(s) => operational(s),
        BroadcastError::User(u) => operational(u),
        usage => Failure::Usage(usage.to_string()),
    }
}

fn broadcast_json(b: &Broadcast, reach: Option<u32>) -> serde_json::Value {
    json!({
        "id": b.id,
        "state": b.state.as_str(),
        "segment": b.segment.name(),
        "text": b.text,
        "photo": b.photo,
        "button": b.button.as_ref().map(|x| json!({"label": x.label, "url": x.url})),
        "recipients": b.recipients,
        "reach": reach,
        "sent": b.sent,
        "blocked": b.blocked,
        "failed": b.failed,
        "unknown": b.unknown,
        "pending": b.pending(),
    })
}

fn broadcast_row(b: &Broadcast) -> Vec<String> {
    vec![
        b.id.to_string(),
        b.state.as_str().to_owned(),
        b.segment.name(),
        b.recipients.to_string(),
        b.sent.to_string(),
        b.blocked.to_string(),
        b.failed.to_string(),
        b.unknown.to_string(),
        b.pending().to_string(),
    ]
}

const HEADER: [&str; 9] = [
    "id",
    "state",
    "segment",
    "recipients",
    "sent",
    "blocked",
    "failed",
    "unknown",
    "pending",
];

pub(crate) async fn run(ctx: &Ctx, c: &BroadcastCommand) -> Result<(), Failure> {
    let broadcasts = &ctx.app.services.broadcasts;
    let (shown, reach) = match c {
        BroadcastCommand::Create {
            text,
            photo,
            button,
            segment,
        } => {
            let photo = match photo {
                Some(path) => Some(store_photo(ctx, path).await?),
                None => None,
            };
            let (made, reach) = broadcasts
                .create(Ctx::actor(), text, photo, button.as_deref(), *segment)
                .await
                .map_err(failure)?;
            (made, Some(reach))
        }
        BroadcastCommand::Start { id } => (
            broadcasts.start(Ctx::actor(), *id).await.map_err(failure)?,
            None,
        ),
        BroadcastCommand::Pause { id } => (
            broadcasts.pause(Ctx::actor(), *id).await.map_err(failure)?,
            None,
        ),
        BroadcastCommand::Cancel { id } => (
            broadcasts
                .cancel(Ctx::actor(), *id)
                .await
                .map_err(failure)?,
            None,
        ),
        BroadcastCommand::Status { id } => {
            let b = broadcasts.status(*id).await.map_err(failure)?;
            let bar = ctx.out.progress(u64::from(b.recipients), "sent");
            bar.set_position(u64::from(b.recipients - b.pending()));
            bar.abandon();
            (b, None)
        }
    };
    ctx.out.table(
        &broadcast_json(&shown, reach),
        &HEADER,
        vec![broadcast_row(&shown)],
    );
    if let Some(reach) = reach {
        if !ctx.out.json {
            println!(
                "Preview:\n{}\n{}Reaches {reach} user(s) now. Start it with: rei-cli broadcast start {}",
                shown.text,
                shown
                    .button
                    .as_ref()
                    .map(|b| format!("[{}]({})\n", b.label, b.url))
                    .unwrap_or_default(),
                shown.id
            );
        }
    }
    Ok(())
}

/// Copies the photo into the asset store (`broadcasts/<random>.<ext>`), where every
/// process can read it.
async fn store_photo(ctx: &Ctx, path: &std::path::Path) -> Result<String, Failure> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    const MAX_PHOTO: usize = 10 * 1024 * 1024;
    if bytes.is_empty() || bytes.len() > MAX_PHOTO {
        return Err(Failure::Usage(format!(
            "{}: a photo is 1 byte to 10 MB",
            path.display()
        )));
    }
    let ext = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if ["jpg", "jpeg", "png", "webp"].contains(&e.to_ascii_lowercase().as_str()) => {
            e.to_ascii_lowercase()
        }
        _ => {
            return Err(Failure::Usage(format!(
                "{}: the photo must be .jpg, .jpeg, .png or .webp",
                path.display()
            )));
        }
    };
    let key = format!("broadcasts/{}.{ext}", uuid::Uuid::new_v4().simple());
    let asset = ctx
        .app
        .assets
        .write(&key, &bytes)
        .await
        .map_err(operational)?;
    Ok(asset.as_str().to_owned())
}
