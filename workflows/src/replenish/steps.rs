//! The replenish-stock run, step by step: [check](ReplenishStock::check),
//! [order](ReplenishStock::order), [await the delivery](ReplenishStock::await_delivery),
//! [restock](ReplenishStock::restock). Each step publishes the state it enters; a cancel is
//! looked for before every step that would commit the shop to something (the order) and
//! wherever a timer resolves (Temporal's cancellation also fires timers).

use std::time::Duration;

use restock_activities::ReplenishActivities;
use restock_activities::types::{
    AdChange, FactoryOrderInput, IncrementInput, ReplenishmentSnapshot, StockLevel,
};
use temporalio_common::ActivityDefinition;
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, ContinueAsNewOptions,
    LocalActivityOptions, TimerOptions, WaitConditionOptions, WorkflowCancellationToken,
    WorkflowContext, WorkflowResult, WorkflowTermination,
};

use super::{
    CancelRequest, CarriedOrder, FactoryCompleted, MAX_REQUESTS_PER_RUN, RESTOCK_SKU,
    RESTOCK_STATE, ReplenishInput, ReplenishOutcome, ReplenishSettings, ReplenishStatus,
    ReplenishStock, activity_options, local_notification_options, local_options, millis,
    notification_options, require_valid_sku,
};
use crate::state::{self, Event, RestockState};

/// The largest order the legacy factory takes.
const MAX_ORDER_QUANTITY: i64 = restock_activities::MAX_ORDER_QUANTITY as i64;

/// The ad's activities' options, local and regular (see [`ReplenishStock::bookkeeping`]).
fn notification_options_both(
    settings: &ReplenishSettings,
) -> (LocalActivityOptions, ActivityOptions) {
    (
        local_notification_options(settings),
        notification_options(settings),
    )
}

/// How the wait for the factory ended.
enum Awaited {
    /// The delivery was reported (units).
    Delivered(u32),
    /// Cancelled (by an operator or Temporal) before the delivery.
    Cancelled,
    /// Too many requests for one history: continue as new with the order.
    Rollover,
}

impl ReplenishStock {
    /// A run since [`super::PATCH_EXACTLY_ONCE`]. A failure that retrying cannot fix is
    /// published as Failed before the run ends with it.
    pub(super) async fn run_v2(
        ctx: &mut WorkflowContext<Self>,
        input: ReplenishInput,
    ) -> WorkflowResult<ReplenishOutcome> {
        let settings = input.settings.clone();
        // One run per product, enforced by its workflow id: a run started by hand under
        // another id (`temporal workflow start --workflow-id ...`) would order beside the
        // product's own run and add its delivery as well. It stops before it does anything.
        // (An invalid sku has no id of its own: `replenish` refuses it with that reason.)
        let own_id = restock_inventory::replenishment_id(&input.sku);
        if restock_inventory::Sku::parse(&input.sku).is_ok()
            && ctx.workflow_id() != own_id
            && ctx.patched(super::PATCH_ONE_RUN_PER_PRODUCT)
        {
            return Err(ApplicationFailure::non_retryable(format!(
                "replenish-stock for {:?} runs only as workflow id {own_id:?} (one replenishment per product, so two can never order for it), not {:?}: start it with that id, or let a sale start it",
                input.sku,
                ctx.workflow_id()
            ))
            .into());
        }
        match Self::replenish(ctx, input).await {
            Err(WorkflowTermination::Failed(err)) => {
                let live = ctx.state_mut(|s| {
                    s.status.reason = Some(err.to_string());
                    !s.status.state.is_terminal()
                });
                if live {
                    // Best effort: the failure itself is what the run reports.
                    let _ = Self::advance(ctx, &settings, Event::Fail).await;
                }
                Err(WorkflowTermination::Failed(err))
            }
            other => other,
        }
    }

