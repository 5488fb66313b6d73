//! The restock gateway: the gRPC API that sells and maintains stock, and the HTTP listener for
//! health (and, with the workflow, the factory's callbacks).
//!
//! It needs only the database to sell: Temporal is not on the sale's path.
//!
//! # Layout
//! - [`server`]: [`run`], which serves gRPC and HTTP on listeners it is given until `shutdown`
//!   resolves (tests start it on port 0).
//! - [`grpc`]: one module per `restock.v1` service, and [`grpc::status`], the one place store
//!   errors become gRPC statuses.
//! - [`http`]: `GET /healthz`.

pub mod grpc;
pub mod http;
pub mod server;

pub use server::run;
