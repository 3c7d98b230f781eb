//! YooKassa's answers read into the gateway's types, and ours written into its wire
//! format: payments, refunds, amounts in kopecks, ISO times, errors classified.

use super::*;

/// One item of a payment list, or `None` (logged) when it cannot be read: a page is never
/// lost to one odd payment, and the page's cursor still leads on.
pub(super) fn listed_payment(item: serde_json::Value) -> Option<GatewayPayment> {
    let id = item
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map(|id| client::truncate(id, 64));
    let parsed = serde_json::from_value::<wire::Payment>(item)
        .map_err(|e| unknown(format!("malformed YooKassa payment: {e}")))
        .and_then(gateway_payment);
    match parsed {
        Ok(payment) => Some(payment),
        Err(error) => {
            // The id and our own error text only: never the raw object.
            tracing::warn!(
                provider = PROVIDER,
                provider_payment_id = id.as_deref().unwrap_or("<none>"),
                error = %error,
                "skipping a payment of the list that cannot be read"
            );
            None
        }
    }
}

pub(super) fn interpret<T>(exchange: Exchange) -> Result<T, ProviderError>
where
    T: DeserializeOwned,
{
    if exchange.status == reqwest::StatusCode::ACCEPTED {
        // Still processing: repeat the same request with the same key after the wait the
        // body names, in milliseconds (the official SDKs repeat on 202 likewise).
        let wait = serde_json::from_slice::<wire::Processing>(&exchange.body)
            .ok()
            .and_then(|p| p.retry_after)
            .map_or(PROCESSING_DEFAULT_DELAY, std::time::Duration::from_millis);
        return Err(ProviderError::RateLimited {
            retry_after: Some(wait),
        });
    }
    if exchange.status.is_success() {
        return serde_json::from_slice(&exchange.body)
            .map_err(|e| unknown(format!("malformed YooKassa answer: {e}")));
    }
    let body: wire::ErrorBody = serde_json::from_slice(&exchange.body).unwrap_or_default();
    Err(classify(
        exchange.status.as_u16(),
        &body,
        exchange.retry_after,
    ))
}

/// Maps an error answer (providers.md §3.8).
pub(super) fn classify(
    status: u16,
    body: &wire::ErrorBody,
    retry_after: Option<std::time::Duration>,
) -> ProviderError {
    let code = body.code.as_deref().unwrap_or("");
    let mut text = format!("YooKassa {status} {code}");
    if let Some(description) = body.description.as_deref() {
        text.push_str(": ");
        text.push_str(&client::truncate(description, 300));
    }
    if let Some(parameter) = body.parameter.as_deref() {
        text.push_str(" (parameter ");
        text.push_str(&client::truncate(parameter, 64));
        text.push(')');
    }
    if let Some(id) = body.id.as_deref() {
        tracing::debug!(
            provider = PROVIDER,
            status,
            error_id = id,
            "YooKassa error answer"
        );
    }
    match status {
        404 => ProviderError::NotFound { message: text },
        400 | 405 | 415 => ProviderError::InvalidRequest { message: text },
        401 | 403 => ProviderError::Auth { message: text },
        429 => ProviderError::RateLimited { retry_after },
        408 | 500..=599 => ProviderError::Transient { message: text },
        _ => ProviderError::Unknown { message: text },
    }
}

