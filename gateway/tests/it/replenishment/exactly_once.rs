//! The replenishment's exactly-once promises under what operators and the network really do:
//! Temporal's own Cancel and Reset, completions that name no order or the wrong one, requests
//! at the very end of a run, callbacks with a forged count or during a Temporal outage, mail
//! that never goes out, an order the factory can never take, a run that stays open for long.

use std::time::Duration;

use restock_factory::SimulatorConfig;
use restock_factory::callback::CallbackSigner;
use restock_inventory::entity::{factory_delivery, product};
use restock_proto::v1::replenishment_service_client::ReplenishmentServiceClient;
use restock_proto::v1::{
    CancelReplenishmentRequest, CompleteFactoryOrderRequest, GetReplenishmentRequest,
};
use restock_testkit::smtp::SmtpServer;
use restock_testkit::stack::{Stack, StackOptions, spawn_stack};
use restock_testkit::{Backend, TEST_CALLBACK_SECRET};
use restock_workflows::{ReplenishRequested, ReplenishSettings, ReplenishStock, RestockState};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowSignalOptions};

use super::{
    WAIT, ad_active, add_product, adjust, buy, completed_with, maybe_save_first_run_history,
    maybe_save_history, receipts, reqwest_client, sell_out, serde_json_body, stock,
};

fn callback_url(stack: &Stack, sku: &str, order_id: &str) -> String {
    CallbackSigner::new(TEST_CALLBACK_SECRET).unwrap().url(
        &format!("http://{}", stack.app.http_addr),
        sku,
        order_id,
    )
}

