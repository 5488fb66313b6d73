//! A worker killed with SIGKILL in each state of a replenishment — before the factory order
//! is placed, while the order request is in flight, and during the stock increment — and a
//! new worker started: every replenishment completes with one factory order and one stock
//! receipt. Processes, on SQLite, PostgreSQL and MariaDB (a lock held by the test stalls the
//! increment so the kill lands inside it).

use std::path::Path;
use std::time::Duration;

use restock_testkit::process::{
    Procs, free_port, http_get, sales_client, sell_one, wait_for, wait_healthy,
};
use restock_testkit::temporal::DevServer;
use restock_testkit::{Backend, TEST_CALLBACK_SECRET, TestDb};
use restock_workflows::RestockState;
use sea_orm::{ConnectionTrait, TransactionTrait};

fn restock() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_restock"))
}

async fn state(temporal: &temporalio_client::Client, sku: &str) -> Option<RestockState> {
    restock_workflows::client::query_status(temporal, sku)
        .await
        .ok()
        .flatten()
        .map(|s| s.state)
}

async fn factory_total(factory: u16) -> u64 {
    http_get(&format!("http://127.0.0.1:{factory}/simulator/orders"))
        .await
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["total"].as_u64())
        .unwrap_or(0)
}

restock_testkit::on_three_databases! {
    worker_killed_in_each_state_loses_and_doubles_nothing => worker_killed_in_each_state;
}

async fn worker_killed_in_each_state(backend: Backend) {
    let Some((db, store)) = TestDb::with_store(backend).await else {
        return;
    };
    for sku in ["KILL-A", "KILL-B", "KILL-C"] {
        store
            .upsert_product(&restock_testkit::product(sku, 1, 0, 10))
            .await
            .unwrap();
    }
    let temporal = DevServer::start().await;
    let client = restock_workflows::client::connect(
        &restock_workflows::client::TemporalEndpoint::plain(&temporal.address, &temporal.namespace),
    )
    .await
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (factory, grpc, http) = (free_port(), free_port(), free_port());
    let env = vec![
        ("RESTOCK_DATABASE_URL", db.url.clone()),
        ("TEMPORAL_ADDRESS", temporal.address.clone()),
        ("RESTOCK_CALLBACK_SECRET", TEST_CALLBACK_SECRET.to_owned()),
    ];
    let worker_flags = ["--factory-timeout-secs=10"];
    let mut procs = Procs::new(restock(), logs.path());
    let gateway_flags = [
        "--activity-timeout-secs=5",
        "--retry-max-interval-secs=1",
        "--relay-sweep-secs=1",
    ];
    procs.gateway("gateway", (grpc, http), &gateway_flags, &env);
    procs.worker("worker-1", (factory, http), &worker_flags, &env);
    wait_healthy(http, Duration::from_secs(30)).await;
    let mut sales = sales_client(grpc).await;
    let mut buy = async |sku: &str| sell_one(&mut sales, sku).await;

    // 1. Before the order is placed: the factory is down, the order activity keeps failing.
    buy("KILL-A").await;
    wait_for(
        "KILL-A ordering (factory down)",
        Duration::from_secs(60),
        || async {
            state(&client, "KILL-A").await == Some(RestockState::OrderingFromFactory)
                && store
                    .factory_order(
                        &restock_workflows::client::query_status(&client, "KILL-A")
                            .await
                            .unwrap()
                            .unwrap()
                            .factory_order_id,
                    )
                    .await
                    .unwrap()
                    .is_some_and(|o| {
                        o.attempts >= 1
                            && o.status
                                == restock_inventory::entity::factory_order::OrderStatus::NotPlaced
                    })
        },
    )
    .await;
    procs.kill_9("worker-1");
    // The factory comes up, slow to answer (it takes the order, then replies 3 s later).
    let addr = format!("--addr=127.0.0.1:{factory}");
    let flags = [
        "factory",
        &addr,
        "--step-interval-ms=250",
        "--extra-latency-ms=3000",
    ];
    procs.spawn("factory", &flags, &env);
    procs.worker("worker-2", (factory, http), &worker_flags, &env);
    wait_for("KILL-A completed", Duration::from_secs(90), || async {
        state(&client, "KILL-A").await == Some(RestockState::Completed)
    })
    .await;
    assert_eq!(factory_total(factory).await, 1);

    // 2. While the order request is in flight: the factory has it, its reply is 3 s away.
    buy("KILL-B").await;
    wait_for(
        "KILL-B order received by the factory",
        Duration::from_secs(60),
        || async { factory_total(factory).await == 2 },
    )
    .await;
    procs.kill_9("worker-2");
    procs.worker("worker-3", (factory, http), &worker_flags, &env);
    wait_for("KILL-B completed", Duration::from_secs(90), || async {
        state(&client, "KILL-B").await == Some(RestockState::Completed)
    })
    .await;
    let b = restock_workflows::client::query_status(&client, "KILL-B")
        .await
        .unwrap()
        .unwrap();
    let order = store
        .factory_order(&b.factory_order_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        order.status,
        restock_inventory::entity::factory_order::OrderStatus::Uncertain,
        "the interrupted order was not sent again"
    );
    assert_eq!(factory_total(factory).await, 2);

    // 3. During the increment: the test holds the product's row lock, so the increment waits
    //    inside its transaction when the worker is killed. SQLite locks the whole file, which
    //    would stall the run before it gets there: there the worker is killed the moment the
    //    run is Restocking, around its increment.
    buy("KILL-C").await;
    let lock = if backend == Backend::Sqlite {
        None
    } else {
        let lock = store.connection().begin().await.unwrap();
        lock.execute_unprepared("SELECT stock FROM products WHERE sku = 'KILL-C' FOR UPDATE")
            .await
            .unwrap();
        Some(lock)
    };
    wait_for(
        "KILL-C restocking (blocked)",
        Duration::from_secs(90),
        || async {
            match state(&client, "KILL-C").await {
                Some(RestockState::Restocking) => true,
                // Unblocked (SQLite), the increment may be over before a poll sees Restocking.
                Some(RestockState::Completed) => backend == Backend::Sqlite,
                _ => false,
            }
        },
    )
    .await;
    if backend != Backend::Sqlite {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    procs.kill_9("worker-3");
    if let Some(lock) = lock {
        lock.rollback().await.unwrap();
    }
    procs.worker("worker-4", (factory, http), &worker_flags, &env);
    wait_for("KILL-C completed", Duration::from_secs(90), || async {
        state(&client, "KILL-C").await == Some(RestockState::Completed)
    })
    .await;

    // Every replenishment: one factory order, one receipt, stock exactly 0 + 10.
    let orders: serde_json::Value = serde_json::from_str(
        &http_get(&format!("http://127.0.0.1:{factory}/simulator/orders"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(orders["total"].as_u64(), Some(3), "{orders}");
    assert!(
        orders["orders_by_group"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n.as_u64() == Some(1))
    );
    for sku in ["KILL-A", "KILL-B", "KILL-C"] {
        assert_eq!(
            restock_testkit::product_of(&store, sku).await.stock,
            10,
            "{sku}"
        );
        assert_eq!(store.stock_receipts(sku).await.unwrap().len(), 1, "{sku}");
    }
}
