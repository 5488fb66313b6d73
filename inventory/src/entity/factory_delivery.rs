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
    /// Whether it was handed over (see `outcome`).
    pub status: DeliveryStatus,
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

/// Whether a delivery was handed to its replenishment (the `status` column, as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryStatus {
    /// Not handed over yet.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Handed over; its outcome says how.
    #[sea_orm(string_value = "settled")]
    Settled,
}
