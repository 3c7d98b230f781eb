//! The sandbox (`SANDBOX=1`): every paid outside service replaced by a local one, so a
//! newcomer can try the whole bot with only `BOT_TOKEN`.
//!
//! - [`SandboxImages`] draws a placeholder PNG that shows the prompt, in the chosen shape.
//! - [`SandboxVideos`] "renders" for a few seconds, then delivers a bundled 3-second MP4
//!   (`sandbox.mp4`, 7 KB, made once with `ffmpeg -f lavfi -i color=…` and `drawtext`).
//! - [`SandboxCheckout`] is a payment gateway whose checkout page is served by our own
//!   HTTP server (`/sandbox/checkout/{id}`) and pays on a click; its payments are stored
//!   with provider `sandbox`, so the ledger marks them as play money.
//!
//! Nothing here calls the network.

mod checkout;
mod images;
mod videos;

pub use checkout::{CheckoutError, CheckoutRecord, CheckoutState, SandboxCheckout};
pub use images::{SandboxImages, placeholder_png};
pub use videos::{SANDBOX_MP4, SandboxVideos};

/// FNV-1a: the same digest in every build and on every machine (a refund's id from its
/// key, a placeholder's colour from its prompt).
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
