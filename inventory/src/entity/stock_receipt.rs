//! `stock_receipts`: one row per applied factory delivery, unique on the factory order id and
//! written in the increment's transaction, so a repeated increment never adds twice.

use sea_orm::entity::prelude::*;

/// One applied delivery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stock_receipts")]
pub struct Model {
    /// The factory order this delivery fulfils (our order id).
    #[sea_orm(primary_key, auto_increment = false)]
    pub factory_order_id: String,
    /// Product restocked.
    pub sku: String,
    /// Units added.
    pub quantity: i64,
    /// The replenishment (workflow id) that applied it.
    pub replenishment_id: String,
    /// Unix ms.
    pub received_at: i64,
}

/// Relations of `stock_receipts`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