async fn post_callback(stack: &Stack, sku: &str, order_id: &str, count: &str) -> u16 {
    reqwest_client()
        .post(callback_url(stack, sku, order_id))
        .body(serde_json_body(sku, order_id, count))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A stack whose SMTP server refuses every mail: each ad activity tries three times, then
/// gives the mail up.
async fn stack_with_mail_down() -> (SmtpServer, Stack) {
    let smtp = SmtpServer::start(u32::MAX).await;
    let stack = spawn_stack(StackOptions {
        smtp_url: Some(smtp.url()),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    (smtp, stack)
}

/// What the outbox relay sends for a sale: a `replenish-requested` signal.
async fn request_replenishment(stack: &Stack, sku: &str) {
    stack
        .temporal_client
        .get_workflow_handle::<ReplenishStock>(format!("replenish-{sku}"))
        .signal(
            ReplenishStock::replenish_requested,
            ReplenishRequested {
                reason: "out_of_stock".into(),
            },
            WorkflowSignalOptions::default(),
        )
        .await
        .unwrap();
}

/// Sells out a new product (stock 1, reorder point 0) and waits until its run waits for the
/// factory.
async fn sold_out_and_waiting(stack: &Stack, sku: &str) -> restock_workflows::ReplenishStatus {
    add_product(stack, sku, 1, 0).await;
    stack.app.sales().await.purchase(buy(sku)).await.unwrap();
    stack
        .wait_for_state(sku, WAIT, RestockState::AwaitingFactory)
        .await
}

/// A stack whose factory never calls back, with `sku` sold out and its run waiting.
async fn waiting_run(sku: &str) -> (Stack, restock_workflows::ReplenishStatus) {
    let stack = spawn_stack(StackOptions::without_callbacks())
        .await
        .unwrap();
    let waiting = sold_out_and_waiting(&stack, sku).await;
    (stack, waiting)
}

async fn run_status(stack: &Stack, sku: &str) -> WorkflowExecutionStatus {
    let handle = stack
        .temporal_client
        .get_workflow_handle::<ReplenishStock>(restock_workflows::client::workflow_id(sku));
    handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap()
        .status()
}

/// The product's newest replenishment in the read model.
async fn latest_replenishment(stack: &Stack, sku: &str) -> restock_inventory::ReplenishmentRecord {
    stack
        .app
        .store
        .latest_replenishment(&restock_testkit::sku(sku))
        .await
        .unwrap()
        .unwrap()
}

async fn read_model_state(stack: &Stack, sku: &str) -> RestockState {
    latest_replenishment(stack, sku).await.state
}

/// Waits until Temporal reports the product's current run as `status`.
async fn wait_for_run_status(stack: &Stack, sku: &str, status: WorkflowExecutionStatus) {
    stack
        .wait_until(&format!("the run is {status:?}"), WAIT, || async {
            run_status(stack, sku).await == status
        })
        .await;
}

/// Temporal's Terminate (the UI's button) on the product's run, and waits until it took.
async fn terminate(stack: &Stack, sku: &str) {
    stack.temporal.temporal_cli_ok(&[
        "workflow",
        "terminate",
        "--workflow-id",
        &restock_workflows::client::workflow_id(sku),
        "--reason",
        "operator pressed Terminate",
    ]);
    wait_for_run_status(stack, sku, WorkflowExecutionStatus::Terminated).await;
}

/// Waits until the run ends Canceled in Temporal, and checks the read model says Cancelled.
async fn wait_until_cancelled(stack: &Stack, sku: &str) {
    wait_for_run_status(stack, sku, WorkflowExecutionStatus::Canceled).await;
    assert_eq!(read_model_state(stack, sku).await, RestockState::Cancelled);
}

/// The factory's callback for `order_id` with 10 units, answered 200; then waits for the
/// units in stock.
async fn deliver_ten(stack: &Stack, sku: &str, order_id: &str) {
    assert_eq!(post_callback(stack, sku, order_id, "10").await, 200);
    stack
        .wait_until("the delivery is in stock", WAIT, || async {
            stock(stack, sku).await == 10
        })
        .await;
}

/// The factory delivers `order_id` and calls back twice: 10 units in stock, one receipt.
async fn delivered_once_though_called_back_twice(stack: &Stack, sku: &str, order_id: &str) {
    deliver_ten(stack, sku, order_id).await;
    assert_eq!(post_callback(stack, sku, order_id, "10").await, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stock(stack, sku).await, 10);
    assert_eq!(receipts(stack, sku).await, 1);
}

/// An operator's CompleteFactoryOrder through the gateway that must be refused: its status.
async fn refused_completion(stack: &Stack, sku: &str, factory_order_id: &str) -> tonic::Status {
    stack
        .replenishments()
        .await
        .complete_factory_order(CompleteFactoryOrderRequest {
            sku: sku.into(),
            factory_order_id: factory_order_id.into(),
            ..Default::default()
        })
        .await
        .expect_err("the completion was accepted")
}

/// An operator's CompleteFactoryOrder of the order the product's run waits for, if it waits:
/// whether it was accepted (refusals are fine while runs move on).
async fn complete_if_waiting(
    stack: &Stack,
    api: &mut ReplenishmentServiceClient<tonic::transport::Channel>,
    sku: &str,
) -> Option<bool> {
    let status = stack.status(sku).await?;
    if !status.state.accepts_completion() {
        return None;
    }
    let done = api
        .complete_factory_order(CompleteFactoryOrderRequest {
            sku: sku.into(),
            factory_order_id: status.factory_order_id,
            quantity: 0,
        })
        .await;
    Some(done.is_ok())
}

/// The `complete` update's input naming `order_id` and `quantity`.
fn completion_json(order_id: &str, quantity: u32) -> String {
    serde_json::json!({ "factory_order_id": order_id, "quantity": quantity }).to_string()
}

/// `temporal workflow update execute` of the run's `complete` update with `input` (JSON).
fn complete_update_args<'a>(workflow_id: &'a str, input: &'a str) -> [&'a str; 9] {
    [
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        workflow_id,
        "--name",
        "complete",
        "--input",
        input,
    ]
}

/// Every base64 `data` string in `event`, decoded as text.
fn marker_payloads(event: &serde_json::Value) -> Vec<String> {
    use base64::Engine;
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k == "data"
                        && let Some(text) = v.as_str()
                        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text)
                    {
                        out.push(String::from_utf8_lossy(&bytes).into_owned());
                    }
                    walk(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(event, &mut out);
    out
}

/// The event id of the workflow task that scheduled the first `activity` of the current run,
/// for `temporal workflow reset --event-id`.
fn task_before(stack: &Stack, workflow_id: &str, activity: &str) -> String {
    let json = stack.temporal.temporal_cli_ok(&[
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        "--output",
        "json",
    ]);
    let history: serde_json::Value = serde_json::from_str(&json).unwrap();
    let events = history["events"].as_array().unwrap();
    // A regular activity is scheduled by name; a local one is a marker whose payload (base64
    // JSON) names its type.
    let names_it = |e: &serde_json::Value| {
        let text = e.to_string();
        text.contains(&format!("\"name\":\"{activity}\""))
            || (text.contains("core_local_activity")
                && marker_payloads(e)
                    .iter()
                    .any(|p| p.contains(&format!("\"activity_type\":\"{activity}\""))))
    };
    let scheduled = events
        .iter()
        .position(names_it)
        .unwrap_or_else(|| panic!("no {activity} in the history"));
    let completed = events[..scheduled]
        .iter()
        .rev()
        .find(|e| {
            let t = e["eventType"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            t.replace('_', "").contains("workflowtaskcompleted")
        })
        .expect("a workflow task before the activity");
    match &completed["eventId"] {
        serde_json::Value::String(id) => id.clone(),
        other => other.to_string(),
    }
}

restock_testkit::on_three_databases! {
    reset_before_the_increment_or_the_order_adds_and_orders_nothing_again => reset_before_the_increment_or_the_order;
}

/// An operator resets a completed replenishment (Temporal UI "Reset", `temporal workflow
/// reset`) to before its increment, then to before its order: the re-runs execute
/// `increment-stock` again for the same order and add nothing; no second order is sent.
async fn reset_before_the_increment_or_the_order(backend: Backend) {
    let Some(stack) = spawn_stack(StackOptions::on(backend)).await else {
        return;
    };
    let sku = "RESET-1";
    sell_out(&stack, sku, 1).await;
    let done = stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    stack.wait_closed(sku).await;
    assert_eq!(stock(&stack, sku).await, 10);
    let workflow_id = format!("replenish-{sku}");

    for (activity, what) in [
        ("increment-stock", "before the increment"),
        ("order-from-factory", "before the order"),
    ] {
        let event_id = task_before(&stack, &workflow_id, activity);
        stack.temporal.temporal_cli_ok(&[
            "workflow",
            "reset",
            "--workflow-id",
            &workflow_id,
            "--event-id",
            &event_id,
            "--reason",
            "test: reset a completed replenishment",
            "--yes",
        ]);
        stack.wait_closed(sku).await;
        let again = stack
            .wait_for_status(sku, WAIT, |s| s.state.is_terminal())
            .await;
        // Before the increment the re-run completes the same order; before the order (the
        // stock check runs in the same workflow task) it reads the stock again and finds it
        // replenished. Either way: nothing ordered again, nothing added again.
        match again.state {
            RestockState::Completed => {
                assert_eq!(again.factory_order_id, done.factory_order_id, "{what}")
            }
            RestockState::NotNeeded => assert_eq!(activity, "order-from-factory"),
            other => panic!("reset {what} ended {other}"),
        }
        assert_eq!(
            stock(&stack, sku).await,
            10,
            "reset {what} added stock again"
        );
        assert_eq!(receipts(&stack, sku).await, 1, "{what}");
        assert_eq!(
            stack.factory_stats().orders_for(&done.factory_order_id),
            1,
            "reset {what} ordered again"
        );
        assert_eq!(stack.factory_stats().total, 1, "{what}");
    }
    stack.stop().await;
}

/// The order id is the workflow id and a whole uuid (a 32-bit suffix could repeat).
fn assert_full_uuid(order_id: &str, sku: &str) {
    let suffix = order_id
        .strip_prefix(&format!("replenish-{sku}-"))
        .unwrap_or_else(|| panic!("{order_id}"));
    assert_eq!(suffix.len(), 36, "{order_id}");
    assert_eq!(suffix.matches('-').count(), 4, "{order_id}");
}

/// A completion must name the order and come while the run waits for the factory: an early
/// completion (the order is still being sent), one without an order id and one for another
/// order are refused and add nothing. The factory's own callback, which here arrives before
/// the run even knows the order was placed, is kept and handed over once the run waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completions_only_for_the_waiting_order() {
    let stack = spawn_stack(StackOptions {
        factory: SimulatorConfig {
            // The order is accepted (and produced) at once, its reply comes 8 s later: the
            // callback beats the reply, with room for the refusals below on a busy machine
            // (three CLI processes; 3 s was once not enough under the whole suite).
            extra_latency: Duration::from_secs(8),
            ..StackOptions::default().factory
        },
        factory_timeout: Duration::from_secs(20),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let sku = "EARLY-1";
    sell_out(&stack, sku, 1).await;
    let ordering = stack
        .wait_for_state(sku, WAIT, RestockState::OrderingFromFactory)
        .await;
    assert_full_uuid(&ordering.factory_order_id, sku);
    let workflow_id = format!("replenish-{sku}");

    // Too early, even naming the right order: the run has not placed it yet.
    let named = format!(r#"{{"factory_order_id":"{}"}}"#, ordering.factory_order_id);
    for input in ["{}", named.as_str()] {
        stack
            .temporal
            .signal_by_cli(&workflow_id, "factory-completed", input);
    }
    let refused = refused_completion(&stack, sku, "").await;
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(refused.message().contains("not-waiting"), "{refused:?}");
    let update = stack
        .temporal
        .temporal_cli(&complete_update_args(&workflow_id, &named));
    assert!(!update.status.success(), "an early update was accepted");

    // The factory's callback came meanwhile: stored, answered 200, handed over later.
    stack
        .wait_until("the factory called back", WAIT, || async {
            stack.factory_stats().callbacks_sent >= 1
        })
        .await;
    assert_eq!(
        stock(&stack, sku).await,
        0,
        "a completion was taken too early"
    );
    let done = completed_with(&stack, sku, 10).await;
    assert_eq!(done.ignored_signals, 2, "{done:#?}");
    assert_eq!(receipts(&stack, sku).await, 1);
    // The relay settles the inbox row once it sees the receipt.
    stack
        .wait_until("the delivery settled", WAIT, || async {
            factory_delivery::Entity::find_by_id(done.factory_order_id.clone())
                .one(stack.app.store.connection())
                .await
                .unwrap()
                .is_some_and(|d| {
                    d.status == restock_inventory::entity::factory_delivery::DeliveryStatus::Settled
                })
        })
        .await;
    stack.wait_closed(sku).await;
    maybe_save_history(&stack, sku, "early_completions_refused").await;

    // Late: the run is over; an operator's completion of that order changes nothing.
    stack.wait_closed(sku).await;
    let late = refused_completion(&stack, sku, &done.factory_order_id).await;
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
    assert_eq!(stock(&stack, sku).await, 10);
    stack.stop().await;
}

/// A waiting run completes only for its own order, through the update, which answers with
/// the status; a wrong order id is refused with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_update_names_the_order() {
    let sku = "OPER-1";
    let (stack, waiting) = waiting_run(sku).await;
    let workflow_id = format!("replenish-{sku}");
    let wrong = stack.temporal.temporal_cli(&complete_update_args(
        &workflow_id,
        r#"{"factory_order_id":"replenish-OPER-1-someone-else"}"#,
    ));
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr).to_string()
        + &String::from_utf8_lossy(&wrong.stdout);
    assert!(said.contains("other-order"), "{said}");
    let too_many = completion_json(&waiting.factory_order_id, 11);
    let refused = stack
        .temporal
        .temporal_cli(&complete_update_args(&workflow_id, &too_many));
    assert!(!refused.status.success(), "more than ordered was accepted");
    assert_eq!(stock(&stack, sku).await, 0);

    let four = completion_json(&waiting.factory_order_id, 4);
    let answer = stack
        .temporal
        .temporal_cli_ok(&complete_update_args(&workflow_id, &four));
    assert!(answer.contains(&waiting.factory_order_id), "{answer}");
    completed_with(&stack, sku, 4).await;
    stack.stop().await;
}

/// Temporal's "Request Cancellation" (UI button, `temporal workflow cancel`) on a run waiting
/// for the factory is the operator's cancel: it never turns into Overdue, the run ends
/// Cancelled in the status, the read model, the search attribute and in Temporal, the ad runs
/// again, and the factory's later delivery of that order is still counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporal_cancel_is_an_operator_cancel() {
    let mut options = StackOptions::without_callbacks();
    options.workflow = ReplenishSettings {
        factory_sla_secs: 4,
        ..options.workflow
    };
    let stack = spawn_stack(options).await.unwrap();
    let sku = "TCANCEL-1";
    sell_out(&stack, sku, 1).await;
    let waiting = stack
        .wait_for_status(sku, WAIT, |s| {
            s.state == RestockState::AwaitingFactory && s.ad_paused
        })
        .await;
    assert!(!ad_active(&stack, sku).await);
    let workflow_id = format!("replenish-{sku}");
    stack
        .temporal
        .temporal_cli_ok(&["workflow", "cancel", "--workflow-id", &workflow_id]);
    wait_until_cancelled(&stack, sku).await;
    assert!(ad_active(&stack, sku).await, "the ad stayed paused");
    maybe_save_history(&stack, sku, "cancelled_in_temporal").await;
    let listed = stack.temporal.temporal_cli_ok(&[
        "workflow",
        "list",
        "--query",
        &format!("RestockSku = '{sku}' AND RestockState = 'Cancelled'"),
    ]);
    assert!(listed.contains(&workflow_id), "{listed}");
    // Past the SLA, nothing moved to Overdue.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(read_model_state(&stack, sku).await, RestockState::Cancelled);
    let refused = refused_completion(&stack, sku, "").await;
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // The goods of the order that was out come anyway: counted once.
    delivered_once_though_called_back_twice(&stack, sku, &waiting.factory_order_id).await;
    assert_eq!(stack.factory_stats().total, 1);
    stack.stop().await;
}

restock_testkit::on_three_databases! {
    a_request_after_the_cancel_starts_a_new_run_one_before_does_not => a_request_after_the_cancel;
}

/// Requests that reach a run after its cancel was accepted (the relay hands a sale's request
/// to the run while it closes) start a new run that orders again; requests from before the
/// cancel go with it. The worker is stopped meanwhile, so both signals reach the run in one
/// task, in the order sent.
async fn a_request_after_the_cancel(backend: Backend) {
    use restock_workflows::CancelRequest;
    let Some(mut stack) = spawn_stack(StackOptions {
        backend,
        ..StackOptions::without_callbacks()
    })
    .await
    else {
        return;
    };
    let cancel = |stack: &Stack, sku: &'static str| {
        let client = stack.temporal_client.clone();
        async move {
            let request = CancelRequest {
                reason: Some("test".into()),
            };
            restock_workflows::client::signal_cancel(&client, sku, request)
                .await
                .unwrap();
        }
    };

    let before = "CANCEL-REQ-1";
    sold_out_and_waiting(&stack, before).await;
    stack.stop_worker().await;
    request_replenishment(&stack, before).await;
    cancel(&stack, before).await;
    stack.start_worker();
    wait_until_cancelled(&stack, before).await;
    assert_eq!(stack.factory_stats().total, 1);

    let after = "CANCEL-REQ-2";
    let cancelled = sold_out_and_waiting(&stack, after).await;
    stack.stop_worker().await;
    cancel(&stack, after).await;
    request_replenishment(&stack, after).await;
    stack.start_worker();
    let next = stack
        .wait_for_status(after, WAIT, |s| {
            s.state == RestockState::AwaitingFactory
                && s.factory_order_id != cancelled.factory_order_id
        })
        .await;
    assert_eq!(stack.factory_stats().total, 3, "{next:#?}");
    // Both of the product's orders are in the store, each sent once.
    for order_id in [&cancelled.factory_order_id, &next.factory_order_id] {
        let order = stack.app.store.factory_order(order_id).await.unwrap();
        assert_eq!(order.map(|o| o.attempts), Some(1), "{order_id}");
    }
    assert_eq!(stock(&stack, after).await, 0);
    maybe_save_first_run_history(&stack, after, "requested_after_cancel").await;
    // The first product's run stayed cancelled all along.
    assert_eq!(
        run_status(&stack, before).await,
        WorkflowExecutionStatus::Canceled
    );
    stack.stop().await;
}

restock_testkit::on_three_databases! {
    a_request_after_a_temporal_cancel_not_yet_acted_on_starts_a_new_run => a_request_after_a_temporal_cancel;
}

/// Temporal's own cancellation (the UI's Request Cancellation) reaches a run that is busy
/// sending its order, so the run acts on it only once the order's reply is in. A sale's
/// request that comes after the cancellation, while the run is still busy, is new demand: the
/// run, once cancelled, continues as new and orders again. A request before the cancellation
/// goes with it.
async fn a_request_after_a_temporal_cancel(backend: Backend) {
    let mut options = StackOptions {
        backend,
        ..StackOptions::without_callbacks()
    };
    // The factory takes each order and answers 3 s later: the run is busy meanwhile.
    options.factory.extra_latency = Duration::from_secs(3);
    let Some(stack) = spawn_stack(options).await else {
        return;
    };
    let ordering = async |sku: &str, orders: u64| {
        add_product(&stack, sku, 1, 0).await;
        stack.app.sales().await.purchase(buy(sku)).await.unwrap();
        stack
            .wait_until("the factory has the order", WAIT, || async {
                stack.factory_stats().total == orders
            })
            .await;
        restock_workflows::client::query_status(&stack.temporal_client, sku)
            .await
            .unwrap()
            .unwrap()
            .factory_order_id
    };
    let temporal_cancel = |sku: &str| {
        stack.temporal.temporal_cli_ok(&[
            "workflow",
            "cancel",
            "--workflow-id",
            &restock_workflows::client::workflow_id(sku),
        ]);
    };

    let after = "TCANCEL-REQ-1";
    let cancelled = ordering(after, 1).await;
    temporal_cancel(after);
    // The cancellation reaches the run (a task of its own) before the request does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    request_replenishment(&stack, after).await;
    let next = stack
        .wait_for_status(after, WAIT, |s| {
            s.state == RestockState::AwaitingFactory && s.factory_order_id != cancelled
        })
        .await;
    assert_eq!(stack.factory_stats().total, 2, "{next:#?}");
    assert_eq!(stock(&stack, after).await, 0);
    maybe_save_first_run_history(&stack, after, "requested_after_temporal_cancel").await;

    let before = "TCANCEL-REQ-2";
    ordering(before, 3).await;
    request_replenishment(&stack, before).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    temporal_cancel(before);
    wait_until_cancelled(&stack, before).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.factory_stats().total, 3);
    stack.stop().await;
}

