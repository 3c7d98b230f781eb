//! `rei-cli user show|ban|unban`.

use clap::Subcommand;
use rei_core::ids::UserId;
use serde_json::json;

use super::{Ctx, admin_failure, ledger_failure};
use crate::Failure;
use crate::output::when;

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// A user's profile, balance and state.
    #[command(after_help = "Example: rei-cli user show 123456789")]
    Show {
        /// Telegram id.
        tg_id: UserId,
    },
    /// Bans a user (they get one notice, then are ignored). Audited.
    #[command(after_help = "Example: rei-cli user ban 123456789")]
    Ban {
        /// Telegram id.
        tg_id: UserId,
    },
    /// Lifts a ban. Audited.
    #[command(after_help = "Example: rei-cli user unban 123456789")]
    Unban {
        /// Telegram id.
        tg_id: UserId,
    },
}

pub(crate) async fn run(ctx: &Ctx, c: &UserCommand) -> Result<(), Failure> {
    let (id, user) = match *c {
        UserCommand::Show { tg_id } => (tg_id, ctx.known_user(tg_id).await?),
        UserCommand::Ban { tg_id } => (
            tg_id,
            ctx.app
                .services
                .admin
                .ban(Ctx::actor(), tg_id)
                .await
                .map_err(admin_failure)?,
        ),
        UserCommand::Unban { tg_id } => (
            tg_id,
            ctx.app
                .services
                .admin
                .unban(Ctx::actor(), tg_id)
                .await
                .map_err(admin_failure)?,
        ),
    };
    let balance = ctx
        .app
        .services
        .ledger
        .balance(id)
        .await
        .map_err(ledger_failure)?;
    let value = json!({
        "tg_id": user.id.get(),
        "username": user.username,
        "first_name": user.first_name,
        "language": user.language.as_str(),
        "banned": user.is_banned,
        "balance_kopecks": balance.available.kopecks(),
        "held_kopecks": balance.held.kopecks(),
        "created_at": user.created_at.millis(),
    });
    let rows = vec![
        vec!["tg_id".into(), user.id.to_string()],
        vec!["username".into(), user.username.clone().unwrap_or_default()],
        vec![
            "first name".into(),
            user.first_name.clone().unwrap_or_default(),
        ],
        vec!["language".into(), user.language.to_string()],
        vec!["banned".into(), user.is_banned.to_string()],
        vec!["balance".into(), balance.available.to_string()],
        vec!["held".into(), balance.held.to_string()],
        vec!["registered".into(), when(user.created_at)],
    ];
    ctx.out.table(&value, &["field", "value"], rows);
    Ok(())
}
