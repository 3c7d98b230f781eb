//! The dialogue as a state machine, independent of any messenger: typed inputs (a text,
//! a command and its arguments, a photo, a video, a button press) and the user's stored
//! state in, typed replies out (a message key with arguments, groups of buttons that
//! carry typed actions). It calls the core services (quote, reserve, create job, top-up,
//! admin operations) and knows nothing of any messenger: a front end (the Telegram
//! adapter, the console example) turns what its user did into an [`Input`], hands it to
//! [`Conversation::handle`], and renders the [`Reply`]s from its locale files. Command
//! syntax, button encoding, keyboard layout, file references, size limits and invoice
//! payloads are the front end's. Every flow is unit-testable without a network.

mod command;
mod engine;
mod state;

pub use command::{AdminCommand, Command, CommandError};
pub use engine::{
    Conversation, ConversationConfig, ConversationError, ConversationPorts, VideoModel,
};
pub use state::{DialogueState, Draft, DraftId};

use serde::{Deserialize, Serialize};

use crate::ids::PaymentId;
use crate::money::Money;
use crate::pricing::VideoDuration;
use crate::user::Language;

/// Every locale key the conversation can produce: a front end's locale files must have
/// each of them (its tests check; a core test checks this list against the code).
pub const TEXT_KEYS: &[&str] = &[
    "admin-added",
    "admin-banned",
    "admin-menu",
    "admin-reason-too-long",
    "admin-stats",
    "admin-stats-button",
    "admin-stats-jobs",
    "admin-sub-too-much",
    "admin-subtracted",
    "admin-unbanned",
    "admin-unknown-user",
    "admin-usage-add",
    "admin-usage-ban",
    "admin-usage-sub",
    "admin-usage-unban",
    "balance",
    "banned",
    "button-cancel",
    "button-confirm",
    "button-expired",
    "cancelled",
    "draft-already-confirmed",
    "draft-cancelled",
    "draft-edit",
    "draft-expired",
    "draft-image",
    "draft-image-video",
    "draft-short-of-money",
    "draft-text-video",
    "draft-video-video",
    "file-too-large",
    "file-unavailable",
    "help",
    "history",
    "history-credit",
    "history-debit",
    "history-empty",
    "history-job",
    "history-job-link",
    "signup-bonus",
    "promo-usage",
    "admin-usage-newpromo",
    "admin-promo-created",
    "admin-promo-exists",
    "admin-promo-past",
    "admin-promos",
    "admin-promos-empty",
    "admin-promo-line",
    "admin-promo-no-limit",
    "admin-promo-no-expiry",
    "admin-promo-on",
    "admin-promo-off",
    "promo-bad-code",
    "promo-credited",
    "promo-already-used",
    "promo-exhausted",
    "promo-expired",
    "promo-disabled",
    "promo-unknown",
    "look-image",
    "look-auto",
    "look-choice",
    "look-chosen",
    "admin-usage-disablepromo",
    "admin-promo-disabled",
    "admin-prices",
    "admin-price-line",
    "admin-price-set",
    "admin-model-line",
    "admin-model-on",
    "admin-model-off",
    "admin-model-switched",
    "admin-model-unknown",
    "admin-model-last",
    "admin-topups-set",
    "admin-broadcast-photo",
    "admin-web-link",
    "admin-web-open",
    "admin-web-off",
    "admin-price-unknown",
    "admin-usage-setprice",
    "admin-usage-broadcast",
    "admin-broadcast-draft",
    "admin-broadcast-progress",
    "admin-broadcast-unknown",
    "admin-broadcast-wrong-state",
    "broadcast-segment-all",
    "broadcast-segment-paid",
    "broadcast-segment-active",
    "broadcast-segment-ru",
    "broadcast-segment-en",
    "broadcast-start",
    "broadcast-pause",
    "broadcast-cancel",
    "broadcast-progress",
    "ref-info",
    "ref-off",
    "ref-joined",
    "history-newer",
    "history-older",
    "history-page",
    "history-repeat",
    "history-send-again",
    "repeat-input-gone",
    "send-again-gone",
    "send-again-queued",
    "send-again-under-way",
    "history-legacy-job",
    "history-refund",
    "image-too-small",
    "images-unavailable",
    "insufficient-funds",
    "lang-choose",
    "lang-en",
    "lang-ru",
    "lang-set",
    "menu-balance",
    "menu-help",
    "menu-history",
    "menu-image",
    "menu-image-ask",
    "menu-language",
    "menu-topup",
    "menu-video",
    "nothing-to-cancel",
    "pay-amount",
    "pay-check",
    "pay-check-cancelled",
    "pay-check-paid",
    "pay-check-pending",
    "pay-choose",
    "pay-email-ask",
    "pay-email-invalid",
    "pay-link",
    "pay-open",
    "pay-provider-down",
    "pay-stars-amount",
    "pay-unavailable",
    "photo-needs-caption",
    "price-changed",
    "prompt-empty",
    "prompt-too-long",
    "rate-limited",
    "stars-checkout-unavailable",
    "stars-invoice-description",
    "stars-invoice-expired",
    "stars-invoice-title",
    "stars-payment-problem",
    "storage-full",
    "too-many-jobs",
    "unknown-command",
    "unknown-input",
    "video-choose-duration",
    "video-choose-model",
    "video-duration",
    "video-format",
    "video-length",
    "video-mode-unsupported",
    "video-model",
    "video-needs-caption",
    "video-send-any",
    "video-send-photo",
    "video-send-text",
    "video-send-video",
    "video-send-video-too",
    "video-start-with-command",
    "video-to-video-unavailable",
    "video-unavailable",
    "video-use-buttons",
    "welcome",
];

