//! `rei-cli payments list`.

use clap::Subcommand;
use rei_core::payment::{PaymentFilter, PaymentState};
use rei_core::ports::Clock;

use super::{Ctx, operational, parse_age};
use crate::Failure;
use crate::output::when;

#[derive(Debug, Subcommand)]
pub(crate) enum PaymentsCommand {
    /// Payments, newest first.
    List {
        /// pending, paid, cancelled or refunded.
        #[arg(long)]
        status: Option<PaymentState>,
        /// Only created within this age (7d, 24h, …).
        #[arg(long, value_parser = parse_age)]
        since: Option<std::time::Duration>,
        #[arg(long, default_value = "100")]
        limit: u32,
    },
}

pub(crate) async fn run(ctx: &Ctx, c: &PaymentsCommand) -> Result<(), Failure> {
    let PaymentsCommand::List {
        status,
        since,
        limit,
    } = c;
    let since = since.map(|age| rei_adapters::system::SystemClock.now().minus(age));
    let filter = PaymentFilter {
        state: *status,
        user_id: None,
        since,
        limit: (*limit).clamp(1, 10_000),
    };
    let payments = ctx
        .stores
        .payments
        .payments(filter)
        .await
        .map_err(operational)?;
    let value = serde_json::to_value(&payments).map_err(operational)?;
    let rows = payments
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                when(p.created_at),
                p.user_id.to_string(),
                p.provider.to_string(),
                p.amount.to_string(),
                p.state.to_string(),
                p.provider_payment_id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    ctx.out.table(
        &value,
        &[
            "id",
            "created (UTC)",
            "user",
            "provider",
            "amount",
            "status",
            "provider id",
        ],
        rows,
    );
    Ok(())
}
