//! `rei-cli promo create|list|disable`.

use chrono::Datelike;
use clap::Subcommand;
use rei_core::money::Money;
use rei_core::promo::{Promo, PromoError};
use serde_json::json;

use super::{Ctx, operational};
use crate::Failure;
use crate::output::when;

#[derive(Debug, Subcommand)]
pub(crate) enum PromoCommand {
    /// Creates a promo code: each user who sends `/promo CODE` gets AMOUNT once, while
    /// uses are left and until the expiry. Audited.
    #[command(
        after_help = "Example: rei-cli promo create SPRING25 --amount 50 --uses 100 --expires 2027-01-31"
    )]
    Create {
        /// The code: 3–32 letters A-Z, digits, '-' or '_' (case does not matter).
        code: String,
        /// Rubles credited per use.
        #[arg(long)]
        amount: Money,
        /// How many users may redeem it (default: no limit).
        #[arg(long)]
        uses: Option<u32>,
        /// The last day it works (UTC), YYYY-MM-DD (default: no expiry).
        #[arg(long, value_parser = parse_day)]
        expires: Option<chrono::NaiveDate>,
    },
    /// Every code, newest first, with its uses.
    #[command(after_help = "Example: rei-cli promo list")]
    List,
    /// Switches a code off (what was credited stays). Audited.
    #[command(after_help = "Example: rei-cli promo disable SPRING25")]
    Disable {
        /// The code.
        code: String,
    },
}

fn parse_day(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a day like 2027-01-31"))
}

fn promo_failure(e: PromoError) -> Failure {
    match e {
        PromoError::Store(s) => operational(s),
        usage => Failure::Usage(usage.to_string()),
    }
}

fn promo_json(p: &Promo) -> serde_json::Value {
    json!({
        "code": p.code.as_str(),
        "amount_kopecks": p.amount.kopecks(),
        "max_uses": p.max_uses,
        "used": p.used,
        "expires_at": p.expires_at.map(rei_core::Timestamp::millis),
        "disabled": p.disabled,
        "created_at": p.created_at.millis(),
    })
}

fn promo_row(p: &Promo) -> Vec<String> {
    vec![
        p.code.to_string(),
        p.amount.to_string(),
        match p.max_uses {
            Some(max) => format!("{}/{max}", p.used),
            None => format!("{}/∞", p.used),
        },
        p.expires_at.map_or_else(|| "never".to_owned(), when),
        if p.disabled { "off" } else { "on" }.to_owned(),
    ]
}

const HEADER: [&str; 5] = ["code", "amount", "used", "expires", "state"];

pub(crate) async fn run(ctx: &Ctx, c: &PromoCommand) -> Result<(), Failure> {
    let promos = &ctx.app.services.promos;
    let shown = match c {
        PromoCommand::Create {
            code,
            amount,
            uses,
            expires,
        } => {
            // The first moment after the last day (as the bot's /newpromo reads it).
            let expires_at = expires
                .map(|day| {
                    rei_core::Timestamp::after_day(day.year(), day.month(), day.day())
                        .ok_or_else(|| Failure::Usage(format!("{day} is out of range")))
                })
                .transpose()?;
            promos
                .create(Ctx::actor(), code, *amount, *uses, expires_at)
                .await
                .map_err(promo_failure)?
        }
        PromoCommand::List => {
            let list = promos.list().await.map_err(promo_failure)?;
            let json = serde_json::Value::Array(list.iter().map(promo_json).collect());
            ctx.out
                .table(&json, &HEADER, list.iter().map(promo_row).collect());
            return Ok(());
        }
        PromoCommand::Disable { code } => promos
            .disable(Ctx::actor(), code)
            .await
            .map_err(promo_failure)?,
    };
    ctx.out
        .table(&promo_json(&shown), &HEADER, vec![promo_row(&shown)]);
    Ok(())
}
