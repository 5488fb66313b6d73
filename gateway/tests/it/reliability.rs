//! Nothing is lost while Temporal is down: sales keep answering, their replenishment intents
//! wait in the outbox, and when Temporal is back every one of them is started — once.

use std::time::Duration;

use restock_proto::v1::{Outcome, PurchaseRequest};
use restock_testkit::process::wait_for;
use restock_testkit::stack::{Stack, StackOptions, spawn_stack};
use restock_testkit::{buy_one, one_unit};

const PRODUCTS: usize = 20;

/// Products `<prefix>-0..n` each got exactly one factory order, and its 10 units in stock
/// by exactly one receipt.
async fn one_order_each_restocked_once(stack: &Stack, prefix: &str, n: usize) {
    let factory = stack.factory_stats();
    assert_eq!(factory.total, n as u64, "{factory:?}");
    assert!(
        factory.orders_by_group.values().all(|n| *n == 1),
        "{factory:?}"
    );
    for i in 0..n {
        let sku = format!("{prefix}-{i}");
        let product = restock_testkit::product_of(&stack.app.store, &sku).await;
        assert_eq!(product.stock, 10, "{sku}");
        let receipts = stack.app.store.stock_receipts(&sku).await.unwrap();
        assert_eq!(receipts.len(), 1, "{sku}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporal_outage_loses_no_replenishment() {
    let mut stack = spawn_stack(StackOptions::default()).await.unwrap();
    for i in 0..PRODUCTS {
        stack
            .app
            .store
            .upsert_product(&restock_testkit::product(&format!("OUT-{i}"), 1, 0, 10))
            .await
            .unwrap();
    }
    stack.temporal.kill();

    // Every product runs out while Temporal is down; every sale is answered.
    let mut sales = stack.app.sales().await;
    for i in 0..PRODUCTS {
        for expected in [Outcome::Sold, Outcome::OutOfStock] {
            // A sale that failed while Temporal was down panics here.
            let reply = buy_one(&mut sales, &format!("OUT-{i}")).await;
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
                        .list_replenishments(
                            Some(restock_inventory::RestockState::Completed),
                            None,
                            100,
                        )
                        .await
                        .unwrap()
                        .len()
                        == PRODUCTS
                }
            },
        )
        .await;
    assert_eq!(stack.app.store.outbox_depth().await.unwrap(), 0);
    one_order_each_restocked_once(&stack, "OUT", PRODUCTS).await;
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
            .upsert_product(&restock_testkit::product(&sku, 0, 0, 10))
            .await
            .unwrap();
        let reply = buy_one(&mut sales, &sku).await;
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
                ..Default::default()
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
    one_order_each_restocked_once(&stack, "CHAOS", CHAOS_PRODUCTS).await;
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

/// Stock conservation under load on PostgreSQL: 8 clients × 10,000 mixed purchases across 50
/// products while replenishments run. For every product: initial + received − sold = final.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_is_conserved_under_load_with_replenishments_running() {
    use restock_inventory::entity::{sale, stock_receipt};
    use sea_orm::EntityTrait;
    use std::collections::HashMap;

    const LOAD_PRODUCTS: usize = 50;
    const CLIENTS: usize = 8;
    const PURCHASES: usize = 10_000;
    const INITIAL: i64 = 20;
    let defaults = StackOptions::default();
    let Some(stack) = spawn_stack(StackOptions {
        backend: restock_testkit::Backend::Postgres,
        ..defaults
    })
    .await
    else {
        return;
    };
    for i in 0..LOAD_PRODUCTS {
        stack
            .app
            .store
            .upsert_product(&restock_testkit::product(
                &format!("LOAD-{i}"),
                INITIAL,
                3,
                15,
            ))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut sales = stack.app.sales().await;
        tasks.push(tokio::spawn(async move {
            let mut sold: HashMap<String, i64> = HashMap::new();
            // A cheap deterministic mix: products and quantities 1..=3 vary per request.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1);
            for _ in 0..PURCHASES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let sku = format!("LOAD-{}", x % LOAD_PRODUCTS as u64);
                let quantity = (x >> 32) as u32 % 3 + 1;
                let reply = sales
                    .purchase(PurchaseRequest {
                        sku: sku.clone(),
                        quantity,
                        ..Default::default()
                    })
                    .await
                    .expect("a purchase failed under load")
                    .into_inner();
                if reply.outcome() == Outcome::Sold {
                    *sold.entry(sku).or_default() += i64::from(quantity);
                }
            }
            sold
        }));
    }
    let mut sold: HashMap<String, i64> = HashMap::new();
    for t in tasks {
        for (sku, n) in t.await.unwrap() {
            *sold.entry(sku).or_default() += n;
        }
    }
    // Let the replenishments in flight finish before counting.
    let store = stack.app.store.clone();
    stack
        .wait_until("replenishments settled", Duration::from_secs(180), || {
            let store = store.clone();
            async move {
                let open = store
                    .list_replenishments(None, None, 10_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|r| !r.state.is_terminal())
                    .count();
                open == 0 && store.outbox_depth().await.unwrap() == 0
            }
        })
        .await;
    let db = stack.app.store.connection();
    let sales_rows = sale::Entity::find().all(db).await.unwrap();
    let receipts = stock_receipt::Entity::find().all(db).await.unwrap();
    let mut total_received = 0;
    for i in 0..LOAD_PRODUCTS {
        let sku = format!("LOAD-{i}");
        let sold_rows: i64 = sales_rows
            .iter()
            .filter(|s| s.sku == sku)
            .map(|s| s.quantity)
            .sum();
        let received: i64 = receipts
            .iter()
            .filter(|r| r.sku == sku)
            .map(|r| r.quantity)
            .sum();
        let final_stock = restock_testkit::product_of(&stack.app.store, &sku)
            .await
            .stock;
        let sold_replies = sold.get(&sku).copied().unwrap_or_default();
        assert_eq!(sold_rows, sold_replies, "{sku}: sales rows vs SOLD replies");
        assert_eq!(
            INITIAL + received - sold_rows,
            final_stock,
            "{sku}: stock not conserved"
        );
        total_received += received;
    }
    let factory = stack.factory_stats();
    assert!(
        factory.orders_by_group.values().all(|n| *n == 1),
        "{factory:?}"
    );
    assert!(total_received > 0, "no replenishment ran during the load");
    eprintln!(
        "load: {} purchases, {} units sold, {} received in {} deliveries",
        CLIENTS * PURCHASES,
        sold.values().sum::<i64>(),
        total_received,
        receipts.len()
    );
    stack.stop().await;
}