/// Temporal's Terminate on a run waiting for the factory: no clean-up runs (documented), but
/// the order's delivery is still counted, once, and the next sale starts a new run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_run_still_gets_its_delivery_counted_once() {
    let sku = "TERM-1";
    let (stack, waiting) = waiting_run(sku).await;
    // The ad is paused just after the order: terminated after that.
    stack.wait_for_status(sku, WAIT, |s| s.ad_paused).await;
    terminate(&stack, sku).await;
    // Its history and the database copy both still read AwaitingFactory: the answer says that
    // Temporal closed it, so a follower (`restock buy --wait`) does not wait for it forever.
    let mut api = stack.replenishments().await;
    let order = &waiting.factory_order_id;
    for asked in ["", order.as_str()] {
        let terminated = answered(&mut api, sku, asked, ("AwaitingFactory", "workflow")).await;
        assert_eq!(
            (
                terminated.closed_by_temporal.as_str(),
                &terminated.factory_order_id
            ),
            ("Terminated", order),
            "asked for {asked:?}"
        );
    }
    // Seen so, the read model learns it: the run leaves the console's open list.
    let open = stack.app.store.open_replenishments(100).await.unwrap();
    assert!(open.iter().all(|r| &r.order_id != order), "{open:?}");
    // It paused the ad when it ordered and cannot resume it: sold out, it stays paused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!ad_active(&stack, sku).await);
    delivered_once_though_called_back_twice(&stack, sku, order).await;
    // In stock again with no run open: the worker resumes it, and tells the manager once,
    // as the run would have (keyed by its order).
    stack
        .wait_until("the ad runs again", WAIT, || async {
            ad_active(&stack, sku).await
        })
        .await;
    let notes = stack.app.store.notifications(sku).await.unwrap();
    let resumed: Vec<_> = notes.iter().filter(|n| n.kind == "ad_resumed").collect();
    assert_eq!(resumed.len(), 1, "{notes:?}");
    assert_eq!(resumed[0].key, format!("{order}:ad_resumed"));
    // Terminated and left alone (nobody looks at it): the delivery's hand-over finds it
    // closed, so the read model learns it from there, and the ad runs again all the same.
    let alone = "TERM-2";
    let left = sold_out_and_waiting(&stack, alone).await;
    stack.wait_for_status(alone, WAIT, |s| s.ad_paused).await;
    terminate(&stack, alone).await;
    assert!(!ad_active(&stack, alone).await);
    deliver_ten(&stack, alone, &left.factory_order_id).await;
    stack
        .wait_until("the ad of the run left alone runs again", WAIT, || async {
            ad_active(&stack, alone).await
        })
        .await;
    let row = latest_replenishment(&stack, alone).await;
    assert_eq!(
        row.closed_by_temporal.as_deref(),
        Some("Terminated"),
        "{row:?}"
    );
    // Sold out again: a new run, a new order.
    adjust(&stack, sku, -10, "sold in the shop").await;
    stack.app.sales().await.purchase(buy(sku)).await.unwrap();
    let next = stack
        .wait_for_status(sku, WAIT, |s| {
            s.state == RestockState::AwaitingFactory && &s.factory_order_id != order
        })
        .await;
    assert_eq!(stack.factory_stats().orders_for(&next.factory_order_id), 1);
    assert_eq!(
        stack.factory_stats().total,
        3,
        "TERM-1's two and TERM-2's one"
    );
    // The new run is open; the terminated one, now only in the database, still says how it
    // closed.
    let latest = answered(&mut api, sku, "", ("AwaitingFactory", "workflow")).await;
    assert_eq!(latest.closed_by_temporal, "", "{latest:?}");
    let replaced = answered(&mut api, sku, order, ("AwaitingFactory", "read_model")).await;
    assert_eq!(replaced.closed_by_temporal, "Terminated", "{replaced:?}");
    stack.stop().await;
}

