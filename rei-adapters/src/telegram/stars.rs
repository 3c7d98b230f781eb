//! Telegram Stars refunds: `refundStarPayment` (providers.md §4.5).

use async_trait::async_trait;
use rei_core::UserId;
use rei_core::ports::{ProviderError, StarsGateway};
use teloxide::prelude::Requester;
use teloxide::types::TelegramTransactionId;
use teloxide::{ApiError, Bot, RequestError};

/// Telegram's words for a charge refunded before (a repeat after a lost answer).
const ALREADY_REFUNDED: &str = "CHARGE_ALREADY_REFUNDED";

/// Refunds Stars through the Bot API.
#[derive(Clone)]
pub struct TelegramStars {
    bot: Bot,
}

impl std::fmt::Debug for TelegramStars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TelegramStars")
    }
}

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
}

/// Maps a Bot API failure: a charge refunded before is done; other refusals are final;
/// network trouble and 429 are worth another try.
fn classify(e: RequestError) -> Result<(), ProviderError> {
    match e {
        RequestError::Api(ApiError::Unknown(text)) if text.contains(ALREADY_REFUNDED) => Ok(()),
        RequestError::Api(api) => Err(ProviderError::InvalidRequest {
            message: format!("Telegram refused the refund: {api}"),
        }),
        RequestError::RetryAfter(wait) => Err(ProviderError::RateLimited {
            retry_after: Some(wait.duration()),
        }),
        RequestError::Network(e) => Err(ProviderError::Transient {
            message: format!("Telegram unreachable: {e}"),
        }),
        other => Err(ProviderError::Unknown {
            message: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_refund_is_success_and_other_refusals_are_final() {
        let already = RequestError::Api(ApiError::Unknown(
            "Bad Request: CHARGE_ALREADY_REFUNDED".into(),
        ));
        assert_eq!(classify(already), Ok(()));
        let unknown = RequestError::Api(ApiError::Unknown("Bad Request: CHARGE_NOT_FOUND".into()));
        assert!(matches!(
            classify(unknown),
            Err(ProviderError::InvalidRequest { .. })
        ));
    }
}
