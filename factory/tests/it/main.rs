//! The factory crate's integration tests, one binary, a module per subject:
//!
//! - [`client`]: `FactoryClient` against factories that misbehave.
//! - [`properties`]: property tests over callback bodies and tokens.
//! - [`simulator`]: the simulator end to end on a real port.
//!
//! `tests/no_crypto_provider.rs` stays a binary of its own: it checks what happens when no
//! rustls provider is installed, and the tests here install one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod properties;
mod simulator;