/// The UI's Reset of a terminated run (an operator's undo): it runs again, waiting for the
/// same order; the answer and the read model show it open again, and the factory's callback
/// completes it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminated_run_reset_runs_again() {
    let sku = "TERM-RESET";
    let (stack, waiting) = waiting_run(sku).await;
    terminate(&stack, sku).await;
    let mut api = stack.replenishments().await;
    let order = &waiting.factory_order_id;
    let seen = answered(&mut api, sku, order, ("AwaitingFactory", "workflow")).await;
    assert_eq!(seen.closed_by_temporal, "Terminated", "{seen:?}");
    let open = |stack: &Stack| {
        let store = stack.app.store.clone();
        async move { store.open_replenishments(100).await.unwrap() }
    };
    assert!(open(&stack).await.iter().all(|r| &r.order_id != order));

    stack.temporal.temporal_cli_ok(&[
        "workflow",
        "reset",
        "--workflow-id",
        &format!("replenish-{sku}"),
        "--type",
        "LastWorkflowTask",
        "--reason",
        "test: undo the Terminate",
        "--yes",
    ]);
    wait_for_run_status(&stack, sku, WorkflowExecutionStatus::Running).await;
    let again = answered(&mut api, sku, order, ("AwaitingFactory", "workflow")).await;
    assert_eq!(again.closed_by_temporal, "", "{again:?}");
    let listed = open(&stack).await;
    assert!(listed.iter().any(|r| &r.order_id == order), "{listed:?}");
    deliver_ten(&stack, sku, order).await;
    completed_with(&stack, sku, 10).await;
    assert_eq!(receipts(&stack, sku).await, 1);
    assert_eq!(stack.factory_stats().total, 1);
    stack.stop().await;
}

