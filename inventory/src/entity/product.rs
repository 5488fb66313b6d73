//! `products`: the catalogue and its stock (never below zero: a CHECK constraint and the
//! conditional decrement both guarantee it).

use sea_orm::entity::prelude::*;

/// One product.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    /// Stock-keeping unit, e.g. `CP-502101`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Price in the currency's minor unit.
    pub price: i64,
    /// Units on hand; `>= 0` always.
    pub stock: i64,
    /// Replenish when stock falls to this level or below.
    pub reorder_point: i64,
    /// Units ordered from the factory per replenishment.
    pub reorder_quantity: i64,
    /// The factory that makes it (`factories.id`).
    pub factory_id: String,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

/// Relations of `products`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// `UPDATE products SET stock = stock + delta, updated_at = now WHERE sku = ...`, the one
/// statement every stock change starts from; callers add their guards (enough stock, the
/// upper limit).
pub(crate) fn add_to_stock(sku: &str, delta: i64) -> sea_orm::UpdateMany<Entity> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    Entity::update_many()
        .col_expr(Column::Stock, Expr::col(Column::Stock).add(delta))
        .col_expr(Column::UpdatedAt, Expr::value(crate::store::now_ms()))
        .filter(Column::Sku.eq(sku))
}