/// Who sent an input (as the messenger knows them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    /// Their id (Telegram user id).
    pub id: crate::ids::UserId,
    /// `@username`, if any.
    pub username: Option<String>,
    /// First name, if any.
    pub first_name: Option<String>,
    /// The messenger's language code (`ru`, `en-US`, …): the default bot language.
    pub language_code: Option<String>,
}

/// A photo or video a user sent, as the front end describes it (nothing downloaded yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// The front end's reference to the file, opaque to core: its [`MediaFetcher`]
    /// downloads it by this (Telegram: the `file_id`).
    ///
    /// [`MediaFetcher`]: crate::ports::MediaFetcher
    pub reference: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Width in pixels, when known.
    pub width: Option<u32>,
    /// Height in pixels, when known.
    pub height: Option<u32>,
    /// Length in seconds (videos).
    pub duration_secs: Option<u32>,
    /// MIME type, when known.
    pub mime_type: Option<String>,
}

/// One thing a user did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A message text that is not a command.
    Text(String),
    /// A command (Telegram: `/name args`), as the front end read it.
    Command {
        /// Its name, without the front end's syntax (`start`, `add`).
        name: String,
        /// Its arguments, one word each.
        args: Vec<String>,
    },
    /// A photo, with its caption.
    Photo {
        /// The largest size.
        media: Media,
        /// The caption (the prompt).
        caption: Option<String>,
    },
    /// A video, with its caption.
    Video {
        /// The video.
        media: Media,
        /// The caption (the prompt).
        caption: Option<String>,
    },
    /// A button press the front end decoded.
    Button(Action),
    /// A button whose data could not be decoded (stale, from an older version, forged).
    StaleButton,
    /// Anything else (stickers, voice, …).
    Other,
}

/// What a button does: it carries what it chooses (a draft, a model, an amount, a
/// payment), never a position in a menu. The front end encodes it (Telegram: ≤ 64 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Confirm a draft: reserve and queue.
    Confirm(DraftId),
    /// Drop a draft.
    Discard(DraftId),
    /// `/video`: the model, by its API name (a model no longer offered is refused).
    VideoModel(String),
    /// `/video`: the length.
    VideoDuration(VideoDuration),
    /// `/pay` by card: the amount (refused unless it is still in `TOPUP_AMOUNTS`).
    TopUp(Money),
    /// `/pay` with Telegram Stars: the amount (refused unless it is still in
    /// `TOPUP_AMOUNTS`).
    TopUpStars(Money),
    /// Ask the provider about a payment now ("Check payment").
    CheckPayment(PaymentId),
    /// `/lang`.
    SetLanguage(Language),
    /// `/admin` menu: statistics.
    AdminStats,
    /// `/history`: a new draft with the same request as this job of the user's, priced
    /// at today's prices.
    Repeat(crate::ids::JobId),
    /// `/history`: this completed job's result, sent again.
    SendAgain(crate::ids::JobId),
    /// `/history`: a page of older jobs (0 = the newest).
    HistoryPage(u32),
    /// A draft's shape: the same request as a new draft of this shape.
    DraftAspect(DraftId, crate::pricing::AspectRatio),
    /// An image draft's size: the same request as a new draft of this size.
    DraftResolution(DraftId, crate::pricing::Resolution),
    /// Admin: a broadcast draft for this segment instead.
    BroadcastSegment(crate::broadcast::BroadcastId, crate::broadcast::Segment),
    /// Admin: start (or resume) a broadcast.
    BroadcastStart(crate::broadcast::BroadcastId),
    /// Admin: pause a broadcast.
    BroadcastPause(crate::broadcast::BroadcastId),
    /// Admin: cancel a broadcast.
    BroadcastCancel(crate::broadcast::BroadcastId),
    /// Admin: a broadcast's progress now.
    BroadcastProgress(crate::broadcast::BroadcastId),
    /// The main menu under `/start`: does what its command does.
    Menu(MenuItem),
}

