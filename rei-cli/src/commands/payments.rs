//! `rei-cli payments list|refund|reconcile`.

use clap::Subcommand;
use rei_core::ids::PaymentId;
use rei_core::money::Money;
use rei_core::payment::{PaymentFilter, PaymentState, RefundOutcome, Resolution};
use rei_core::ports::Clock;
use serde_json::json;

use super::{Ctx, operational, parse_age, payment_failure};
use crate::Failure;
use crate::output::when;

#[derive(Debug, Subcommand)]
pub(crate) enum PaymentsCommand {
    /// Payments, newest first.
    #[command(after_help = "Example: rei-cli payments list --status pending --since 24h")]
    List {
        /// pending, paid, cancelled or refunded.
        #[arg(long)]
        status: Option<PaymentState>,
        /// Only created within this age (7d, 24h, …).
        #[arg(long, value_parser = parse_age)]
        since: Option<std::time::Duration>,
        /// How many.
        #[arg(long, default_value = "100")]
        limit: u32,
    },
    /// Refunds a paid top-up to the payer (YooKassa, or Stars through Telegram): all that
    /// is still refundable, or `--amount` (YooKassa: several partial refunds up to the
    /// paid amount; Stars: whole payments only). The amount is held on the balance first
    /// — refused when the user has spent it — and taken back when the refund succeeds; a
    /// refusal releases it. Audited; the user is told. Safe to run again: a refund under
    /// way is continued.
    #[command(
        after_help = "Example: rei-cli payments refund 0192f0c4-8d4e-7c6b-9a53-6f1e2d3c4b5a --reason \"double payment\""
    )]
    Refund {
        /// Our payment id (see `payments list`).
        payment_id: PaymentId,
        /// Rubles to refund (default: all that is still refundable).
        #[arg(long)]
        amount: Option<Money>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Compares YooKassa's payments and the bot's Telegram Stars transactions (with
    /// BOT_TOKEN) in the window with ours and prints each difference; `--apply` fixes
    /// what the normal idempotent path can fix (payments paid or cancelled there whose
    /// news never arrived, Stars charged for one of our invoices and never credited),
    /// with an audit line per fix, and lists what needs a person. Exit 1 when something
    /// needs a person.
    #[command(after_help = "Example: rei-cli payments reconcile --since 3d --apply")]
    Reconcile {
        /// Window: payments created within this age.
        #[arg(long, value_parser = parse_age, default_value = "7d")]
        since: std::time::Duration,
        /// Fix what can be fixed (dry run without it).
        #[arg(long)]
        apply: bool,
    },
}

pub(crate) async fn run(ctx: &Ctx, c: &PaymentsCommand) -> Result<(), Failure> {
    match c {
        PaymentsCommand::List {
            status,
            since,
            limit,
        } => list(ctx, *status, *since, *limit).await,
        PaymentsCommand::Refund {
            payment_id,
            amount,
            reason,
        } => refund(ctx, *payment_id, *amount, reason).await,
        PaymentsCommand::Reconcile { since, apply } => reconcile(ctx, *since, *apply).await,
    }
}

async fn list(
    ctx: &Ctx,
    status: Option<PaymentState>,
    since: Option<std::time::Duration>,
    limit: u32,
) -> Result<(), Failure> {
    let since = since.map(|age| rei_adapters::outbound::system::SystemClock.now().minus(age));
    let filter = PaymentFilter {
        state: status,
        user_id: None,
        since,
        provider: None,
        limit: limit.clamp(1, 10_000),
    };
    let payments = ctx
        .app
        .services
        .payments
        .list(filter)
        .await
        .map_err(payment_failure)?;
    ctx.out
        .list(
            &payments,
            &[
                "id",
                "created (UTC)",
                "user",
                "provider",
                "amount",
                "status",
                "provider id",
            ],
            |p| {
                vec![
                    p.id.to_string(),
                    when(p.created_at),
                    p.user_id.to_string(),
                    p.provider.to_string(),
                    p.amount.to_string(),
                    p.state.to_string(),
                    p.provider_payment_id.clone().unwrap_or_default(),
                ]
            },
        )
        .map_err(operational)?;
    Ok(())
}

async fn refund(
    ctx: &Ctx,
    id: PaymentId,
    amount: Option<Money>,
    reason: &str,
) -> Result<(), Failure> {
    let payments = &ctx.app.services.payments;
    let before = payments.payment(id).await.map_err(payment_failure)?;
    let outcome = payments
        .refund_audited(id, amount, Ctx::actor(), reason)
        .await
        .map_err(payment_failure)?;
    let (state, p, this_refund) = match &outcome {
        RefundOutcome::Refunded(p) => (
            "refunded",
            p,
            p.refunded
                .checked_sub(before.refunded)
                .unwrap_or(Money::ZERO),
        ),
        RefundOutcome::Pending(p) => (
            "pending",
            p,
            p.refund.as_ref().map_or(Money::ZERO, |r| r.amount),
        ),
    };
    let text = match &outcome {
        RefundOutcome::Refunded(_) if this_refund.is_zero() => format!(
            "payment {id}: nothing more to refund ({} of {} refunded)",
            p.refunded, p.amount
        ),
        RefundOutcome::Refunded(_) => format!(
            "payment {id}: {this_refund} returned to {} ({} of {} refunded)",
            p.user_id, p.refunded, p.amount
        ),
        RefundOutcome::Pending(_) => format!(
            "refund of {this_refund} of payment {id} asked for; the provider has not decided yet. It stays held; the bot's poller finishes it"
        ),
    };
    let notices_sent = ctx.send_notices().await;
    let value = json!({
        "notices_sent": notices_sent,
        "payment_id": id.to_string(),
        "provider": p.provider.as_str(),
        "refund": state,
        "amount_kopecks": this_refund.kopecks(),
        "refunded_total_kopecks": p.refunded.kopecks(),
        "payment_amount_kopecks": p.amount.kopecks(),
        "status": p.state.as_str(),
        "tg_id": p.user_id.get(),
    });
    ctx.out.message(&value, &text);
    Ok(())
}

async fn reconcile(ctx: &Ctx, age: std::time::Duration, apply: bool) -> Result<(), Failure> {
    let since = rei_adapters::outbound::system::SystemClock.now().minus(age);
    let spinner = ctx.out.progress(0, "reading YooKassa's payments");
    let report = ctx
        .app
        .services
        .payments
        .reconcile(since, apply.then(Ctx::actor))
        .await
        .map_err(payment_failure)?;
    spinner.finish_and_clear();
    let notices_sent = if apply { ctx.send_notices().await } else { 0 };
    let value = json!({
        "notices_sent": notices_sent,
        "since": since.millis(),
        "applied": apply,
        "remote_checked": report.remote_checked,
        "local_checked": report.local_checked,
        "differences": serde_json::to_value(&report.differences).map_err(operational)?,
        "needs_person": report.needs_person(),
    });
    let rows = report
        .differences
        .iter()
        .map(|d| {
            let kind = serde_json::to_value(d.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let (resolution, detail) = match &d.resolution {
                Resolution::Fixed(what) => ("fixed", what.clone()),
                Resolution::Fixable => ("fixable with --apply", String::new()),
                Resolution::NeedsPerson(why) => ("needs a person", why.clone()),
            };
            vec![
                d.provider.to_string(),
                kind,
                d.payment_id.map(|p| p.to_string()).unwrap_or_default(),
                d.provider_payment_id.clone().unwrap_or_default(),
                d.user_id.map(|u| u.to_string()).unwrap_or_default(),
                d.local_amount.map(|m| m.to_string()).unwrap_or_default(),
                d.remote_amount.map(|m| m.to_string()).unwrap_or_default(),
                d.local_state.map(|s| s.to_string()).unwrap_or_default(),
                d.remote_status.clone().unwrap_or_default(),
                resolution.to_owned(),
                detail,
            ]
        })
        .collect();
    if ctx.out.json {
        ctx.out.message(&value, "");
    } else {
        println!(
            "checked {} payment(s) at the providers and {} here since {}: {} difference(s), {} need a person{}",
            report.remote_checked,
            report.local_checked,
            when(since),
            report.differences.len(),
            report.needs_person(),
            if apply {
                ""
            } else {
                " (dry run: --apply fixes what can be fixed)"
            }
        );
        if !report.differences.is_empty() {
            ctx.out.table(
                &value,
                &[
                    "provider",
                    "difference",
                    "payment",
                    "provider id",
                    "user",
                    "here",
                    "there",
                    "state here",
                    "status there",
                    "resolution",
                    "detail",
                ],
                rows,
            );
        }
    }
    if report.needs_person() > 0 {
        return Err(Failure::Reported);
    }
    Ok(())
}
