//! The replenish-stock run as it was before [`super::PATCH_EXACTLY_ONCE`]: kept, unchanged in
//! what it asks of Temporal, so runs started by earlier workers replay and finish as they
//! began. New runs never come here. Delete once no run started before the patch is open
//! (then `deprecate_patch`).

use std::time::Duration;

use restock_activities::ReplenishActivities;
use restock_activities::types::{AdChange, FactoryOrderInput, IncrementInput, StockLevel};
use temporalio_sdk::{ContinueAsNewOptions, WorkflowContext, WorkflowResult};

use super::{
    RESTOCK_SKU, ReplenishInput, ReplenishOutcome, ReplenishSettings, ReplenishStock,
    activity_options, millis, require_valid_sku,
};
use crate::state::{self, Event, RestockState};

impl ReplenishStock {
    /// Ends this run and starts a fresh one for the same product (continue-as-new), which
    /// checks the stock again.
    fn check_again_v1(
        ctx: &WorkflowContext<Self>,
        input: ReplenishInput,
    ) -> WorkflowResult<ReplenishOutcome> {
        let next = ReplenishInput {
            reason: "requested_during_previous_run".to_owned(),
            ..input
        };
        match ctx.continue_as_new(next, ContinueAsNewOptions::default()) {
            Ok(never) => match never {},
            Err(termination) => Err(termination),
        }
    }

    fn cancel_requested_v1(ctx: &WorkflowContext<Self>) -> bool {
        ctx.state(|s| s.cancel.is_some())
    }

    async fn finish_cancelled_v1(
        ctx: &WorkflowContext<Self>,
        settings: &ReplenishSettings,
    ) -> WorkflowResult<ReplenishOutcome> {
        ctx.state_mut(|s| {
            s.status.reason = s.cancel.as_ref().and_then(|c| c.reason.clone());
        });
        let state = Self::advance(ctx, settings, Event::Cancel).await?;
        Ok(ReplenishOutcome {
            state,
            received_quantity: 0,
        })
    }

    /// Runs one replenishment the way runs started before [`super::PATCH_EXACTLY_ONCE`] did.
    pub(super) async fn run_v1(
        ctx: &mut WorkflowContext<Self>,
        input: ReplenishInput,
    ) -> WorkflowResult<ReplenishOutcome> {
        let settings = input.settings.clone();
        require_valid_sku(&input.sku)?;
        let started = millis(ctx.workflow_time());
        // Unique per run (deterministic on replay): keys the factory order and the receipt.
        let order_id = format!("{}-{}", ctx.workflow_id(), &ctx.uuid4()[..8]);
        ctx.state_mut(|s| {
            s.status.sku = input.sku.clone();
            s.status.factory_order_id = order_id.clone();
            s.status.started_at = started;
            s.status.updated_at = started;
            s.status
                .history
                .push(state::Transition::new(RestockState::CheckingStock, started));
        });
        ctx.upsert_search_attributes([RESTOCK_SKU.value_set(input.sku.clone())]);
        Self::publish(ctx, &settings).await?;

        let options = activity_options(&settings);
        let level: StockLevel = ctx
            .execute_activity(
                ReplenishActivities::check_stock,
                input.sku.clone(),
                options.clone(),
            )
            .await?;
        ctx.state_mut(|s| s.stock_checked = true);
        if Self::cancel_requested_v1(ctx) {
            return Self::finish_cancelled_v1(ctx, &settings).await;
        }
        if !level.needs_replenishment() {
            Self::advance(ctx, &settings, Event::StockSufficient).await?;
            if ctx.state(|s| s.status.late_requests > 0) {
                // A sale asked again after the stock was read: read it again in a new run.
                return Self::check_again_v1(ctx, input);
            }
            return Ok(ReplenishOutcome {
                state: RestockState::NotNeeded,
                received_quantity: 0,
            });
        }
        let quantity = u32::try_from(level.reorder_quantity).unwrap_or(u32::MAX);
        ctx.state_mut(|s| s.status.ordered_quantity = quantity);
        Self::advance(ctx, &settings, Event::ReorderNeeded).await?;
        let ad_change = AdChange {
            order_id: order_id.clone(),
            sku: input.sku.clone(),
            replenishment_id: ctx.workflow_id().to_owned(),
        };
        if level.stock <= 0 {
            // Sold out: stop advertising what cannot be bought, and tell the ad manager.
            let paused = ctx
                .execute_activity(
                    ReplenishActivities::pause_advertising,
                    ad_change.clone(),
                    options.clone(),
                )
                .await?;
            ctx.state_mut(|s| s.status.ad_paused = paused.has_ad);
        }

        let placed = ctx
            .execute_activity(
                ReplenishActivities::order_from_factory,
                FactoryOrderInput {
                    order_id: order_id.clone(),
                    sku: input.sku.clone(),
                    quantity,
                    factory_id: level.factory_id.clone(),
                    request_id: None,
                },
                options.clone(),
            )
            .await?;
        ctx.state_mut(|s| s.status.order_placed(&placed));
        if Self::cancel_requested_v1(ctx) {
            return Self::finish_cancelled_v1(ctx, &settings).await;
        }
        Self::advance(ctx, &settings, Event::OrderPlaced).await?;

        let sla = Duration::from_secs(settings.factory_sla_secs.max(1));
        let delivered = temporalio_sdk::workflows::select! {
            _ = ctx.timer(sla) => false,
            r = ctx.wait_condition(|s| s.completion.is_some() || s.cancel.is_some()) => { r?; true }
        };
        if !delivered {
            Self::advance(ctx, &settings, Event::SlaPassed).await?;
            ctx.wait_condition(|s| s.completion.is_some() || s.cancel.is_some())
                .await?;
        }
        if Self::cancel_requested_v1(ctx) && ctx.state(|s| s.completion.is_none()) {
            return Self::finish_cancelled_v1(ctx, &settings).await;
        }
        let received = ctx.state(|s| {
            s.completion
                .as_ref()
                .and_then(|c| c.quantity)
                .unwrap_or(quantity)
        });
        ctx.state_mut(|s| s.status.received_quantity = Some(received));
        Self::advance(ctx, &settings, Event::FactoryCompleted).await?;

        if received > 0 {
            let incremented = ctx
                .execute_activity(
                    ReplenishActivities::increment_stock,
                    IncrementInput {
                        order_id: order_id.clone(),
                        sku: input.sku.clone(),
                        quantity: received,
                        replenishment_id: ctx.workflow_id().to_owned(),
                    },
                    options.clone(),
                )
                .await?;
            ctx.state_mut(|s| s.status.stock_after = Some(incremented.stock));
        }
        if ctx.state(|s| s.status.ad_paused) {
            ctx.execute_activity(
                ReplenishActivities::resume_advertising,
                ad_change,
                options.clone(),
            )
            .await?;
            ctx.state_mut(|s| s.status.ad_paused = false);
        }
        Self::advance(ctx, &settings, Event::Restocked).await?;
        let still_low = ctx.state(|s| {
            s.status.late_requests > 0
                && s.status
                    .stock_after
                    .is_some_and(|stock| stock <= level.reorder_point)
        });
        if still_low {
            // Sales during this run took the stock down again: replenish again.
            return Self::check_again_v1(ctx, input);
        }
        Ok(ReplenishOutcome {
            state: RestockState::Completed,
            received_quantity: received,
        })
    }
}