    async fn replenish(
        ctx: &mut WorkflowContext<Self>,
        input: ReplenishInput,
    ) -> WorkflowResult<ReplenishOutcome> {
        let settings = input.settings.clone();
        require_valid_sku(&input.sku)?;
        ctx.upsert_search_attributes([RESTOCK_SKU.value_set(input.sku.clone())]);

        let (level, deadline) = match input.carried.clone() {
            Some(carried) => {
                let deadline = carried.sla_deadline;
                Self::resume_carried(ctx, &settings, carried).await?;
                (None, deadline)
            }
            None => {
                let level = match Self::check(ctx, &input).await? {
                    Some(level) => level,
                    None => return Self::end(ctx, input, RestockState::NotNeeded, 0),
                };
                if Self::cancel_requested(ctx) {
                    return Self::finish_cancelled(ctx, input).await;
                }
                Self::order(ctx, &input, &level).await?;
                if Self::cancel_requested(ctx) {
                    return Self::finish_cancelled(ctx, input).await;
                }
                let sla_ms = i64::try_from(settings.factory_sla_secs.max(1).saturating_mul(1000))
                    .unwrap_or(i64::MAX);
                (
                    Some(level),
                    millis(ctx.workflow_time()).saturating_add(sla_ms),
                )
            }
        };
        if let Some(level) = &level
            && level.stock <= 0
        {
            Self::pause_ad(ctx, &settings, &input.sku).await;
        }

        let received = match Self::await_delivery(ctx, &settings, deadline).await? {
            Awaited::Delivered(units) => units,
            Awaited::Cancelled => return Self::finish_cancelled(ctx, input).await,
            Awaited::Rollover => return Self::roll_over(ctx, input, deadline),
        };
        Self::restock(ctx, &settings, &input.sku, received).await?;
        Self::end(ctx, input, RestockState::Completed, received)
    }

    /// CheckingStock: reads the stock. `None` when it is above the reorder point (NotNeeded).
    async fn check(
        ctx: &WorkflowContext<Self>,
        input: &ReplenishInput,
    ) -> WorkflowResult<Option<StockLevel>> {
        let settings = &input.settings;
        let started = millis(ctx.workflow_time());
        // Unique per run (deterministic on replay): keys the factory order and the receipt.
        let order_id = format!("{}-{}", ctx.workflow_id(), ctx.uuid4());
        ctx.state_mut(|s| {
            s.status.sku = input.sku.clone();
            s.status.factory_order_id = order_id;
            s.status.request_id = input.request_id.clone();
            s.status.previous_run = input.previous_run.clone();
            s.status.started_at = started;
            s.status.updated_at = started;
            s.status
                .history
                .push(state::Transition::new(RestockState::CheckingStock, started));
            // From here on a request may postdate the stock this run reads: count it.
            s.check_started = true;
        });
        Self::publish(ctx, settings).await?;
        let level: StockLevel = ctx
            .execute_local_activity(
                ReplenishActivities::check_stock,
                input.sku.clone(),
                local_options(settings),
            )
            .await?;
        if !level.needs_replenishment() {
            Self::advance(ctx, settings, Event::StockSufficient).await?;
            return Ok(None);
        }
        if level.reorder_quantity < 1 || level.reorder_quantity > MAX_ORDER_QUANTITY {
            return Err(ApplicationFailure::non_retryable(format!(
                "{} has a reorder quantity of {}; the factory takes 1 to {MAX_ORDER_QUANTITY} units per order: fix the product, then buy again",
                level.sku, level.reorder_quantity
            ))
            .into());
        }
        let quantity = u32::try_from(level.reorder_quantity).unwrap_or(u32::MAX);
        ctx.state_mut(|s| s.status.ordered_quantity = quantity);
        Self::advance(ctx, settings, Event::ReorderNeeded).await?;
        Ok(Some(level))
    }

    /// OrderingFromFactory -> AwaitingFactory: sends the order (at most once per order id).
    async fn order(
        ctx: &WorkflowContext<Self>,
        input: &ReplenishInput,
        level: &StockLevel,
    ) -> WorkflowResult<()> {
        let (order_id, quantity) =
            ctx.state(|s| (s.status.factory_order_id.clone(), s.status.ordered_quantity));
        let placed = ctx
            .execute_activity(
                ReplenishActivities::order_from_factory,
                FactoryOrderInput {
                    order_id,
                    sku: input.sku.clone(),
                    quantity,
                    factory_id: level.factory_id.clone(),
                    request_id: input.request_id.clone(),
                },
                activity_options(&input.settings),
            )
            .await?;
        ctx.state_mut(|s| s.status.order_placed(&placed));
        if Self::cancel_requested(ctx) {
            return Ok(());
        }
        Self::advance(ctx, &input.settings, Event::OrderPlaced).await?;
        if let Some(units) = placed.delivered {
            // Delivered before this run got here (it was reset to before its order): the
            // delivery completes it; the increment, keyed by the order, adds nothing twice.
            ctx.state_mut(|s| {
                s.completion = Some(FactoryCompleted {
                    quantity: Some(units.min(s.status.ordered_quantity)),
                    factory_order_id: Some(s.status.factory_order_id.clone()),
                });
            });
        }
        Ok(())
    }

