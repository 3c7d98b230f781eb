//! Balance, history and verification of the ledger.

use std::sync::Arc;

use crate::ids::UserId;
use crate::ledger::{Balance, LedgerEntry, VerifyReport};
use crate::ports::{LedgerStore, Missing, StoreError};

/// What the ledger service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No such user.
    #[error("user {0} is not registered")]
    UnknownUser(UserId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read access to balances and history, and the whole-ledger invariant check.
#[derive(Clone)]
pub struct LedgerService {
    ledger: Arc<dyn LedgerStore>,
}

crate::opaque_debug!(LedgerService);

impl LedgerService {
    /// A service over a ledger store.
    #[must_use]
    pub fn new(ledger: Arc<dyn LedgerStore>) -> Self {
        Self { ledger }
    }

    /// A user's balance.
    ///
    /// # Errors
    /// [`LedgerError::UnknownUser`] for an unregistered user.
    pub async fn balance(&self, user: UserId) -> Result<Balance, LedgerError> {
        self.ledger.balance(user).await.map_err(|e| match e {
            StoreError::NotFound(Missing::User(_)) => LedgerError::UnknownUser(user),
            other => LedgerError::Store(other),
        })
    }

    /// A user's newest entries, newest first (at most `limit`, capped at 1000).
    ///
    /// # Errors
    /// [`LedgerError::UnknownUser`] for an unregistered user.
    pub async fn history(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.balance(user).await?;
        Ok(self.ledger.entries(user, limit.clamp(1, 1000)).await?)
    }

    /// Checks every invariant across the whole ledger (`rei-cli ledger verify`).
    ///
    /// # Errors
    /// [`LedgerError::Store`] when the store fails; broken invariants are in the report.
    pub async fn verify(&self) -> Result<VerifyReport, LedgerError> {
        Ok(self.ledger.verify().await?)
    }
}
