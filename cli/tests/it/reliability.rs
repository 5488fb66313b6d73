//! Crashes of real processes lose nothing: a gateway killed with SIGKILL after a sale
//! committed its replenishment intent, but before the workflow was started, leaves the intent
//! in the outbox; the next gateway's relay starts it and the product is restocked once.

use std::path::Path;
use std::time::Duration;

use restock_testkit::process::{
    Procs, free_port, http_get, sales_client, sell_one, wait_for, wait_healthy,
};
use restock_testkit::temporal::DevServer;
use restock_testkit::{Backend, TEST_CALLBACK_SECRET, TestDb};

fn restock() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_restock"))
}

/// The gateways' relay sweeps every second, so the test waits little.
const GATEWAY_FLAGS: &[&str] = &["--relay-sweep-secs=1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_before_the_workflow_started_loses_nothing() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let store = db.store().await;
    let temporal = DevServer::start().await;
    let logs = tempfile::tempdir().unwrap();
    let (factory, grpc, http) = (free_port(), free_port(), free_port());
    let env = |temporal_address: &str| {
        vec![
            ("RESTOCK_DATABASE_URL", db.url.clone()),
            ("TEMPORAL_ADDRESS", temporal_address.to_owned()),
            ("RESTOCK_CALLBACK_SECRET", TEST_CALLBACK_SECRET.to_owned()),
        ]
    };
    let mut procs = Procs::new(restock(), logs.path());
    procs.factory(factory, 100, &env(&temporal.address));
    procs.worker("worker", (factory, http), &[], &env(&temporal.address));
    // The first gateway cannot reach Temporal: its relay can never start the workflow.
    let unreachable = format!("127.0.0.1:{}", free_port());
    procs.gateway("gateway-1", (grpc, http), GATEWAY_FLAGS, &env(&unreachable));
    wait_healthy(http, Duration::from_secs(30)).await;

    let sku = restock_inventory::demo::DEMO_SKU; // stock 3
    let mut sales = sales_client(grpc).await;
    for _ in 0..3 {
        sell_one(&mut sales, sku).await;
    }
    assert_eq!(
        store.outbox_depth().await.unwrap(),
        1,
        "the intent was committed"
    );
    procs.kill_9("gateway-1");
    assert_eq!(
        store.outbox_depth().await.unwrap(),
        1,
        "the intent survived the crash"
    );

    // A new gateway that reaches Temporal relays the intent: the product is restocked once.
    procs.gateway(
        "gateway-2",
        (grpc, http),
        GATEWAY_FLAGS,
        &env(&temporal.address),
    );
    let store_ref = &store;
    wait_for(
        "restocked after the crash",
        Duration::from_secs(90),
        || async move { restock_testkit::product_of(store_ref, sku).await.stock == 10 },
    )
    .await;
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    assert_eq!(store.stock_receipts(sku).await.unwrap().len(), 1);
    let orders = http_get(&format!("http://127.0.0.1:{factory}/simulator/orders"))
        .await
        .unwrap();
    let orders: serde_json::Value = serde_json::from_str(&orders).unwrap();
    assert_eq!(orders["total"].as_u64(), Some(1), "{orders}");
}
