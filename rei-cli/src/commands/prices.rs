//! `rei-cli prices list|set`: the live prices.

use clap::Subcommand;
use rei_core::money::Money;
use rei_core::prices::PriceError;
use serde_json::json;

use super::{Ctx, operational};
use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum PricesCommand {
    /// Every product sold and its price now (as every process has it within
    /// PRICES_REFRESH_SECS).
    #[command(after_help = "Example: rei-cli prices list")]
    List,
    /// Sets a product's price, live: in force in every running process within
    /// PRICES_REFRESH_SECS, no restart; drafts already shown keep their price until they
    /// expire. Audited.
    #[command(
        after_help = "Examples:\n  rei-cli prices set image_generation 60\n  rei-cli prices set image_generation:4k 120\n  rei-cli prices set video:kling-v3:10s 250"
    )]
    Set {
        /// The product, as `prices list` names it.
        product: String,
        /// Rubles.
        amount: Money,
    },
}

fn price_failure(e: PriceError) -> Failure {
    match e {
        PriceError::Store(s) => operational(s),
        usage => Failure::Usage(usage.to_string()),
    }
}

pub(crate) async fn run(ctx: &Ctx, c: &PricesCommand) -> Result<(), Failure> {
    let prices = &ctx.app.services.prices;
    match c {
        PricesCommand::List => {
            let list = prices.list().await.map_err(price_failure)?;
            let json = serde_json::Value::Array(
                list.iter()
                    .map(|(p, m)| json!({"product": p.to_string(), "amount_kopecks": m.kopecks()}))
                    .collect(),
            );
            ctx.out.table(
                &json,
                &["product", "price"],
                list.iter()
                    .map(|(p, m)| vec![p.to_string(), m.to_string()])
                    .collect(),
            );
        }
        PricesCommand::Set { product, amount } => {
            let before = prices
                .set(Ctx::actor(), product, *amount)
                .await
                .map_err(price_failure)?;
            ctx.out.message(
                &json!({
                    "product": product.trim(),
                    "before_kopecks": before.kopecks(),
                    "amount_kopecks": amount.kopecks(),
                }),
                &format!("{}: {before} -> {amount}", product.trim()),
            );
        }
    }
    Ok(())
}
