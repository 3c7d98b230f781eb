//! Broadcasts: an admin composes a message (text, an optional photo, an optional URL
//! button) for a segment of users, sees how many it reaches, and starts it; it is sent
//! at the messenger's pace, can be paused and cancelled, and resumes after a restart
//! without sending anyone a second copy.
//!
//! Each recipient is a row of its own: `pending`, then `sending` (claimed, in its own
//! commit, right before the one send), then `sent`, `blocked` or `failed`. A process
//! killed between the claim and the record leaves that one row `sending`: it is never
//! sent again (the messenger may have it) and is counted as `unknown`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::UserId;
use crate::ports::{Clock, StoreError};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord, Language};

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

/// Composes, starts, pauses, cancels and reports broadcasts (the sending loop is the
/// front end's).
#[derive(Clone)]
pub struct BroadcastService {
    store: Arc<dyn BroadcastStore>,
    users: crate::user::UserService,
    clock: Arc<dyn Clock>,
}

crate::opaque_debug!(BroadcastService);

impl BroadcastService {
    /// A service over `store`.
    #[must_use]
    pub fn new(
        store: Arc<dyn BroadcastStore>,
        users: crate::user::UserService,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            users,
            clock,
        }
    }

    /// Composes a draft (audited): the broadcast and how many users its segment holds
    /// now (the preview).
    ///
    /// # Errors
    /// [`BroadcastError::BadText`], [`BroadcastError::BadButton`], or a store failure.
    pub async fn create(
        &self,
        actor: Actor,
        text: &str,
        photo: Option<String>,
        button: Option<&str>,
        segment: Segment,
    ) -> Result<(Broadcast, u32), BroadcastError> {
        let text = text.trim();
        let max = if photo.is_some() {
            MAX_CAPTION
        } else {
            MAX_TEXT
        };
        if text.is_empty() || text.chars().count() > max {
            return Err(BroadcastError::BadText { max });
        }
        let button = button
            .map(|b| {
                let (label, url) = b.split_once('=').ok_or(BroadcastError::BadButton)?;
                let (label, url) = (label.trim(), url.trim());
                let ok = !label.is_empty()
                    && label.chars().count() <= 64
                    && url.starts_with("https://")
                    && url.len() > "https://".len()
                    && !url.chars().any(char::is_whitespace);
                if ok {
                    Ok(LinkButton {
                        label: label.to_owned(),
                        url: url.to_owned(),
                    })
                } else {
                    Err(BroadcastError::BadButton)
                }
            })
            .transpose()?;
        let now = self.clock.now();
        let audit = AuditRecord {
            actor,
            action: AuditAction::BroadcastCreate,
            target_user: None,
            amount: None,
            reason: format!("segment {}", segment.name()),
            created_at: now,
        };
        let created = self
            .store
            .create_broadcast(
                NewBroadcast {
                    text: text.to_owned(),
                    photo,
                    button,
                    segment,
                    created_at: now,
                },
                audit,
            )
            .await?;
        let reach = self.store.segment_size(segment, now).await?;
        Ok((created, reach))
    }

    /// A draft for another segment: the same message as a new draft (the old one is
    /// cancelled), with the new segment's reach.
    ///
    /// # Errors
    /// [`BroadcastError::WrongState`] unless a draft.
    pub async fn resegment(
        &self,
        actor: Actor,
        id: BroadcastId,
        segment: Segment,
    ) -> Result<(Broadcast, u32), BroadcastError> {
        let old = self.status(id).await?;
        if old.state != BroadcastState::Draft {
            return Err(BroadcastError::WrongState {
                id,
                state: old.state,
                what: "change the segment of",
            });
        }
        self.cancel(actor.clone(), id).await?;
        let button = old.button.map(|b| format!("{}={}", b.label, b.url));
        self.create(actor, &old.text, old.photo, button.as_deref(), segment)
            .await
    }

    /// One broadcast with its progress.
    ///
    /// # Errors
    /// [`BroadcastError::Unknown`], or a store failure.
    pub async fn status(&self, id: BroadcastId) -> Result<Broadcast, BroadcastError> {
        self.store
            .broadcast(id)
            .await?
            .ok_or(BroadcastError::Unknown(id))
    }

    /// Starts a draft (choosing its recipients now) or resumes a paused one.
    ///
    /// # Errors
    /// [`BroadcastError::WrongState`] unless draft or paused.
    pub async fn start(&self, actor: Actor, id: BroadcastId) -> Result<Broadcast, BroadcastError> {
        self.transition(
            actor,
            id,
            &[BroadcastState::Draft, BroadcastState::Paused],
            BroadcastState::Running,
            AuditAction::BroadcastStart,
            "start",
        )
        .await
    }

    /// Pauses a running broadcast (the one message in flight still goes).
    ///
    /// # Errors
    /// [`BroadcastError::WrongState`] unless running.
    pub async fn pause(&self, actor: Actor, id: BroadcastId) -> Result<Broadcast, BroadcastError> {
        self.transition(
            actor,
            id,
            &[BroadcastState::Running],
            BroadcastState::Paused,
            AuditAction::BroadcastPause,
            "pause",
        )
        .await
    }

    /// Cancels a broadcast that has not finished.
    ///
    /// # Errors
    /// [`BroadcastError::WrongState`] when done or cancelled.
    pub async fn cancel(&self, actor: Actor, id: BroadcastId) -> Result<Broadcast, BroadcastError> {
        self.transition(
            actor,
            id,
            &[
                BroadcastState::Draft,
                BroadcastState::Running,
                BroadcastState::Paused,
            ],
            BroadcastState::Cancelled,
            AuditAction::BroadcastCancel,
            "cancel",
        )
        .await
    }

    async fn transition(
        &self,
        actor: Actor,
        id: BroadcastId,
        from: &[BroadcastState],
        to: BroadcastState,
        action: AuditAction,
        what: &'static str,
    ) -> Result<Broadcast, BroadcastError> {
        let now = self.clock.now();
        let audit = AuditRecord {
            actor,
            action,
            target_user: None,
            amount: None,
            reason: format!("broadcast {id}"),
            created_at: now,
        };
        match self.store.move_broadcast(id, from, to, now, audit).await {
            Ok(Some(moved)) => Ok(moved),
            Ok(None) => {
                let state = self.status(id).await?.state;
                Err(BroadcastError::WrongState { id, state, what })
            }
            Err(StoreError::NotFound(_)) => Err(BroadcastError::Unknown(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Broadcasts being sent.
    ///
    /// # Errors
    /// A store failure.
    pub async fn running(&self) -> Result<Vec<BroadcastId>, BroadcastError> {
        Ok(self.store.running_broadcasts().await?)
    }

    /// The next recipient of `id` to send to, claimed: `None` when it has none left
    /// (then it is marked done) or it is no longer running.
    ///
    /// # Errors
    /// A store failure.
    pub async fn next_recipient(&self, id: BroadcastId) -> Result<Option<UserId>, BroadcastError> {
        let now = self.clock.now();
        let next = self.store.claim_recipient(id, now).await?;
        if next.is_none() {
            self.store.finish_broadcast(id, now).await?;
        }
        Ok(next)
    }

    /// Sends `broadcast` to its next recipient through `sender` and records how it
    /// ended (a user who blocked the bot is marked unreachable): `None` when no one is
    /// left (the broadcast is then done) or it is no longer running.
    ///
    /// # Errors
    /// A store failure (the claimed recipient is then never sent again).
    pub async fn deliver_next(
        &self,
        broadcast: &Broadcast,
        sender: &dyn BroadcastSender,
    ) -> Result<Option<(UserId, Delivery)>, BroadcastError> {
        let Some(user) = self.next_recipient(broadcast.id).await? else {
            return Ok(None);
        };
        let delivery = match sender.send(user, broadcast).await {
            Ok(()) => Delivery::Sent,
            Err(SendFailure::Blocked) => {
                self.users.mark_unreachable(user).await?;
                Delivery::Blocked
            }
            Err(SendFailure::Refused(_)) => Delivery::Failed,
        };
        self.record(broadcast.id, user, delivery).await?;
        Ok(Some((user, delivery)))
    }

    /// Records how the send to `user` ended.
    ///
    /// # Errors
    /// A store failure.
    pub async fn record(
        &self,
        id: BroadcastId,
        user: UserId,
        delivery: Delivery,
    ) -> Result<(), BroadcastError> {
        Ok(self
            .store
            .record_delivery(id, user, delivery, self.clock.now())
            .await?)
    }
}

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