/// A cancel that arrives before the order is placed stops the order, and a cancel is
/// refused with its reason once the delivery is being counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_before_the_order_sends_no_order() {
    let mut stack = spawn_stack(StackOptions::without_callbacks())
        .await
        .unwrap();
    let sku = "CANCEL-1";
    add_product(&stack, sku, 1, 0).await;
    // No worker: the run is started by the sale but takes no step until the worker is back.
    stack.stop_worker().await;
    stack.app.sales().await.purchase(buy(sku)).await.unwrap();
    let workflow_id = format!("replenish-{sku}");
    stack
        .wait_until("the replenishment is started", WAIT, || async {
            stack.app.store.outbox_depth().await.unwrap() == 0
        })
        .await;
    stack
        .temporal
        .signal_by_cli(&workflow_id, "cancel", r#"{"reason":"not this one"}"#);
    stack.start_worker();
    let cancelled = stack
        .wait_for_state(sku, WAIT, RestockState::Cancelled)
        .await;
    assert_eq!(cancelled.reason.as_deref(), Some("not this one"));
    assert_eq!(stack.factory_stats().total, 0, "a cancelled run ordered");
    assert!(ad_active(&stack, sku).await);
    // The operator's cancel ends the run Canceled in Temporal too, so its list says so; the
    // run's page shows its summary and current details.
    stack
        .wait_until("the run ends Canceled in Temporal", WAIT, || async {
            run_status(&stack, sku).await == WorkflowExecutionStatus::Canceled
        })
        .await;
    let metadata =
        stack
            .temporal
            .temporal_cli_ok(&["workflow", "metadata", "--workflow-id", &workflow_id]);
    assert!(metadata.contains("**Cancelled**"), "{metadata}");
    let described =
        stack
            .temporal
            .temporal_cli_ok(&["workflow", "describe", "--workflow-id", &workflow_id]);
    assert!(
        described.contains(&format!("Replenish {sku}")),
        "{described}"
    );
    maybe_save_history(&stack, sku, "cancelled_by_operator").await;

    // A later sale starts a new run; once its delivery is reported, cancel is refused.
    adjust(&stack, sku, 1, "test").await;
    stack.app.sales().await.purchase(buy(sku)).await.unwrap();
    let waiting = stack
        .wait_for_state(sku, WAIT, RestockState::AwaitingFactory)
        .await;
    let mut api = stack.replenishments().await;
    api.complete_factory_order(CompleteFactoryOrderRequest {
        sku: sku.into(),
        factory_order_id: waiting.factory_order_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let late = api
        .cancel_replenishment(CancelReplenishmentRequest {
            sku: sku.into(),
            reason: "too late".into(),
        })
        .await;
    // Counting (Restocking) or already done: refused either way, with the reason.
    let status = late.expect_err("a cancel after the delivery was reported was accepted");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    completed_with(&stack, sku, 10).await;
    stack.stop().await;
}

/// A request that reaches the run after its stock read, while its last step runs (here the
/// ad's resume mail, which fails and is retried), is not dropped: the run checks again and
/// orders again, even though the stock it knew of was above the reorder point.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_during_the_last_step_is_not_dropped() {
    let (_smtp, stack) = stack_with_mail_down().await;
    let sku = "LATE-1";
    sell_out(&stack, sku, 1).await;
    // The delivery is in stock and the run is still Restocking: resuming the ad, its mail
    // failing and retried (local activities in the run's last workflow task).
    stack
        .wait_until(
            "the delivery in stock while the run finishes",
            WAIT,
            || async {
                stock(&stack, sku).await == 10
                    && read_model_state(&stack, sku).await == RestockState::Restocking
            },
        )
        .await;
    let restocking = latest_replenishment(&stack, sku).await;
    // Sold out again while the run finishes; the request reaches the run (not the relay).
    adjust(&stack, sku, -10, "sold in the shop").await;
    request_replenishment(&stack, sku).await;
    let next = stack
        .wait_for_status(sku, Duration::from_secs(90), |s| {
            s.state == RestockState::Completed && s.factory_order_id != restocking.order_id
        })
        .await;
    assert_eq!(stack.factory_stats().total, 2);
    assert_eq!(stock(&stack, sku).await, 10);
    assert!(next.notification_failures > 0, "{next:#?}");
    stack.stop().await;
}

/// Mail that cannot be sent never holds up the order, the restock, or the ad itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_mail_never_holds_up_the_order() {
    let (smtp, stack) = stack_with_mail_down().await;
    let sku = "MAIL-1";
    sell_out(&stack, sku, 1).await;
    stack
        .wait_until("the factory has the order", WAIT, || async {
            stack.factory_stats().total == 1
        })
        .await;
    let done = stack
        .wait_for_status(sku, Duration::from_secs(90), |s| {
            s.state == RestockState::Completed
        })
        .await;
    assert_eq!(stock(&stack, sku).await, 10);
    assert_eq!(done.notification_failures, 2, "{done:#?}");
    assert!(ad_active(&stack, sku).await);
    assert!(smtp.mail().is_empty());
    let notes = stack.app.store.notifications(sku).await.unwrap();
    assert_eq!(notes.len(), 2);
    assert!(notes.iter().all(|n| {
        n.status == restock_inventory::entity::notification::NotificationStatus::Pending
            && n.last_error.is_some()
    }));
    stack.stop().await;
}

