//! The `restock` binary's integration tests, one binary (one link on 2 cores), a module per
//! subject:
//!
//! - [`dev`]: `restock dev` as a newcomer runs it, and the client commands.
//! - [`gateway_refuses`]: unsafe or incomplete configurations refused with a clear message.
//! - [`reliability`]: real processes killed with SIGKILL lose nothing.
//! - [`topology`]: two gateways and two workers, over PostgreSQL, over mTLS, the access log.
//! - [`worker_crashes`]: a worker killed in each state of a replenishment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dev;
mod gateway_refuses;
mod reliability;
mod topology;
mod worker_crashes;
