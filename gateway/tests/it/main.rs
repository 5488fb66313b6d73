//! The gateway's integration tests, one binary (one link on 2 cores), a module per subject:
//!
//! - [`products`]: the catalogue, factories, partial updates, replenishment pages and the
//!   console's reads, on SQLite, PostgreSQL and MariaDB.
//! - [`purchase`] and [`purchase_properties`]: the sale on all three databases.
//! - [`reliability`]: nothing lost while Temporal or the database is away.
//! - [`replenishment`]: the workflow end to end against a real Temporal dev server, with
//!   exactly-once under operators, the planner, and the console in a headless browser.
//! - [`security`]: tokens, roles, TLS, and the ecosystem's gRPC conventions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod products;
mod purchase;
mod purchase_properties;
mod reliability;
mod replenishment;
mod security;
