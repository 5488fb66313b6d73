//! `sales`: one row per accepted purchase. The unique idempotency key makes a retried
//! purchase find its first result instead of selling again.

use sea_orm::entity::prelude::*;

/// One accepted purchase.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sales")]
pub struct Model {
    /// Sale id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// What was sold.
    pub sku: String,
    /// Units sold.
    pub quantity: i64,
    /// Stock left right after this sale (returned again on an idempotent replay).
    pub remaining_stock: i64,
    /// The client's idempotency key; unique when present.
    pub idempotency_key: Option<String>,
    /// Who bought.
    pub requester: String,
    /// Whether this sale requested a replenishment (sold down to the reorder point).
    pub requested_replenishment: bool,
    /// Unix ms.
    pub created_at: i64,
}

/// Relations of `sales`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
