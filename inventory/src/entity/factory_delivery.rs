//! `factory_deliveries`: verified factory callbacks waiting to be handed to their
//! replenishment (the delivery inbox), one row per order id.

use sea_orm::entity::prelude::*;

/// One delivery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "factory_deliveries")]
pub struct Model {
    /// Our order id (the factory's `MessageGroupId`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    /// Product.
    pub sku: String,
    /// Units delivered (always the ordered quantity: another count is refused at the door).
    pub quantity: i64,
    /// `pending` (not handed over yet) or `settled` (see `outcome`).
    pub status: String,
    /// How it was settled: completed its replenishment, or added to stock directly because
    /// its replenishment had closed, or found already received.
    pub outcome: Option<String>,
    /// Hand-over attempts.
    pub attempts: i32,
    /// Unix ms.
    pub received_at: i64,
    /// Unix ms when settled.
    pub settled_at: Option<i64>,
}

/// Relations of `factory_deliveries`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
