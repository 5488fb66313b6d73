//! The planner on Temporal: the `restock-planner` schedule starts `plan-replenishments` runs;
//! a run sets an adaptive product's figures (no sales history: its bounds) and requests a
//! replenishment through the outbox for a product at or below its new reorder point; further
//! passes while that replenishment is open change nothing (one run, one factory order).

use std::time::Duration;

use restock_inventory::entity::factory_order;
use restock_inventory::{AdaptiveSettings, PolicyChange, PolicyKind};
use restock_testkit::stack::{StackOptions, spawn_stack};
use restock_workflows::{PLANNER_SCHEDULE_ID, PlanReplenishments, RestockState};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use temporalio_client::WorkflowGetResultOptions;

use super::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_planner_schedule_requests_once_and_an_open_run_gets_no_second_order() {
    let options = StackOptions {
        // The order stays open: no callback comes.
        planner: restock_worker::PlannerConfig {
            every: Some(Duration::from_secs(1)),
            settings: restock_inventory::PlannerSettings {
                demand_window_secs: 600,
                default_lead_time_secs: 4.0,
            },
        },
        ..StackOptions::without_callbacks()
    };
    let stack = spawn_stack(options).await.unwrap();
    let sku = "PLAN-1";
    // Stock 3, reorder point 0 as given, but the operator's lowest reorder point is 5: with no
    // sales history the planner keeps the figures within the bounds, so it sets 5, and 3 <= 5.
    let mut product = restock_testkit::product(sku, 3, 0, 10);
    product.policy = Some(PolicyChange {
        kind: Some(PolicyKind::Adaptive),
        adaptive: Some(AdaptiveSettings {
            min_reorder_point: 5,
            ..AdaptiveSettings::default()
        }),
    });
    stack.app.store.upsert_product(&product).await.unwrap();

    let waiting = stack
        .wait_for_state(sku, WAIT, RestockState::AwaitingFactory)
        .await;
    let view = stack
        .app
        .store
        .product(&restock_testkit::sku(sku))
        .await
        .unwrap();
    assert_eq!(
        view.product.reorder_point, 5,
        "no history: the lowest bound"
    );
    assert_eq!(view.product.reorder_quantity, 10, "no history: unchanged");
    let planned = view.policy.unwrap();
    assert!(planned.planned_at.is_some());
    assert_eq!(planned.lead_time_observations, 0);
    assert_eq!(planned.lead_time_secs, Some(4.0));

    // Let the schedule run several more passes while the replenishment is open.
    let schedule = stack
        .temporal_client
        .get_schedule_handle(PLANNER_SCHEDULE_ID);
    let actions = |d: &temporalio_client::schedules::ScheduleDescription| d.action_count();
    let first = actions(&schedule.describe(Default::default()).await.unwrap());
    stack
        .wait_until("three more planner passes", WAIT, || async {
            actions(&schedule.describe(Default::default()).await.unwrap()) >= first + 3
        })
        .await;
    let description = schedule.describe(Default::default()).await.unwrap();
    let recent = description.recent_actions();
    assert!(!recent.is_empty());
    // Each pass saw the product at or below its point and asked again: harmless.
    let mut asked = 0;
    for action in &recent {
        let handle = stack
            .temporal_client
            .get_workflow_handle::<PlanReplenishments>(action.workflow_id.clone());
        if let Ok(summary) = handle.get_result(WorkflowGetResultOptions::default()).await {
            assert_eq!(summary.planned, 1, "{summary:?}");
            if summary.requested == vec![sku.to_owned()] {
                asked += 1;
            }
        }
    }
    assert!(asked >= 2, "passes that requested: {asked}");
    let pass = recent[0].workflow_id.clone();
    super::maybe_save_run_history(&stack, pass, None, "planner-pass.json").await;

    // Still one run, waiting for the same order, and the factory has one order.
    let status = stack.status(sku).await.unwrap();
    assert_eq!(status.state, RestockState::AwaitingFactory);
    assert_eq!(status.factory_order_id, waiting.factory_order_id);
    let orders = factory_order::Entity::find()
        .filter(factory_order::Column::Sku.eq(sku))
        .count(stack.app.store.connection())
        .await
        .unwrap();
    assert_eq!(orders, 1);
    assert_eq!(stack.factory_stats().total, 1);
    stack.stop().await;
}
