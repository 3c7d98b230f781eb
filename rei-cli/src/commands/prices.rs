//! `rei-cli prices list|set`: the live prices.

use clap::Subcommand;
use rei_core::prices::{OfferChange, PriceError};
use serde_json::json;

use super::{Ctx, operational};
use crate::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum PricesCommand {
    /// Every product sold and its price now (as every process has it within
    /// PRICES_REFRESH_SECS).
    #[command(after_help = "Example: rei-cli prices list")]
    List,
    /// Sets a product's price, switches a video model on or off, or sets the top-up
    /// amounts, live: in force in every running process within PRICES_REFRESH_SECS, no
    /// restart; drafts already shown keep their price until they expire. Audited.
    #[command(
        after_help = "Examples:\n  rei-cli prices set image_generation 60\n  rei-cli prices set image_generation:4k 120\n  rei-cli prices set video:kling-v3:10s 250\n  rei-cli prices set model:kling-v1-5 off\n  rei-cli prices set topups 100,300,500,1000"
    )]
    Set {
        /// The product as `prices list` names it, `model:<id>`, or `topups`.
        product: String,
        /// Rubles; `on` or `off` for a model; `100,300,500` for the top-ups.
        amount: String,
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
            let offer = prices.offer();
            let topups = offer
                .topup_amounts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let json = json!({
                "prices": list.iter()
                    .map(|(p, m)| json!({"product": p.to_string(), "amount_kopecks": m.kopecks()}))
                    .collect::<Vec<_>>(),
                "models": prices.models().iter()
                    .map(|m| json!({"model": m, "on": offer.model_on(m)}))
                    .collect::<Vec<_>>(),
                "topup_amounts_kopecks": offer.topup_amounts.iter().map(|m| m.kopecks()).collect::<Vec<_>>(),
            });
            let mut rows: Vec<Vec<String>> = list
                .iter()
                .map(|(p, m)| vec![p.to_string(), m.to_string()])
                .collect();
            rows.extend(prices.models().iter().map(|m| {
                let state = if offer.model_on(m) { "on" } else { "off" };
                vec![format!("model:{m}"), state.to_owned()]
            }));
            rows.push(vec!["topups".to_owned(), topups]);
            ctx.out.table(&json, &["product", "price"], rows);
        }
        PricesCommand::Set { product, amount } => {
            let changed = prices
                .set_value(Ctx::actor(), product, amount)
                .await
                .map_err(price_failure)?;
            let product = product.trim();
            let (json, text) = match &changed {
                OfferChange::Price { before, after } => (
                    json!({
                        "product": product,
                        "before_kopecks": before.kopecks(),
                        "amount_kopecks": after.kopecks(),
                    }),
                    format!("{product}: {before} -> {after}"),
                ),
                OfferChange::Model { on } => (
                    json!({"product": product, "on": on}),
                    format!("{product}: {}", if *on { "on" } else { "off" }),
                ),
                OfferChange::TopUps(amounts) => (
                    json!({
                        "product": product,
                        "topup_amounts_kopecks": amounts.iter().map(|m| m.kopecks()).collect::<Vec<_>>(),
                    }),
                    format!(
                        "topups: {}",
                        amounts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            };
            ctx.out.message(&json, &text);
        }
    }
    Ok(())
}
