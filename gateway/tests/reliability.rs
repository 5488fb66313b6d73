//! Nothing is lost while Temporal is down: sales keep answering, their replenishment intents
//! wait in the outbox, and when Temporal is back every one of them is started — once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use restock_inventory::NewProduct;
use restock_proto::v1::{Outcome, PurchaseRequest};
use restock_testkit::stack::{StackOptions, spawn_stack};

const PRODUCTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporal_outage_loses_no_replenishment() {
    let mut stack = spawn_stack(StackOptions::default()).await.unwrap();
    for i in 0..PRODUCTS {
        stack
            .app
            .store
            .upsert_product(&NewProduct {
                sku: format!("OUT-{i}"),
                name: format!("outage product {i}"),
                price: 100,
                stock: 1,
                reorder_point: 0,
                reorder_quantity: 10,
                factory_id: restock_inventory::demo::DEMO_FACTORY.to_owned(),
            })
            .await
            .unwrap();
    }
    stack.temporal.kill();

    // Every product runs out while Temporal is down; every sale is answered.
    let mut sales = stack.app.sales().await;
    for i in 0..PRODUCTS {
        for expected in [Outcome::Sold, Outcome::OutOfStock] {
            let reply = sales
                .purchase(PurchaseRequest {
                    sku: format!("OUT-{i}"),
                    quantity: 1,
                    ..Default::default()
                })
                .await
                .expect("a sale failed while Temporal was down")
                .into_inner();
            assert_eq!(reply.outcome(), expected);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.app.store.outbox_depth().await.unwrap(),
        PRODUCTS as u64
    );

    stack.temporal.restart().await;
    let store = stack.app.store.clone();
    stack
        .wait_until(
            "every replenishment completed",
            Duration::from_secs(120),
            || {
                let store = store.clone();
                async move {
                    store
                        .list_replenishments(Some("Completed"), 0, 100)
                        .await
                        .unwrap()
                        .len()
                        == PRODUCTS
                }
            },
        )
        .await;
    assert_eq!(stack.app.store.outbox_depth().await.unwrap(), 0);
    let factory = stack.factory_stats();
    assert_eq!(factory.total, PRODUCTS as u64, "{factory:?}");
    assert!(
        factory.orders_by_group.values().all(|n| *n == 1),
        "{factory:?}"
    );
    for i in 0..PRODUCTS {
        let sku = format!("OUT-{i}");
        assert_eq!(
            stack.app.store.product(&sku).await.unwrap().product.stock,
            10
        );
        assert_eq!(stack.app.store.stock_receipts(&sku).await.unwrap().len(), 1);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn factory_chaos_still_one_order_each_and_every_replenishment_completes() {
    use restock_factory::SimulatorConfig;
    use restock_proto::v1::CompleteFactoryOrderRequest;
    use restock_workflows::RestockState;

    const CHAOS_PRODUCTS: usize = 10;
    let defaults = StackOptions::default();
    let stack = spawn_stack(StackOptions {
        factory: SimulatorConfig {
            failure_rate: 0.5,
            extra_latency: Duration::from_secs(2),
            drop_callback_every: 3,
            duplicate_callbacks: true,
            ..defaults.factory.clone()
        },
        factory_timeout: Duration::from_secs(5),
        workflow: restock_workflows::ReplenishSettings {
            factory_sla_secs: 8,
            ..defaults.workflow.clone()
        },
        ..defaults
    })
    .await
    .unwrap();
    let mut sales = stack.app.sales().await;
    for i in 0..CHAOS_PRODUCTS {
        let sku = format!("CHAOS-{i}");
        stack
            .app
            .store
            .upsert_product(&NewProduct {
                sku: sku.clone(),
                name: format!("chaos product {i}"),
                price: 100,
                stock: 0,
                reorder_point: 0,
                reorder_quantity: 10,
                factory_id: restock_inventory::demo::DEMO_FACTORY.to_owned(),
            })
            .await
            .unwrap();
        let reply = sales
            .purchase(PurchaseRequest {
                sku,
                quantity: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.outcome(), Outcome::OutOfStock);
    }
    // Each ends Completed by its callback, or goes Overdue and an operator completes it.
    let mut api = stack.replenishments().await;
    let mut by_operator = 0;
    for i in 0..CHAOS_PRODUCTS {
        let sku = format!("CHAOS-{i}");
        let status = stack
            .wait_for_status(&sku, Duration::from_secs(120), |s| {
                matches!(s.state, RestockState::Completed | RestockState::Overdue)
            })
            .await;
        if status.state == RestockState::Overdue {
            api.complete_factory_order(CompleteFactoryOrderRequest {
                sku: sku.clone(),
                quantity: 0,
            })
            .await
            .unwrap();
            by_operator += 1;
        }
        stack
            .wait_for_status(&sku, Duration::from_secs(60), |s| {
                s.state == RestockState::Completed
            })
            .await;
    }
    let factory = stack.factory_stats();
    assert!(
        factory.injected_failures > 0,
        "no 5xx was injected: {factory:?}"
    );
    assert!(by_operator > 0, "no callback was dropped: {factory:?}");
    assert_eq!(factory.total, CHAOS_PRODUCTS as u64, "{factory:?}");
    assert!(
        factory.orders_by_group.values().all(|n| *n == 1),
        "{factory:?}"
    );
    for i in 0..CHAOS_PRODUCTS {
        let sku = format!("CHAOS-{i}");
        assert_eq!(
            stack.app.store.product(&sku).await.unwrap().product.stock,
            10,
            "{sku}"
        );
        assert_eq!(
            stack.app.store.stock_receipts(&sku).await.unwrap().len(),
            1,
            "{sku}"
        );
    }
    eprintln!(
        "chaos: {} orders, {} injected 5xx, {} callbacks sent, {} dropped, {} completed by an operator",
        factory.total,
        factory.injected_failures,
        factory.callbacks_sent,
        factory.callbacks_dropped,
        by_operator
    );
    stack.stop().await;
}
