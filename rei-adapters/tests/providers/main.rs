//! The provider adapters (Kling, Nano Banana Pro over Gemini, YooKassa) against HTTP fakes
//! that follow `shared/reference/providers.md`: one test binary, one module per provider.

// Tests may unwrap (clippy.toml allows it in `#[test]` functions only; the helpers and
// fixtures of this test binary are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gemini;
mod kling;
mod support;
mod yookassa;
