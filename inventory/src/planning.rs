//! The store's side of the replenishment policy: each product's policy and bounds, the demand
//! the planner measures (sales, and units turned away while out of stock), the lead time
//! measured from factory orders and their receipts, and the planner's pass that writes the
//! figures [`crate::policy`] computes and requests a replenishment for a product already at
//! or below its new reorder point (through the same outbox as a sale).

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};

use crate::entity::replenish_outbox::IntentReason;
use crate::entity::{demand_miss, product, replenishment_policy, sale};
use crate::policy::{self, AdaptiveSettings, Figures, LeadTime, PolicyKind};
use crate::store::{insert_outbox_intent, now_ms};
use crate::{Store, StoreError};

/// Deliveries per factory the lead time is measured from (the latest ones).
pub const LEAD_TIME_SAMPLES: u64 = 20;

/// How the planner measures (from configuration; see `RESTOCK_DEMAND_WINDOW_SECS` and
/// `RESTOCK_DEFAULT_LEAD_TIME_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlannerSettings {
    /// Demand is averaged over this many seconds.
    pub demand_window_secs: u64,
    /// The lead time assumed for a factory that has delivered nothing yet.
    pub default_lead_time_secs: f64,
}

impl Default for PlannerSettings {
    fn default() -> Self {
        Self {
            demand_window_secs: 600,
            default_lead_time_secs: 60.0,
        }
    }
}

/// What one planner pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Adaptive products looked at.
    pub planned: u32,
    /// Products whose reorder point or quantity changed.
    pub changed: u32,
    /// Products at or below their new reorder point, for which a replenishment was requested.
    pub requested: Vec<String>,
}

/// A policy change for [`Store::upsert_product`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicyChange {
    /// The policy; `None` keeps an existing product's (a new product is adaptive).
    pub kind: Option<PolicyKind>,
    /// Target and bounds; `None` keeps the product's (a new product gets the defaults).
    pub adaptive: Option<AdaptiveSettings>,
}

/// The service level as stored (basis points).
fn to_bp(level: f64) -> i64 {
    (level * 10_000.0).round() as i64
}

/// A stored policy row's settings.
pub fn settings_of(row: &replenishment_policy::Model) -> AdaptiveSettings {
    AdaptiveSettings {
        service_level: row.service_level_bp as f64 / 10_000.0,
        min_reorder_point: row.min_reorder_point,
        max_reorder_point: row.max_reorder_point,
        min_reorder_quantity: row.min_reorder_quantity,
        max_reorder_quantity: row.max_reorder_quantity,
    }
}

/// Checks an operator's adaptive settings.
pub fn validate_settings(s: &AdaptiveSettings) -> Result<(), StoreError> {
    let (low, high) = policy::SERVICE_LEVEL_RANGE;
    if !(low..=high).contains(&s.service_level) {
        return Err(StoreError::invalid_field(
            "adaptive.service_level_percent",
            format!(
                "the service level must be between {} and {} percent",
                low * 100.0,
                high * 100.0
            ),
        ));
    }
    let points = (s.min_reorder_point, s.max_reorder_point);
    bounds_within("reorder_point", points, 0..=crate::validate::MAX_UNITS)?;
    let quantities = (s.min_reorder_quantity, s.max_reorder_quantity);
    bounds_within(
        "reorder_quantity",
        quantities,
        1..=crate::validate::MAX_REORDER_QUANTITY,
    )?;
    Ok(())
}

/// Checks an adaptive policy's `min_<field>`/`max_<field>` pair: both within `allowed`, and
/// not upside down; an error names the field to fix.
fn bounds_within(
    field: &str,
    (min, max): (i64, i64),
    allowed: std::ops::RangeInclusive<i64>,
) -> Result<(), StoreError> {
    if min < *allowed.start() || max > *allowed.end() {
        return Err(StoreError::invalid_field(
            format!("adaptive.min_{field}"),
            format!(
                "{} bounds must be within {}..={}",
                field.replace('_', " "),
                allowed.start(),
                allowed.end()
            ),
        ));
    }
    if min > max {
        return Err(StoreError::invalid_field(
            format!("adaptive.max_{field}"),
            format!("max_{field} must not be below min_{field}"),
        ));
    }
    Ok(())
}

