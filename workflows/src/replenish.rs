//! The replenish-stock workflow (type `replenish-stock`, id `replenish-<sku>`, task queue
//! `restock`).
//!
//! It checks stock, orders from the factory, waits for the factory's completion (the
//! `factory-completed` signal, sent by the gateway's callback or by an operator), moves to
//! Overdue when the factory SLA passes and keeps waiting, then adds the delivered units to stock
//! exactly once. Every state change is kept in the `status` query, the `RestockState` search
//! attribute and the database read model.

// The workflow macros generate undocumented associated constants for each handler.
#![allow(missing_docs)]

use std::time::{Duration, UNIX_EPOCH};

use restock_activities::ReplenishActivities;
use restock_activities::errors::NON_RETRYABLE;
use restock_activities::types::{
    AdChange, FactoryOrderInput, IncrementInput, ReplenishmentSnapshot, StockLevel,
};
use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, ContinueAsNewOptions, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult,
};

use crate::state::{self, Event, RestockState};

/// The workflow type name.
pub const WORKFLOW_TYPE: &str = "replenish-stock";
/// Search attribute holding the product's sku (Keyword).
pub const SEARCH_ATTRIBUTE_SKU: &str = "RestockSku";
/// Search attribute holding the state name (Keyword).
pub const SEARCH_ATTRIBUTE_STATE: &str = "RestockState";

const RESTOCK_SKU: SearchAttributeKey<String> = SearchAttributeKey::keyword(SEARCH_ATTRIBUTE_SKU);
const RESTOCK_STATE: SearchAttributeKey<String> =
    SearchAttributeKey::keyword(SEARCH_ATTRIBUTE_STATE);

/// Durations the workflow uses; they come from configuration so tests can use seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplenishSettings {
    /// How long to wait for the factory before Overdue.
    pub factory_sla_secs: u64,
    /// Start-to-close timeout of one activity attempt.
    pub activity_timeout_secs: u64,
    /// First retry delay of a failed activity (doubles each time).
    pub retry_initial_secs: u64,
    /// Longest delay between activity retries.
    pub retry_max_interval_secs: u64,
}

impl Default for ReplenishSettings {
    fn default() -> Self {
        Self {
            factory_sla_secs: 600,
            activity_timeout_secs: 30,
            retry_initial_secs: 1,
            retry_max_interval_secs: 60,
        }
    }
}

/// The workflow's input, written by the gateway's outbox relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplenishInput {
    /// Product to replenish.
    pub sku: String,
    /// Why: `out_of_stock` or `reorder_point`.
    #[serde(default)]
    pub reason: String,
    /// Durations.
    #[serde(default)]
    pub settings: ReplenishSettings,
}

/// Signal `factory-completed`: `{}` means "the ordered quantity arrived".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FactoryCompleted {
    /// Units delivered; the ordered quantity when absent.
    #[serde(default)]
    pub quantity: Option<u32>,
    /// The order this completes; a completion for another order is ignored.
    #[serde(default)]
    pub factory_order_id: Option<String>,
}

/// Signal `replenish-requested`, sent with the start by the gateway's outbox relay
/// (signal-with-start): another sale asked for stock. If it arrives after this run read the
/// stock, the run checks again when it ends, so no request is lost to a run that was already
/// past its check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplenishRequested {
    /// Why: `out_of_stock` or `reorder_point`.
    #[serde(default)]
    pub reason: String,
}

/// Signal `cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CancelRequest {
    /// Why (shown in the status and history).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Query `status`: everything an operator needs about one replenishment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplenishStatus {
    /// Current state.
    pub state: RestockState,
    /// Product.
    pub sku: String,
    /// Our order id (the factory's `MessageGroupId`).
    pub factory_order_id: String,
    /// The factory's own id for the order, when it confirmed it.
    pub factory_reference: Option<String>,
    /// False while we cannot know whether the factory took the order.
    pub factory_confirmed: bool,
    /// Units ordered.
    pub ordered_quantity: u32,
    /// Units delivered (once known).
    pub received_quantity: Option<u32>,
    /// Stock after the delivery was added.
    pub stock_after: Option<i64>,
    /// Factory order send attempts.
    pub order_attempts: u32,
    /// Whether the SLA passed without a delivery.
    pub overdue: bool,
    /// Completion signals ignored (repeats, or for another order).
    pub ignored_signals: u32,
    /// Replenishment requests received after the stock was read (handled when this run ends).
    pub late_requests: u32,
    /// Whether this replenishment paused the product's advertisement (it was sold out).
    pub ad_paused: bool,
    /// Why it was cancelled or failed.
    pub reason: Option<String>,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms of the last change.
    pub updated_at: i64,
    /// Every state entered, oldest first.
    pub history: Vec<state::Transition>,
}

/// The workflow's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplenishOutcome {
    /// Final state.
    pub state: RestockState,
    /// Units added to stock (0 when none).
    pub received_quantity: u32,
}

/// The replenish-stock workflow.
#[workflow]
#[derive(Default)]
pub struct ReplenishStock {
    status: ReplenishStatus,
    completion: Option<FactoryCompleted>,
    cancel: Option<CancelRequest>,
    /// Set once check-stock has answered: later requests need a new check.
    stock_checked: bool,
}

