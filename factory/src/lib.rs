//! The legacy factory: a client that speaks its wire contract (`POST /api/manufactures`) and a
//! faithful simulator of it for tests and `restock dev`.
//!
//! The contract (see `LEGACY_FACTORY.md`): an order is a JSON object of six string fields; the
//! factory replies `201 {"data": {"id", "reqestor", "data"}}`, produces the order in five steps
//! about 10 s apart, then POSTs the original body once to the order's `CallbackUrl`. It never
//! retries the callback and never deduplicates orders.
//!
//! # Layout
//!
//! - [`wire`]: the request/callback body ([`ManufactureRequest`]) with strict count parsing and
//!   validation, [`parse_callback_body`] for the callback endpoint, and the factory's reply
//!   ([`ManufactureReply`]).
//! - [`client`]: [`FactoryClient::place_order`], whose [`OrderError`] tells "certainly not sent"
//!   from "failed" from "may have been accepted", so callers never place an order twice.
//! - [`simulator`]: [`Simulator`], an axum server with the factory's behaviour plus fault knobs
//!   ([`SimulatorConfig`]) and per-order counters ([`SimulatorStats`]).
//! - [`callback`]: signing and verifying the `CallbackUrl` we hand the factory (the factory
//!   echoes only the body, so the URL carries the order's identity and an HMAC token).

pub mod callback;
pub mod client;
pub mod simulator;
pub mod wire;

pub use client::{
    ClientBuildError, DEFAULT_REQUEST_TIMEOUT, FactoryClient, OrderError, PlacedOrder,
};
pub use simulator::{Simulator, SimulatorConfig, SimulatorStats};

/// Where `restock factory` (the simulator) listens unless told otherwise
/// (`RESTOCK_FACTORY_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8090";
pub use wire::{
    ManufactureReply, ManufactureReplyData, ManufactureRequest, WireError, parse_callback_body,
};