/// A callback with a count other than the ordered one is refused and changes nothing, and a
/// genuine callback while Temporal is down is kept and completes the run once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_count_refused_and_callback_during_outage_kept() {
    let sku = "INBOX-1";
    let (mut stack, waiting) = waiting_run(sku).await;
    for forged in ["1000", "9", "11"] {
        assert_eq!(
            post_callback(&stack, sku, &waiting.factory_order_id, forged).await,
            400,
            "count {forged}"
        );
    }
    assert!(
        stack
            .app
            .store
            .delivery(&waiting.factory_order_id)
            .await
            .unwrap()
            .is_none()
    );

    stack.temporal.kill();
    assert_eq!(
        post_callback(&stack, sku, &waiting.factory_order_id, "10").await,
        200,
        "a genuine callback during an outage"
    );
    assert_eq!(
        post_callback(&stack, sku, &waiting.factory_order_id, "10").await,
        200,
        "repeated"
    );
    // A sale meanwhile: its intent waits, and the relay counts its failed hand-overs.
    add_product(&stack, "INBOX-2", 1, 0).await;
    stack
        .app
        .sales()
        .await
        .purchase(buy("INBOX-2"))
        .await
        .unwrap();
    let relay_failures = || async {
        stack
            .app
            .metrics()
            .await
            .lines()
            .find(|l| l.starts_with("restock_relay_failures_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    stack
        .wait_until("the relay counts its failed hand-overs", WAIT, || async {
            relay_failures().await > 0.0
        })
        .await;
    assert_eq!(stock(&stack, sku).await, 0);

    stack.temporal.restart().await;
    let done = stack
        .wait_for_status(sku, Duration::from_secs(90), |s| {
            s.state == RestockState::Completed
        })
        .await;
    assert_eq!(done.received_quantity, Some(10));
    assert_eq!(stock(&stack, sku).await, 10);
    assert_eq!(receipts(&stack, sku).await, 1);
    // The sale's intent waited out the outage too (this factory drops every callback).
    stack
        .wait_for_status("INBOX-2", Duration::from_secs(90), |s| {
            s.state == RestockState::AwaitingFactory
        })
        .await;
    stack.stop().await;
}

/// A product whose reorder quantity the factory can never take (stored before the limit
/// was enforced) fails its run visibly: Failed in the status, read model and search
/// attribute, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_that_can_never_be_placed_fails_visibly() {
    let stack = spawn_stack(StackOptions::default()).await.unwrap();
    let sku = "HUGE-1";
    add_product(&stack, sku, 1, 0).await;
    product::ActiveModel {
        sku: Set(sku.to_owned()),
        reorder_quantity: Set(2_000_000),
        ..Default::default()
    }
    .update(stack.app.store.connection())
    .await
    .unwrap();
    stack.app.sales().await.purchase(buy(sku)).await.unwrap();
    let failed = stack.wait_for_state(sku, WAIT, RestockState::Failed).await;
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("1000000"),
        "{failed:#?}"
    );
    stack
        .wait_until("the read model says Failed", WAIT, || async {
            read_model_state(&stack, sku).await == RestockState::Failed
        })
        .await;
    let listed = stack.temporal.temporal_cli_ok(&[
        "workflow",
        "list",
        "--query",
        &format!("RestockSku = '{sku}' AND RestockState = 'Failed'"),
    ]);
    assert!(listed.contains(&format!("replenish-{sku}")), "{listed}");
    assert_eq!(stack.factory_stats().total, 0);
    stack.stop().await;
}

/// An operator starts a replenish-stock run by hand under another workflow id
/// (`temporal workflow start`) while the product's own run waits for the factory: it fails
/// at once, saying which id to use, and orders nothing, adds nothing and writes no read-model
/// row. SQLite only: the run stops before it touches any database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_started_by_hand_under_another_id_orders_nothing() {
    let sku = "BYHAND-1";
    let (stack, waiting) = waiting_run(sku).await;
    let rogue = format!("my-replenish-{sku}");
    stack.temporal.temporal_cli_ok(&[
        "workflow",
        "start",
        "--type",
        "replenish-stock",
        "--task-queue",
        restock_workflows::TASK_QUEUE,
        "--workflow-id",
        &rogue,
        "--input",
        &format!(r#"{{"sku":"{sku}","reason":"out_of_stock"}}"#),
    ]);
    let handle = stack
        .temporal_client
        .get_workflow_handle::<ReplenishStock>(rogue.clone());
    stack
        .wait_until("the hand-started run has failed", WAIT, || async {
            handle
                .describe(WorkflowDescribeOptions::default())
                .await
                .unwrap()
                .status()
                == WorkflowExecutionStatus::Failed
        })
        .await;
    let result = stack
        .temporal
        .temporal_cli(&["workflow", "result", "--workflow-id", &rogue]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        printed.contains("runs only as workflow id")
            && printed.contains(&format!("replenish-{sku}")),
        "{printed}"
    );
    // The product's own run is untouched; nothing else was ordered or recorded.
    let own = stack.status(sku).await.unwrap();
    assert_eq!(own.state, RestockState::AwaitingFactory);
    assert_eq!(own.factory_order_id, waiting.factory_order_id);
    assert_eq!(stack.factory_stats().total, 1);
    assert_eq!(stock(&stack, sku).await, 0);
    let latest = latest_replenishment(&stack, sku).await;
    assert_eq!(latest.order_id, waiting.factory_order_id);
    stack.stop().await;
}

