//! restock's inventory store: products, stock and the atomic sale, on SQLite, PostgreSQL or
//! MySQL/MariaDB (chosen by the database URL alone).
//!
//! # Layout
//! - [`entity`]: sea-orm entities, one per table, with their column enums; among them
//!   [`RestockState`], the replenishment states (the workflow's transitions between them are
//!   in `restock_workflows::state`).
//! - [`migration`]: the schema, as sea-orm-migration migrations ([`Store::migrate`]).
//! - [`validate`]: the rules for skus, quantities, keys and names, shared by every entry point.
//! - [`store`]: [`Store`], the only code that writes: connections, products, factories, stock
//!   adjustments, the outbox intent, retries.
//! - [`sale`]: the sale (one conditional `UPDATE` plus inserts in one transaction, never
//!   read-then-write): alone, or grouped with concurrent sales in one transaction, each
//!   still with its exact outcome.
//! - [`policy`]: the replenishment policy's arithmetic (demand, lead time, reorder point and
//!   quantity), pure functions.
//! - [`planning`]: policies and bounds per product, the demand and lead time the planner
//!   measures, and the planner's pass.
//! - [`replenishment`]: the outbox the relay drains, factory-order records (never send an
//!   order twice), the idempotent stock increment, the `replenishments` read model.
//! - [`deliveries`]: the delivery inbox: verified factory callbacks kept until the relay has
//!   handed them to their replenishment.
//! - [`advertising`]: pausing and resuming a product's ad, and the once-only record of
//!   the emails about it.
//! - [`overview`]: what the console reads at a glance: open replenishments, counts per
//!   state, sales per minute.
//! - [`demo`]: the demo catalogue that `restock migrate --demo` and the tests load.
//! - [`error`]: [`StoreError`], what callers map to gRPC statuses.

pub mod advertising;
pub mod deliveries;
pub mod demo;
pub mod entity;
pub mod error;
pub mod migration;
pub mod overview;
pub mod planning;
pub mod policy;
pub mod replenishment;
pub mod sale;
pub mod store;
pub mod validate;

pub use entity::replenishment::RestockState;
pub use error::StoreError;
pub use planning::{PlanSummary, PlannerSettings, PolicyChange};
pub use policy::{AdaptiveSettings, PolicyKind};
pub use replenishment::{CLOSED_BY_NEWER_RUN, Received, ReplenishmentRecord, SendDecision};
pub use sale::grouped::{GroupingCounts, QueueDepth};
pub use sale::{PurchaseOutcome, PurchaseRequest};
pub use sea_orm::DbErr;
pub use store::{
    AdjustStock, NewFactory, NewProduct, ProductUpdate, ProductView, Store, StoreOptions,
};
pub use validate::Sku;

/// The replenishment (and replenish-stock workflow) id for a product: `replenish-<sku>`.
/// One open replenishment per product, however many sales ask for it.
pub fn replenishment_id(sku: &str) -> String {
    format!("replenish-{sku}")
}
