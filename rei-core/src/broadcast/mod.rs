//! Broadcasts: an admin composes a message (text, an optional photo, an optional URL
//! button) for a segment of users, sees how many it reaches, and starts it; it is sent
//! at the messenger's pace, can be paused and cancelled, and resumes after a restart
//! without sending anyone a second copy.
//!
//! Each recipient is a row of its own: `pending`, then `sending` (claimed, in its own
//! commit, right before the one send), then `sent`, `blocked` or `failed`. A process
//! killed between the claim and the record leaves that one row `sending`: it is never
//! sent again (the messenger may have it) and is counted as `unknown`.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::UserId;
use crate::ports::StoreError;
use crate::time::Timestamp;
use crate::user::{AuditRecord, Language};

/// A broadcast's number.
pub type BroadcastId = i64;

/// Whom a broadcast goes to (users who blocked the bot or are banned never).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Segment {
    /// Everyone.
    All,
    /// Users with at least one paid top-up.
    Paid,
    /// Users who wrote to the bot in the last `days` days.
    Active {
        /// How many days back.
        days: u32,
    },
    /// Users of one language.
    Language(Language),
}

/// Text that is not a segment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a segment is all, paid, active:<N>d or lang:ru|en")]
pub struct BadSegment;

impl Segment {
    /// `all`, `paid`, `active:30d`, `lang:ru`.
    ///
    /// # Errors
    /// [`BadSegment`] for anything else.
    pub fn parse(text: &str) -> Result<Self, BadSegment> {
        match text.trim() {
            "all" => Ok(Self::All),
            "paid" => Ok(Self::Paid),
            "lang:ru" => Ok(Self::Language(Language::Ru)),
            "lang:en" => Ok(Self::Language(Language::En)),
            other => other
                .strip_prefix("active:")
                .and_then(|d| d.strip_suffix('d'))
                .and_then(|d| d.parse::<u32>().ok())
                .filter(|d| (1..=3650).contains(d))
                .map(|days| Self::Active { days })
                .ok_or(BadSegment),
        }
    }

    /// Its text form (as [`Self::parse`] reads it).
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::All => "all".to_owned(),
            Self::Paid => "paid".to_owned(),
            Self::Active { days } => format!("active:{days}d"),
            Self::Language(Language::Ru) => "lang:ru".to_owned(),
            Self::Language(Language::En) => "lang:en".to_owned(),
        }
    }

    /// The earliest last contact of an active user at `now` (`None`: not that segment).
    #[must_use]
    pub fn active_since(&self, now: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Active { days } => {
                Some(now.minus(Duration::from_secs(u64::from(*days) * 86_400)))
            }
            _ => None,
        }
    }
}

/// A URL button under the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkButton {
    /// Its label.
    pub label: String,
    /// Where it opens (https).
    pub url: String,
}

/// Where a broadcast is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BroadcastState {
    /// Composed, not started.
    Draft,
    /// Being sent.
    Running,
    /// Stopped for now; `start` goes on.
    Paused,
    /// Stopped for good.
    Cancelled,
    /// Every recipient was tried.
    Done,
}

crate::ledger::text_codes!(BroadcastState {
    Draft => "draft",
    Running => "running",
    Paused => "paused",
    Cancelled => "cancelled",
    Done => "done",
});

/// How one recipient ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Sent.
    Sent,
    /// The user blocked the bot (marked unreachable).
    Blocked,
    /// The messenger refused it for good.
    Failed,
}

crate::ledger::text_codes!(Delivery {
    Sent => "sent",
    Blocked => "blocked",
    Failed => "failed",
});

/// A broadcast with its progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// Its number.
    pub id: BroadcastId,
    /// The message.
    pub text: String,
    /// A photo (an asset key), sent with the text as its caption.
    pub photo: Option<String>,
    /// A URL button.
    pub button: Option<LinkButton>,
    /// Whom it goes to.
    pub segment: Segment,
    /// Where it is.
    pub state: BroadcastState,
    /// Recipients chosen when it started (before: 0).
    pub recipients: u32,
    /// Sent.
    pub sent: u32,
    /// Blocked the bot.
    pub blocked: u32,
    /// Refused for good.
    pub failed: u32,
    /// Claimed by a process that died before recording the send: never sent again.
    pub unknown: u32,
    /// When it was composed.
    pub created_at: Timestamp,
}

impl Broadcast {
    /// Recipients not tried yet.
    #[must_use]
    pub const fn pending(&self) -> u32 {
        self.recipients
            .saturating_sub(self.sent)
            .saturating_sub(self.blocked)
            .saturating_sub(self.failed)
            .saturating_sub(self.unknown)
    }
}