/// A run that waits long while sales keep asking continues as new with its order, so its
/// history stays bounded; the order completes once, in the new run. Each run stays
/// answerable by its order after a newer one replaced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_wait_continues_as_new_with_its_order() {
    let sku = "LONG-1";
    let (stack, waiting) = waiting_run(sku).await;
    for _ in 0..restock_workflows::MAX_REQUESTS_PER_RUN + 5 {
        request_replenishment(&stack, sku).await;
    }
    let continued = stack
        .wait_for_status(sku, WAIT, |s| s.continued_runs == 1)
        .await;
    assert_eq!(continued.factory_order_id, waiting.factory_order_id);
    assert_eq!(continued.state, RestockState::AwaitingFactory);
    assert!(continued.late_requests < restock_workflows::MAX_REQUESTS_PER_RUN);

    deliver_ten(&stack, sku, &waiting.factory_order_id).await;
    // The requests it carried are checked once more; stock is fine, so nothing is ordered.
    let last = stack
        .wait_for_state(sku, WAIT, RestockState::NotNeeded)
        .await;
    assert_ne!(last.factory_order_id, waiting.factory_order_id);
    assert_eq!(stack.factory_stats().total, 1);
    assert_eq!(receipts(&stack, sku).await, 1);

    // The completed run stays answerable by its order, with its history, from the workflow
    // (`restock buy --wait` follows a run so and sees its end, not the newer run's).
    let mut api = ReplenishmentServiceClient::new(stack.app.channel().await);
    let ended = answered(
        &mut api,
        sku,
        &waiting.factory_order_id,
        ("Completed", "workflow"),
    )
    .await;
    assert_eq!(ended.received_quantity, 10);
    let states: Vec<&str> = ended.history.iter().map(|h| h.state.as_str()).collect();
    assert!(
        states.ends_with(&["AwaitingFactory", "Restocking", "Completed"]),
        "{states:?}"
    );
    let latest = run_by_order(&mut api, sku, "").await.unwrap();
    assert_eq!(
        (latest.state.as_str(), latest.factory_order_id.as_str()),
        ("NotNeeded", last.factory_order_id.as_str())
    );
    // A later sell-out starts a fresh run: the first order is the read model's answer now.
    adjust(&stack, sku, -10, "stock-take").await;
    stack.app.sales().await.purchase(buy(sku)).await.unwrap();
    stack
        .wait_for_status(sku, WAIT, |s| {
            s.factory_order_id != last.factory_order_id && s.state == RestockState::AwaitingFactory
        })
        .await;
    answered(
        &mut api,
        sku,
        &waiting.factory_order_id,
        ("Completed", "read_model"),
    )
    .await;
    let unknown = run_by_order(&mut api, sku, "replenish-LONG-1-not-an-order")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    assert!(
        unknown.message().contains("no replenishment with order"),
        "{unknown:?}"
    );
    stack.stop().await;
}

/// `GetReplenishment` of the product's run with `order` (its latest with "").
async fn run_by_order(
    api: &mut ReplenishmentServiceClient<tonic::transport::Channel>,
    sku: &str,
    order: &str,
) -> Result<restock_proto::v1::Replenishment, tonic::Status> {
    api.get_replenishment(GetReplenishmentRequest {
        sku: sku.to_owned(),
        factory_order_id: order.to_owned(),
    })
    .await
    .map(tonic::Response::into_inner)
}

/// [`run_by_order`]'s answer, asserted to be in `state`, answered by `source`.
async fn answered(
    api: &mut ReplenishmentServiceClient<tonic::transport::Channel>,
    sku: &str,
    order: &str,
    (state, source): (&str, &str),
) -> restock_proto::v1::Replenishment {
    let r = run_by_order(api, sku, order).await.unwrap();
    assert_eq!(
        (r.state.as_str(), r.source.as_str()),
        (state, source),
        "{r:?}"
    );
    r
}

