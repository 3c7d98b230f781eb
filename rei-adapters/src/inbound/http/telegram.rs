//! `POST /webhooks/telegram` (`TELEGRAM_MODE=webhook`): 401 without the right secret
//! header; accepted updates go to the same dispatcher as with long polling.

use std::sync::Arc;

use axum::extract::{Request, State};

use super::{WEBHOOK_BODY_LIMIT, WebError, WebState, read_body};
use crate::inbound::telegram::{Pushed, Stopped};

/// The header Telegram sends the webhook secret in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

pub(super) async fn webhook(
    State(state): State<Arc<WebState>>,
    request: Request,
) -> Result<&'static str, WebError> {
    let Some(hook) = &state.telegram else {
        return Err(WebError::NotFound);
    };
    // The secret is checked before a byte of the body is read.
    let secret = request.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
    if !hook.accepts(secret) {
        if super::stranger_warning("telegram-secret") {
            tracing::warn!(
                route = "/webhooks/telegram",
                "update without the right secret refused (told at most once a minute)"
            );
        }
        return Err(WebError::Unauthorized);
    }
    let body = read_body(request, WEBHOOK_BODY_LIMIT).await?;
    match hook.push(&body) {
        Ok(Pushed::Accepted) => {
            metrics::counter!("telegram_updates_received_total", "via" => "webhook").increment(1);
            Ok("ok")
        }
        Ok(Pushed::Unreadable) => Ok("dropped"),
        Err(Stopped) => Err(WebError::Unavailable("the bot is stopping")),
    }
}