/// A broadcast to compose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBroadcast {
    /// The message (1–4096 characters; 1–1024 with a photo).
    pub text: String,
    /// A photo.
    pub photo: Option<String>,
    /// A URL button.
    pub button: Option<LinkButton>,
    /// Whom it goes to.
    pub segment: Segment,
    /// When.
    pub created_at: Timestamp,
}

/// Where broadcasts and their recipients live.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait BroadcastStore: Send + Sync {
    /// Stores a draft with its audit line.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn create_broadcast(
        &self,
        broadcast: NewBroadcast,
        audit: AuditRecord,
    ) -> Result<Broadcast, StoreError>;

    /// One broadcast with its counts.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn broadcast(&self, id: BroadcastId) -> Result<Option<Broadcast>, StoreError>;

    /// Broadcasts being sent, oldest first.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn running_broadcasts(&self) -> Result<Vec<BroadcastId>, StoreError>;

    /// How many users `segment` holds at `now`: registered, not banned, not known to
    /// have blocked the bot.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn segment_size(&self, segment: Segment, now: Timestamp) -> Result<u32, StoreError>;

    /// Moves `id` from one of `from` to `to`, with its audit line, in one transaction;
    /// entering `running` from `draft` chooses the recipients (the segment at `at`).
    /// `None` when it is not in one of `from` (nothing written).
    ///
    /// # Errors
    /// `NotFound` for an unknown broadcast; `Unavailable` on storage failure.
    async fn move_broadcast(
        &self,
        id: BroadcastId,
        from: &[BroadcastState],
        to: BroadcastState,
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<Option<Broadcast>, StoreError>;

    /// Claims the next pending recipient of a running broadcast (`pending` →
    /// `sending`, committed): `None` when there is none or it is not running.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn claim_recipient(
        &self,
        id: BroadcastId,
        at: Timestamp,
    ) -> Result<Option<UserId>, StoreError>;

    /// Records how a claimed recipient ended.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn record_delivery(
        &self,
        id: BroadcastId,
        user: UserId,
        delivery: Delivery,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Marks a running broadcast with no pending recipient `done`: whether it did.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn finish_broadcast(&self, id: BroadcastId, at: Timestamp) -> Result<bool, StoreError>;
}

/// Why a send failed for good (the sender waits out rate limits and retries transient
/// failures itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// The user blocked the bot or is gone.
    #[error("the user blocked the bot")]
    Blocked,
    /// The messenger refused the message, or kept failing.
    #[error("not sent: {0}")]
    Refused(String),
}

/// Sends a broadcast's message to one user (the Telegram front end's sender).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait BroadcastSender: Send + Sync {
    /// Sends `broadcast` to `user`, once.
    ///
    /// # Errors
    /// [`SendFailure`] when it was not sent.
    async fn send(&self, user: UserId, broadcast: &Broadcast) -> Result<(), SendFailure>;
}

/// Why a broadcast operation is refused.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// An empty or too long text.
    #[error("the text must be 1 to {max} characters")]
    BadText {
        /// The limit (shorter with a photo).
        max: usize,
    },
    /// The button is not `label=https://…`.
    #[error("a button is label=https://url")]
    BadButton,
    /// No such broadcast.
    #[error("no broadcast {0}")]
    Unknown(BroadcastId),
    /// Not allowed in its state.
    #[error("broadcast {id} is {state}: cannot {what} it")]
    WrongState {
        /// Which.
        id: BroadcastId,
        /// Its state.
        state: BroadcastState,
        /// What was asked.
        what: &'static str,
    },
    /// Marking a user who blocked the bot failed.
    #[error(transparent)]
    User(#[from] crate::user::UserError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A message's longest text (Telegram: 4096 characters; a caption 1024).
pub const MAX_TEXT: usize = 4096;
/// A photo's longest caption.
pub const MAX_CAPTION: usize = 1024;

mod service;
pub use service::BroadcastService;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_read_and_write_the_same_names() {
        for name in ["all", "paid", "active:30d", "lang:ru", "lang:en"] {
            assert_eq!(Segment::parse(name).unwrap().name(), name);
        }
        for bad in [
            "",
            "everyone",
            "active:0d",
            "active:30",
            "lang:de",
            "active:-1d",
        ] {
            assert_eq!(Segment::parse(bad), Err(BadSegment), "{bad}");
        }
    }
}