    /// AwaitingFactory (-> Overdue when the SLA passes): waits for the completion, a cancel,
    /// or too many requests for one history.
    async fn await_delivery(
        ctx: &WorkflowContext<Self>,
        settings: &ReplenishSettings,
        sla_deadline: i64,
    ) -> WorkflowResult<Awaited> {
        let woken = |s: &ReplenishStock| {
            s.completion.is_some()
                || s.cancel.is_some()
                || s.status.late_requests >= MAX_REQUESTS_PER_RUN
        };
        // Detached from Temporal's cancellation, which would otherwise fire the SLA timer and
        // end the wait; the cancellation is awaited on its own branch instead.
        let detached = || {
            WaitConditionOptions::builder()
                .cancellation_token(WorkflowCancellationToken::new())
                .build()
        };
        if !ctx.state(|s| s.status.overdue) {
            let left = sla_deadline
                .saturating_sub(millis(ctx.workflow_time()))
                .max(1);
            let mut timer = ctx.timer(
                TimerOptions::builder(Duration::from_millis(u64::try_from(left).unwrap_or(1)))
                    .cancellation_token(WorkflowCancellationToken::new())
                    .summary("factory SLA: Overdue when it fires".to_owned())
                    .build(),
            );
            let timed_out = temporalio_sdk::workflows::select! {
                _ = timer => true,
                _ = ctx.wait_condition_with_options(woken, detached()) => false,
                _ = ctx.cancelled() => false,
            };
            if timed_out && !Self::cancel_requested(ctx) && !ctx.state(woken) {
                Self::advance(ctx, settings, Event::SlaPassed).await?;
            }
        }
        loop {
            if let Some(awaited) = Self::awaited(ctx) {
                return Ok(awaited);
            }
            temporalio_sdk::workflows::select! {
                _ = ctx.wait_condition_with_options(woken, detached()) => {},
                _ = ctx.cancelled() => {},
            };
        }
    }

    /// What the wait has come to, if anything.
    fn awaited(ctx: &WorkflowContext<Self>) -> Option<Awaited> {
        let cancelled = Self::cancel_requested(ctx);
        ctx.state(|s| {
            if let Some(c) = &s.completion {
                Some(Awaited::Delivered(
                    c.quantity.unwrap_or(s.status.ordered_quantity),
                ))
            } else if cancelled {
                Some(Awaited::Cancelled)
            } else if s.status.late_requests >= MAX_REQUESTS_PER_RUN {
                Some(Awaited::Rollover)
            } else {
                None
            }
        })
    }

    /// Restocking -> Completed: adds the delivery (keyed by the order id), resumes the ad.
    async fn restock(
        ctx: &WorkflowContext<Self>,
        settings: &ReplenishSettings,
        sku: &str,
        received: u32,
    ) -> WorkflowResult<()> {
        ctx.state_mut(|s| s.status.received_quantity = Some(received));
        Self::advance(ctx, settings, Event::FactoryCompleted).await?;
        if received > 0 {
            let order_id = ctx.state(|s| s.status.factory_order_id.clone());
            let increment = IncrementInput {
                order_id,
                sku: sku.to_owned(),
                quantity: received,
                replenishment_id: ctx.workflow_id().to_owned(),
            };
            // Keyed by the order id: a retry (or a local activity run again after a worker
            // crash) adds nothing twice.
            let incremented = Self::bookkeeping(
                ctx,
                ReplenishActivities::increment_stock,
                increment,
                (local_options(settings), activity_options(settings)),
            )
            .await?;
            ctx.state_mut(|s| s.status.stock_after = Some(incremented.stock));
        }
        Self::resume_ad(ctx, settings, sku).await;
        Self::advance(ctx, settings, Event::Restocked).await?;
        Ok(())
    }

    /// Ends the run in `state`, unless requests came after the stock was read: then a new run
    /// reads it again (continue-as-new), so no request dies with a run that had passed its
    /// check. Looked at after the last publish: a request that arrives while it runs is
    /// still seen (Temporal hands it to this task before the run may close).
    fn end(
        ctx: &WorkflowContext<Self>,
        input: ReplenishInput,
        state: RestockState,
        received: u32,
    ) -> WorkflowResult<ReplenishOutcome> {
        if ctx.state(|s| s.status.late_requests > 0) {
            return Self::check_again(ctx, input, "requested_during_previous_run");
        }
        Ok(ReplenishOutcome {
            state,
            received_quantity: received,
        })
    }

