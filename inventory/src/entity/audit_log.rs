//! `audit_log`: who changed stock or steered a replenishment by hand, when and why.

use sea_orm::entity::prelude::*;

/// One audited action.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    /// Who: the API token's name (`local` without tokens).
    pub actor: String,
    /// What: `adjust_stock`, `upsert_product`, `complete_factory_order`, `cancel_replenishment`.
    pub action: String,
    /// Which product.
    pub sku: String,
    /// Details, e.g. `delta=-5 stock=12`.
    pub detail: String,
    /// Why, as the caller said.
    pub reason: String,
}

/// Relations of `audit_log`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
