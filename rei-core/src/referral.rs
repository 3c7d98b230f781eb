//! Referrals: every user has a code; a new user who starts the bot through another's
//! link (`ref_<code>`) is bound to that referrer once — not to themselves, not in a
//! loop, not after their first job. The referrer then earns `REFERRAL_PERCENT` of each
//! of the referee's paid top-ups, as a ledger entry of its own kind (`referral`), posted
//! in the very transaction that credits the top-up; a refund of the top-up takes the
//! reward back in the transaction that captures the refund — as much of it as the
//! referrer still has, the rest recorded as unrecovered.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, PaymentId, UserId};
use crate::job::JobFilter;
use crate::ledger::{EntryKind, NewEntry, RefType};
use crate::money::Money;
use crate::ports::{Clock, IdGenerator, JobStore, Missing, StoreError};
use crate::time::Timestamp;

/// What a referral link carries before the code (`/start ref_<code>`).
pub const START_PREFIX: &str = "ref_";

/// How far up a chain of referrers a loop is looked for.
const MAX_CHAIN: usize = 64;

/// A user's referral code: 4–32 characters `a-z`, `0-9` (read in any case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReferralCode(String);

/// Text that is not a referral code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a referral code is 4 to 32 letters a-z or digits")]
pub struct BadReferralCode;

/// Characters of a generated code.
const CODE_LEN: usize = 10;

impl ReferralCode {
    /// The code in `text` (trimmed, lower-cased).
    ///
    /// # Errors
    /// [`BadReferralCode`] for anything else.
    pub fn parse(text: &str) -> Result<Self, BadReferralCode> {
        let code = text.trim().to_ascii_lowercase();
        let fits = (4..=32).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if fits {
            Ok(Self(code))
        } else {
            Err(BadReferralCode)
        }
    }

    /// A fresh code from a unique random token (a UUID): its last letters and digits.
    fn fresh(token: &str) -> Self {
        let chars: Vec<char> = token
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let tail: String = chars[chars.len().saturating_sub(CODE_LEN)..]
            .iter()
            .collect();
        // Short tokens (the memory id generator counts) are padded to the minimum.
        Self(format!("{tail:0>4}"))
    }

    /// The code.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The start payload of this code's link (`ref_<code>`).
    #[must_use]
    pub fn start_payload(&self) -> String {
        format!("{START_PREFIX}{}", self.0)
    }
}

impl std::fmt::Display for ReferralCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The reward of one top-up, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferralReward {
    /// The referee's top-up.
    pub payment_id: PaymentId,
    /// Who earned it.
    pub referrer: UserId,
    /// Whose top-up it was.
    pub referee: UserId,
    /// What was credited.
    pub reward: Money,
    /// What refunds of the top-up took back.
    pub taken_back: Money,
    /// What refunds should have taken back but the referrer no longer had.
    pub unrecovered: Money,
}

/// What a referrer has from the program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferralSummary {
    /// Users bound to them.
    pub invited: u32,
    /// Rewards credited, less what refunds took back.
    pub earned: Money,
    /// What refunds could not take back (recorded for the books).
    pub unrecovered: Money,
}

/// A referral money move, computed by core and written by the store in the same
/// transaction as the payment change it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferralMove {
    /// With a top-up's credit: the referrer's reward.
    Reward {
        /// The referee (the payer).
        referee: UserId,
        /// The credit to the referrer (`referral:<payment id>`).
        entry: NewEntry,
    },
    /// With a refund's capture: take back up to `entry.amount` of the reward. The store
    /// takes what the referrer's available balance allows (never below zero) and
    /// records the rest as unrecovered.
    TakeBack {
        /// The debit of the referrer at its largest
        /// (`referral-back:<payment id>:<refunded total>`).
        entry: NewEntry,
    },
}

impl ReferralMove {
    /// Whom it moves money of.
    #[must_use]
    pub const fn referrer(&self) -> UserId {
        match self {
            Self::Reward { entry, .. } | Self::TakeBack { entry } => entry.user_id,
        }
    }