fn millis(time: Option<std::time::SystemTime>) -> i64 {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn activity_options(settings: &ReplenishSettings) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(
        settings.activity_timeout_secs.max(1),
    ))
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(Duration::from_secs(settings.retry_initial_secs.max(1)))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(settings.retry_max_interval_secs.max(1)))
            // 0: retry until the dependency answers (the DLQ replacement); only the
            // non-retryable failure types end the workflow.
            .maximum_attempts(0)
            .non_retryable_error_types(NON_RETRYABLE)
            .build(),
    )
    .build()
}

impl ReplenishStock {
    /// Ends this run and starts a fresh one for the same product (continue-as-new), which
    /// checks the stock again.
    fn check_again(
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

    /// Applies `event` through the state machine, then publishes the new state: search
    /// attribute, read model.
    async fn advance(
        ctx: &WorkflowContext<Self>,
        settings: &ReplenishSettings,
        event: Event,
    ) -> WorkflowResult<RestockState> {
        let at = millis(ctx.workflow_time());
        let moved = ctx.state_mut(|s| {
            let to = state::next(s.status.state, event)?;
            s.status.state = to;
            s.status.updated_at = at;
            if to == RestockState::Overdue {
                s.status.overdue = true;
            }
            s.status.history.push(state::Transition::new(to, at));
            Ok::<_, state::InvalidTransition>(to)
        });
        let to = moved.map_err(|e| ApplicationFailure::non_retryable(e.to_string()))?;
        Self::publish(ctx, settings).await?;
        Ok(to)
    }

    /// Sends the current state to the search attributes and the read model.
    async fn publish(
        ctx: &WorkflowContext<Self>,
        settings: &ReplenishSettings,
    ) -> WorkflowResult<()> {
        let workflow_id = ctx.workflow_id().to_owned();
        let snapshot = ctx.state(|s| ReplenishmentSnapshot {
            order_id: s.status.factory_order_id.clone(),
            workflow_id,
            sku: s.status.sku.clone(),
            state: s.status.state.as_str().to_owned(),
            quantity: s.status.ordered_quantity,
            overdue: s.status.overdue,
            started_at: s.status.started_at,
            updated_at: s.status.updated_at,
        });
        ctx.upsert_search_attributes([RESTOCK_STATE.value_set(snapshot.state.clone())]);
        ctx.execute_activity(
            ReplenishActivities::record_replenishment,
            snapshot,
            activity_options(settings),
        )
        .await?;
        Ok(())
    }

    fn cancel_requested(ctx: &WorkflowContext<Self>) -> bool {
        ctx.state(|s| s.cancel.is_some())
    }

    async fn finish_cancelled(
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
}

#[workflow_methods]
impl ReplenishStock {
    /// Runs one replenishment.
    #[run(name = "replenish-stock")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ReplenishInput,
    ) -> WorkflowResult<ReplenishOutcome> {
        let settings = input.settings.clone();
        if restock_activities::validate_sku(&input.sku).is_err() {
            return Err(ApplicationFailure::non_retryable(format!(
                "replenish-stock needs a valid sku, got {:?}",
                input.sku
            ))
            .into());
        }
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
        if Self::cancel_requested(ctx) {
            return Self::finish_cancelled(ctx, &settings).await;
        }
        if !level.needs_replenishment() {
            Self::advance(ctx, &settings, Event::StockSufficient).await?;
            if ctx.state(|s| s.status.late_requests > 0) {
                // A sale asked again after the stock was read: read it again in a new run.
                return Self::check_again(ctx, input);
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
                },
                options.clone(),
            )
            .await?;
        ctx.state_mut(|s| {
            s.status.factory_reference = placed.factory_reference.clone();
            s.status.factory_confirmed = placed.confirmed;
            s.status.order_attempts = placed.attempts;
        });
        if Self::cancel_requested(ctx) {
            return Self::finish_cancelled(ctx, &settings).await;
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
        if Self::cancel_requested(ctx) && ctx.state(|s| s.completion.is_none()) {
            return Self::finish_cancelled(ctx, &settings).await;
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
            return Self::check_again(ctx, input);
        }
        Ok(ReplenishOutcome {
            state: RestockState::Completed,
            received_quantity: received,
        })
    }

    /// The factory (through the gateway's callback) or an operator reports the delivery.
    /// Only the first completion counts; repeats and completions for another order are
    /// ignored (and counted).
    #[signal(name = "factory-completed")]
    pub fn factory_completed(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        signal: FactoryCompleted,
    ) {
        let other_order = signal.factory_order_id.as_deref().is_some_and(|id| {
            !self.status.factory_order_id.is_empty() && id != self.status.factory_order_id
        });
        if self.completion.is_some() || other_order || self.status.state.is_terminal() {
            self.status.ignored_signals += 1;
            return;
        }
        self.completion = Some(signal);
    }

    /// Another sale asked for stock (the outbox relay's signal-with-start).
    #[signal(name = "replenish-requested")]
    pub fn replenish_requested(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        _request: ReplenishRequested,
    ) {
        if self.stock_checked && !self.status.state.is_terminal() {
            self.status.late_requests += 1;
        }
    }

    /// An operator cancels the replenishment (refused once Restocking).
    #[signal(name = "cancel")]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, request: CancelRequest) {
        let restocking = matches!(
            self.status.state,
            RestockState::Restocking | RestockState::Completed
        ) || self.completion.is_some();
        if self.cancel.is_none() && !restocking && !self.status.state.is_terminal() {
            self.cancel = Some(request);
        }
    }

    /// The replenishment's state, history and order details.
    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> ReplenishStatus {
        self.status.clone()
    }
}
