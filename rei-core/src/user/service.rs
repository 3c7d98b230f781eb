//! Registration, access checks, and the admin operations (balance adjustments, bans,
//! statistics), each recorded in the audit log.

use std::sync::Arc;
use std::time::Duration;

use crate::ids::{IdempotencyKey, UserId};
use crate::ledger::{EntryKind, NewEntry, Posted, RefType};
use crate::money::Money;
use crate::ports::{Clock, JobQueue, LedgerStore, Missing, QueueError, StoreError, UserStore};
use crate::user::{Actor, AuditAction, AuditRecord, Language, Stats, User, UserProfile};

/// What user and admin operations can fail with.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No such user.
    #[error("user {0} is not registered")]
    UnknownUser(UserId),
    /// An adjustment of zero.
    #[error("the amount must be greater than zero")]
    ZeroAmount,
    /// A debit larger than the balance.
    #[error("the balance is {available}, cannot take {needed}")]
    InsufficientFunds {
        /// Asked for.
        needed: Money,
        /// Available.
        available: Money,
    },
    /// The reason is too long.
    #[error("the reason is longer than {max} characters")]
    ReasonTooLong {
        /// The limit.
        max: usize,
    },
    /// The idempotency key was used for another adjustment.
    #[error("this operation id was already used for a different adjustment")]
    DuplicateKey,
    /// The same adjustment (user, direction, amount, reason) was made moments ago under
    /// another key: probably a command run twice by mistake.
    #[error("an identical adjustment was made {minutes_ago} minute(s) ago (idempotency key {key})")]
    RepeatedAdjustment {
        /// How long ago, in whole minutes.
        minutes_ago: u64,
        /// The earlier adjustment's key.
        key: IdempotencyKey,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The queue failed (stats).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl UserError {
    fn from_store(user: UserId) -> impl FnOnce(StoreError) -> Self {
        move |e| match e {
            StoreError::NotFound(Missing::User(_)) => Self::UnknownUser(user),
            StoreError::InsufficientFunds { needed, available } => {
                Self::InsufficientFunds { needed, available }
            }
            StoreError::IdempotencyConflict { .. } => Self::DuplicateKey,
            other => Self::Store(other),
        }
    }
}

/// How long an identical manual adjustment is refused after another (`rei-cli balance`
/// without `--key` or `--again`).
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How many of a user's newest entries are searched for a repeat.
const RECENT_ENTRIES: u32 = 50;

/// A manual balance adjustment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adjustment {
    /// Who.
    pub actor: Actor,
    /// Whose balance.
    pub user: UserId,
    /// Credit or debit.
    pub kind: EntryKind,
    /// How much.
    pub amount: Money,
    /// Why (audited).
    pub reason: String,
    /// Applies it at most once.
    pub key: IdempotencyKey,
    /// What to do about an identical adjustment made shortly before.
    pub repeats: Repeats,
}

/// Whether an adjustment identical to a recent one is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeats {
    /// Made: the caller means it (a chosen key, `--again`, a bot command).
    Allow,
    /// Refused when an identical one was made within this long.
    RefuseWithin(Duration),
}

const fn adjust_action(kind: EntryKind) -> AuditAction {
    match kind {
        EntryKind::Credit | EntryKind::Refund => AuditAction::BalanceAdd,
        EntryKind::Debit => AuditAction::BalanceSub,
    }
}

/// Whether a user's update may be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Registered and not banned.
    Allowed,
    /// Registered and not banned, and back after being unreachable (they had blocked
    /// the bot, or results could not be given to them): what they missed is resent.
    Back,
    /// Banned; `notify` is true exactly once after the ban, to send the one notice.
    Banned {
        /// Send the ban notice now.
        notify: bool,
    },
    /// Not registered yet (must `/start`).
    Unknown,
}

/// Registration and per-update access checks.
#[derive(Clone)]
pub struct UserService {
    users: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
}

crate::opaque_debug!(UserService);

