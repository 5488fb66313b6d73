//! `replenish_outbox`: replenishment intents written in the same transaction as the sale that
//! triggered them. At most one pending intent per product (unique sku); the relay starts the
//! workflow and deletes the row, so Temporal being down loses nothing.

use sea_orm::entity::prelude::*;

/// A pending replenishment intent.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "replenish_outbox")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Product to replenish; unique: one pending intent per product.
    #[sea_orm(unique)]
    pub sku: String,
    /// Why it was asked for.
    pub reason: IntentReason,
    /// Unix ms when first requested.
    pub requested_at: i64,
    /// Bumped each time another sale asks again while this intent is pending; the relay
    /// deletes the row only at the revision it acted on, so no request is lost.
    pub revision: i64,
    /// Relay attempts so far.
    pub attempts: i32,
    /// The relay's last error, for operators.
    pub last_error: Option<String>,
    /// The request id (`x-request-id`) of the call that asked first, handed to the workflow.
    pub request_id: Option<String>,
}

/// Relations of `replenish_outbox`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Why a replenishment was asked for (the `reason` column, as text; the workflow's input
/// and the start summary carry the same text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum IntentReason {
    /// A sale found too little stock.
    #[sea_orm(string_value = "out_of_stock")]
    OutOfStock,
    /// A sale or a manual removal took stock to the reorder point or below.
    #[sea_orm(string_value = "reorder_point")]
    ReorderPoint,
    /// The planner raised the reorder point above the stock on hand.
    #[sea_orm(string_value = "planner")]
    Planner,
}

impl std::fmt::Display for IntentReason {
    /// The column's text (`out_of_stock`, ...).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_value())
    }
}
