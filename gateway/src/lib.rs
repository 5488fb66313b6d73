//! The restock gateway: the gRPC API that sells and maintains stock, and the HTTP listener for
//! health (and, with the workflow, the factory's callbacks).
//!
//! It needs only the database to sell: Temporal is not on the sale's path. It connects to
//! Temporal in the background and relays replenishment intents once it answers.
//!
//! # Layout
//! - [`server`]: [`run`], which serves gRPC and HTTP on listeners it is given until `shutdown`
//!   resolves (tests start it on port 0).
//! - [`grpc`]: one module per `restock.v1` service, and [`grpc::status`], the one place store
//!   errors become gRPC statuses.
//! - [`health`]: gRPC health, following the database like `GET /healthz`.
//! - [`http`]: `GET /healthz` and the routes of [`callback`], the factory's completion
//!   callback (HMAC token in the URL, then a `factory-completed` signal).
//! - [`relay`]: the outbox relay: intents written with sales become replenish-stock workflows.
//! - [`temporal`]: the background connection to Temporal.
//! - [`demand`]: units refused while out of stock, summed and written for the planner.
//! - [`metrics`]: Prometheus metrics on `GET /metrics`; [`request_id`]: an id on every call.
//! - [`console`]: the shop's console, a web page at `/` with live stock, the replenishment
//!   pipeline and charts, and an admin's Complete and Cancel.
//! - [`auth`]: bearer tokens and roles on gRPC (one tower layer); [`tls`]: TLS for both
//!   listeners.

pub mod auth;
pub mod callback;
pub mod console;
pub mod demand;
pub mod grpc;
pub mod health;
pub mod http;
pub mod metrics;
pub mod relay;
pub mod request_id;
pub mod server;
pub mod temporal;
pub mod tls;

pub use auth::ApiTokens;
pub use relay::RelaySettings;
pub use server::{
    DEFAULT_GRPC_ADDR, DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_HTTP_ADDR, GatewaySettings, run,
};
pub use temporal::{TemporalLink, TemporalSettings};
pub use tls::TlsSettings;
