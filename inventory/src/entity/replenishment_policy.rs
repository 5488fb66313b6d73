//! `replenishment_policies`: a product's replenishment policy, the adaptive policy's target and
//! bounds, and the planner's latest figures. A product without a row is `fixed`.

use sea_orm::entity::prelude::*;

/// One product's policy and plan.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "replenishment_policies")]
pub struct Model {
    /// The product.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sku: String,
    /// `fixed` or `adaptive` ([`crate::policy::PolicyKind`]).
    pub policy: String,
    /// Target cycle service level in basis points (9900 = 99%).
    pub service_level_bp: i64,
    /// Lowest reorder point the planner may set.
    pub min_reorder_point: i64,
    /// Highest reorder point the planner may set.
    pub max_reorder_point: i64,
    /// Smallest quantity the planner may set.
    pub min_reorder_quantity: i64,
    /// Largest quantity the planner may set.
    pub max_reorder_quantity: i64,
    /// Measured units asked for per second (the planner's last run).
    pub demand_per_second: Option<f64>,
    /// Standard deviation of units asked for per second.
    pub demand_stddev: Option<f64>,
    /// Lead time used (measured, or the default), seconds.
    pub lead_time_secs: Option<f64>,
    /// Its standard deviation, seconds.
    pub lead_time_stddev: Option<f64>,
    /// Deliveries the lead time was measured from (0: the default was used).
    pub lead_time_observations: i32,
    /// When the planner last computed the figures (Unix ms).
    pub planned_at: Option<i64>,
    /// Unix ms of the last change.
    pub updated_at: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