    /// Continues as new with a fresh run that reads the stock again (`reason` says why).
    fn check_again(
        ctx: &WorkflowContext<Self>,
        input: ReplenishInput,
        reason: &str,
    ) -> WorkflowResult<ReplenishOutcome> {
        let ended = ctx.state(|s| ReplenishStatus {
            previous_run: None,
            ..s.status.clone()
        });
        let next = ReplenishInput {
            reason: reason.to_owned(),
            carried: None,
            previous_run: Some(Box::new(ended)),
            ..input
        };
        match ctx.continue_as_new(next, ContinueAsNewOptions::default()) {
            Ok(never) => match never {},
            Err(termination) => Err(termination),
        }
    }

    /// Continues as new with the order still awaited: the new run starts with an empty
    /// history and waits for the same order, with the same deadline.
    fn roll_over(
        ctx: &WorkflowContext<Self>,
        input: ReplenishInput,
        sla_deadline: i64,
    ) -> WorkflowResult<ReplenishOutcome> {
        let status = ctx.state(|s| s.status.clone());
        let next = ReplenishInput {
            carried: Some(CarriedOrder {
                status,
                sla_deadline,
            }),
            // The carried status holds it already.
            previous_run: None,
            ..input
        };
        match ctx.continue_as_new(next, ContinueAsNewOptions::default()) {
            Ok(never) => match never {},
            Err(termination) => Err(termination),
        }
    }

    /// Takes over a carried order: the status as it was, with the requests that caused the
    /// roll-over still owed a check at the end.
    async fn resume_carried(
        ctx: &WorkflowContext<Self>,
        settings: &ReplenishSettings,
        carried: CarriedOrder,
    ) -> WorkflowResult<()> {
        ctx.state_mut(|s| {
            s.status = carried.status;
            s.status.late_requests = 1;
            s.status.continued_runs += 1;
            s.check_started = true;
        });
        Self::publish(ctx, settings).await
    }

    /// Cancelled: the ad runs again (nothing is on its way for sure), then the end: Canceled
    /// in Temporal (its list shows it so; the outcome rides in the cancellation's details).
    /// Runs from before [`super::PATCH_CANCEL_ENDS_CANCELED`] that an operator cancelled
    /// complete with the outcome, as they did.
    ///
    /// Requests that reached the run after the cancel was accepted (a sale while it closed:
    /// the relay hands requests to the open run) are new demand: the run then checks again
    /// as a new run, as [`Self::end`] does (since [`super::PATCH_REQUESTS_AFTER_CANCEL`]).
    /// Looked at after the last publish, like there.
    async fn finish_cancelled(
        ctx: &WorkflowContext<Self>,
        input: ReplenishInput,
    ) -> WorkflowResult<ReplenishOutcome> {
        let settings = &input.settings;
        let sku = ctx.state_mut(|s| {
            s.status.reason = s.cancel.as_ref().and_then(|c| c.reason.clone());
            s.status.sku.clone()
        });
        Self::resume_ad(ctx, settings, &sku).await;
        Self::advance(ctx, settings, Event::Cancel).await?;
        if ctx.state(ReplenishStock::requested_after_cancel)
            && ctx.patched(super::PATCH_REQUESTS_AFTER_CANCEL)
        {
            return Self::check_again(ctx, input, "requested_after_cancel");
        }
        let outcome = ReplenishOutcome {
            state: RestockState::Cancelled,
            received_quantity: 0,
        };
        if ctx.state(|s| s.cancelled_in_temporal) {
            return Err(WorkflowTermination::cancelled());
        }
        if ctx.patched(super::PATCH_CANCEL_ENDS_CANCELED) {
            return Err(WorkflowTermination::cancelled_with_details(outcome));
        }
        Ok(outcome)
    }

    /// Whether the run is to stop: an accepted cancel, or Temporal's cancellation in a state
    /// that accepts a cancel (it becomes the operator's cancel here).
    fn cancel_requested(ctx: &WorkflowContext<Self>) -> bool {
        let token = ctx.cancellation_token();
        let temporal = token.is_cancelled();
        ctx.state_mut(|s| {
            if temporal && s.cancel.is_none() && s.cancel_refusal().is_none() {
                s.accept_temporal_cancel(CancelRequest {
                    reason: Some(match token.reason().filter(|r| !r.is_empty()) {
                        Some(reason) => format!("cancelled in Temporal: {reason}"),
                        None => "cancelled in Temporal".to_owned(),
                    }),
                });
            }
            s.cancel.is_some()
        })
    }

    /// Whether the increment and the ad's changes run as local activities (runs since
    /// [`super::PATCH_LOCAL_BOOKKEEPING`]).
    fn local_bookkeeping(ctx: &WorkflowContext<Self>) -> bool {
        ctx.state(|s| s.version) >= 3
    }

