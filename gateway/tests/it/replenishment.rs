//! The replenish-stock workflow end to end, against a real Temporal dev server: the gateway,
//! a worker and the factory simulator, over SQLite.

use std::time::Duration;

use restock_factory::SimulatorConfig;
use restock_inventory::entity::notification::NotificationStatus;
use restock_inventory::entity::{factory_order, stock_receipt};
use restock_proto::v1::{
    CompleteFactoryOrderRequest, ListReplenishmentsRequest, Outcome, PurchaseRequest,
};
use restock_testkit::Backend;
use restock_testkit::stack::{Stack, StackOptions, spawn_stack};
use restock_workflows::RestockState;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

const WAIT: Duration = Duration::from_secs(60);

#[path = "replenishment/console.rs"]
mod console;
#[path = "replenishment/exactly_once.rs"]
mod exactly_once;
#[path = "replenishment/planner.rs"]
mod planner;

fn buy(sku: &str) -> PurchaseRequest {
    PurchaseRequest {
        sku: sku.to_owned(),
        quantity: 1,
        idempotency_key: String::new(),
        requester: "test".to_owned(),
    }
}

async fn stock(stack: &Stack, sku: &str) -> i64 {
    restock_testkit::product_of(&stack.app.store, sku)
        .await
        .stock
}

async fn add_product(stack: &Stack, sku: &str, stock: i64, reorder_point: i64) {
    stack
        .app
        .store
        .upsert_product(&restock_testkit::product(sku, stock, reorder_point, 10))
        .await
        .unwrap();
}

/// A new product with `stock` units (reorder point 0), and one unit bought: with 0 the sale
/// is turned away, with 1 it sells out; either way a replenishment starts.
async fn sell_out(stack: &Stack, sku: &str, stock: i64) {
    add_product(stack, sku, stock, 0).await;
    stack.app.sales().await.purchase(buy(sku)).await.unwrap();
}

/// Changes the product's stock by `delta` outside a sale (as an operator's adjustment does).
async fn adjust(stack: &Stack, sku: &str, delta: i64, reason: &str) {
    stack
        .app
        .store
        .adjust_stock(&restock_inventory::AdjustStock {
            sku: restock_testkit::sku(sku),
            delta,
            reason: reason.into(),
            actor: "test".into(),
        })
        .await
        .unwrap();
}

async fn receipts(stack: &Stack, sku: &str) -> u64 {
    stock_receipt::Entity::find()
        .filter(stock_receipt::Column::Sku.eq(sku))
        .count(stack.app.store.connection())
        .await
        .unwrap()
}

/// Whether the product's ad runs, in the store.
async fn ad_active(stack: &Stack, sku: &str) -> bool {
    stack
        .app
        .store
        .product(&restock_testkit::sku(sku))
        .await
        .unwrap()
        .ad_active
}

/// Whether the product's ad runs, as the gateway's GetProduct shows it.
async fn ad_shown(stack: &Stack, sku: &str) -> bool {
    stack
        .app
        .inventory()
        .await
        .get_product(restock_proto::v1::GetProductRequest { sku: sku.into() })
        .await
        .unwrap()
        .into_inner()
        .ad_active
}

/// Waits for the product's run to complete with `units` received, and checks they are all
/// in stock (the product had none left): the status it ended with.
async fn completed_with(
    stack: &Stack,
    sku: &str,
    units: u32,
) -> restock_workflows::ReplenishStatus {
    let done = stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    assert_eq!(done.received_quantity, Some(units), "{done:#?}");
    assert_eq!(stock(stack, sku).await, i64::from(units));
    done
}

fn states(status: &restock_workflows::ReplenishStatus) -> Vec<RestockState> {
    status.history.iter().map(|t| t.state).collect()
}

