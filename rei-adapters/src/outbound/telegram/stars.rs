//! Telegram Stars: refunds (`refundStarPayment`, providers.md §4.5) and the bot's
//! transactions (`getStarTransactions`, for reconciliation).

use async_trait::async_trait;
use rei_core::UserId;
use rei_core::ids::PaymentId;
use rei_core::ports::{ProviderError, StarTransaction, StarTransactionKind, StarsGateway};
use teloxide::prelude::Requester;
use teloxide::types::TelegramTransactionId;
use teloxide::{ApiError, Bot, RequestError};

/// The prefix of our invoice payloads (`rei:<payment id>`).
const INVOICE_PAYLOAD_PREFIX: &str = "rei:";

/// Telegram Stars' currency code.
pub const STARS_CURRENCY: &str = "XTR";

/// The payload of a payment's Stars invoice: what Telegram hands back at checkout and
/// payment.
#[must_use]
pub fn invoice_payload(payment: PaymentId) -> String {
    format!("{INVOICE_PAYLOAD_PREFIX}{payment}")
}

/// The payment an invoice names: `None` unless the payload is one of ours and the
/// currency is Stars.
#[must_use]
pub fn payment_of_invoice(payload: &str, currency: &str) -> Option<PaymentId> {
    if currency != STARS_CURRENCY {
        return None;
    }
    payload
        .strip_prefix(INVOICE_PAYLOAD_PREFIX)
        .and_then(|id| id.parse().ok())
}

/// Telegram's words for a charge refunded before (a repeat after a lost answer).
const ALREADY_REFUNDED: &str = "CHARGE_ALREADY_REFUNDED";

/// Refunds Stars through the Bot API.
#[derive(Clone)]
pub struct TelegramStars {
    bot: Bot,
}

rei_core::opaque_debug!(TelegramStars);

impl TelegramStars {
    /// Over `bot`.
    #[must_use]
    pub const fn new(bot: Bot) -> Self {
        Self { bot }
    }
}

#[async_trait]
impl StarsGateway for TelegramStars {
    #[tracing::instrument(skip_all, fields(provider = "telegram_stars", user_id = user.get(), charge_id = %charge_id))]
    async fn refund_stars(&self, user: UserId, charge_id: &str) -> Result<(), ProviderError> {
        let Ok(id) = u64::try_from(user.get()) else {
            return Err(ProviderError::InvalidRequest {
                message: format!("user {user} is not a Telegram user id"),
            });
        };
        let sent = self
            .bot
            .refund_star_payment(
                teloxide::types::UserId(id),
                TelegramTransactionId(charge_id.to_owned()),
            )
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => classify(e),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "telegram_stars", offset, limit))]
    async fn transactions(
        &self,
        offset: u32,
        limit: u8,
    ) -> Result<Vec<StarTransaction>, ProviderError> {
        use teloxide::payloads::GetStarTransactionsSetters;
        let page = self
            .bot
            .get_star_transactions()
            .offset(offset)
            .limit(limit.clamp(1, 100))
            .await
            .map_err(|e| match e {
                RequestError::RetryAfter(wait) => ProviderError::RateLimited {
                    retry_after: Some(wait.duration()),
                },
                RequestError::Network(e) => ProviderError::Transient {
                    message: format!("Telegram unreachable: {e}"),
                },
                other => ProviderError::Unknown {
                    message: format!("getStarTransactions failed: {other}"),
                },
            })?;
        Ok(page.transactions.iter().map(transaction).collect())
    }
}