    /// Runs a bookkeeping activity: local with the first options in runs since
    /// [`super::PATCH_LOCAL_BOOKKEEPING`], regular with the second before.
    async fn bookkeeping<A>(
        ctx: &WorkflowContext<Self>,
        activity: A,
        input: A::Input,
        (local, regular): (LocalActivityOptions, ActivityOptions),
    ) -> Result<A::Output, ActivityExecutionError>
    where
        A: ActivityDefinition,
        A::Output: TemporalDeserializable,
    {
        if Self::local_bookkeeping(ctx) {
            ctx.execute_local_activity(activity, input, local).await
        } else {
            ctx.execute_activity(activity, input, regular).await
        }
    }

    fn ad_change(ctx: &WorkflowContext<Self>, sku: &str) -> AdChange {
        AdChange {
            order_id: ctx.state(|s| s.status.factory_order_id.clone()),
            sku: sku.to_owned(),
            replenishment_id: ctx.workflow_id().to_owned(),
        }
    }

    /// Sold out: the ad stops (after the order: a mail must never hold up the order).
    async fn pause_ad(ctx: &WorkflowContext<Self>, settings: &ReplenishSettings, sku: &str) {
        Self::change_ad(ctx, settings, sku, true).await;
    }

    /// The ad runs again, if this run paused it.
    async fn resume_ad(ctx: &WorkflowContext<Self>, settings: &ReplenishSettings, sku: &str) {
        if ctx.state(|s| s.status.ad_paused) {
            Self::change_ad(ctx, settings, sku, false).await;
        }
    }

    /// Pauses or resumes the product's ad and mails its manager: a few tries, then the run
    /// goes on without it (counted in `notification_failures`).
    async fn change_ad(
        ctx: &WorkflowContext<Self>,
        settings: &ReplenishSettings,
        sku: &str,
        pause: bool,
    ) {
        let change = Self::ad_change(ctx, sku);
        let options = notification_options_both(settings);
        let changed = if pause {
            Self::bookkeeping(ctx, ReplenishActivities::pause_advertising, change, options).await
        } else {
            Self::bookkeeping(
                ctx,
                ReplenishActivities::resume_advertising,
                change,
                options,
            )
            .await
        };
        match changed {
            Ok(changed) => ctx.state_mut(|s| {
                s.status.ad_paused = pause && changed.has_ad;
                s.status.notification_failures += u32::from(changed.mail_failed);
            }),
            Err(_) => ctx.state_mut(|s| s.status.notification_failures += 1),
        }
    }

    /// Applies `event` through the state machine, then publishes the new state (the same
    /// commands in both versions).
    pub(super) async fn advance(
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

    /// Sends the current state to the search attribute and the read model (a local activity
    /// since the patch: a database upsert needs no round trip through the server).
    pub(super) async fn publish(
        ctx: &WorkflowContext<Self>,
        settings: &ReplenishSettings,
    ) -> WorkflowResult<()> {
        let workflow_id = ctx.workflow_id().to_owned();
        let snapshot = ctx.state(|s| ReplenishmentSnapshot {
            order_id: s.status.factory_order_id.clone(),
            workflow_id,
            sku: s.status.sku.clone(),
            state: s.status.state,
            quantity: s.status.ordered_quantity,
            overdue: s.status.overdue,
            started_at: s.status.started_at,
            updated_at: s.status.updated_at,
        });
        ctx.upsert_search_attributes([RESTOCK_STATE.value_set(snapshot.state.as_str().to_owned())]);
        // The Web UI shows this on the run's page (the SDK answers its metadata query with
        // it); set again on replay, as the code runs again.
        ctx.set_current_details(current_details(&snapshot));
        if ctx.state(|s| s.version) >= 2 {
            ctx.execute_local_activity(
                ReplenishActivities::record_replenishment,
                snapshot,
                local_options(settings),
            )
            .await?;
        } else {
            // Runs from before the patch recorded a regular activity here; they replay as such.
            ctx.execute_activity(
                ReplenishActivities::record_replenishment,
                snapshot,
                activity_options(settings),
            )
            .await?;
        }
        Ok(())
    }
}

/// The run's "current details" for the Temporal Web UI (markdown).
fn current_details(s: &ReplenishmentSnapshot) -> String {
    let mut details = format!("**{}**", s.state);
    if s.overdue {
        details.push_str(" · **overdue**: the factory's SLA passed without a delivery");
    }
    if !s.order_id.is_empty() {
        details.push_str(&format!(
            "\n\nfactory order `{}` · {} units",
            s.order_id, s.quantity
        ));
    }
    details.push_str(
        "\n\nQuery `status` for everything; signal `factory-completed` (with `factory_order_id`) or `cancel` to act.",
    );
    details
}