/// Writes one run's history (SDK `fetch_history` JSON; `run_id` `None`: the latest run) to
/// `$RESTOCK_SAVE_HISTORIES/<file>` for the replay test; nothing when that is unset.
async fn maybe_save_run_history(
    stack: &Stack,
    workflow_id: String,
    run_id: Option<String>,
    file: &str,
) {
    use temporalio_client::{UntypedWorkflow, WorkflowExecutionInfo, WorkflowHandle};
    let Ok(dir) = std::env::var("RESTOCK_SAVE_HISTORIES") else {
        return;
    };
    let info = WorkflowExecutionInfo::builder()
        .namespace(stack.temporal.namespace.clone())
        .workflow_id(workflow_id)
        .maybe_run_id(run_id)
        .build();
    let json = WorkflowHandle::<_, UntypedWorkflow>::new(stack.temporal_client.clone(), info)
        .fetch_history(Default::default())
        .to_json()
        .await
        .unwrap();
    std::fs::write(format!("{dir}/{file}"), json).unwrap();
}

/// Saves the product's latest run's history for the replay test, when asked, as
/// `v4-<name>.json`: runs since the cancel-ends-canceled patch (the older ones stay as they
/// were).
async fn maybe_save_history(stack: &Stack, sku: &str, name: &str) {
    let workflow_id = restock_workflows::client::workflow_id(sku);
    maybe_save_run_history(stack, workflow_id, None, &format!("v4-{name}.json")).await;
}

/// Like [`maybe_save_history`], for the first run of the product's chain (one that continued
/// as new), as `v5-<name>.json`: runs since the requests-after-cancel patch.
async fn maybe_save_first_run_history(stack: &Stack, sku: &str, name: &str) {
    if std::env::var_os("RESTOCK_SAVE_HISTORIES").is_none() {
        return;
    }
    let workflow_id = restock_workflows::client::workflow_id(sku);
    let latest = stack
        .temporal_client
        .get_workflow_handle::<restock_workflows::ReplenishStock>(workflow_id.clone())
        .describe(Default::default())
        .await
        .unwrap();
    let first_run = latest
        .raw_description
        .workflow_execution_info
        .unwrap()
        .first_run_id;
    let file = format!("v5-{name}.json");
    maybe_save_run_history(stack, workflow_id, Some(first_run), &file).await;
}

restock_testkit::on_three_databases! {
    sell_out_order_callback_restock => sell_out_order_callback_restock_on;
}

