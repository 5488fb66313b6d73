//! A worker killed with SIGKILL in each state of a replenishment — before the factory order
//! is placed, while the order request is in flight, and during the stock increment — and a
//! new worker started: every replenishment completes with one factory order and one stock
//! receipt. Processes, on SQLite, PostgreSQL and MariaDB (a lock held by the test stalls the
//! increment so the kill lands inside it). And an operator's completion that reaches the run in
//! one workflow task with the order's result, after a crash: refused, and replayable.

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

/// One test's system, run as processes: its database and store, its Temporal dev server and a
/// client of it, the environment each `restock` process gets, and the ports they listen on.
struct System {
    _db: TestDb,
    store: restock_inventory::Store,
    temporal: DevServer,
    client: temporalio_client::Client,
    _logs: tempfile::TempDir,
    procs: Procs,
    env: Vec<(&'static str, String)>,
    factory: u16,
    grpc: u16,
    http: u16,
}

impl System {
    /// The products (stock 1, reorder point 0, reorder quantity 10) and a Temporal server;
    /// no process yet. `None` when the backend's URL is not set (local runs).
    async fn new(backend: Backend, skus: &[&str]) -> Option<System> {
        let (db, store) = TestDb::with_store(backend).await?;
        for sku in skus {
            store
                .upsert_product(&restock_testkit::product(sku, 1, 0, 10))
                .await
                .unwrap();
        }
        let temporal = DevServer::start().await;
        let client = restock_workflows::client::connect(
            &restock_workflows::client::TemporalEndpoint::plain(
                &temporal.address,
                &temporal.namespace,
            ),
        )
        .await
        .unwrap();
        let logs = tempfile::tempdir().unwrap();
        let env = vec![
            ("RESTOCK_DATABASE_URL", db.url.clone()),
            ("TEMPORAL_ADDRESS", temporal.address.clone()),
            ("RESTOCK_CALLBACK_SECRET", TEST_CALLBACK_SECRET.to_owned()),
        ];
        let procs = Procs::new(restock(), logs.path());
        Some(System {
            _db: db,
            store,
            temporal,
            client,
            _logs: logs,
            procs,
            env,
            factory: free_port(),
            grpc: free_port(),
            http: free_port(),
        })
    }

    fn gateway(&mut self, flags: &[&str]) {
        self.procs
            .gateway("gateway", (self.grpc, self.http), flags, &self.env);
    }

    fn worker(&mut self, name: &str, flags: &[&str]) {
        self.procs
            .worker(name, (self.factory, self.http), flags, &self.env);
    }

