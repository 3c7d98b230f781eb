//! # rei-core
//!
//! The pure heart of REI, a Telegram bot that sells AI image and video generation for an
//! internal balance. This crate holds the domain — money, the ledger with reservations,
//! pricing, the job and payment state machines — the application services that run it,
//! and the port traits adapters implement. It does no I/O: no database, HTTP, Telegram,
//! Redis or async runtime. Other Rust projects embed it to get the same rules.
//!
//! ## The money model
//!
//! - [`Money`] is a non-negative number of kopecks (`i64`), parsed from rubles.
//! - The ledger is append-only. A user's balance is the sum of their entries: credits and
//!   refunds add, debits subtract. Every posting carries an [`IdempotencyKey`]; repeating
//!   an operation returns the first result and posts nothing.
//! - A reservation is a debit (`ref_type = reservation`), so the available balance drops
//!   at once. It is settled exactly once: captured when the job succeeds (a cheaper
//!   actual cost refunds the difference) or released (refunded) when it fails or is
//!   cancelled. No balance ever goes below zero, whatever the concurrency.
//! - A [`Quote`] freezes a price when the user sees it; later price changes do not touch it.
//!
//! ## Layout
//!
//! - [`money`], [`ids`], [`time`]: value types.
//! - [`pricing`]: products, the price list, quotes.
//! - [`ledger`]: entries, reservations, settlement, [`LedgerService`].
//! - [`job`]: jobs, their state machine, [`JobService`].
//! - [`payment`]: payments, their state machine, [`PaymentService`].
//! - [`notice`]: what every notice says ([`ports::Notice::text`], [`notice::NOTICE_KEYS`])
//!   and the outbox dispatcher: money notices written with their change, sent until they
//!   reach the user.
//! - [`user`]: users, bans, the audit log, [`UserService`] and [`AdminService`].
//! - [`conversation`]: the dialogue engine every front end drives — typed inputs (a
//!   text, a command and its arguments, an attachment, a button that carries what it
//!   chooses) in, typed replies (texts by key) out; [`conversation::TEXT_KEYS`].
//! - [`legacy`]: importing the v2.0 bot's database, idempotently.
//! - [`ports`]: the traits adapters implement (stores, queue, generators, gateway,
//!   notifier, rate limiter, clock, ids).
//! - [`memory`] (feature `memory`, default): in-memory adapters of every store and the
//!   queue, correct under concurrency, and stand-ins for demos (a recording notifier, an
//!   instant image generator).
//! - `conformance` (feature `conformance`): the contract suite every store runs.
//!
//! ## Example
//!
//! Credit a user, hold money for a job, and settle it: the balance always equals the sum
//! of the ledger.
//!
//! ```
//! # futures::executor::block_on(async {
//! use std::sync::Arc;
//! use rei_core::prelude::*;
//! use rei_core::job::{JobEvent, JobGuard, JobPorts, StoreQueue};
//! use rei_core::memory::{ManualClock, MemoryStore, RecordingNotifier, SequentialIds};
//!
//! let store = Arc::new(MemoryStore::new());
//! let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
//! let queue = Arc::new(StoreQueue::new(store.clone()));
//! let notifier = Arc::new(RecordingNotifier::default());
//!
//! let users = UserService::new(store.clone(), clock.clone());
//! let admin = AdminService::new(AdminPorts { users: store.clone(), ledger: store.clone(), queue: queue.clone(), clock: clock.clone() });
//! let ports = JobPorts {
//!     users: store.clone(), jobs: store.clone(), queue, clock: clock.clone(),
//!     ids: Arc::new(SequentialIds::default()),
//! };
//! let jobs = JobService::new(ports, PriceList::seed_defaults(), JobLimits::default());
//!
//! let alice = UserId::new(42)?;
//! users.register(UserProfile { id: alice, username: None, first_name: Some("Alice".into()), language: Language::Ru }).await?;
//! admin.credit(Actor::System, alice, "100".parse()?, "welcome", IdempotencyKey::new("welcome:42")?).await?;
//!
//! // The user confirms a 50 ₽ image: the price is held at once, and the job is queued.
//! let spec = JobSpec::image(Prompt::parse("a red fox in snow")?);
//! let quote = jobs.quote(&spec);
//! jobs.create(alice, spec, &quote, IdempotencyKey::new("confirm:1")?).await?;
//! assert_eq!(store.balance(alice).await?.available, "50".parse()?);
//!
//! // A worker claims it under a lease; the generation fails: the money is back.
//! let job = jobs.claim("worker-1", std::time::Duration::from_secs(60)).await?.ok_or("queued")?;
//! let lease = JobGuard::Lease(job.lease.clone().ok_or("leased")?.token);
//! let reason = FailureReason::ProviderFailed { detail: "timeout".into() };
//! jobs.write(job.id, JobEvent::Failed { reason }, lease).await?;
//! assert_eq!(store.balance(alice).await?.available, "100".parse()?);
//! assert!(store.verify().await?.is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

pub mod broadcast;
pub mod conversation;
pub mod ids;
pub mod job;
pub mod ledger;
pub mod legacy;
pub mod money;
pub mod notice;
pub mod payment;
pub mod ports;
pub mod prices;
pub mod pricing;
pub mod promo;
pub mod referral;
pub mod time;
pub mod user;
pub mod web;

#[cfg(feature = "memory")]
pub mod memory;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use ids::{IdempotencyKey, JobId, PaymentId, ProviderTaskId, ReservationId, UserId};
pub use job::JobService;
pub use ledger::LedgerService;
pub use money::Money;
pub use payment::PaymentService;
pub use pricing::{PriceList, Product, Quote};
pub use time::Timestamp;
pub use user::{AdminService, UserService};

/// Implements `Debug` as the type's name alone, for types that hold ports (trait objects
/// that are not `Debug`, or secrets that must not be printed):
/// `rei_core::opaque_debug!(UserService);`.
#[macro_export]
macro_rules! opaque_debug {
    ($($name:ident),+ $(,)?) => {$(
        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    )+};
}

/// Everything an embedder usually needs, in one import.
pub mod prelude {
    pub use crate::ids::{IdempotencyKey, JobId, PaymentId, ProviderTaskId, ReservationId, UserId};
    pub use crate::job::{
        AssetRef, FailureReason, Job, JobEvent, JobLimits, JobService, JobSpec, JobState, Progress,
        Prompt, VideoMode,
    };
    pub use crate::ledger::{
        Balance, LedgerEntry, LedgerService, Reservation, ReservationState, Settlement,
    };
    pub use crate::money::Money;
    pub use crate::payment::{
        Payment, PaymentPorts, PaymentProvider, PaymentService, PaymentState,
    };
    pub use crate::ports::{
        Clock, IdGenerator, ImageGenerator, JobQueue, JobStore, LedgerStore, Notifier,
        PaymentGateway, PaymentStore, UserStore, VideoGenerator,
    };
    pub use crate::pricing::{PriceList, Product, Quote, VideoDuration};
    pub use crate::time::Timestamp;
    pub use crate::user::{Actor, AdminPorts, AdminService, Language, UserProfile, UserService};
}
