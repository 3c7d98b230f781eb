//! Promo codes: an admin creates a code worth an amount, with an optional limit of uses
//! and an expiry; a user redeems it once (`/promo CODE`) and is credited a ledger entry of
//! its own kind (`promo`). The store redeems atomically — the checks, the use counted,
//! the redemption and the credit in one transaction — so a code of ten uses redeemed by
//! fifty users at once credits exactly ten.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, UserId};
use crate::ledger::{EntryKind, NewEntry, Posted, RefType};
use crate::money::Money;
use crate::ports::{Clock, StoreError};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord};

/// A promo code: 3–32 characters `A-Z`, `0-9`, `-`, `_`, kept in upper case (users may
/// type it in any case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PromoCode(String);

/// Text that is not a promo code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a promo code is 3 to 32 letters A-Z, digits, '-' or '_'")]
pub struct BadCode;

impl PromoCode {
    /// The code in `text` (trimmed, upper-cased).
    ///
    /// # Errors
    /// [`BadCode`] for anything else.
    pub fn parse(text: &str) -> Result<Self, BadCode> {
        let code = text.trim().to_ascii_uppercase();
        let fits = (3..=32).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if fits { Ok(Self(code)) } else { Err(BadCode) }
    }

    /// The code.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PromoCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A promo code as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promo {
    /// The code.
    pub code: PromoCode,
    /// What one redemption credits.
    pub amount: Money,
    /// How many users may redeem it (`None`: no limit).
    pub max_uses: Option<u32>,
    /// How many did.
    pub used: u32,
    /// The first moment it no longer works (`None`: never expires).
    pub expires_at: Option<Timestamp>,
    /// Switched off by an admin.
    pub disabled: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

impl Promo {
    /// Why crediting `credit` to a user who `used_it` (or not) at `now` is refused, by
    /// core's rules: redeemed before, switched off, expired, every use taken — or
    /// `None`, and the redemption goes on. Stores call it inside their redeeming
    /// transaction.
    ///
    /// # Errors
    /// `Invalid` when `credit` is not this code's amount (nothing may be written).
    pub fn refusal(
        &self,
        credit: Money,
        used_it: bool,
        now: Timestamp,
    ) -> Result<Option<Redeemed>, StoreError> {
        if credit != self.amount {
            return Err(StoreError::Invalid(format!(
                "promo code {} credits {}, not {credit}",
                self.code, self.amount
            )));
        }
        Ok(if used_it {
            Some(Redeemed::AlreadyUsed)
        } else if self.disabled {
            Some(Redeemed::Disabled)
        } else if self.expires_at.is_some_and(|at| now >= at) {
            Some(Redeemed::Expired)
        } else if self.max_uses.is_some_and(|max| self.used >= max) {
            Some(Redeemed::Exhausted)
        } else {
            None
        })
    }
}

/// A code to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPromo {
    /// The code.
    pub code: PromoCode,
    /// What one redemption credits (positive).
    pub amount: Money,
    /// How many users may redeem it.
    pub max_uses: Option<u32>,
    /// The first moment it no longer works.
    pub expires_at: Option<Timestamp>,
    /// When it is created.
    pub created_at: Timestamp,
}

/// What a redemption did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// Credited now.
    Credited(Posted),
    /// This user redeemed it before.
    AlreadyUsed,
    /// Every use is taken.
    Exhausted,
    /// Past its expiry.
    Expired,
    /// Switched off.
    Disabled,
    /// No such code.
    Unknown,
}

/// Where promo codes live.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait PromoStore: Send + Sync {
    /// Creates `promo` with its audit line.
    ///
    /// # Errors
    /// MUST return `Conflict` when the code exists (nothing written).
    async fn create_promo(&self, promo: NewPromo, audit: AuditRecord) -> Result<Promo, StoreError>;

    /// Every code, newest first.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn promos(&self) -> Result<Vec<Promo>, StoreError>;

    /// One code, if it exists.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn promo(&self, code: &PromoCode) -> Result<Option<Promo>, StoreError>;

    /// Switches `code` off with its audit line; `None` when there is no such code.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn disable_promo(
        &self,
        code: &PromoCode,
        audit: AuditRecord,
    ) -> Result<Option<Promo>, StoreError>;

    /// In one transaction: checks that `code` exists, is on, is not expired at `now`,
    /// has a use left, credits `entry.amount` and was not redeemed by `entry.user_id`;
    /// then counts the use, records the redemption and posts `entry`. A refusal writes
    /// nothing.
    ///
    /// # Errors
    /// `NotFound` for an unknown user; `Unavailable` on storage failure.
    async fn redeem_promo(
        &self,
        code: &PromoCode,
        entry: NewEntry,
        now: Timestamp,
    ) -> Result<Redeemed, StoreError>;
}