    /// The factory simulator on its port, with `flags`.
    fn factory(&mut self, flags: &[&str]) {
        let addr = format!("--addr=127.0.0.1:{}", self.factory);
        let args: Vec<&str> = ["factory", addr.as_str()]
            .into_iter()
            .chain(flags.iter().copied())
            .collect();
        self.procs.spawn("factory", &args, &self.env);
    }
}

restock_testkit::on_three_databases! {
    worker_killed_in_each_state_loses_and_doubles_nothing => worker_killed_in_each_state;
}

async fn worker_killed_in_each_state(backend: Backend) {
    let Some(mut sys) = System::new(backend, &["KILL-A", "KILL-B", "KILL-C"]).await else {
        return;
    };
    let (store, client, factory) = (sys.store.clone(), sys.client.clone(), sys.factory);
    let worker_flags = ["--factory-timeout-secs=10"];
    let gateway_flags = [
        "--activity-timeout-secs=5",
        "--retry-max-interval-secs=1",
        "--relay-sweep-secs=1",
    ];
    sys.gateway(&gateway_flags);
    sys.worker("worker-1", &worker_flags);
    wait_healthy(sys.http, Duration::from_secs(30)).await;
    let mut sales = sales_client(sys.grpc).await;
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
    sys.procs.kill_9("worker-1");
    // The factory comes up, slow to answer (it takes the order, then replies 3 s later).
    sys.factory(&["--step-interval-ms=250", "--extra-latency-ms=3000"]);
    sys.worker("worker-2", &worker_flags);
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
    sys.procs.kill_9("worker-2");
    sys.worker("worker-3", &worker_flags);
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
    sys.procs.kill_9("worker-3");
    if let Some(lock) = lock {
        lock.rollback().await.unwrap();
    }
    sys.worker("worker-4", &worker_flags);
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

restock_testkit::on_three_databases! {
    a_completion_in_the_same_task_as_the_order_result_is_refused_and_replays => completion_with_the_order_result;
}

/// The worker dies while the factory order is in flight. The order's result (completed here
/// by hand, as the factory's late answer would be) and an operator's `factory-completed`
/// signal then reach the run in one workflow task, while that task waits out the dead
/// worker's sticky queue. sdk-core hands a task's signals to the workflow before its activity
/// results, so the run sees the completion while still OrderingFromFactory: it refuses it,
/// like any completion before the order is placed (no phantom stock), and counts it. The
/// history must replay on a fresh worker, and the next completion must add the units once.
/// On the three databases: the completion that finally comes adds stock.
async fn completion_with_the_order_result(backend: Backend) {
    let sku = "SAME-TASK";
    let Some(mut sys) = System::new(backend, &[sku]).await else {
        return;
    };
    let (store, client, factory) = (sys.store.clone(), sys.client.clone(), sys.factory);
    let worker_flags = ["--factory-timeout-secs=300"];
    sys.gateway(&["--activity-timeout-secs=300", "--relay-sweep-secs=1"]);
    // The factory takes the order, answers only minutes later, and never calls back.
    sys.factory(&["--extra-latency-ms=600000", "--drop-callbacks"]);
    sys.worker("worker-1", &worker_flags);
    wait_healthy(sys.http, Duration::from_secs(30)).await;
    let mut sales = sales_client(sys.grpc).await;
    sell_one(&mut sales, sku).await;
    wait_for(
        "order received by the factory",
        Duration::from_secs(60),
        || async { factory_total(factory).await == 1 },
    )
    .await;
    let order_id = restock_workflows::client::query_status(&client, sku)
        .await
        .unwrap()
        .unwrap()
        .factory_order_id;
    sys.procs.kill_9("worker-1");
    sys.worker("worker-2", &worker_flags);

    // The order's result, then the operator's signal, with no worker to take the task between.
    let workflow_id = restock_inventory::replenishment_id(sku);
    let described: serde_json::Value = serde_json::from_str(&sys.temporal.temporal_cli_ok(&[
        "workflow",
        "describe",
        "--workflow-id",
        &workflow_id,
        "-o",
        "json",
    ]))
    .unwrap();
    let activity_id = described["pendingActivities"][0]["activityId"]
        .as_str()
        .unwrap()
        .to_owned();
    let placed = serde_json::json!({
        "order_id": order_id, "factory_reference": "F-1", "confirmed": true, "attempts": 1
    })
    .to_string();
    sys.temporal.temporal_cli_ok(&[
        "activity",
        "complete",
        "--workflow-id",
        &workflow_id,
        "--activity-id",
        &activity_id,
        "--result",
        &placed,
    ]);
    sys.temporal.signal_by_cli(
        &workflow_id,
        "factory-completed",
        &serde_json::json!({ "factory_order_id": order_id }).to_string(),
    );
    let history = sys.temporal.temporal_cli_ok(&[
        "workflow",
        "show",
        "--workflow-id",
        &workflow_id,
        "-o",
        "json",
    ]);
    let types: Vec<String> = serde_json::from_str::<serde_json::Value>(&history).unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap_or_default().to_owned())
        .collect();
    let result_at = types
        .iter()
        .position(|t| t.contains("ACTIVITY_TASK_COMPLETED"))
        .unwrap();
    assert!(
        types[result_at..]
            .iter()
            .any(|t| t.contains("WORKFLOW_EXECUTION_SIGNALED"))
            && !types[result_at..]
                .iter()
                .any(|t| t.contains("WORKFLOW_TASK_COMPLETED")),
        "the signal must wait in the same task as the order's result: {types:?}"
    );

    let refused = |s: &restock_workflows::ReplenishStatus| {
        s.state == RestockState::AwaitingFactory && s.ignored_signals == 1
    };
    wait_for(
        "the run waiting, the early signal refused",
        Duration::from_secs(60),
        || async {
            restock_workflows::client::query_status(&client, sku)
                .await
                .ok()
                .flatten()
                .is_some_and(|s| refused(&s))
        },
    )
    .await;
    assert_eq!(restock_testkit::product_of(&store, sku).await.stock, 0);
    // A worker with nothing cached replays the whole history to answer.
    sys.procs.kill_9("worker-2");
    sys.worker("worker-3", &worker_flags);
    let replayed = restock_workflows::client::query_status(&client, sku)
        .await
        .unwrap()
        .unwrap();
    assert!(refused(&replayed), "{replayed:?}");

    // The operator completes it again, now that it waits: the units are added once.
    let outcome = restock_workflows::client::complete_and_confirm(
        &client,
        sku,
        restock_workflows::FactoryCompleted {
            quantity: None,
            factory_order_id: Some(order_id),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(
            outcome,
            restock_workflows::client::UpdateOutcome::Accepted(_)
        ),
        "{outcome:?}"
    );
    wait_for("completed", Duration::from_secs(60), || async {
        state(&client, sku).await == Some(RestockState::Completed)
    })
    .await;
    assert_eq!(restock_testkit::product_of(&store, sku).await.stock, 10);
    assert_eq!(store.stock_receipts(sku).await.unwrap().len(), 1);
    assert_eq!(factory_total(factory).await, 1);
    // For workflows/tests/replay.rs, when asked (see there).
    if let Ok(dir) = std::env::var("RESTOCK_SAVE_HISTORIES") {
        let json = client
            .get_workflow_handle::<restock_workflows::ReplenishStock>(workflow_id)
            .fetch_history(Default::default())
            .to_json()
            .await
            .unwrap();
        std::fs::write(
            format!("{dir}/v5-completion_with_the_order_result.json"),
            json,
        )
        .unwrap();
    }
}
