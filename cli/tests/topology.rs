//! Beyond one machine, as processes: two gateways and two workers on PostgreSQL and one
//! Temporal server. Concurrent sales spread over both gateways never oversell; every product
//! that sells out gets exactly one workflow and one factory order; a worker killed with
//! SIGKILL mid-flight leaves its work to the other, which finishes it. The processes find
//! Temporal (on a port of its own, not 7233) only through a `temporal.toml` profile, as the
//! `temporal` CLI would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use restock_proto::v1::{
    ListReplenishmentsRequest, Outcome, PurchaseRequest,
    replenishment_service_client::ReplenishmentServiceClient,
    sales_service_client::SalesServiceClient,
};
use restock_testkit::process::{Procs, free_port, http_get, wait_for};
use restock_testkit::temporal::DevServer;
use restock_testkit::{Backend, TEST_CALLBACK_SECRET, TestDb};

const PRODUCTS: usize = 12;
const STOCK: i64 = 10;

fn restock() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_restock"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_two_workers_one_temporal() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let store = db.store().await;
    for i in 0..PRODUCTS {
        store
            .upsert_product(&restock_testkit::product(
                &format!("TOPO-{i}"),
                STOCK,
                0,
                STOCK,
            ))
            .await
            .unwrap();
    }
    let temporal = DevServer::start().await;
    let logs = tempfile::tempdir().unwrap();
    let factory = free_port();
    let gateways = [(free_port(), free_port()), (free_port(), free_port())];
    let worker_metrics = [free_port(), free_port()];
    let config = logs.path().join("temporal.toml");
    std::fs::write(
        &config,
        format!(
            "[profile.default]\naddress = \"127.0.0.1:1\"\n\n[profile.shop]\naddress = \"{}\"\nnamespace = \"default\"\n",
            temporal.address
        ),
    )
    .unwrap();
    assert!(!temporal.address.ends_with(":7233"));
    let common = vec![
        ("RESTOCK_DATABASE_URL", db.url.clone()),
        ("TEMPORAL_CONFIG_FILE", config.display().to_string()),
        ("TEMPORAL_PROFILE", "shop".to_owned()),
        ("RESTOCK_CALLBACK_SECRET", TEST_CALLBACK_SECRET.to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut procs = Procs::default();
    procs.spawn(
        restock(),
        "factory",
        &[
            "factory",
            "--addr",
            &format!("127.0.0.1:{factory}"),
            "--step-interval-ms",
            "750",
        ],
        &common,
        logs.path(),
    );
    for (i, (grpc, http)) in gateways.iter().enumerate() {
        procs.spawn(
            restock(),
            &format!("gateway-{i}"),
            &[
                "gateway",
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
                "--http-addr",
                &format!("127.0.0.1:{http}"),
                "--activity-timeout-secs",
                "5",
                "--retry-max-interval-secs",
                "2",
                "--relay-sweep-secs",
                "1",
            ],
            &common,
            logs.path(),
        );
    }
    for (i, metrics) in worker_metrics.iter().enumerate() {
        // Callbacks go to the first gateway (either would do: both verify the same secret).
        procs.spawn(
            restock(),
            &format!("worker-{i}"),
            &[
                "worker",
                "--factory-url",
                &format!("http://127.0.0.1:{factory}"),
                "--http-addr",
                &format!("127.0.0.1:{}", gateways[0].1),
                "--metrics-addr",
                &format!("127.0.0.1:{metrics}"),
                "--shutdown-grace-secs",
                "1",
            ],
            &common,
            logs.path(),
        );
    }
    for (_, http) in gateways {
        wait_for("gateway healthy", Duration::from_secs(60), || async move {
            http_get(&format!("http://127.0.0.1:{http}/healthz"))
                .await
                .is_some()
        })
        .await;
    }

    // 32 clients, alternating gateways, buy every product until it is out of stock.
    let mut tasks = Vec::new();
    for c in 0..32usize {
        let (grpc, _) = gateways[c % 2];
        tasks.push(tokio::spawn(async move {
            let mut sales = SalesServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                .await
                .unwrap();
            let mut sold = vec![0i64; PRODUCTS];
            let mut open: Vec<usize> = (0..PRODUCTS).collect();
            let mut turn = c;
            while !open.is_empty() {
                turn = (turn + 1) % open.len();
                let product = open[turn];
                let reply = sales
                    .purchase(PurchaseRequest {
                        sku: format!("TOPO-{product}"),
                        quantity: 1,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                match reply.outcome() {
                    Outcome::Sold => sold[product] += 1,
                    _ => {
                        open.retain(|p| *p != product);
                    }
                }
            }
            sold
        }));
    }
    let mut sold = vec![0i64; PRODUCTS];
    for t in tasks {
        for (total, n) in sold.iter_mut().zip(t.await.unwrap()) {
            *total += n;
        }
    }
    assert_eq!(sold, vec![STOCK; PRODUCTS], "units sold per product");

    // Once the factory has every order, kill one worker (SIGKILL) while the workflows wait.
    let orders_url = format!("http://127.0.0.1:{factory}/simulator/orders");
    wait_for(
        "all factory orders placed",
        Duration::from_secs(90),
        || async {
            http_get(&orders_url)
                .await
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["total"].as_u64() == Some(PRODUCTS as u64))
        },
    )
    .await;
    procs.kill_9("worker-0");

    // The other worker finishes everything.
    let mut api =
        ReplenishmentServiceClient::connect(format!("http://127.0.0.1:{}", gateways[1].0))
            .await
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let completed = api
            .list_replenishments(ListReplenishmentsRequest {
                page_size: 500,
                state: "Completed".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .replenishments
            .len();
        if completed == PRODUCTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{completed} of {PRODUCTS} replenishments completed; logs in {}",
            logs.path().display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let orders: serde_json::Value =
        serde_json::from_str(&http_get(&orders_url).await.unwrap()).unwrap();
    assert_eq!(orders["total"].as_u64(), Some(PRODUCTS as u64), "{orders}");
    for count in orders["orders_by_group"].as_object().unwrap().values() {
        assert_eq!(count.as_u64(), Some(1), "an order placed twice: {orders}");
    }
    for i in 0..PRODUCTS {
        let sku = format!("TOPO-{i}");
        assert_eq!(
            store.product(&sku).await.unwrap().product.stock,
            STOCK,
            "{sku}"
        );
        assert_eq!(store.stock_receipts(&sku).await.unwrap().len(), 1, "{sku}");
        let runs = temporal.temporal_cli_ok(&[
            "workflow",
            "count",
            "--query",
            // A request that reached the run after its stock read adds one more run, which
            // reads the stock again and ends NotNeeded: one run that replenished.
            &format!("WorkflowId = 'replenish-{sku}' AND RestockState != 'NotNeeded'"),
        ]);
        assert!(runs.contains("Total: 1"), "{sku}: {runs}");
    }
    // The surviving worker exports the Temporal SDK's metrics.
    let metrics = http_get(&format!("http://127.0.0.1:{}/metrics", worker_metrics[1]))
        .await
        .unwrap();
    assert!(metrics.contains("temporal_"), "{metrics}");
}
