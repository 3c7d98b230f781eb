//! `POST /webhooks/yookassa` and `POST /webhooks/kling`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use rei_core::payment::{GatewayHint, PaymentError, PaymentService};
use tracing::Instrument;

use super::{KLING_BODY_LIMIT, WebError, WebState, YOOKASSA_BODY_LIMIT, read_body};

/// A notification: checked source, parsed hint, re-read and applied by the payment
/// service. 200 for processed, duplicate and ignored events (YooKassa stops retrying);
/// 503 when the database or YooKassa's API cannot answer now (YooKassa retries).
pub(super) async fn yookassa(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<&'static str, WebError> {
    let span = tracing::info_span!(
        "webhook",
        provider = "yookassa",
        peer = %peer.ip(),
        provider_payment_id = tracing::field::Empty,
        payment_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        amount_kopecks = tracing::field::Empty,
    );
    let outcome = async {
        let Some(payments) = &state.payments else {
            return Err(WebError::NotFound);
        };
        // Who is asking is checked before a byte of the body is read.
        state.admit(
            &state.yookassa_ips,
            peer,
            request.headers(),
            "payment notification",
        )?;
        let body = read_body(request, YOOKASSA_BODY_LIMIT).await?;
        handle_yookassa(payments, &body).await
    }
    .instrument(span)
    .await;
    let label = match &outcome {
        Ok(label) => *label,
        Err(WebError::Forbidden) => "forbidden",
        Err(WebError::BadRequest(_) | WebError::TooLarge) => "bad_request",
        Err(WebError::Unavailable(_)) => "unavailable",
        Err(WebError::NotFound | WebError::Unauthorized) => "refused",
    };
    metrics::counter!("payment_webhooks_total", "provider" => "yookassa", "outcome" => label)
        .increment(1);
    outcome.map(|_| "ok")
}

async fn handle_yookassa(payments: &PaymentService, body: &[u8]) -> Result<&'static str, WebError> {
    let hint = match crate::outbound::yookassa::parse_notification(body) {
        Ok(Some(hint)) => hint,
        Ok(None) => {
            tracing::info!("notification of an event REI does not act on: ignored");
            return Ok("ignored");
        }
        Err(e) => {
            if super::stranger_warning("unreadable-yookassa") {
                tracing::warn!(error = %e, "unreadable payment notification (told at most once a minute)");
            }
            return Err(WebError::BadRequest("not a YooKassa notification"));
        }
    };
    let span = tracing::Span::current();
    match &hint {
        GatewayHint::Payment {
            provider_payment_id,
        }
        | GatewayHint::Refund {
            provider_payment_id,
            ..
        } => {
            span.record("provider_payment_id", provider_payment_id.as_str());
        }
    }
    match payments.gateway_notification(&hint).await {
        Ok(applied) => {
            let p = &applied.payment;
            span.record("payment_id", tracing::field::display(p.id));
            span.record("user_id", p.user_id.get());
            span.record("amount_kopecks", p.amount.kopecks());
            if applied.credited {
                metrics::counter!("payments_credited_total", "provider" => p.provider.as_str(), "via" => "webhook").increment(1);
                tracing::info!(state = p.state.as_str(), "payment credited");
                Ok("credited")
            } else {
                tracing::info!(state = p.state.as_str(), "payment notification applied");
                Ok("applied")
            }
        }
        Err(PaymentError::UnknownPayment(_)) => {
            tracing::warn!("notification about a payment that is not ours: ignored");
            Ok("unknown")
        }
        Err(e @ (PaymentError::Store(_) | PaymentError::Provider(_))) => {
            tracing::warn!(error = %e, error.chain = ?e, "cannot apply the notification now; YooKassa will retry");
            Err(WebError::Unavailable(match e {
                PaymentError::Store(_) => "database",
                _ => "payment provider",
            }))
        }
        Err(e) => {
            // A contradiction (another amount, another id): retrying will not help, a
            // person must look; the payment is left as it was.
            tracing::error!(error = %e, error.chain = ?e, "payment notification refused");
            Ok("refused")
        }
    }
}

/// The query of a task's callback URL: its job and token.
#[derive(Debug, serde::Deserialize)]
pub(super) struct CallbackQuery {
    job: Option<String>,
    t: Option<String>,
}

/// A Kling task callback: only a hint. When it names a running job of ours with that
/// task, the job's worker wakes and re-reads the task: at once in this process, and in
/// any other through the queue (Redis, or the job row at the worker's next heartbeat).
pub(super) async fn kling(
    State(state): State<Arc<WebState>>,
    Query(query): Query<CallbackQuery>,
    request: Request,
) -> Result<&'static str, WebError> {
    let span = tracing::info_span!(
        "webhook",
        provider = "kling",
        task_id = tracing::field::Empty,
        job_id = tracing::field::Empty
    );
    async move {
        let Some(hooks) = &state.kling else {
            return Err(WebError::NotFound);
        };
        let (jobs, wakeups) = (&hooks.jobs, &hooks.wakeups);
        // The URL must be one we gave Kling for this job: checked before the body is read.
        let signed = query
            .job
            .as_deref()
            .and_then(|job| job.parse::<rei_core::ids::JobId>().ok())
            .filter(|job| {
                hooks
                    .key
                    .verify(*job, query.t.as_deref().unwrap_or_default())
            });
        let Some(signed) = signed else {
            if super::stranger_warning("unsigned-kling") {
                tracing::warn!("Kling callback without a valid token refused (told at most once a minute)");
            }
            return Err(WebError::Unauthorized);
        };
        let body = read_body(request, KLING_BODY_LIMIT).await?;
        let callback = crate::outbound::kling::parse_callback(&body).map_err(|e| {
            if super::stranger_warning("unreadable-kling") {
                tracing::warn!(error = %e, "unreadable Kling callback (told at most once a minute)");
            }
            WebError::BadRequest("not a Kling task callback")
        })?;
        let span = tracing::Span::current();
        span.record("task_id", callback.task_id.as_str());
        let Some(job) = callback.job_id().filter(|job| *job == signed) else {
            tracing::info!("callback about another job than its URL names: ignored");
            return Ok("ignored");
        };
        span.record("job_id", tracing::field::display(job));
        match jobs.task_callback(job, callback.task_id.as_str()).await {
            Ok(true) => {
                let woken = wakeups.wake(job);
                tracing::info!(status = %callback.status, woken, "task callback");
                Ok("ok")
            }
            Ok(false) => {
                tracing::info!("callback about no running job of ours: ignored");
                Ok("ignored")
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look the job up now");
                Err(WebError::Unavailable("database"))
            }
        }
    }
    .instrument(span)
    .await
}