    /// Stores call this in the transaction that writes it, with their own rows: the
    /// stored `payment`, the referrer its payer is bound to, and the reward given for
    /// it. A move that does not fit them is refused and nothing is written.
    ///
    /// # Errors
    /// `Conflict` for a move that does not belong to this payment.
    pub fn check(
        &self,
        payment: &crate::payment::Payment,
        bound: Option<UserId>,
        given: Option<&ReferralReward>,
    ) -> Result<(), StoreError> {
        let refuse = || StoreError::Conflict {
            what: "referral move",
            id: payment.id.to_string(),
        };
        let (entry, kind) = match self {
            Self::Reward { referee, entry } => {
                let fits = *referee == payment.user_id
                    && bound == Some(entry.user_id)
                    && entry.user_id != payment.user_id
                    && given.is_none()
                    && entry.idempotency_key.as_str() == format!("referral:{}", payment.id);
                if !fits {
                    return Err(refuse());
                }
                (entry, EntryKind::Credit)
            }
            Self::TakeBack { entry } => {
                let left = given.and_then(|g| {
                    g.reward
                        .checked_sub(g.taken_back)?
                        .checked_sub(g.unrecovered)
                });
                let fits = given.is_some_and(|g| g.referrer == entry.user_id)
                    && left.is_some_and(|left| entry.amount <= left);
                if !fits {
                    return Err(refuse());
                }
                (entry, EntryKind::Debit)
            }
        };
        if entry.kind != kind
            || entry.ref_type != RefType::Referral
            || entry.ref_id != payment.id.to_string()
        {
            return Err(refuse());
        }
        Ok(())
    }

    /// What a take-back does when the referrer has `available`: the debit (`None` when
    /// there is nothing to take) and what stays unrecovered.
    #[must_use]
    pub fn take(entry: &NewEntry, available: Money) -> (Option<NewEntry>, Money) {
        let taken = entry.amount.min(available);
        let short = entry.amount.checked_sub(taken).unwrap_or(Money::ZERO);
        let debit = (!taken.is_zero()).then(|| NewEntry {
            amount: taken,
            ..entry.clone()
        });
        (debit, short)
    }
}

/// `percent` of `amount`, rounded down to the kopeck.
#[must_use]
pub fn reward_of(amount: Money, percent: u8) -> Money {
    let kopecks = i128::from(amount.kopecks()) * i128::from(percent.min(100)) / 100;
    Money::from_kopecks(i64::try_from(kopecks).unwrap_or(0)).unwrap_or(Money::ZERO)
}

/// What a refund that takes the refunded total of a `paid` top-up from `before` to
/// `after` owes back of its `reward`: the reward in proportion to the refunded part,
/// rounded down, counted on the totals so that partial refunds add up to the whole
/// reward when the whole top-up is refunded.
#[must_use]
pub fn due_back(reward: Money, paid: Money, before: Money, after: Money) -> Money {
    if paid.is_zero() {
        return Money::ZERO;
    }
    let share = |refunded: Money| {
        let refunded = i128::from(refunded.kopecks().min(paid.kopecks()));
        i128::from(reward.kopecks()) * refunded / i128::from(paid.kopecks())
    };
    let due = share(after) - share(before);
    Money::from_kopecks(i64::try_from(due.max(0)).unwrap_or(0)).unwrap_or(Money::ZERO)
}

/// The reward entry of a referee's top-up.
///
/// # Errors
/// `Corrupt` when the key cannot be made (never for real ids).
pub fn reward_entry(
    referrer: UserId,
    payment: PaymentId,
    amount: Money,
    at: Timestamp,
) -> Result<NewEntry, StoreError> {
    Ok(NewEntry {
        user_id: referrer,
        kind: EntryKind::Credit,
        amount,
        ref_type: RefType::Referral,
        ref_id: payment.to_string(),
        description: "referral reward".to_owned(),
        idempotency_key: key(format!("referral:{payment}"))?,
        created_at: at,
    })
}

