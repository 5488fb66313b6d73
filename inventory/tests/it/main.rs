//! The store's integration tests on SQLite, PostgreSQL and MariaDB, one binary:
//!
//! - [`migrations`]: the schema, applied twice.
//! - [`receipts`]: the exactly-once writes of replenishment.
//! - [`sales`]: grouped sales waiting for a row another transaction holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod migrations;
mod receipts;
mod sales;
