//! Webhook mode (`TELEGRAM_MODE=webhook`): the HTTP route hands each update over here,
//! and the front end's dispatcher reads them as it reads long-polled ones.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use secrecy::{ExposeSecret, SecretString};
use teloxide::stop::{StopToken, mk_stop_token};
use teloxide::types::Update;
use teloxide::update_listeners::{StatefulListener, UpdateListener};
use tokio::sync::mpsc;

/// The route's side: the secret and where updates go.
#[derive(Clone)]
pub struct TelegramWebhook {
    secret: Arc<SecretString>,
    updates: mpsc::UnboundedSender<Update>,
}

rei_core::opaque_debug!(TelegramWebhook);

/// The dispatcher's side: updates received by the route, in arrival order.
#[derive(Debug)]
pub struct WebhookUpdates(mpsc::UnboundedReceiver<Update>);

/// What became of a pushed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Handed to the dispatcher.
    Accepted,
    /// Not an update teloxide can read: dropped (Telegram would resend it forever).
    Unreadable,
}

/// The front end has stopped: updates can no longer be taken.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the bot is stopping")]
pub struct Stopped;

impl TelegramWebhook {
    /// A route side checking `secret`, and the updates it accepts.
    #[must_use]
    pub fn new(secret: SecretString) -> (Self, WebhookUpdates) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                secret: Arc::new(secret),
                updates: tx,
            },
            WebhookUpdates(rx),
        )
    }

    /// Whether the `X-Telegram-Bot-Api-Secret-Token` header value is the secret
    /// (compared without stopping at the first difference).
    #[must_use]
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        header.is_some_and(|h| same(h, self.secret.expose_secret().as_bytes()))
    }

    /// Hands an update body to the dispatcher.
    ///
    /// # Errors
    /// [`Stopped`] when the front end no longer reads updates.
    pub fn push(&self, body: &[u8]) -> Result<Pushed, Stopped> {
        match serde_json::from_slice::<Update>(body) {
            Ok(update) => self
                .updates
                .send(update)
                .map(|()| Pushed::Accepted)
                .map_err(|_| Stopped),
            Err(e) => {
                tracing::warn!(error = %e, "an update that cannot be read was dropped");
                Ok(Pushed::Unreadable)
            }
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn first_mut<A, B>(pair: &mut (A, B)) -> &mut A {
    &mut pair.0
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<Update, Infallible>> + Send>>;

impl WebhookUpdates {
    /// A teloxide update listener over the received updates. Its stop token closes the
    /// channel — the route then answers 503, so Telegram sends those updates again later
    /// — and the stream ends only once every update already accepted (answered 200) has
    /// been handed to the dispatcher: none is lost at shutdown.
    pub(crate) fn into_listener(self) -> impl UpdateListener<Err = Infallible> {
        let (stop_token, stop_flag) = mk_stop_token();
        let stopped = futures::FutureExt::shared(stop_flag);
        let stream: UpdateStream = Box::pin(futures::stream::unfold(
            (self.0, stopped, false),
            |(mut rx, stopped, closed)| async move {
                let next = if closed {
                    rx.recv().await
                } else {
                    tokio::select! {
                        update = rx.recv() => update,
                        () = stopped.clone() => {
                            rx.close();
                            rx.recv().await
                        }
                    }
                };
                let closed = closed || stopped.peek().is_some();
                next.map(|update| (Ok(update), (rx, stopped, closed)))
            },
        ));
        StatefulListener::new(
            (stream, stop_token),
            first_mut,
            |state: &mut (UpdateStream, StopToken)| state.1.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn secrets_match_only_exactly() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cre"));
        assert!(!same(b"", b"x"));
    }
}