/// A button of the main menu (`/start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MenuItem {
    /// Make an image: asks for a description or a photo with a caption.
    Image,
    /// `/video`.
    Video,
    /// `/balance`.
    Balance,
    /// `/pay`.
    TopUp,
    /// `/history`.
    History,
    /// `/lang`.
    Language,
    /// `/help`.
    Help,
}

impl MenuItem {
    /// Every item, in menu order.
    pub const ALL: [Self; 7] = [
        Self::Image,
        Self::Video,
        Self::Balance,
        Self::TopUp,
        Self::History,
        Self::Language,
        Self::Help,
    ];

    /// The locale key of its label.
    #[must_use]
    pub const fn label_key(self) -> &'static str {
        match self {
            Self::Image => "menu-image",
            Self::Video => "menu-video",
            Self::Balance => "menu-balance",
            Self::TopUp => "menu-topup",
            Self::History => "menu-history",
            Self::Language => "menu-language",
            Self::Help => "menu-help",
        }
    }
}

/// An argument of a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// An amount, rendered by `Money`'s display (`50.00 ₽`).
    Money(Money),
    /// A count (chooses plural forms).
    Number(i64),
    /// Words shown as they are (a name, a prompt, a provider's reason).
    Text(String),
    /// Another text of the locale, by key (e.g. a model's capability).
    Key(&'static str),
    /// Texts shown one per line (history).
    List(Vec<Text>),
    /// A day, written as the language writes dates.
    Date(crate::time::Timestamp),
    /// A link that opens the bot with this start payload (a referral link): each front
    /// end writes it its own way (Telegram: `https://t.me/<bot>?start=<payload>`).
    StartLink(String),
}

/// A text of the locale: its key and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    /// The locale key.
    pub key: &'static str,
    /// Named arguments.
    pub args: Vec<(&'static str, Arg)>,
}

impl Text {
    /// A text without arguments.
    #[must_use]
    pub const fn key(key: &'static str) -> Self {
        Self {
            key,
            args: Vec::new(),
        }
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, name: &'static str, value: Arg) -> Self {
        self.args.push((name, value));
        self
    }
}

/// Where a button leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ButtonTarget {
    /// Back to the bot.
    Action(Action),
    /// Out to a web page (a payment form).
    Url(String),
}

/// An inline button.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    /// Its label.
    pub label: Text,
    /// What it does.
    pub target: ButtonTarget,
}

impl Button {
    /// A button back to the bot.
    #[must_use]
    pub const fn action(label: Text, action: Action) -> Self {
        Self {
            label,
            target: ButtonTarget::Action(action),
        }
    }
}

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The text.
    pub text: Text,
    /// Groups of buttons, in order; the front end lays each group out (Telegram: rows
    /// of at most two).
    pub buttons: Vec<Vec<Button>>,
    /// Send this as an invoice in Telegram Stars (the text is its description).
    pub invoice: Option<Invoice>,
    /// Show this in place of the message whose button made it (a broadcast's progress,
    /// updated on the same message); a front end that cannot edit sends it anew.
    pub in_place: bool,
}

/// An invoice to pay in the messenger's own currency (Telegram Stars). The front end
/// names the payment in the invoice its own way and hands it back to
/// [`Conversation::stars_checkout`] and [`Conversation::stars_paid`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    /// Its title (also the price line's label).
    pub title: Text,
    /// The payment it pays.
    pub payment: PaymentId,
    /// The price, in Stars.
    pub stars: u32,
}

impl Reply {
    /// A plain message.
    #[must_use]
    pub const fn text(text: Text) -> Self {
        Self {
            text,
            buttons: Vec::new(),
            invoice: None,
            in_place: false,
        }
    }

    /// A message with buttons.
    #[must_use]
    pub const fn with_buttons(text: Text, buttons: Vec<Vec<Button>>) -> Self {
        Self {
            text,
            buttons,
            invoice: None,
            in_place: false,
        }
    }

    /// The same reply, shown in place of the message whose button made it.
    #[must_use]
    pub fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }
}

#[cfg(test)]
mod tests;
