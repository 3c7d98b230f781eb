//! The composition root: what both binaries build from their settings.

pub mod backends;
