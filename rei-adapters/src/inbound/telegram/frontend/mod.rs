//! The Telegram front end: updates in (long polling), core's [`Conversation`] decides,
//! replies out. Each handler only translates: an update becomes an [`Input`], a
//! [`Reply`] becomes a Bot API call rendered from the locale files; nothing here decides
//! prices, limits or who may do what.
//!
//! - A button's data is the compact encoding of a typed action (`callback.rs`); a stale
//!   or forged one becomes [`Input::StaleButton`] ("this button has expired"). Every
//!   callback query is answered at once.
//! - Updates from one chat are handled in order (teloxide's default distribution).
//! - A confirmed job's status message is the notifier's (core asks it to start the
//!   message and keeps its id with the job; the worker's notices edit it).
//! - A second poller on the same token (409 Conflict) stops the bot with a clear error.

use std::sync::Arc;
use std::time::Duration;

use rei_core::UserId;
use rei_core::conversation::{
    Arg, Button as CoreButton, ButtonTarget, Conversation, Input, Media, Reply, Sender, Text,
};
use rei_core::user::Language;
use teloxide::dispatching::{Dispatcher, UpdateFilterExt};
use teloxide::payloads::{
    AnswerPreCheckoutQuerySetters, EditMessageTextSetters, SendInvoiceSetters,
    SetMyCommandsSetters, SetWebhookSetters,
};
use teloxide::prelude::{Requester, dptree};
use teloxide::types::{
    AllowedUpdate, BotCommand, BotCommandScope, CallbackQuery, ChatId, InlineKeyboardButton,
    InlineKeyboardMarkup, LabeledPrice, Message, MessageId, PreCheckoutQuery, Update,
};
use teloxide::{ApiError, Bot, RequestError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::callback;
use crate::outbound::locale::Locales;
use crate::outbound::telegram::{
    BotClients, BotStartError, LONG_POLL, STARS_CURRENCY, SendRate, invoice_payload,
    payment_of_invoice,
};

mod input;
mod replies;
#[cfg(test)]
pub(crate) use input::text_input;
use input::*;
pub use replies::render;

/// Why the front end stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// Another process polls with the same token.
    #[error(
        "another bot instance is polling with this BOT_TOKEN (Telegram answered 409 Conflict): stop it first"
    )]
    Conflict,
    /// Telegram could not be reached at start, or rejected the token.
    #[error(transparent)]
    Start(#[from] BotStartError),
    /// Telegram refused the webhook (`TELEGRAM_MODE=webhook`).
    #[error("Telegram refused the webhook at PUBLIC_URL: {0}")]
    Webhook(#[source] RequestError),
    /// Receiving updates stopped with an error.
    #[error("receiving updates from Telegram failed: {0}")]
    Updates(#[source] RequestError),
}

/// The front end's shared parts.
struct Front {
    bot: Bot,
    send_rate: SendRate,
    conversation: Arc<Conversation>,
    locales: Arc<Locales>,
    users: rei_core::user::UserService,
    /// The bot's username (`getMe`), for links that open it.
    username: String,
}

/// What the front end works with.
#[derive(Clone)]
pub struct FrontEnd {
    /// The Bot API clients (`TELEGRAM_API_URL`).
    pub clients: BotClients,
    /// How long to keep trying to reach Telegram at start before giving up.
    pub start_retry: Duration,
    /// `TELEGRAM_SEND_RATE`.
    pub send_rate: SendRate,
    /// The dialogue engine.
    pub conversation: Arc<Conversation>,
    /// The user's language; who blocked the bot.
    pub users: rei_core::user::UserService,
    /// The texts.
    pub locales: Arc<Locales>,
}

rei_core::opaque_debug!(FrontEnd);

/// Where updates come from.
#[derive(Debug)]
pub enum UpdateSource {
    /// Long polling (`getUpdates`; any webhook is deleted first).
    Polling,
    /// `TELEGRAM_MODE=webhook`: Telegram posts to `url` with `secret`; the HTTP route
    /// hands the updates over.
    Webhook {
        /// `PUBLIC_URL` + `/webhooks/telegram`.
        url: url::Url,
        /// `TELEGRAM_WEBHOOK_SECRET`.
        secret: secrecy::SecretString,
        /// What the route accepted.
        updates: super::webhook::WebhookUpdates,
    },
}

/// The update kinds the bot handles.
const ALLOWED_UPDATES: [AllowedUpdate; 3] = [
    AllowedUpdate::Message,
    AllowedUpdate::CallbackQuery,
    AllowedUpdate::PreCheckoutQuery,
];

/// How many updates are handled at once, at most: a chat's updates go to one of this
/// many lanes (in order, as Telegram sent them), so a burst of thousands of new chats
/// does not become thousands of concurrent handlers, each with its own connection to
/// the Bot API and its own buffers.
const LANES: i64 = 256;

/// Updates waiting per lane before the dispatcher stops taking new ones (back-pressure
/// on long polling; in webhook mode they wait in the route's channel).
const LANE_QUEUE: usize = 8;

/// The lane of an update: by chat, so one chat's updates stay in order.
fn lane_of(update: &Update) -> Option<i64> {
    update.chat().map(|chat| chat.id.0.rem_euclid(LANES))
}

impl FrontEnd {
    /// Runs the bot until `shutdown`.
    ///
    /// # Errors
    /// [`FrontendError::Conflict`] when another instance polls with the same token,
    /// [`FrontendError::Start`] when Telegram cannot be reached at start (after
    /// retrying for `start_retry`) or rejects the token, [`FrontendError::Webhook`]
    /// when it refuses the webhook.
    pub async fn run(
        self,
        source: UpdateSource,
        shutdown: CancellationToken,
    ) -> Result<(), FrontendError> {
        let me = tokio::select! {
            me = self.clients.connect(self.start_retry) => me?,
            () = shutdown.cancelled() => return Ok(()),
        };
        tracing::info!(bot = %me.username(), "connected to Telegram");
        let bot = self.clients.send.clone();
        set_commands(&bot, &self.locales).await;
        let front = Arc::new(Front {
            bot: bot.clone(),
            send_rate: self.send_rate,
            conversation: self.conversation,
            locales: self.locales,
            users: self.users,
            username: me.username().to_owned(),
        });
        let handler = dptree::entry()
            .branch(Update::filter_message().endpoint(on_message))
            .branch(Update::filter_callback_query().endpoint(on_callback))
            .branch(Update::filter_pre_checkout_query().endpoint(on_pre_checkout));
        let mut dispatcher = Dispatcher::builder(bot.clone(), handler)
            .dependencies(dptree::deps![front])
            .default_handler(|update| async move {
                tracing::debug!(update_id = update.id.0, "update ignored");
            })
            .distribution_function(lane_of)
            .worker_queue_size(LANE_QUEUE)
            .build();
        let token = dispatcher.shutdown_token();
        let conflict = CancellationToken::new();
        let stopper = {
            let (shutdown, conflict) = (shutdown.clone(), conflict.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = conflict.cancelled() => {}
                }
                // The dispatcher may not have started yet: try until it accepts.
                loop {
                    match token.shutdown() {
                        Ok(done) => {
                            done.await;
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        let dispatched = match source {
            UpdateSource::Polling => {
                let on_listener_error = {
                    let conflict = conflict.clone();
                    Arc::new(move |e: RequestError| {
                        let conflict = conflict.clone();
                        async move {
                            if matches!(e, RequestError::Api(ApiError::TerminatedByOtherGetUpdates))
                            {
                                conflict.cancel();
                            } else {
                                tracing::warn!(error = %e, "polling Telegram failed; retrying");
                            }
                        }
                    })
                };
                let listener = teloxide::update_listeners::Polling::builder(self.clients.poll)
                    .timeout(LONG_POLL)
                    .allowed_updates(ALLOWED_UPDATES.to_vec())
                    .delete_webhook()
                    .await
                    .build();
                dispatcher
                    .try_dispatch_with_listener(listener, on_listener_error)
                    .await
            }
            UpdateSource::Webhook {
                url,
                secret,
                updates,
            } => {
                let set = bot
                    .set_webhook(url.clone())
                    .secret_token(secrecy::ExposeSecret::expose_secret(&secret).to_owned())
                    .allowed_updates(ALLOWED_UPDATES.to_vec())
                    .await;
                if let Err(e) = set {
                    stopper.abort();
                    return Err(FrontendError::Webhook(e));
                }
                tracing::info!(url = %url, "Telegram webhook set");
                let on_listener_error =
                    Arc::new(|e: std::convert::Infallible| async move { match e {} });
                dispatcher
                    .try_dispatch_with_listener(updates.into_listener(), on_listener_error)
                    .await
            }
        };
        stopper.abort();
        dispatched.map_err(FrontendError::Updates)?;
        if conflict.is_cancelled() {
            return Err(FrontendError::Conflict);
        }
        Ok(())
    }
}

/// The commands of the menu Telegram shows users; each has a `command-<name>` text.
pub const COMMANDS: [&str; 10] = [
    "start", "help", "balance", "pay", "history", "video", "cancel", "lang", "promo", "ref",
];

/// The command menu, in Russian (default) and English.
async fn set_commands(bot: &Bot, locales: &Locales) {
    for (language, code) in [(Language::Ru, None), (Language::En, Some("en"))] {
        let commands: Vec<BotCommand> = COMMANDS
            .iter()
            .map(|c| BotCommand::new(*c, locales.text(language, &format!("command-{c}"), &[])))
            .collect();
        let mut request = bot
            .set_my_commands(commands)
            .scope(BotCommandScope::AllPrivateChats);
        if let Some(code) = code {
            request = request.language_code(code);
        }
        if let Err(e) = request.await {
            tracing::warn!(error = %e, "setting the command menu failed");
        }
    }
}

async fn on_message(update: Update, msg: Message, front: Arc<Front>) -> Result<(), RequestError> {
    let Some(sender) = msg.from.as_ref().and_then(sender) else {
        return Ok(());
    };
    if let Some(paid) = msg.successful_payment() {
        // Money was taken: credited whatever the chat, limits or dialogue.
        return front.stars_paid(&sender, paid, update.id.0).await;
    }
    if !msg.chat.is_private() {
        return Ok(());
    }
    front
        .handle(&sender, input(&msg), update.id.0, "message", None)
        .await
}

/// Telegram asks whether it may take the Stars; it must hear back within 10 seconds.
async fn on_pre_checkout(
    update: Update,
    query: PreCheckoutQuery,
    front: Arc<Front>,
) -> Result<(), RequestError> {
    let Some(sender) = sender(&query.from) else {
        return Ok(());
    };
    let span = tracing::info_span!(
        "update",
        update_id = update.id.0,
        user_id = sender.id.get(),
        kind = "pre_checkout",
        stars = query.total_amount,
    );
    async move {
        let verdict = front
            .conversation
            .stars_checkout(
                &sender,
                payment_of_invoice(&query.invoice_payload, &query.currency),
                query.total_amount,
            )
            .await;
        let answer = front
            .bot
            .answer_pre_checkout_query(query.id, verdict.is_ok());
        match verdict {
            Ok(()) => {
                tracing::info!("Stars checkout accepted");
                answer.await?;
            }
            Err(why) => {
                tracing::info!(reason = why.key, "Stars checkout refused");
                let language = front.language(sender.id).await;
                answer
                    .error_message(render(&front.locales, language, &why))
                    .await?;
            }
        }
        Ok(())
    }
    .instrument(span)
    .await
}

async fn on_callback(
    update: Update,
    query: CallbackQuery,
    front: Arc<Front>,
) -> Result<(), RequestError> {
    // Answer at once: a late answer fails, and the user's button stops spinning.
    if let Err(e) = front.bot.answer_callback_query(query.id.clone()).await {
        tracing::debug!(error = %e, "answering the callback query failed");
    }
    let Some(sender) = sender(&query.from) else {
        return Ok(());
    };
    let input = query
        .data
        .as_deref()
        .and_then(callback::decode)
        .map_or(Input::StaleButton, Input::Button);
    // The message the button is on: a reply meant "in place" edits it.
    let origin = query
        .message
        .as_ref()
        .map(teloxide::types::MaybeInaccessibleMessage::id);
    front
        .handle(&sender, input, update.id.0, "callback", origin)
        .await
}

impl Front {
    async fn language(&self, user: UserId) -> Language {
        match self.users.user(user).await {
            Ok(Some(user)) => user.language,
            _ => Language::Ru,
        }
    }

    /// A `successful_payment`: credited once by its charge id (Telegram may deliver the
    /// message twice), in its own span.
    async fn stars_paid(
        &self,
        sender: &Sender,
        paid: &teloxide::types::SuccessfulPayment,
        update_id: u32,
    ) -> Result<(), RequestError> {
        let span = tracing::info_span!(
            "update",
            update_id,
            user_id = sender.id.get(),
            kind = "successful_payment",
            stars = paid.total_amount,
            charge_id = %paid.telegram_payment_charge_id.0,
        );
        async move {
            let replies = match self
                .conversation
                .stars_paid(
                    sender,
                    payment_of_invoice(&paid.invoice_payload, &paid.currency),
                    paid.total_amount,
                    &paid.telegram_payment_charge_id.0,
                )
                .await
            {
                Ok(replies) => replies,
                Err(e) => {
                    tracing::error!(error = %e, error.chain = ?e, "a Stars payment could not be credited");
                    vec![Reply::text(Text::key("stars-payment-problem"))]
                }
            };
            self.send_replies(sender, replies).await
        }
        .instrument(span)
        .await
    }

    /// Handles one update in its own span: the conversation decides, the replies go out.
    async fn handle(
        &self,
        sender: &Sender,
        input: Input,
        update_id: u32,
        kind: &'static str,
        origin: Option<MessageId>,
    ) -> Result<(), RequestError> {
        metrics::counter!("telegram_updates_total", "kind" => kind).increment(1);
        let span = tracing::info_span!("update", update_id, user_id = sender.id.get(), kind);
        self.handle_in_span(sender, input, update_id, origin)
            .instrument(span)
            .await
    }

    async fn handle_in_span(
        &self,
        sender: &Sender,
        input: Input,
        update_id: u32,
        origin: Option<MessageId>,
    ) -> Result<(), RequestError> {
        let replies = match self
            .conversation
            .handle(sender, input, &format!("tg:{update_id}"))
            .await
        {
            Ok(replies) => replies,
            Err(e) => {
                tracing::error!(error = %e, error.chain = ?e, "handling an update failed");
                vec![Reply::text(Text::key("error-generic"))]
            }
        };
        self.send_replies_at(sender, replies, origin).await
    }
}