pub(super) fn gateway_payment(payment: wire::Payment) -> Result<GatewayPayment, ProviderError> {
    let (cancellation_party, cancel_reason) = payment
        .cancellation_details
        .map_or((None, None), |d| (d.party, d.reason));
    let status = match payment.status.as_str() {
        "pending" => GatewayStatus::Pending,
        "waiting_for_capture" => GatewayStatus::WaitingForCapture,
        "succeeded" => GatewayStatus::Succeeded,
        "canceled" => GatewayStatus::Canceled {
            reason: cancel_reason,
        },
        other => {
            return Err(unknown(format!(
                "unknown YooKassa payment status `{}`",
                client::truncate(other, 32)
            )));
        }
    };
    let amount = money_of(&payment.amount)?;
    let created_at = payment.created_at.as_deref().map(timestamp).transpose()?;
    let metadata = payment.metadata.unwrap_or_default();
    let meta = |key: &str| match metadata.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let optional_money = |a: Option<&wire::Amount>| a.map(money_of).transpose();
    Ok(GatewayPayment {
        provider_payment_id: payment.id,
        status,
        amount,
        confirmation_url: payment.confirmation.and_then(|c| c.confirmation_url),
        payment_id: meta("payment_id").and_then(|p| p.parse::<PaymentId>().ok()),
        user_id: meta("tg_user_id").and_then(|u| u.parse::<UserId>().ok()),
        created_at,
        test: payment.test,
        paid: payment.paid,
        captured_at: payment.captured_at.as_deref().map(timestamp).transpose()?,
        income_amount: optional_money(payment.income_amount.as_ref())?,
        payment_method: payment.payment_method.map(|m| GatewayMethod {
            kind: client::truncate(&m.kind, 32),
            title: m.title.map(|t| client::truncate(&t, 64)),
        }),
        refundable: payment.refundable,
        refunded_amount: optional_money(payment.refunded_amount.as_ref())?,
        cancellation_party,
        receipt_registration: payment.receipt_registration,
    })
}

pub(super) fn gateway_refund(refund: wire::Refund) -> Result<GatewayRefund, ProviderError> {
    let status = match refund.status.as_str() {
        "pending" => RefundStatus::Pending,
        "succeeded" => RefundStatus::Succeeded,
        "canceled" => RefundStatus::Canceled {
            reason: refund.cancellation_details.and_then(|d| d.reason),
        },
        other => {
            return Err(unknown(format!(
                "unknown YooKassa refund status `{}`",
                client::truncate(other, 32)
            )));
        }
    };
    Ok(GatewayRefund {
        refund_id: refund.id,
        status,
        provider_payment_id: refund.payment_id,
        amount: refund.amount.as_ref().map(money_of).transpose()?,
    })
}

/// An instant as YooKassa's ISO-8601 UTC text with milliseconds.
pub(super) fn iso(at: Timestamp) -> Result<String, ProviderError> {
    DateTime::<Utc>::from_timestamp_millis(at.millis())
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .ok_or_else(|| invalid("a listing bound is out of range"))
}

/// An ISO-8601 UTC instant (`2025-05-20T09:15:02.117Z`) as milliseconds since the epoch.
pub(super) fn timestamp(text: &str) -> Result<Timestamp, ProviderError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        .map_err(|e| {
            unknown(format!(
                "malformed YooKassa time `{}`: {e}",
                client::truncate(text, 40)
            ))
        })
}

pub(super) fn money_of(amount: &wire::Amount) -> Result<Money, ProviderError> {
    if amount.currency != "RUB" {
        return Err(unknown(format!(
            "unexpected currency `{}`",
            client::truncate(&amount.currency, 8)
        )));
    }
    Money::parse_rubles(&amount.value).map_err(|e| {
        unknown(format!(
            "malformed amount `{}`: {e}",
            client::truncate(&amount.value, 24)
        ))
    })
}

pub(super) fn amount_of(money: Money) -> wire::Amount {
    wire::Amount {
        value: money.to_decimal_string(),
        currency: "RUB".to_owned(),
    }
}

/// A gateway id used in a path: YooKassa ids are UUID-like.
pub(super) fn path_segment(id: &str) -> Result<&str, ProviderError> {
    let id = id.trim();
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(invalid("not a YooKassa id"));
    }
    Ok(id)
}

/// The first `max` characters (YooKassa counts characters, not bytes).
pub(super) fn cut(text: &str, max: usize) -> String {
    text.trim().chars().take(max).collect()
}

pub(super) fn encode<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(body).map_err(|e| unknown(format!("cannot encode the request: {e}")))
}

pub(super) fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest {
        message: message.into(),
    }
}

pub(super) fn unknown(message: impl Into<String>) -> ProviderError {
    ProviderError::Unknown {
        message: message.into(),
    }
}