/// A PostgreSQL server the test owns is stopped and started again: sales answer UNAVAILABLE
/// with a clear message meanwhile, recover by themselves, and no sale is half-applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_and_started_again() {
    use restock_inventory::entity::sale;
    use sea_orm::{EntityTrait, PaginatorTrait};
    use tonic::Code;

    let Some(pg) = restock_testkit::postgres::OwnPostgres::start() else {
        return;
    };
    let options = restock_inventory::StoreOptions {
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let store = restock_inventory::Store::connect(&pg.url(), &options)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    restock_inventory::demo::load(&store).await.unwrap();
    let sku = "CP-502103"; // stock 10
    let db = restock_testkit::TestDb::new(restock_testkit::Backend::Sqlite)
        .await
        .unwrap();
    let app = restock_testkit::spawn_gateway_on(db, store.clone()).await;
    let mut sales = app.sales().await;
    let buy = || one_unit(sku);
    assert_eq!(
        sales.purchase(buy()).await.unwrap().into_inner().outcome(),
        Outcome::Sold
    );

    pg.stop();
    restock_testkit::wait_out_ping_window().await;
    for _ in 0..3 {
        let err = sales.purchase(buy()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(err.message().contains("unavailable"), "{}", err.message());
    }
    pg.start_again();
    let sales = &sales;
    wait_for("sales recovering", Duration::from_secs(30), || async {
        match sales.clone().purchase(buy()).await {
            Ok(reply) => {
                assert_eq!(reply.into_inner().outcome(), Outcome::Sold);
                true
            }
            Err(err) => {
                assert_eq!(err.code(), Code::Unavailable, "{err:?}");
                false
            }
        }
    })
    .await;
    // Exactly the sales that answered SOLD were applied: 2 of 10.
    assert_eq!(restock_testkit::product_of(&store, sku).await.stock, 8);
    let rows = sale::Entity::find()
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(rows, 2);
    app.stop().await;
}
