//! Time and identity: injected so tests control both.

use crate::ids::{JobId, PaymentId, ReservationId};
use crate::job::LeaseToken;
use crate::time::Timestamp;

/// The current time.
#[cfg_attr(test, mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the Unix epoch.
    fn now(&self) -> Timestamp;
}

/// New unique ids.
///
/// Implementations MUST never return the same id twice (across processes too: use
/// random UUIDs in production).
#[cfg_attr(test, mockall::automock)]
pub trait IdGenerator: Send + Sync {
    /// A new job id.
    fn job_id(&self) -> JobId;
    /// A new payment id.
    fn payment_id(&self) -> PaymentId;
    /// A new reservation id.
    fn reservation_id(&self) -> ReservationId;
    /// A fresh, unique lease token.
    fn lease_token(&self) -> LeaseToken;
    /// A secret nobody can guess (at least 128 random bits, URL-safe): a sign-in link's
    /// token, a session cookie.
    fn secret_token(&self) -> String;
}