/// The entry that takes back up to `amount` of a reward after a refund that brought
/// the refunded total to `refunded`.
///
/// # Errors
/// `Corrupt` when the key cannot be made (never for real ids).
pub fn take_back_entry(
    referrer: UserId,
    payment: PaymentId,
    refunded: Money,
    amount: Money,
    at: Timestamp,
) -> Result<NewEntry, StoreError> {
    Ok(NewEntry {
        user_id: referrer,
        kind: EntryKind::Debit,
        amount,
        ref_type: RefType::Referral,
        ref_id: payment.to_string(),
        description: "referral reward taken back (top-up refunded)".to_owned(),
        idempotency_key: key(format!("referral-back:{payment}:{}", refunded.kopecks()))?,
        created_at: at,
    })
}

fn key(text: String) -> Result<IdempotencyKey, StoreError> {
    IdempotencyKey::new(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Where referral codes, bindings and rewards live. Rewards are written by the
/// [`PaymentStore`](crate::ports::PaymentStore), with the payment change they belong to.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ReferralStore: Send + Sync {
    /// `user`'s code: the one they have, or `fresh`, given to them now.
    ///
    /// # Errors
    /// MUST return `Conflict` when `fresh` is another user's code (nothing written);
    /// `NotFound` for an unknown user.
    async fn referral_code(
        &self,
        user: UserId,
        fresh: &ReferralCode,
        at: Timestamp,
    ) -> Result<ReferralCode, StoreError>;

    /// The owner of `code`.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn user_by_referral_code(
        &self,
        code: &ReferralCode,
    ) -> Result<Option<UserId>, StoreError>;

    /// Who `user` is bound to.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn referrer_of(&self, user: UserId) -> Result<Option<UserId>, StoreError>;

    /// Binds `referee` to `referrer` unless `referee` is bound already: `false`, with
    /// nothing written, when they are. Atomic: of two concurrent bindings one wins.
    ///
    /// # Errors
    /// `NotFound` for an unknown user.
    async fn bind_referrer(
        &self,
        referee: UserId,
        referrer: UserId,
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// What `referrer` has from the program.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn referral_summary(&self, referrer: UserId) -> Result<ReferralSummary, StoreError>;

    /// The reward of a top-up, if one was given.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn referral_reward(
        &self,
        payment: PaymentId,
    ) -> Result<Option<ReferralReward>, StoreError>;
}

/// How a start through a referral link ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Bound now to this referrer.
    Bound(UserId),
    /// Bound before (to whomever): nothing changes.
    AlreadyBound,
    /// No user has this code (or it is not a code).
    UnknownCode,
    /// The user's own code.
    Own,
    /// The referrer is, up their chain, bound to this user.
    Loop,
    /// The user has made a job already: too late to be referred.
    TooLate,
}

/// Why a referral operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReferralError {
    /// No such user.
    #[error("user {0} is not registered")]
    UnknownUser(UserId),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ReferralError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(Missing::User(user)) => Self::UnknownUser(user),
            other => Self::Store(other),
        }
    }
}

/// Codes, bindings and what referrers earned.
#[derive(Clone)]
pub struct ReferralService {
    store: Arc<dyn ReferralStore>,
    jobs: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

crate::opaque_debug!(ReferralService);

/// Fresh codes tried before giving up (each collides with odds of one in 2^40).
const CODE_TRIES: u32 = 5;

impl ReferralService {
    /// A service over its ports.
    #[must_use]
    pub fn new(
        store: Arc<dyn ReferralStore>,
        jobs: Arc<dyn JobStore>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            store,
            jobs,
            clock,
            ids,
        }
    }

    /// `user`'s code, made on first use.
    ///
    /// # Errors
    /// [`ReferralError::UnknownUser`], or [`ReferralError::Store`].
    pub async fn code(&self, user: UserId) -> Result<ReferralCode, ReferralError> {
        let mut tries = 0;
        loop {
            let fresh = ReferralCode::fresh(self.ids.lease_token().as_str());
            match self
                .store
                .referral_code(user, &fresh, self.clock.now())
                .await
            {
                Err(StoreError::Conflict { .. }) if tries + 1 < CODE_TRIES => tries += 1,
                other => return Ok(other?),
            }
        }
    }

