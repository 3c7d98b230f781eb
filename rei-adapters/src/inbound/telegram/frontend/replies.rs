//! The engine's replies rendered in the user's language and sent: texts, buttons
//! (encoded compactly), status edits; 429s honoured, a blocked user recorded.

use super::*;

/// A core text in a language (see [`Locales::render`]).
pub fn render(locales: &Locales, language: Language, text: &Text) -> String {
    locales.render(language, text)
}

/// `text` with its start links written as Telegram links to `bot` (its username):
/// `https://t.me/<bot>?start=<payload>`.
pub fn with_links(text: &Text, bot: &str) -> Text {
    let args = text
        .args
        .iter()
        .map(|(name, arg)| {
            let arg = match arg {
                Arg::StartLink(payload) => Arg::Text(format!("https://t.me/{bot}?start={payload}")),
                Arg::List(items) => Arg::List(items.iter().map(|t| with_links(t, bot)).collect()),
                other => other.clone(),
            };
            (*name, arg)
        })
        .collect();
    Text {
        key: text.key,
        args,
    }
}

/// `url` as a URL button can carry it: http(s) to a named host with a dot (Telegram
/// refuses `localhost` and bare addresses).
pub(super) fn button_url(url: &str) -> Option<url::Url> {
    let url: url::Url = url.parse().ok()?;
    let named = matches!(url.host(), Some(url::Host::Domain(d)) if d.contains('.'));
    (named && matches!(url.scheme(), "https" | "http")).then_some(url)
}

/// Buttons in a row of the inline keyboard, at most: labels stay readable on a phone.
const BUTTONS_PER_ROW: usize = 2;

/// The keyboard's rows: each group of buttons on rows of its own, at most
/// [`BUTTONS_PER_ROW`] to a row.
pub(super) fn layout(groups: &[Vec<CoreButton>]) -> impl Iterator<Item = &[CoreButton]> {
    groups
        .iter()
        .flat_map(|group| group.chunks(BUTTONS_PER_ROW))
}

impl Front {
    pub(super) async fn send_replies(
        &self,
        sender: &Sender,
        replies: Vec<Reply>,
    ) -> Result<(), RequestError> {
        self.send_replies_at(sender, replies, None).await
    }

    /// Sends `replies`; one meant in place edits `origin` (the message whose button
    /// made it) instead, or is sent anew when that message cannot be edited.
    pub(super) async fn send_replies_at(
        &self,
        sender: &Sender,
        replies: Vec<Reply>,
        origin: Option<MessageId>,
    ) -> Result<(), RequestError> {
        if replies.is_empty() {
            return Ok(());
        }
        let chat = ChatId(sender.id.get());
        let language = self.language(sender.id).await;
        for reply in replies {
            if let (true, Some(message)) = (reply.in_place, origin)
                && self.edit(chat, message, language, &reply).await
            {
                continue;
            }
            let sent = self.send(chat, language, &reply).await;
            match sent {
                Ok(_) => {}
                Err(RequestError::Api(ApiError::BotBlocked | ApiError::UserDeactivated)) => {
                    tracing::info!("the user blocked the bot");
                    if let Err(e) = self.users.mark_unreachable(sender.id).await {
                        tracing::warn!(error = %e, "recording that the user blocked the bot failed");
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Edits `message` to show `reply` (its text and buttons): true when the message
    /// shows it now (also when it did already), false when it cannot be edited (gone,
    /// too old, a photo) and the reply must be sent anew.
    async fn edit(
        &self,
        chat: ChatId,
        message: MessageId,
        language: Language,
        reply: &Reply,
    ) -> bool {
        let text = self.locales.stamp(
            language,
            render(
                &self.locales,
                language,
                &with_links(&reply.text, &self.username),
            ),
        );
        let rows: Vec<Vec<InlineKeyboardButton>> = layout(&reply.buttons)
            .map(|row| {
                row.iter()
                    .filter_map(|b| self.button(language, b))
                    .collect()
            })
            .collect();
        self.send_rate.wait().await;
        let edited = self
            .bot
            .edit_message_text(chat, message, text)
            .reply_markup(InlineKeyboardMarkup::new(rows))
            .await;
        match edited {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => true,
            Err(e) => {
                tracing::debug!(error = %e, "the message could not be edited: sent anew");
                false
            }
        }
    }

    /// Sends a reply within `TELEGRAM_SEND_RATE`, waiting out Telegram's 429
    /// `retry_after` (a few times) rather than dropping the answer.
    pub(super) async fn send(
        &self,
        chat: ChatId,
        language: Language,
        reply: &Reply,
    ) -> Result<Message, RequestError> {
        let mut tries = 0;
        loop {
            self.send_rate.wait().await;
            match self.send_once(chat, language, reply).await {
                Err(RequestError::RetryAfter(wait)) if tries < 3 => {
                    tries += 1;
                    tracing::info!(
                        retry_after_secs = wait.seconds(),
                        "Telegram asked to slow down"
                    );
                    tokio::time::sleep(wait.duration()).await;
                }
                other => return other,
            }
        }
    }

    pub(super) async fn send_once(
        &self,
        chat: ChatId,
        language: Language,
        reply: &Reply,
    ) -> Result<Message, RequestError> {
        let text = render(
            &self.locales,
            language,
            &with_links(&reply.text, &self.username),
        );
        if let Some(invoice) = &reply.invoice {
            let title = render(&self.locales, language, &invoice.title);
            // Stars: currency XTR, one price line, no provider token.
            return self
                .bot
                .send_invoice(
                    chat,
                    title.clone(),
                    text,
                    invoice_payload(invoice.payment),
                    STARS_CURRENCY,
                    [LabeledPrice::new(title, invoice.stars)],
                )
                .provider_token("")
                .await;
        }
        let mut text = self.locales.stamp(language, text);
        // Telegram takes URL buttons to named public hosts only: a link to this machine
        // (the sandbox's checkout page without PUBLIC_URL) is written in the text instead.
        for button in reply.buttons.iter().flatten() {
            if let ButtonTarget::Url(url) = &button.target
                && button_url(url).is_none()
            {
                let label = render(&self.locales, language, &button.label);
                text.push_str(&format!("\n\n{label}: {url}"));
            }
        }
        let request = self.bot.send_message(chat, text);
        if reply.buttons.is_empty() {
            return request.await;
        }
        let rows: Vec<Vec<InlineKeyboardButton>> = layout(&reply.buttons)
            .map(|row| {
                row.iter()
                    .filter_map(|b| self.button(language, b))
                    .collect()
            })
            .collect();
        teloxide::payloads::SendMessageSetters::reply_markup(
            request,
            InlineKeyboardMarkup::new(rows),
        )
        .await
    }

    pub(super) fn button(
        &self,
        language: Language,
        button: &CoreButton,
    ) -> Option<InlineKeyboardButton> {
        let label = render(&self.locales, language, &button.label);
        match &button.target {
            ButtonTarget::Action(action) => Some(InlineKeyboardButton::callback(
                label,
                callback::encode(action),
            )),
            ButtonTarget::Url(url) => {
                button_url(url).map(|url| InlineKeyboardButton::url(label, url))
            }
        }
    }
}