/// A small deterministic generator (xorshift64*), so a failing run can be replayed with its
/// seed (`RESTOCK_TEST_SEED`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Random interleavings over several products of sales (some with repeated keys), dropped,
/// late and repeated callbacks, operator completions and cancels, and worker restarts. At
/// quiescence, for every product: stock = initial + received − sold; one receipt per order
/// and one factory order per run; no product at or below its reorder point without an open
/// replenishment (unless an operator cancelled its last one); every receipt matches an order
/// the factory accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_interleavings_keep_every_count() {
    use restock_inventory::entity::{factory_order, sale, stock_receipt};
    use restock_proto::v1::{Outcome, PurchaseRequest};
    use sea_orm::{ColumnTrait, QueryFilter};

    let seed = std::env::var("RESTOCK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("random_interleavings_keep_every_count: RESTOCK_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let mut stack = spawn_stack(StackOptions {
        factory: SimulatorConfig {
            drop_callback_every: 3,
            step_interval: Duration::from_millis(100),
            ..StackOptions::default().factory
        },
        workflow: ReplenishSettings {
            factory_sla_secs: 3,
            ..StackOptions::default().workflow
        },
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let skus = ["RND-A", "RND-B", "RND-C", "RND-D"];
    let initial = 3;
    for (i, sku) in skus.iter().enumerate() {
        // Reorder points 0 and 1: out-of-stock and reorder-point triggers both happen.
        add_product(&stack, sku, initial, (i % 2) as i64).await;
    }
    let mut sales = stack.app.sales().await;
    let mut api = stack.replenishments().await;
    let mut cancelled_last = std::collections::HashSet::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    // What the test did, per product ("*": all), for the failure messages.
    let events = std::sync::Mutex::new(Vec::<(usize, &str, String)>::new());
    let step_now = std::sync::atomic::AtomicUsize::new(0);
    let happened = |sku: &'static str, what: String| {
        let step = step_now.load(std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut events) = events.lock() {
            events.push((step, sku, what));
        }
    };
    let story = |sku: &str| {
        events.lock().map_or_else(
            |_| String::new(),
            |events| {
                events
                    .iter()
                    .filter(|(_, s, _)| *s == sku || *s == "*")
                    .map(|(step, _, what)| format!("\n  step {step}: {what}"))
                    .collect::<String>()
            },
        )
    };
    for step in 0..120 {
        step_now.store(step, std::sync::atomic::Ordering::Relaxed);
        let sku = skus[rng.below(skus.len() as u64) as usize];
        match rng.below(100) {
            0..=54 => {
                // A sale; a third carry a key, and a key is sometimes sent again.
                let key = match rng.below(3) {
                    0 if !keys.is_empty() => keys[rng.below(keys.len() as u64) as usize].clone(),
                    1 => {
                        let key = format!("k-{seed}-{step}");
                        keys.push((sku.to_owned(), key.clone()));
                        (sku.to_owned(), key)
                    }
                    _ => (sku.to_owned(), String::new()),
                };
                let reply = sales
                    .purchase(PurchaseRequest {
                        sku: key.0.clone(),
                        quantity: 1 + rng.below(2) as u32,
                        idempotency_key: key.1,
                        requester: "random".into(),
                    })
                    .await;
                if let Ok(reply) = reply {
                    let reply = reply.get_ref();
                    happened(
                        sku,
                        format!(
                            "{:?}{} (stock {})",
                            reply.outcome(),
                            if reply.replayed { ", replayed" } else { "" },
                            reply.remaining_stock
                        ),
                    );
                    // A replay sells nothing and requests nothing: the cancel stays the last word.
                    if reply.outcome() == Outcome::Sold && !reply.replayed {
                        cancelled_last.remove(&key.0);
                    }
                }
            }
            55..=69 => {
                // The operator completes whatever waits (refusals are fine).
                if let Some(accepted) = complete_if_waiting(&stack, &mut api, sku).await {
                    happened(sku, format!("operator complete: ok {accepted}"));
                }
            }
            70..=77 => {
                if api
                    .cancel_replenishment(CancelReplenishmentRequest {
                        sku: sku.into(),
                        reason: "random".into(),
                    })
                    .await
                    .is_ok()
                {
                    happened(sku, "operator cancel accepted".to_owned());
                    cancelled_last.insert(sku.to_owned());
                }
            }
            78..=91 => {
                // A late or repeated genuine callback for one of the product's orders.
                let orders = factory_order::Entity::find()
                    .filter(factory_order::Column::Sku.eq(sku))
                    .all(stack.app.store.connection())
                    .await
                    .unwrap();
                if !orders.is_empty() {
                    let o = &orders[rng.below(orders.len() as u64) as usize];
                    let code =
                        post_callback(&stack, sku, &o.order_id, &o.quantity.to_string()).await;
                    assert_eq!(code, 200, "a genuine callback for {}", o.order_id);
                    happened(sku, format!("callback for {}", o.order_id));
                }
            }
            92..=95 => {
                stack.stop_worker().await;
                tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
                stack.start_worker();
                happened("*", "worker restarted".to_owned());
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
        tokio::time::sleep(Duration::from_millis(rng.below(120))).await;
    }

    // Quiescence: the relay has handed everything over and no run is mid-step.
    stack
        .wait_until(
            "outbox and inbox drained",
            Duration::from_secs(90),
            || async {
                stack.app.store.outbox_depth().await.unwrap() == 0
                    && stack.app.store.deliveries_pending().await.unwrap() == 0
            },
        )
        .await;
    let settled = |s: &restock_workflows::ReplenishStatus| {
        s.state.is_terminal() || s.state.accepts_completion()
    };
    for sku in skus {
        if stack.status(sku).await.is_some() {
            stack
                .wait_for_status(sku, Duration::from_secs(90), settled)
                .await;
        }
    }
    for sku in skus {
        let p = restock_testkit::product_of(&stack.app.store, sku).await;
        if p.stock > p.reorder_point || cancelled_last.contains(sku) {
            continue;
        }
        let open = stack
            .status(sku)
            .await
            .is_some_and(|s| !s.state.is_terminal());
        assert!(
            open,
            "seed {seed}: {sku} has stock {} (reorder point {}) and no open replenishment; what happened:{}",
            p.stock,
            p.reorder_point,
            story(sku)
        );
    }
    // Close out: complete every waiting run, let them finish.
    for sku in skus {
        complete_if_waiting(&stack, &mut api, sku).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let accepted = stack.factory_stats().orders_by_group;
    assert!(
        accepted.values().all(|n| *n == 1),
        "seed {seed}: an order was sent twice: {accepted:?}"
    );
    let all_receipts = stock_receipt::Entity::find()
        .all(stack.app.store.connection())
        .await
        .unwrap()
        .len();
    eprintln!(
        "seed {seed}: {} factory orders, {all_receipts} receipts, {} cancels accepted last",
        accepted.len(),
        cancelled_last.len()
    );
    assert!(
        accepted.len() >= 2 && all_receipts >= 1,
        "seed {seed}: too little happened"
    );
    for sku in skus {
        let p = restock_testkit::product_of(&stack.app.store, sku).await;
        let sold: i64 = sale::Entity::find()
            .filter(sale::Column::Sku.eq(sku))
            .all(stack.app.store.connection())
            .await
            .unwrap()
            .iter()
            .map(|s| s.quantity)
            .sum();
        let receipts = stock_receipt::Entity::find()
            .filter(stock_receipt::Column::Sku.eq(sku))
            .all(stack.app.store.connection())
            .await
            .unwrap();
        let received: i64 = receipts.iter().map(|r| r.quantity).sum();
        assert_eq!(
            p.stock,
            initial + received - sold,
            "seed {seed}: {sku}: stock {} != {initial} + {received} - {sold}",
            p.stock
        );
        for r in &receipts {
            assert!(
                accepted.contains_key(&r.factory_order_id),
                "seed {seed}: receipt {} matches no order the factory accepted",
                r.factory_order_id
            );
        }
    }
    stack.stop().await;
}
