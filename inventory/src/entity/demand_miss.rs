//! `demand_misses`: units buyers asked for while a product was out of stock, summed per
//! product over a short interval by the gateway, so the planner counts them as demand.

use sea_orm::entity::prelude::*;

/// Units turned away for one product in one flush interval.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "demand_misses")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The product.
    pub sku: String,
    /// Units asked for and not sold.
    pub units: i64,
    /// Unix ms (the end of the interval).
    pub at: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