/// A Bot API Stars transaction in core's terms.
fn transaction(t: &teloxide::types::StarTransaction) -> StarTransaction {
    use teloxide::types::{TransactionPartner, TransactionPartnerUserKind};
    let user_of = |u: &teloxide::types::User| {
        i64::try_from(u.id.0)
            .ok()
            .and_then(|id| UserId::new(id).ok())
    };
    let kind = match (&t.source, &t.receiver) {
        (Some(TransactionPartner::User(u)), _) => match &u.kind {
            TransactionPartnerUserKind::InvoicePayment(p) => StarTransactionKind::Payment {
                user: user_of(&u.user),
                payment: p
                    .invoice_payload
                    .as_deref()
                    .and_then(|payload| payment_of_invoice(payload, STARS_CURRENCY)),
            },
            _ => StarTransactionKind::Other,
        },
        (None, Some(TransactionPartner::User(u))) => StarTransactionKind::Refund {
            user: user_of(&u.user),
        },
        _ => StarTransactionKind::Other,
    };
    StarTransaction {
        charge_id: t.id.0.clone(),
        stars: t.amount,
        at: rei_core::Timestamp::from_millis(t.date.timestamp_millis()),
        kind,
    }
}

/// Telegram's words for a refund that can never be made: the charge is unknown, not
/// this user's, or cannot be refunded.
const REFUSALS: [&str; 4] = [
    "CHARGE_NOT_FOUND",
    "CHARGE_ID_INVALID",
    "CHARGE_NOT_REFUNDABLE",
    "USER_ID_INVALID",
];

/// Maps a Bot API failure. Only Telegram's definite answers settle a refund: a charge
/// refunded before is done; a charge that is unknown or cannot be refunded is refused.
/// Anything else — a 5xx, an error text we do not know, a lost answer — may hide a refund
/// that was made: it is unknown, and the hold stays until a later try knows.
fn classify(e: RequestError) -> Result<(), ProviderError> {
    match e {
        RequestError::Api(ApiError::Unknown(text)) if text.contains(ALREADY_REFUNDED) => Ok(()),
        RequestError::Api(ApiError::Unknown(text))
            if REFUSALS.iter().any(|word| text.contains(word)) =>
        {
            Err(ProviderError::InvalidRequest {
                message: format!("Telegram refused the refund: {text}"),
            })
        }
        RequestError::RetryAfter(wait) => Err(ProviderError::RateLimited {
            retry_after: Some(wait.duration()),
        }),
        RequestError::Network(e) => Err(ProviderError::Unknown {
            message: format!("no answer from Telegram: {e}"),
        }),
        other => Err(ProviderError::Unknown {
            message: format!("Telegram's answer does not settle the refund: {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invoice_names_our_payment_only_in_stars_and_in_our_form() {
        let payment = PaymentId::from_uuid(uuid::Uuid::from_u128(0x1234));
        let payload = invoice_payload(payment);
        assert_eq!(payment_of_invoice(&payload, "XTR"), Some(payment));
        assert_eq!(payment_of_invoice(&payload, "RUB"), None);
        assert_eq!(payment_of_invoice("someone-else:1", "XTR"), None);
        assert_eq!(payment_of_invoice("rei:junk", "XTR"), None);
        assert_eq!(payment_of_invoice("", "XTR"), None);
    }

    #[test]
    fn only_definite_answers_settle_a_stars_refund() {
        let api = |text: &str| RequestError::Api(ApiError::Unknown(text.into()));
        assert_eq!(
            classify(api("Bad Request: CHARGE_ALREADY_REFUNDED")),
            Ok(())
        );
        for refused in [
            "Bad Request: CHARGE_NOT_FOUND",
            "Bad Request: CHARGE_ID_INVALID",
            "Bad Request: USER_ID_INVALID",
        ] {
            assert!(
                matches!(
                    classify(api(refused)),
                    Err(ProviderError::InvalidRequest { .. })
                ),
                "{refused}"
            );
        }
        // A server error or a text we do not know may hide a refund that was made.
        for unknown in [
            api("Internal Server Error"),
            api("Bad Request: SOMETHING_NEW"),
            RequestError::Api(ApiError::BotBlocked),
            RequestError::InvalidJson {
                source: std::sync::Arc::new(
                    serde_json::from_str::<serde_json::Value>("<html>").unwrap_err(),
                ),
                raw: "<html>502 Bad Gateway</html>".into(),
            },
        ] {
            assert!(
                matches!(classify(unknown), Err(ProviderError::Unknown { .. })),
                "must keep the hold"
            );
        }
    }
}