async fn sell_out_order_callback_restock_on(backend: Backend) {
    let Some(stack) = spawn_stack(StackOptions::on(backend)).await else {
        return;
    };
    let sku = restock_inventory::demo::DEMO_SKU; // stock 3, reorder quantity 10
    let mut sales = stack.app.sales().await;
    for left in [2, 1, 0] {
        // The sale that sells out carries a request id the replenishment must carry too.
        let mut request = tonic::Request::new(buy(sku));
        request
            .metadata_mut()
            .insert("x-request-id", format!("sale-{left}").parse().unwrap());
        let r = sales.purchase(request).await.unwrap().into_inner();
        assert_eq!(r.outcome(), Outcome::Sold);
        assert_eq!(r.remaining_stock, left);
    }
    let r = sales.purchase(buy(sku)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::OutOfStock);
    assert_eq!(r.replenishment_id, format!("replenish-{sku}"));

    let done = stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    assert_eq!(
        done.request_id.as_deref(),
        Some("sale-0"),
        "the run names the call that sold out"
    );
    assert_eq!(
        states(&done),
        [
            RestockState::CheckingStock,
            RestockState::OrderingFromFactory,
            RestockState::AwaitingFactory,
            RestockState::Restocking,
            RestockState::Completed
        ]
    );
    assert_eq!(done.ordered_quantity, 10);
    assert_eq!(done.received_quantity, Some(10));
    assert!(done.factory_confirmed);
    let factory = stack.factory_stats();
    assert_eq!(factory.total, 1, "one factory order: {factory:?}");
    assert_eq!(factory.orders_for(&done.factory_order_id), 1);
    assert_eq!(stock(&stack, sku).await, 10);
    assert_eq!(receipts(&stack, sku).await, 1);

    // The read model and the gRPC API agree.
    let mut api = stack.replenishments().await;
    let listed = api
        .list_replenishments(ListReplenishmentsRequest {
            state: "Completed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.replenishments.len(), 1);
    assert_eq!(listed.replenishments[0].sku, sku);
    assert_eq!(listed.replenishments[0].quantity, 10);

    let r = sales.purchase(buy(sku)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Sold);
    assert_eq!(r.remaining_stock, 9);
    stack.wait_closed(sku).await;

    // The gateway's metrics moved with what this test did. (An intent left by the
    // out-of-stock sale rests up to 10 s in the relay, then is dropped as moot.)
    let store = stack.app.store.clone();
    stack
        .wait_until("outbox drained", WAIT, || {
            let store = store.clone();
            async move { store.outbox_depth().await.unwrap() == 0 }
        })
        .await;
    let metrics = stack.app.metrics().await;
    for line in [
        "restock_sales_total{outcome=\"sold\"} 4",
        "restock_sales_total{outcome=\"out_of_stock\"} 1",
        "restock_factory_callbacks_total{result=\"accepted\"} 1",
        "restock_replenishments{state=\"Completed\"} 1",
        "restock_purchase_seconds_count 5",
        "restock_outbox_depth 0",
        "restock_outbox_oldest_age_seconds 0",
        // Totals since start are counters (rate() works on them), not gauges.
        "# TYPE restock_grouped_sales counter",
        "# TYPE restock_abandoned_purchases counter",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // One or two hand-overs (the sale to 0 and the out-of-stock sale may each leave an
    // intent, both for the same run); never none.
    assert!(metrics.contains("restock_relay_handed_over_total "));
    assert!(
        !metrics.contains("restock_relay_handed_over_total 0"),
        "{metrics}"
    );
    if backend == Backend::Sqlite {
        maybe_save_history(&stack, sku, "completed_by_callback").await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_out_of_stock_purchases_make_one_order() {
    let stack = spawn_stack(StackOptions::default()).await.unwrap();
    let sku = "RUSH-1";
    add_product(&stack, sku, 0, 0).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut sales = stack.app.sales().await;
        tasks.push(tokio::spawn(async move {
            sales.purchase(buy(sku)).await.unwrap().into_inner()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().outcome(), Outcome::OutOfStock);
    }
    stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    // Let the relay finish any late intents before counting.
    stack
        .wait_until("outbox drained", WAIT, || async {
            stack.app.store.outbox_depth().await.unwrap() == 0
        })
        .await;
    assert_eq!(stack.factory_stats().total, 1);
    let runs = stack.temporal.temporal_cli_ok(&[
        "workflow",
        "count",
        "--query",
        // A request after the run's stock read may add a run that only checks (NotNeeded).
        &format!("WorkflowId = 'replenish-{sku}' AND RestockState != 'NotNeeded'"),
    ]);
    assert!(runs.contains("Total: 1"), "runs: {runs}");
    assert_eq!(stock(&stack, sku).await, 10);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporal_cli_signal_completes_a_waiting_replenishment() {
    let stack = spawn_stack(StackOptions::without_callbacks())
        .await
        .unwrap();
    let sku = "CP-502102"; // stock 5, reorder quantity 20
    adjust(&stack, sku, -5, "test").await;
    let waiting = stack
        .wait_for_state(sku, WAIT, RestockState::AwaitingFactory)
        .await;
    let workflow_id = format!("replenish-{sku}");
    // A completion that does not name the order is refused (it could belong to any run).
    stack
        .temporal
        .signal_by_cli(&workflow_id, "factory-completed", "{}");
    let ignored = stack
        .wait_for_status(sku, WAIT, |s| s.ignored_signals == 1)
        .await;
    assert_eq!(ignored.state, RestockState::AwaitingFactory);
    assert_eq!(stock(&stack, sku).await, 0);
    let input = format!(r#"{{"factory_order_id":"{}"}}"#, waiting.factory_order_id);
    stack
        .temporal
        .signal_by_cli(&workflow_id, "factory-completed", &input);
    completed_with(&stack, sku, 20).await;
    stack.wait_closed(sku).await;
    maybe_save_history(&stack, sku, "completed_by_cli_signal").await;

    // A second signal changes nothing (the workflow has ended).
    let again = stack.temporal.temporal_cli(&[
        "workflow",
        "signal",
        "--workflow-id",
        &workflow_id,
        "--name",
        "factory-completed",
        "--input",
        &input,
    ]);
    let _ = again; // refused by the server: the workflow is closed
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stock(&stack, sku).await, 20);
    assert_eq!(receipts(&stack, sku).await, 1);
    stack.stop().await;
}

restock_testkit::on_three_databases! {
    duplicated_callback_adds_once_and_forged_token_is_refused => duplicated_callback_adds_once;
}

async fn duplicated_callback_adds_once(backend: Backend) {
    let options = StackOptions {
        backend,
        factory: SimulatorConfig {
            duplicate_callbacks: true,
            ..StackOptions::default().factory
        },
        ..StackOptions::default()
    };
    let Some(stack) = spawn_stack(options).await else {
        return;
    };
    let sku = "DUP-1";
    sell_out(&stack, sku, 0).await;
    let done = stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    stack
        .wait_until("both callbacks sent", WAIT, || async {
            stack.factory_stats().callbacks_sent >= 2
        })
        .await;
    assert_eq!(stock(&stack, sku).await, 10, "stock added once");
    assert_eq!(receipts(&stack, sku).await, 1);

    // A forged token: 401 and nothing changes.
    let body = serde_json_body(sku, &done.factory_order_id, "10");
    let http = reqwest_client();
    let forged = format!(
        "http://{}/factory/callbacks/{sku}/{}?token={}",
        stack.app.http_addr,
        done.factory_order_id,
        "ab".repeat(32)
    );
    let response = http.post(&forged).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let no_token = format!(
        "http://{}/factory/callbacks/{sku}/{}",
        stack.app.http_addr, done.factory_order_id
    );
    let response = http.post(&no_token).body(body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // A valid token with a malformed body or count: 400.
    let signer =
        restock_factory::callback::CallbackSigner::new(restock_testkit::TEST_CALLBACK_SECRET)
            .unwrap();
    let signed = signer.url(
        &format!("http://{}", stack.app.http_addr),
        sku,
        &done.factory_order_id,
    );
    for bad in [
        serde_json_body(sku, &done.factory_order_id, "abc"),
        serde_json_body(sku, &done.factory_order_id, "-1"),
        serde_json_body(sku, "another-order", "10"),
        "not json".to_owned(),
        r#"{"MessageGroupId": 1}"#.to_owned(),
    ] {
        let response = http.post(&signed).body(bad.clone()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
    }
    // The genuine callback repeated once more: 200, nothing changes.
    let response = http
        .post(&signed)
        .body(serde_json_body(sku, &done.factory_order_id, "10"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(stock(&stack, sku).await, 10);
    assert_eq!(receipts(&stack, sku).await, 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn factory_5xx_first_then_exactly_one_order() {
    let options = StackOptions {
        factory: SimulatorConfig {
            fail_first: 2,
            ..StackOptions::default().factory
        },
        ..StackOptions::default()
    };
    let stack = spawn_stack(options).await.unwrap();
    let sku = "FLAKY-1";
    sell_out(&stack, sku, 0).await;
    let done = stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    let stats = stack.factory_stats();
    assert_eq!(stats.injected_failures, 2);
    assert_eq!(stats.total, 1);
    assert_eq!(stats.orders_for(&done.factory_order_id), 1);
    assert_eq!(done.order_attempts, 3);
    let order = factory_order::Entity::find_by_id(done.factory_order_id.clone())
        .one(stack.app.store.connection())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order.status, factory_order::OrderStatus::Accepted);
    assert_eq!(order.attempts, 3);
    assert_eq!(stock(&stack, sku).await, 10);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_callback_goes_overdue_then_operator_completes() {
    let options = StackOptions {
        workflow: restock_workflows::ReplenishSettings {
            factory_sla_secs: 3,
            ..StackOptions::default().workflow
        },
        ..StackOptions::without_callbacks()
    };
    let stack = spawn_stack(options).await.unwrap();
    let sku = "LOST-1";
    sell_out(&stack, sku, 0).await;
    let overdue = stack.wait_for_state(sku, WAIT, RestockState::Overdue).await;
    assert!(overdue.overdue);
    let awaiting_at = overdue
        .history
        .iter()
        .find(|t| t.state == RestockState::AwaitingFactory)
        .unwrap()
        .at;
    let overdue_at = overdue.history.last().unwrap().at;
    assert!(overdue_at - awaiting_at >= 3000, "Overdue before the SLA");
    // The search attribute says so too (visibility is eventually consistent).
    stack
        .wait_until("search attribute RestockState=Overdue", WAIT, || async {
            stack
                .temporal
                .temporal_cli_ok(&["workflow", "count", "--query", "RestockState = 'Overdue'"])
                .contains("Total: 1")
        })
        .await;

    // The factory's manager hears of it, once (no SMTP here: the mail goes to the log and
    // is recorded as logged), sent by the worker outside the run.
    let store = stack.app.store.clone();
    stack
        .wait_until("the overdue email", WAIT, || {
            let store = store.clone();
            async move {
                store
                    .notifications(sku)
                    .await
                    .unwrap()
                    .iter()
                    .any(|n| n.kind == "overdue" && n.status == NotificationStatus::Logged)
            }
        })
        .await;

    let mut api = stack.replenishments().await;
    let r = api
        .complete_factory_order(CompleteFactoryOrderRequest {
            sku: sku.into(),
            quantity: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.sku, sku);
    let done = stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    assert!(states(&done).contains(&RestockState::Overdue));
    let overdue_mails: Vec<_> = stack
        .app
        .store
        .notifications(sku)
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.kind == "overdue")
        .collect();
    assert_eq!(overdue_mails.len(), 1, "{overdue_mails:?}");
    assert_eq!(overdue_mails[0].recipient, "factory-manager@example.com");
    assert_eq!(
        overdue_mails[0].key,
        format!("{}:overdue", done.factory_order_id)
    );
    assert_eq!(stock(&stack, sku).await, 10);
    stack.wait_closed(sku).await;
    maybe_save_history(&stack, sku, "overdue_then_operator").await;

    // Completing again: nothing is running any more.
    let err = api
        .complete_factory_order(CompleteFactoryOrderRequest {
            sku: sku.into(),
            quantity: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reorder_point_starts_replenishment_while_sales_go_on() {
    let stack = spawn_stack(StackOptions::factory_step(Duration::from_millis(500)))
        .await
        .unwrap();
    let sku = "RP-1";
    add_product(&stack, sku, 5, 2).await;
    let mut sales = stack.app.sales().await;
    let mut replenishment_requested = false;
    for left in [4, 3, 2] {
        let r = sales.purchase(buy(sku)).await.unwrap().into_inner();
        assert_eq!(r.outcome(), Outcome::Sold);
        assert_eq!(r.remaining_stock, left);
        replenishment_requested |= !r.replenishment_id.is_empty();
    }
    assert!(
        replenishment_requested,
        "selling down to 2 requested a replenishment"
    );
    stack
        .wait_for_state(sku, WAIT, RestockState::AwaitingFactory)
        .await;
    // Sales go on while the factory works.
    let r = sales.purchase(buy(sku)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Sold);
    assert_eq!(r.remaining_stock, 1);
    let done = stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    assert_eq!(done.stock_after, Some(11));
    assert_eq!(stock(&stack, sku).await, 11);
    assert_eq!(stack.factory_stats().total, 1);
    stack.stop().await;
}

/// A product that sells out again right after its replenishment completed gets its next run
/// at once: the relay's rest after a hand-over ends with the run, not with the interval (here
/// two minutes, longer than the test waits, so waiting it out would fail the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn next_run_starts_when_the_last_one_ended_not_after_the_relay_rest() {
    let stack = spawn_stack(StackOptions {
        relay_sweep: Duration::from_secs(120),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let sku = "AGAIN-1";
    add_product(&stack, sku, 0, 0).await;
    let mut sales = stack.app.sales().await;
    let r = sales.purchase(buy(sku)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::OutOfStock);
    stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    stack.wait_closed(sku).await;
    assert_eq!(stack.factory_stats().total, 1);
    assert_eq!(stock(&stack, sku).await, 10);

    // Sell it out again: the sale to the reorder point (0) requests the next run.
    for _ in 0..10 {
        let r = sales.purchase(buy(sku)).await.unwrap().into_inner();
        assert_eq!(r.outcome(), Outcome::Sold);
    }
    stack
        .wait_until("a second factory order", WAIT, || async {
            stack.factory_stats().total == 2
        })
        .await;
    stack
        .wait_until("the second delivery in stock", WAIT, || async {
            stock(&stack, sku).await == 10
        })
        .await;
    assert_eq!(receipts(&stack, sku).await, 2);
    stack.stop().await;
}

fn reqwest_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn serde_json_body(sku: &str, order_id: &str, count: &str) -> String {
    format!(
        r#"{{"MessageGroupId":"{order_id}","MessageAttributeProductId":"{sku}","MessageAttributeProductCnt":"{count}","MessageAttributeFactoryId":"FF-500293","MessageAttributeRequester":"x","CallbackUrl":"http://127.0.0.1:1/cb"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sell_out_pauses_the_ad_and_restock_resumes_it_one_mail_each() {
    // The first delivery attempt is refused (451): the activity retries, still one mail.
    let smtp = restock_testkit::smtp::SmtpServer::start(1).await;
    let stack = spawn_stack(StackOptions {
        smtp_url: Some(smtp.url()),
        ..StackOptions::factory_step(Duration::from_millis(500))
    })
    .await
    .unwrap();
    let sku = "AD-1";
    add_product(&stack, sku, 1, 0).await;
    assert!(ad_shown(&stack, sku).await);

    let mut sales = stack.app.sales().await;
    assert_eq!(
        sales
            .purchase(buy(sku))
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        Outcome::Sold
    );
    // The ad is paused right after the order (a mail never holds up the order).
    let waiting = stack
        .wait_for_status(sku, WAIT, |s| {
            s.state == RestockState::AwaitingFactory && s.ad_paused
        })
        .await;
    assert!(waiting.ad_paused);
    assert!(!ad_shown(&stack, sku).await, "the ad runs while sold out");

    stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    assert!(ad_shown(&stack, sku).await, "the ad did not resume");

    let mail = smtp.mail();
    assert_eq!(smtp.refused(), 1);
    assert_eq!(mail.len(), 2, "{mail:#?}");
    let subjects: Vec<String> = mail.iter().map(|m| m.header("Subject").unwrap()).collect();
    assert!(
        subjects[0].contains("Ad paused") && subjects[0].contains(sku),
        "{subjects:?}"
    );
    assert!(
        subjects[1].contains("Ad resumed") && subjects[1].contains(sku),
        "{subjects:?}"
    );
    for m in &mail {
        assert_eq!(m.to, ["factory-manager@example.com"]);
        assert!(m.data.contains(&format!("replenish-{sku}")), "{}", m.data);
    }
    let notes = stack.app.store.notifications(sku).await.unwrap();
    assert_eq!(notes.len(), 2);
    assert!(notes.iter().all(|n| n.status == NotificationStatus::Sent));
    assert_eq!(notes[0].kind, "ad_paused");
    assert_eq!(notes[0].attempts, 2, "the refused attempt and the retry");
    stack.stop().await;
}