impl UserService {
    /// A service over a user store.
    #[must_use]
    pub fn new(users: Arc<dyn UserStore>, clock: Arc<dyn Clock>) -> Self {
        Self { users, clock }
    }

    /// Registers a user (or refreshes their names); returns the user and whether it is new.
    ///
    /// # Errors
    /// [`UserError::Store`] on storage failure.
    pub async fn register(&self, profile: UserProfile) -> Result<(User, bool), UserError> {
        let id = profile.id;
        self.users
            .register(profile, self.clock.now())
            .await
            .map_err(UserError::from_store(id))
    }

    /// A user, if registered.
    ///
    /// # Errors
    /// [`UserError::Store`] on storage failure.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, UserError> {
        self.users.user(id).await.map_err(UserError::from_store(id))
    }

    /// Whether to handle an update from this user; banned users get one notice.
    ///
    /// # Errors
    /// [`UserError::Store`] on storage failure.
    pub async fn access(&self, id: UserId) -> Result<Access, UserError> {
        let Some(user) = self.user(id).await? else {
            return Ok(Access::Unknown);
        };
        if !user.is_banned {
            if user.unreachable_since.is_some() {
                // They write to the bot again: they unblocked it.
                self.users
                    .set_unreachable(id, None)
                    .await
                    .map_err(UserError::from_store(id))?;
                return Ok(Access::Back);
            }
            return Ok(Access::Allowed);
        }
        let notify = self
            .users
            .mark_ban_notified(id)
            .await
            .map_err(UserError::from_store(id))?;
        Ok(Access::Banned { notify })
    }

    /// Records that the user blocked the bot (a send was refused with 403).
    ///
    /// # Errors
    /// [`UserError`] on storage failure (an unknown user is nothing to record).
    pub async fn mark_unreachable(&self, id: UserId) -> Result<(), UserError> {
        record_unreachable(&*self.users, id, self.clock.now())
            .await
            .map_err(UserError::from_store(id))
    }

    /// Sets the bot language (`/lang`).
    ///
    /// # Errors
    /// [`UserError::UnknownUser`] for an unregistered user.
    pub async fn set_language(&self, id: UserId, language: Language) -> Result<(), UserError> {
        self.users
            .set_language(id, language)
            .await
            .map_err(UserError::from_store(id))
    }

    /// Keeps the e-mail for the user's 54-FZ receipts.
    ///
    /// # Errors
    /// [`UserError::UnknownUser`], [`UserError::Store`].
    pub async fn set_receipt_email(
        &self,
        id: UserId,
        email: &super::Email,
    ) -> Result<(), UserError> {
        self.users
            .set_receipt_email(id, email)
            .await
            .map_err(UserError::from_store(id))
    }
}

/// Longest admin reason, in characters.
const MAX_REASON_CHARS: usize = 500;

/// Statistics plus the queue depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsReport {
    /// Store counts.
    pub stats: Stats,
    /// Jobs queued or leased.
    pub queue_depth: u64,
}

/// The ports an [`AdminService`] works over.
#[derive(Clone)]
pub struct AdminPorts {
    /// Users, bans, audit log, statistics.
    pub users: Arc<dyn UserStore>,
    /// Balances.
    pub ledger: Arc<dyn LedgerStore>,
    /// Queue depth for statistics.
    pub queue: Arc<dyn JobQueue>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

crate::opaque_debug!(AdminPorts);

/// Admin operations: every mutation is written with its audit record in one transaction.
#[derive(Clone)]
pub struct AdminService {
    users: Arc<dyn UserStore>,
    ledger: Arc<dyn LedgerStore>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
}

crate::opaque_debug!(AdminService);

impl AdminService {
    /// A service over its ports.
    #[must_use]
    pub fn new(ports: AdminPorts) -> Self {
        let AdminPorts {
            users,
            ledger,
            queue,
            clock,
        } = ports;
        Self {
            users,
            ledger,
            queue,
            clock,
        }
    }

