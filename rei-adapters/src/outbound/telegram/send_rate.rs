//! `TELEGRAM_SEND_RATE`: the overall rate of messages the bot sends (Telegram allows
//! about 30 per second; a local Bot API server or paid broadcasts allow more). Shared by
//! the front end and the notifier. `0` turns it off: only Telegram's own 429
//! `retry_after` then slows the bot down.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The bot's outbound message budget.
#[derive(Clone, Default)]
pub struct SendRate {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl std::fmt::Debug for SendRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRate")
            .field("limited", &self.limiter.is_some())
            .finish()
    }
}

impl SendRate {
    /// `per_second` messages per second overall (bursts up to that many); 0 = no limit.
    #[must_use]
    pub fn per_second(per_second: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_second)
                .map(|n| Arc::new(RateLimiter::direct(Quota::per_second(n)))),
        }
    }

    /// Waits for a slot to send one message.
    pub async fn wait(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_rate_spaces_messages_and_zero_does_not() {
        let off = SendRate::per_second(0);
        let started = Instant::now();
        for _ in 0..1_000 {
            off.wait().await;
        }
        assert!(started.elapsed().as_millis() < 500, "no limit at 0");
        let rate = SendRate::per_second(20);
        let started = Instant::now();
        for _ in 0..30 {
            rate.wait().await;
        }
        // A burst of 20, then 10 more at 20 per second: about half a second.
        let took = started.elapsed().as_millis();
        assert!(
            (400..2_000).contains(&took),
            "30 messages at 20/s took {took} ms"
        );
    }
}