    /// `referee` started the bot with `payload` (`ref_<code>`): bound to the code's
    /// owner once, unless that is themselves, makes a loop, or they have made a job.
    ///
    /// # Errors
    /// [`ReferralError::UnknownUser`] for an unregistered referee, or
    /// [`ReferralError::Store`].
    pub async fn bind(&self, referee: UserId, code: &str) -> Result<Bind, ReferralError> {
        let Ok(code) = ReferralCode::parse(code) else {
            return Ok(Bind::UnknownCode);
        };
        let Some(referrer) = self.store.user_by_referral_code(&code).await? else {
            return Ok(Bind::UnknownCode);
        };
        if referrer == referee {
            return Ok(Bind::Own);
        }
        if self.store.referrer_of(referee).await?.is_some() {
            return Ok(Bind::AlreadyBound);
        }
        let mut up = referrer;
        for _ in 0..MAX_CHAIN {
            match self.store.referrer_of(up).await? {
                Some(next) if next == referee => return Ok(Bind::Loop),
                Some(next) => up = next,
                None => break,
            }
        }
        let made = self
            .jobs
            .jobs(JobFilter {
                user_id: Some(referee),
                limit: 1,
                ..JobFilter::default()
            })
            .await?;
        if !made.is_empty() {
            return Ok(Bind::TooLate);
        }
        Ok(
            if self
                .store
                .bind_referrer(referee, referrer, self.clock.now())
                .await?
            {
                Bind::Bound(referrer)
            } else {
                Bind::AlreadyBound
            },
        )
    }

    /// `user`'s code and what they have from the program.
    ///
    /// # Errors
    /// [`ReferralError::UnknownUser`], or [`ReferralError::Store`].
    pub async fn summary(
        &self,
        user: UserId,
    ) -> Result<(ReferralCode, ReferralSummary), ReferralError> {
        let code = self.code(user).await?;
        Ok((code, self.store.referral_summary(user).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rub(kopecks: i64) -> Money {
        Money::from_kopecks(kopecks).unwrap()
    }

    #[test]
    fn codes_are_letters_and_digits() {
        assert_eq!(ReferralCode::parse(" AbC123 ").unwrap().as_str(), "abc123");
        for bad in ["", "abc", "ab-cd", "код12", "x".repeat(33).as_str()] {
            assert_eq!(ReferralCode::parse(bad), Err(BadReferralCode), "{bad:?}");
        }
        let fresh = ReferralCode::fresh("9f1c2a4e-7b3d-4c6f-9a1b-2c3d4e5f6a7b");
        assert_eq!(fresh.as_str(), "3d4e5f6a7b");
        assert_eq!(ReferralCode::fresh("7").as_str(), "0007");
        assert_eq!(ReferralCode::parse(fresh.as_str()), Ok(fresh.clone()));
        assert_eq!(fresh.start_payload(), "ref_3d4e5f6a7b");
    }

    #[test]
    fn the_reward_is_the_percent_rounded_down() {
        assert_eq!(reward_of(rub(50_000), 10), rub(5_000));
        assert_eq!(reward_of(rub(999), 10), rub(99));
        assert_eq!(reward_of(rub(50_000), 0), Money::ZERO);
        assert_eq!(reward_of(rub(50_000), 100), rub(50_000));
        assert_eq!(reward_of(rub(50_000), 250), rub(50_000));
    }

    #[test]
    fn partial_refunds_take_back_the_whole_reward_when_all_is_refunded() {
        let (reward, paid) = (rub(333), rub(10_000));
        let parts = [rub(3_000), rub(3_000), rub(4_000)];
        let mut before = Money::ZERO;
        let mut total = Money::ZERO;
        for part in parts {
            let after = before.checked_add(part).unwrap();
            total = total
                .checked_add(due_back(reward, paid, before, after))
                .unwrap();
            before = after;
        }
        assert_eq!(total, reward);
        assert_eq!(due_back(reward, paid, Money::ZERO, rub(5_000)), rub(166));
        assert_eq!(due_back(reward, paid, rub(5_000), rub(5_000)), Money::ZERO);
        assert_eq!(
            due_back(reward, Money::ZERO, Money::ZERO, rub(1)),
            Money::ZERO
        );
    }
}
