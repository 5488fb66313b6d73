//! `replenishments`: a read model of the replenish-stock workflows, written by the workflow's
//! `record-replenishment` activity on every state change, so listing and filtering
//! replenishments needs only the database. The live truth stays in Temporal.

use sea_orm::entity::prelude::*;

/// One replenishment (one workflow run).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "replenishments")]
pub struct Model {
    /// The order id of this replenishment (unique per run).
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    /// Workflow id: `replenish-<sku>`.
    pub workflow_id: String,
    /// Product.
    pub sku: String,
    /// State name (`CheckingStock` ... `Cancelled`, `Failed`).
    pub state: String,
    /// Units ordered (0 until known).
    pub quantity: i64,
    /// Whether the factory SLA passed without a delivery.
    pub overdue: bool,
    /// Unix ms when the workflow started.
    pub started_at: i64,
    /// Unix ms of the last state change.
    pub updated_at: i64,
}

/// Relations of `replenishments`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