    /// Adjusts a balance as `request` says; [`Repeats::RefuseWithin`] refuses an
    /// adjustment identical to one made within that time under another key (a command
    /// run again after a timeout, by someone unsure it went through).
    ///
    /// # Errors
    /// As [`Self::credit`] and [`Self::debit`], plus [`UserError::RepeatedAdjustment`].
    pub async fn adjust_balance(&self, request: Adjustment) -> Result<Posted, UserError> {
        if let Repeats::RefuseWithin(window) = request.repeats {
            self.refuse_repeat(&request, window).await?;
        }
        self.adjust(
            request.actor,
            request.user,
            request.amount,
            &request.reason,
            request.key,
            request.kind,
        )
        .await
    }

    async fn refuse_repeat(&self, r: &Adjustment, window: Duration) -> Result<(), UserError> {
        let now = self.clock.now();
        let reason = r.reason.trim();
        let recent = self
            .ledger
            .entries(r.user, RECENT_ENTRIES)
            .await
            .map_err(UserError::from_store(r.user))?;
        let same = recent.iter().find(|e| {
            now.since(e.created_at) < window
                && e.kind == r.kind
                && e.amount == r.amount
                && e.ref_type == RefType::Admin
                && e.idempotency_key != r.key
                && (e.description == reason
                    || (reason.is_empty() && e.description == adjust_action(r.kind).as_str()))
        });
        match same {
            Some(e) => Err(UserError::RepeatedAdjustment {
                minutes_ago: now.since(e.created_at).as_secs() / 60,
                key: e.idempotency_key.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The signup bonus (`SIGNUP_BONUS`): `amount` credited to `user` as a gift of its
    /// own kind, once per user ever (key `signup:<id>`). `Ok(None)` when there is
    /// nothing to give: a zero amount, or the bonus was given before (whatever its
    /// amount then).
    ///
    /// # Errors
    /// [`UserError::UnknownUser`], or [`UserError::Store`] on storage failure.
    pub async fn signup_bonus(
        &self,
        user: UserId,
        amount: Money,
    ) -> Result<Option<Posted>, UserError> {
        if amount == Money::ZERO {
            return Ok(None);
        }
        let key = IdempotencyKey::new(format!("signup:{user}"))
            .map_err(|e| UserError::Store(StoreError::Corrupt(e.to_string())))?;
        let found = self.ledger.entry_by_key(&key).await;
        if found.map_err(UserError::from_store(user))?.is_some() {
            return Ok(None);
        }
        let entry = NewEntry {
            user_id: user,
            kind: EntryKind::Credit,
            amount,
            ref_type: RefType::Bonus,
            ref_id: "signup".to_owned(),
            description: "signup bonus".to_owned(),
            idempotency_key: key,
            created_at: self.clock.now(),
        };
        match self.ledger.post(entry, None).await {
            Ok(posted) if !posted.replayed => Ok(Some(posted)),
            // Given meanwhile by another update (or with another amount before).
            Ok(_) | Err(StoreError::IdempotencyConflict { .. }) => Ok(None),
            Err(e) => Err(UserError::from_store(user)(e)),
        }
    }

    /// Credits a user (`/add`, `rei-cli balance add`). Repeating with the same key
    /// returns the first result and credits nothing more.
    ///
    /// # Errors
    /// [`UserError::UnknownUser`], [`UserError::ZeroAmount`], [`UserError::ReasonTooLong`],
    /// [`UserError::DuplicateKey`].
    pub async fn credit(
        &self,
        actor: Actor,
        user: UserId,
        amount: Money,
        reason: &str,
        key: IdempotencyKey,
    ) -> Result<Posted, UserError> {
        self.adjust(actor, user, amount, reason, key, EntryKind::Credit)
            .await
    }

    /// Debits a user (`/sub`, `rei-cli balance sub`), never below zero.
    ///
    /// # Errors
    /// As [`Self::credit`], plus [`UserError::InsufficientFunds`] (nothing changes).
    pub async fn debit(
        &self,
        actor: Actor,
        user: UserId,
        amount: Money,
        reason: &str,
        key: IdempotencyKey,
    ) -> Result<Posted, UserError> {
        self.adjust(actor, user, amount, reason, key, EntryKind::Debit)
            .await
    }

    async fn adjust(
        &self,
        actor: Actor,
        user: UserId,
        amount: Money,
        reason: &str,
        key: IdempotencyKey,
        kind: EntryKind,
    ) -> Result<Posted, UserError> {
        if amount.is_zero() {
            return Err(UserError::ZeroAmount);
        }
        if key.is_reserved() {
            return Err(UserError::DuplicateKey);
        }
        let reason = reason.trim();
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(UserError::ReasonTooLong {
                max: MAX_REASON_CHARS,
            });
        }
        let now = self.clock.now();
        let action = adjust_action(kind);
        let description = if reason.is_empty() {
            action.as_str().to_owned()
        } else {
            reason.to_owned()
        };
        let entry = NewEntry {
            user_id: user,
            kind,
            amount,
            ref_type: RefType::Admin,
            ref_id: actor.to_string(),
            description: description.clone(),
            idempotency_key: key,
            created_at: now,
        };
        let audit = AuditRecord {
            actor,
            action,
            target_user: Some(user),
            amount: Some(amount),
            reason: description,
            created_at: now,
        };
        // The user's notice goes into the outbox with the entry: sent by the dispatcher,
        // whatever happens to this process after the commit.
        self.ledger
            .post_adjustment(entry, audit)
            .await
            .map_err(UserError::from_store(user))
    }

    /// Bans a user (`/ban`): they get one notice and are otherwise ignored.
    ///
    /// # Errors
    /// [`UserError::UnknownUser`].
    pub async fn ban(&self, actor: Actor, user: UserId) -> Result<User, UserError> {
        self.set_banned(actor, user, true).await
    }

    /// Lifts a ban (`/unban`).
    ///
    /// # Errors
    /// [`UserError::UnknownUser`].
    pub async fn unban(&self, actor: Actor, user: UserId) -> Result<User, UserError> {
        self.set_banned(actor, user, false).await
    }

    async fn set_banned(
        &self,
        actor: Actor,
        user: UserId,
        banned: bool,
    ) -> Result<User, UserError> {
        let audit = AuditRecord {
            actor,
            action: if banned {
                AuditAction::Ban
            } else {
                AuditAction::Unban
            },
            target_user: Some(user),
            amount: None,
            reason: String::new(),
            created_at: self.clock.now(),
        };
        self.users
            .set_banned(user, banned, audit)
            .await
            .map_err(UserError::from_store(user))
    }

    /// Counts for `/stats` and `rei-cli stats`.
    ///
    /// # Errors
    /// [`UserError::Store`] or [`UserError::Queue`] on backend failure.
    pub async fn stats(&self) -> Result<StatsReport, UserError> {
        let day_ago = self
            .clock
            .now()
            .minus(std::time::Duration::from_secs(24 * 3600));
        let stats = self.users.stats(day_ago).await.map_err(UserError::Store)?;
        let queue_depth = self.queue.depth().await?;
        Ok(StatsReport { stats, queue_depth })
    }

    /// The newest audit records.
    ///
    /// # Errors
    /// [`UserError::Store`] on storage failure.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditRecord>, UserError> {
        self.users
            .audit_log(limit.clamp(1, 1000))
            .await
            .map_err(UserError::Store)
    }
}

/// The one rule for a user who blocked the bot (a send was refused with 403): recorded
/// as unreachable since `now`, so that their next message brings every paid result again.
/// Used by every path that learns it — the front end's replies, result delivery and the
/// notice outbox. An unknown user is nothing to record.
///
/// # Errors
/// [`StoreError`] on storage failure.
pub(crate) async fn record_unreachable(
    users: &dyn UserStore,
    user: UserId,
    now: crate::time::Timestamp,
) -> Result<(), StoreError> {
    match users.set_unreachable(user, Some(now)).await {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
