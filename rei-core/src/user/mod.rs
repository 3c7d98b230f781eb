//! Users, the admin audit log and statistics.

pub mod service;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::UserId;
use crate::job::JobState;
use crate::ledger::text_codes;
use crate::money::Money;
use crate::payment::PaymentState;
use crate::time::Timestamp;

pub(crate) use service::record_unreachable;
pub use service::{
    Access, Adjustment, AdminPorts, AdminService, REPEAT_WINDOW, Repeats, StatsReport, UserError,
    UserService,
};

/// The language the bot speaks to a user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// Russian (the default).
    #[default]
    Ru,
    /// English.
    En,
}

text_codes!(Language { Ru => "ru", En => "en" });

/// An e-mail address for 54-FZ receipts: checked loosely (one `@`, a dotted domain, no
/// spaces, at most 254 characters) — the provider checks the rest.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// A text that is not an e-mail address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an e-mail address")]
pub struct EmailError;

impl Email {
    /// Checks and keeps an address (trimmed).
    ///
    /// # Errors
    /// [`EmailError`] for anything that is not `local@domain.tld`.
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        let text = text.trim();
        let (local, domain) = text.split_once('@').ok_or(EmailError)?;
        let ok = text.chars().count() <= 254
            && !local.is_empty()
            && local.chars().count() <= 64
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(EmailError)
        }
    }

    /// The address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    /// Shows only the domain: an address is personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.split_once('@').map_or("", |(_, d)| d);
        write!(f, "Email(…@{domain})")
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, EmailError> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> Self {
        e.0
    }
}

/// A registered user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Telegram id.
    pub id: UserId,
    /// Telegram @username, if any.
    pub username: Option<String>,
    /// Telegram first name, if any.
    pub first_name: Option<String>,
    /// Bot language.
    pub language: Language,
    /// Banned users get one notice and are otherwise ignored.
    pub is_banned: bool,
    /// When the ban notice was sent (so it is sent once).
    pub ban_notified: bool,
    /// Since when the user cannot be reached (blocked the bot); cleared when they write.
    pub unreachable_since: Option<Timestamp>,
    /// Where 54-FZ receipts go, once the user gave it.
    pub receipt_email: Option<Email>,
    /// The cached balance (always equal to the sum of the ledger entries).
    pub balance: Money,
    /// When registered.
    pub created_at: Timestamp,
}

/// What Telegram tells us about a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserProfile {
    /// Telegram id.
    pub id: UserId,
    /// @username.
    pub username: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Language for a new user.
    pub language: Language,
}

/// Who did an admin action.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A user acting on their own things (cancelling their job).
    User(UserId),
    /// An admin in Telegram.
    Admin(UserId),
    /// The CLI, as `cli:<OS user>`.
    Cli(String),
    /// REI itself (reconciliation, sweeps).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Admin(id) => write!(f, "admin:{id}"),
            Self::Cli(user) => write!(f, "cli:{user}"),
            Self::System => f.write_str("system"),
        }
    }
}

impl std::str::FromStr for Actor {
    type Err = crate::ids::IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(id) = s.strip_prefix("user:") {
            return id.parse().map(Self::User);
        }
        if let Some(id) = s.strip_prefix("admin:") {
            return id.parse().map(Self::Admin);
        }
        if let Some(user) = s.strip_prefix("cli:") {
            return Ok(Self::Cli(user.to_owned()));
        }
        Ok(Self::System)
    }
}

/// What an admin did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Credited a balance.
    BalanceAdd,
    /// Debited a balance.
    BalanceSub,
    /// Banned a user.
    Ban,
    /// Unbanned a user.
    Unban,
    /// Cancelled a job.
    JobCancel,
    /// Queued a failed job again.
    JobRetry,
    /// Refunded a payment.
    PaymentRefund,
    /// Fixed a payment by reconciliation with the provider.
    PaymentReconcile,
    /// Created a promo code.
    PromoCreate,
    /// Disabled a promo code.
    PromoDisable,
    /// Changed a price.
    PriceSet,
    /// Composed a broadcast.
    BroadcastCreate,
    /// Started or resumed a broadcast.
    BroadcastStart,
    /// Paused a broadcast.
    BroadcastPause,
    /// Cancelled a broadcast.
    BroadcastCancel,
    /// Signed in to the web admin.
    WebSignIn,
    /// Signed out of the web admin.
    WebSignOut,
}

text_codes!(AuditAction {
    BalanceAdd => "balance_add",
    BalanceSub => "balance_sub",
    Ban => "ban",
    Unban => "unban",
    JobCancel => "job_cancel",
    JobRetry => "job_retry",
    PaymentRefund => "payment_refund",
    PaymentReconcile => "payment_reconcile",
    PromoCreate => "promo_create",
    PromoDisable => "promo_disable",
    PriceSet => "price_set",
    BroadcastCreate => "broadcast_create",
    BroadcastStart => "broadcast_start",
    BroadcastPause => "broadcast_pause",
    BroadcastCancel => "broadcast_cancel",
    WebSignIn => "web_sign_in",
    WebSignOut => "web_sign_out",
});

/// One line of the admin audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: AuditAction,
    /// Whom.
    pub target_user: Option<UserId>,
    /// How much.
    pub amount: Option<Money>,
    /// Why (free text) and what object (job or payment id).
    pub reason: String,
    /// When.
    pub created_at: Timestamp,
}

/// Counts for `/stats` and `rei-cli stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Registered users.
    pub users: u64,
    /// Banned users.
    pub banned_users: u64,
    /// Sum of all balances.
    pub balances_total: Money,
    /// Held by unsettled reservations.
    pub held_total: Money,
    /// Jobs per state.
    pub jobs_by_state: Vec<(JobState, u64)>,
    /// Payments per state: count and amount.
    pub payments_by_state: Vec<(PaymentState, u64, Money)>,
    /// Users who wrote to the bot or ordered since the window start.
    pub active_since: u64,
    /// Jobs that failed since the window start.
    pub failed_since: u64,
    /// Users who blocked the bot.
    pub unreachable_users: u64,
    /// Given as signup bonuses (gifts, not paid money).
    pub bonuses_total: Money,
}

#[cfg(test)]
mod tests;