/// Writes a product's policy row inside the caller's transaction (see [`PolicyChange`]);
/// `created`: the product is new (then an unnamed policy is adaptive; else it is kept). A
/// product that stays fixed without settings of its own gets no row.
pub(crate) async fn apply_policy_change<C: ConnectionTrait>(
    db: &C,
    sku: &str,
    change: &PolicyChange,
    created: bool,
) -> Result<(), StoreError> {
    if let Some(settings) = &change.adaptive {
        validate_settings(settings)?;
    }
    let existing = replenishment_policy::Entity::find_by_id(sku)
        .one(db)
        .await?;
    let kind = change
        .kind
        .or_else(|| {
            existing
                .as_ref()
                .and_then(|row| PolicyKind::parse(&row.policy))
        })
        .unwrap_or(if created {
            PolicyKind::Adaptive
        } else {
            PolicyKind::Fixed
        });
    if kind == PolicyKind::Fixed && existing.is_none() && change.adaptive.is_none() {
        return Ok(());
    }
    let settings = change
        .adaptive
        .or_else(|| existing.as_ref().map(settings_of))
        .unwrap_or_default();
    let now = now_ms();
    replenishment_policy::Entity::insert(replenishment_policy::ActiveModel {
        sku: Set(sku.to_owned()),
        policy: Set(kind.as_str().to_owned()),
        service_level_bp: Set(to_bp(settings.service_level)),
        min_reorder_point: Set(settings.min_reorder_point),
        max_reorder_point: Set(settings.max_reorder_point),
        min_reorder_quantity: Set(settings.min_reorder_quantity),
        max_reorder_quantity: Set(settings.max_reorder_quantity),
        demand_per_second: Set(None),
        demand_stddev: Set(None),
        lead_time_secs: Set(None),
        lead_time_stddev: Set(None),
        lead_time_observations: Set(0),
        planned_at: Set(None),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(replenishment_policy::Column::Sku)
            .update_columns([
                replenishment_policy::Column::Policy,
                replenishment_policy::Column::ServiceLevelBp,
                replenishment_policy::Column::MinReorderPoint,
                replenishment_policy::Column::MaxReorderPoint,
                replenishment_policy::Column::MinReorderQuantity,
                replenishment_policy::Column::MaxReorderQuantity,
                replenishment_policy::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

impl Store {
    /// A product's policy row (`None`: the product is `fixed`, as every product made before
    /// policies existed).
    pub async fn product_policy(
        &self,
        sku: &str,
    ) -> Result<Option<replenishment_policy::Model>, StoreError> {
        Ok(replenishment_policy::Entity::find_by_id(sku)
            .one(self.reader())
            .await?)
    }

    /// Records units asked for while out of stock (`(sku, units)`, summed by the caller).
    pub async fn record_demand_misses(&self, misses: &[(String, i64)]) -> Result<(), StoreError> {
        if misses.is_empty() {
            return Ok(());
        }
        let at = now_ms();
        demand_miss::Entity::insert_many(misses.iter().map(|(sku, units)| {
            demand_miss::ActiveModel {
                sku: Set(sku.clone()),
                units: Set(*units),
                at: Set(at),
                ..Default::default()
            }
        }))
        .exec_without_returning(self.writer())
        .await?;
        Ok(())
    }

    /// Units asked for of `sku` since `since_ms`, as `(unix_ms, units)`: sales and misses.
    pub async fn demand_events(
        &self,
        sku: &str,
        since_ms: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut events: Vec<(i64, i64)> = sale::Entity::find()
            .select_only()
            .column(sale::Column::CreatedAt)
            .column(sale::Column::Quantity)
            .filter(sale::Column::Sku.eq(sku))
            .filter(sale::Column::CreatedAt.gt(since_ms))
            .into_tuple()
            .all(self.reader())
            .await?;
        let misses: Vec<(i64, i64)> = demand_miss::Entity::find()
            .select_only()
            .column(demand_miss::Column::At)
            .column(demand_miss::Column::Units)
            .filter(demand_miss::Column::Sku.eq(sku))
            .filter(demand_miss::Column::At.gt(since_ms))
            .into_tuple()
            .all(self.reader())
            .await?;
        events.extend(misses);
        Ok(events)
    }

    /// Lead times (seconds, factory order begun -> units received) of `factory_id`'s latest
    /// deliveries, newest first.
    pub async fn lead_time_samples(&self, factory_id: &str) -> Result<Vec<f64>, StoreError> {
        let backend = self.backend();
        let sql = format!(
            "SELECT r.received_at - o.created_at FROM stock_receipts r \
             JOIN factory_orders o ON o.order_id = r.factory_order_id \
             WHERE o.factory_id = {} ORDER BY r.received_at DESC LIMIT {LEAD_TIME_SAMPLES}",
            if backend == sea_orm::DbBackend::Postgres {
                "$1"
            } else {
                "?"
            }
        );
        let rows = self
            .reader()
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [factory_id.into()],
            ))
            .await?;
        let mut samples = Vec::with_capacity(rows.len());
        for row in rows {
            let ms: i64 = row.try_get_by_index(0)?;
            samples.push(ms.max(0) as f64 / 1_000.0);
        }
        Ok(samples)
    }

    /// One planner pass over every adaptive product: measure, compute, write the figures, and
    /// request a replenishment for each product at or below its new reorder point. A request
    /// for a product whose replenishment is already open only makes sure an intent exists:
    /// the open run stays the only one.
    pub async fn plan_replenishments(
        &self,
        settings: &PlannerSettings,
    ) -> Result<PlanSummary, StoreError> {
        let policies = replenishment_policy::Entity::find()
            .filter(replenishment_policy::Column::Policy.eq(PolicyKind::Adaptive.as_str()))
            .order_by_asc(replenishment_policy::Column::Sku)
            .all(self.reader())
            .await?;
        let mut summary = PlanSummary::default();
        let mut lead_times: std::collections::HashMap<String, LeadTime> = Default::default();
        let window_ms = i64::try_from(settings.demand_window_secs.saturating_mul(1_000))
            .unwrap_or(i64::MAX / 2)
            .max(1_000);
        for row in policies {
            let Some(product) = product::Entity::find_by_id(row.sku.as_str())
                .one(self.reader())
                .await?
            else {
                continue;
            };
            let lead = match lead_times.get(&product.factory_id) {
                Some(lead) => *lead,
                None => {
                    let samples = self.lead_time_samples(&product.factory_id).await?;
                    let lead = LeadTime::from_samples(&samples, settings.default_lead_time_secs);
                    lead_times.insert(product.factory_id.clone(), lead);
                    lead
                }
            };
            let now = now_ms();
            let events = self.demand_events(&row.sku, now - window_ms).await?;
            // The short window: two lead times (at least 8 s), so a step up shows within
            // a few of them.
            let short_ms = ((lead.mean_secs * 2.0 * 1_000.0) as i64).max(8_000);
            let demand = policy::demand(&events, now, window_ms, short_ms);
            let current = Figures {
                reorder_point: product.reorder_point,
                reorder_quantity: product.reorder_quantity,
            };
            let figures = policy::figures(&settings_of(&row), demand, lead, current);
            summary.planned += 1;
            if figures != current {
                summary.changed += 1;
            }
            if self
                .write_plan(&row.sku, figures, demand, lead, figures != current)
                .await?
            {
                summary.requested.push(row.sku.clone());
            }
        }
        // Misses older than the window are never read again.
        demand_miss::Entity::delete_many()
            .filter(demand_miss::Column::At.lt(now_ms() - window_ms))
            .exec(self.writer())
            .await?;
        Ok(summary)
    }

    /// Stores one product's plan; returns whether a replenishment was requested.
    async fn write_plan(
        &self,
        sku: &str,
        figures: Figures,
        demand: Option<policy::Demand>,
        lead: LeadTime,
        changed: bool,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        let now = now_ms();
        replenishment_policy::Entity::update_many()
            .col_expr(
                replenishment_policy::Column::DemandPerSecond,
                Expr::value(demand.map(|d| d.per_second).unwrap_or(0.0)),
            )
            .col_expr(
                replenishment_policy::Column::DemandStddev,
                Expr::value(demand.map(|d| d.stddev).unwrap_or(0.0)),
            )
            .col_expr(
                replenishment_policy::Column::LeadTimeSecs,
                Expr::value(lead.mean_secs),
            )
            .col_expr(
                replenishment_policy::Column::LeadTimeStddev,
                Expr::value(lead.stddev_secs),
            )
            .col_expr(
                replenishment_policy::Column::LeadTimeObservations,
                Expr::value(i32::try_from(lead.observations).unwrap_or(i32::MAX)),
            )
            .col_expr(replenishment_policy::Column::PlannedAt, Expr::value(now))
            .filter(replenishment_policy::Column::Sku.eq(sku))
            .exec(&txn)
            .await?;
        if changed {
            product::Entity::update_many()
                .col_expr(
                    product::Column::ReorderPoint,
                    Expr::value(figures.reorder_point),
                )
                .col_expr(
                    product::Column::ReorderQuantity,
                    Expr::value(figures.reorder_quantity),
                )
                .col_expr(product::Column::UpdatedAt, Expr::value(now))
                .filter(product::Column::Sku.eq(sku))
                .exec(&txn)
                .await?;
        }
        // Read after the write: the row is locked (or the SQLite writer held) until commit,
        // so a sale cannot slip between this read and the request.
        let stock: Option<i64> = product::Entity::find_by_id(sku)
            .select_only()
            .column(product::Column::Stock)
            .into_tuple()
            .one(&txn)
            .await?;
        let request = stock.is_some_and(|stock| stock <= figures.reorder_point);
        if request {
            insert_outbox_intent(&txn, sku, IntentReason::Planner, false, None).await?;
        }
        txn.commit().await?;
        Ok(request)
    }
}
