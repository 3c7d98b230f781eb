//! The composition root: [`App::build`] turns [`Settings`] into the stores, the queue,
//! the providers, the services, the front end, the workers, the payment poller and the
//! HTTP server, once. `rei-bot` runs what it built ([`App::run_all`],
//! [`App::run_workers`]); `rei-cli` works through its [`Services`]. Both binaries parse
//! the same [`Settings`], so both build the same services the same way.

pub mod backends;
#[cfg(feature = "app")]
mod build;
#[cfg(feature = "app")]
mod error;
#[cfg(feature = "app")]
mod providers;
#[cfg(feature = "app")]
mod run;
#[cfg(feature = "app")]
pub mod settings;

#[cfg(feature = "app")]
pub use build::{App, Services};
#[cfg(feature = "app")]
pub use error::AppError;
#[cfg(feature = "app")]
pub use settings::{LogFormat, Settings, SettingsError, TelegramMode, parse_duration};
