//! The planner's activity: one pass of [`Store::plan_replenishments`] (measure demand and lead
//! time, write each adaptive product's reorder point and quantity, request replenishments
//! through the outbox). It is the planning workflow's only I/O, so the workflow replays
//! deterministically; running it twice is harmless (a pass recomputes, and a request only makes
//! sure an outbox intent exists).

// The #[activities] macro generates undocumented marker constants for each activity.
#![allow(missing_docs)]

use std::sync::Arc;

use restock_inventory::Store;
pub use restock_inventory::{PlanSummary, PlannerSettings};
use temporalio_common::ActivityError;
use temporalio_macros::activities;
use temporalio_sdk::activities::ActivityContext;

use crate::errors::from_store;

/// The planner's activities.
#[derive(Debug, Clone)]
pub struct PlanningActivities {
    store: Store,
    settings: PlannerSettings,
}

impl PlanningActivities {
    /// Activities planning over `store` with `settings` (demand window, default lead time).
    pub fn new(store: Store, settings: PlannerSettings) -> Self {
        Self { store, settings }
    }
}

#[activities]
impl PlanningActivities {
    /// One planner pass.
    #[activity(name = "plan-replenishments")]
    pub async fn plan_replenishments(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: (),
    ) -> Result<PlanSummary, ActivityError> {
        let summary = self
            .store
            .plan_replenishments(&self.settings)
            .await
            .map_err(from_store)?;
        tracing::info!(
            planned = summary.planned,
            changed = summary.changed,
            requested = summary.requested.len(),
            "planner pass"
        );
        Ok(summary)
    }
}