/// Why a promo operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PromoError {
    /// Not a code.
    #[error(transparent)]
    BadCode(#[from] BadCode),
    /// A code needs a positive amount.
    #[error("a promo code must credit more than zero")]
    ZeroAmount,
    /// A limit of uses must be at least one.
    #[error("a promo code needs at least one use")]
    ZeroUses,
    /// The expiry is already past.
    #[error("the expiry is in the past")]
    ExpiryPast,
    /// The code exists.
    #[error("promo code {0} already exists")]
    Exists(PromoCode),
    /// No such code.
    #[error("no promo code {0}")]
    Unknown(PromoCode),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// Creates, lists, disables and redeems promo codes.
#[derive(Clone)]
pub struct PromoService {
    store: Arc<dyn PromoStore>,
    clock: Arc<dyn Clock>,
}

crate::opaque_debug!(PromoService);

impl PromoService {
    /// A service over `store`.
    #[must_use]
    pub fn new(store: Arc<dyn PromoStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Creates a code worth `amount`, for `max_uses` users (or any number), working
    /// until `expires_at` (or for ever); audited as `actor`.
    ///
    /// # Errors
    /// [`PromoError`] for a bad code, a zero amount or use limit, a past expiry, an
    /// existing code, or a storage failure.
    pub async fn create(
        &self,
        actor: Actor,
        code: &str,
        amount: Money,
        max_uses: Option<u32>,
        expires_at: Option<Timestamp>,
    ) -> Result<Promo, PromoError> {
        let code = PromoCode::parse(code)?;
        if amount == Money::ZERO {
            return Err(PromoError::ZeroAmount);
        }
        if max_uses == Some(0) {
            return Err(PromoError::ZeroUses);
        }
        let now = self.clock.now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(PromoError::ExpiryPast);
        }
        let audit = AuditRecord {
            actor,
            action: AuditAction::PromoCreate,
            target_user: None,
            amount: Some(amount),
            reason: code.to_string(),
            created_at: now,
        };
        let promo = NewPromo {
            code: code.clone(),
            amount,
            max_uses,
            expires_at,
            created_at: now,
        };
        match self.store.create_promo(promo, audit).await {
            Ok(promo) => Ok(promo),
            Err(StoreError::Conflict { .. }) => Err(PromoError::Exists(code)),
            Err(e) => Err(PromoError::Store(e)),
        }
    }

    /// Every code, newest first.
    ///
    /// # Errors
    /// [`PromoError::Store`] on storage failure.
    pub async fn list(&self) -> Result<Vec<Promo>, PromoError> {
        self.store.promos().await.map_err(PromoError::Store)
    }

    /// Switches a code off (redemptions stop; what was credited stays); audited.
    ///
    /// # Errors
    /// [`PromoError`] for a bad or unknown code, or a storage failure.
    pub async fn disable(&self, actor: Actor, code: &str) -> Result<Promo, PromoError> {
        let code = PromoCode::parse(code)?;
        let audit = AuditRecord {
            actor,
            action: AuditAction::PromoDisable,
            target_user: None,
            amount: None,
            reason: code.to_string(),
            created_at: self.clock.now(),
        };
        self.store
            .disable_promo(&code, audit)
            .await
            .map_err(PromoError::Store)?
            .ok_or(PromoError::Unknown(code))
    }

    /// `user` redeems `code` (`/promo CODE`): credited once, as a `promo` entry with the
    /// key `promo:<CODE>:<user>`, or told why not.
    ///
    /// # Errors
    /// [`PromoError::BadCode`] for text that is not a code; [`PromoError::Store`] on
    /// storage failure.
    pub async fn redeem(
        &self,
        user: UserId,
        code: &str,
    ) -> Result<(PromoCode, Redeemed), PromoError> {
        let code = PromoCode::parse(code)?;
        let key = IdempotencyKey::new(format!("promo:{code}:{user}"))
            .map_err(|e| PromoError::Store(StoreError::Corrupt(e.to_string())))?;
        let now = self.clock.now();
        let Some(promo) = self.store.promo(&code).await.map_err(PromoError::Store)? else {
            return Ok((code, Redeemed::Unknown));
        };
        // The store checks again, in the redeeming transaction, that this is the amount.
        let entry = NewEntry {
            user_id: user,
            kind: EntryKind::Credit,
            amount: promo.amount,
            ref_type: RefType::Promo,
            ref_id: code.to_string(),
            description: format!("promo code {code}"),
            idempotency_key: key,
            created_at: now,
        };
        let redeemed = self
            .store
            .redeem_promo(&code, entry, now)
            .await
            .map_err(PromoError::Store)?;
        Ok((code, redeemed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_upper_case_letters_digits_dashes_and_underscores() {
        assert_eq!(
            PromoCode::parse(" spring-25 ").unwrap().as_str(),
            "SPRING-25"
        );
        assert_eq!(PromoCode::parse("A_B").unwrap().as_str(), "A_B");
        for bad in ["", "AB", "ПРОМО", "a b c", "x".repeat(33).as_str(), "CODE!"] {
            assert_eq!(PromoCode::parse(bad), Err(BadCode), "{bad:?}");
        }
    }
}
