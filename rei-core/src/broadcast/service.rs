//! [`BroadcastService`]: composing, starting, pausing, cancelling and reporting
//! broadcasts, and delivering them one recipient at a time.

use std::sync::Arc;

use super::{
    Broadcast, BroadcastError, BroadcastId, BroadcastSender, BroadcastState, BroadcastStore,
    Delivery, LinkButton, MAX_CAPTION, MAX_TEXT, NewBroadcast, Segment, SendFailure,
};
use crate::ids::UserId;
use crate::ports::{Clock, StoreError};
use crate::user::{Actor, AuditAction, AuditRecord};

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
