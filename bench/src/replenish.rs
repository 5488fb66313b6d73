//! The replenishment path end to end: how soon an out-of-stock sale becomes an order at the
//! factory (scenario 2), and how many replenishments complete per second (scenario 3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use restock_factory::simulator::{STATS_PATH, SimulatorStats};
use restock_inventory::entity::replenishment;
use restock_inventory::{NewProduct, Sku};
use restock_proto::v1::sales_service_client::SalesServiceClient;
use restock_proto::v1::{Outcome, PurchaseRequest};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::time::Instant;

use crate::cpu::{CpuPerOp, Reading, Watch};
use crate::load::{channels, histogram, quantile_ms};
use crate::plan::Plan;
use crate::system::ReplenishmentStack;
use restock_process::wait_until_every;
use restock_testkit::temporal::DevServer;

/// Units each benchmark replenishment orders.
const REORDER_QUANTITY: i64 = 5;

/// Scenario 2's figures.
#[derive(Debug, Clone)]
pub struct OrderLatency {
    /// Sales timed.
    pub samples: usize,
    /// Where the time goes: each step's median end, ms after the sale was sent (from the
    /// workflow histories of about [`BREAKDOWN_SAMPLES`] timed sales spread over the run).
    pub steps: Vec<(String, f64)>,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// Scenario 3's figures (and the trivial workflow's).
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Workflows completed.
    pub completed: usize,
    /// From the first start to the last completion.
    pub elapsed: Duration,
    /// Workflow tasks and history events of one run (medians over [`SHAPE_SAMPLES`] runs),
    /// when their histories could be read.
    pub shape: Option<HistoryShape>,
    /// Where the CPU went per workflow, from the first start to the last completion: the
    /// Temporal server, and the workflow's own processes (the load generator, which also
    /// hosts the trivial workflow's worker; restock's gateway, worker and factory).
    pub cpu: CpuPerOp,
}

/// What one run costs the server: its workflow tasks and history events.
#[derive(Debug, Clone, Copy)]
pub struct HistoryShape {
    /// Workflow tasks completed.
    pub tasks: usize,
    /// History events.
    pub events: usize,
}

/// Runs whose histories are read for [`HistoryShape`].
pub const SHAPE_SAMPLES: usize = 10;

/// The median [`HistoryShape`] of these workflows' latest runs (`None`: none could be read).
pub async fn history_shape(temporal: &DevServer, workflow_ids: &[String]) -> Option<HistoryShape> {
    let mut tasks = Vec::new();
    let mut events = Vec::new();
    for id in workflow_ids.iter().take(SHAPE_SAMPLES) {
        match history_events(temporal, id).await {
            Ok(history) => {
                tasks.push(
                    history
                        .iter()
                        .filter(|e| {
                            e["eventType"].as_str() == Some("EVENT_TYPE_WORKFLOW_TASK_COMPLETED")
                        })
                        .count(),
                );
                events.push(history.len());
            }
            Err(err) => eprintln!("bench: the history of {id}: {err:#}"),
        }
    }
    tasks.sort_unstable();
    events.sort_unstable();
    Some(HistoryShape {
        tasks: *tasks.get(tasks.len() / 2)?,
        events: *events.get(events.len() / 2)?,
    })
}

impl Throughput {
    /// Completions per second.
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn out_of_stock_products(
    stack: &ReplenishmentStack,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut skus = Vec::with_capacity(n);
    for i in 0..n {
        let sku = format!("{prefix}-{i:04}");
        stack
            .store
            .upsert_product(&NewProduct {
                sku: Sku::parse(&sku)?,
                name: format!("benchmark product {sku}"),
                price: 100,
                stock: 0,
                reorder_point: 0,
                reorder_quantity: REORDER_QUANTITY,
                factory_id: restock_inventory::demo::DEMO_FACTORY.to_owned(),
                policy: None,
            })
            .await?;
        skus.push(sku);
    }
    Ok(skus)
}

async fn buy_out_of_stock(
    client: &mut SalesServiceClient<tonic::transport::Channel>,
    sku: &str,
) -> anyhow::Result<()> {
    let reply = client
        .purchase(PurchaseRequest {
            sku: sku.to_owned(),
            quantity: 1,
            idempotency_key: String::new(),
            requester: "bench".to_owned(),
        })
        .await
        .with_context(|| format!("buying {sku}"))?
        .into_inner();
    if reply.outcome() != Outcome::OutOfStock {
        anyhow::bail!("expected OUT_OF_STOCK for {sku}, got {reply:?}");
    }
    Ok(())
}

async fn factory_stats(http: &reqwest::Client, url: &str) -> Option<SimulatorStats> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Scenario 2: one out-of-stock sale at a time; from sending the sale to the factory
/// simulator accepting the order (its own clock, the same machine's).
pub async fn order_latency(
    stack: &ReplenishmentStack,
    temporal: &DevServer,
    plan: &Plan,
) -> anyhow::Result<OrderLatency> {
    let skus = out_of_stock_products(stack, "latency", plan.latency_samples).await?;
    let gateway = stack.gateway.grpc.context("gateway without gRPC")?;
    let factory = stack.factory.http.context("factory without HTTP")?;
    let stats_url = format!("http://{factory}{STATS_PATH}");
    let http = reqwest::Client::new();
    let mut client = SalesServiceClient::new(channels(gateway, 1).await?.remove(0));
    // The first replenishment pays for connections and caches: one untimed warm-up.
    let mut latencies = histogram()?;
    let mut breakdown: Vec<Vec<(String, f64)>> = Vec::new();
    for (i, sku) in skus.iter().enumerate() {
        let sent = unix_micros();
        buy_out_of_stock(&mut client, sku).await?;
        let accepted = wait_until_every(
            &format!("the factory order for {sku}"),
            Duration::from_secs(60),
            // The simulator's own clock times the order, so polling more often would only
            // add load (its answer lists every order so far).
            Duration::from_millis(10),
            &mut [],
            || async {
                factory_stats(&http, &stats_url)
                    .await
                    .and_then(|s| s.accepted_at_us.get(sku.as_str()).copied())
                    .ok_or("the factory has not accepted it")
            },
        )
        .await?;
        if i > 0 {
            latencies.saturating_record(accepted.saturating_sub(sent).max(1));
            // Spread over the whole run, not only its start.
            let every = (skus.len() / BREAKDOWN_SAMPLES).max(1);
            if i % every == 0 {
                match history_steps(temporal, sku, sent).await {
                    Ok(mut steps) => {
                        steps.push((
                            "the factory simulator accepts the order".to_owned(),
                            accepted.saturating_sub(sent) as f64 / 1000.0,
                        ));
                        breakdown.push(steps);
                    }
                    Err(err) => eprintln!("bench: no breakdown for {sku}: {err:#}"),
                }
            }
        }
        // Let this replenishment finish (production takes no time) before the next sale.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(OrderLatency {
        samples: latencies.len() as usize,
        steps: medians(&breakdown),
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
        max_ms: latencies.max() as f64 / 1000.0,
    })
}

/// Sales whose workflow history is read for the breakdown.
pub const BREAKDOWN_SAMPLES: usize = 20;

/// The steps of the run's history up to its order, ms after `sent_us` (unix µs): the first
/// event of each listed type, read with `temporal workflow show`.
async fn history_steps(
    temporal: &DevServer,
    sku: &str,
    sent_us: u64,
) -> anyhow::Result<Vec<(String, f64)>> {
    const STEPS: [(&str, &str); 5] = [
        (
            "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
            "workflow started (sale committed, relay woke, signal-with-start)",
        ),
        (
            "EVENT_TYPE_WORKFLOW_TASK_STARTED",
            "first workflow task picked up by the worker",
        ),
        (
            "EVENT_TYPE_WORKFLOW_TASK_COMPLETED",
            "first workflow task completed",
        ),
        (
            "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
            "order-from-factory scheduled (after check-stock and record-replenishment, local)",
        ),
        (
            "EVENT_TYPE_ACTIVITY_TASK_STARTED",
            "order-from-factory started on the worker",
        ),
    ];
    let events = history_events(temporal, &restock_workflows::client::workflow_id(sku)).await?;
    let mut steps = Vec::new();
    for (event_type, label) in STEPS {
        let Some(time) = events
            .iter()
            .find(|e| e["eventType"].as_str() == Some(event_type))
            .and_then(|e| e["eventTime"].as_str())
        else {
            continue;
        };
        let at = chrono::DateTime::parse_from_rfc3339(time)
            .with_context(|| format!("event time {time}"))?;
        let at_us = at.timestamp_micros().max(0) as u64;
        steps.push((
            label.to_owned(),
            at_us.saturating_sub(sent_us) as f64 / 1000.0,
        ));
    }
    Ok(steps)
}

/// The events of the workflow's latest run, read with `temporal workflow show`.
async fn history_events(
    temporal: &DevServer,
    workflow_id: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let output = tokio::process::Command::new(restock_testkit::temporal::temporal_binary())
        .args(["workflow", "show", "--output", "json", "--workflow-id"])
        .arg(workflow_id)
        .args([
            "--address",
            &temporal.address,
            "--namespace",
            &temporal.namespace,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running temporal workflow show")?;
    if !output.status.success() {
        anyhow::bail!(
            "temporal workflow show failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut history: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing the history")?;
    match history["events"].take() {
        serde_json::Value::Array(events) => Ok(events),
        _ => anyhow::bail!("no events in the history"),
    }
}

/// Each step's median over the samples, in the first sample's order.
fn medians(samples: &[Vec<(String, f64)>]) -> Vec<(String, f64)> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|(label, _)| {
            let mut values: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.iter().find(|(l, _)| l == label).map(|(_, v)| *v))
                .collect();
            values.sort_by(f64::total_cmp);
            (label.clone(), values[values.len() / 2])
        })
        .collect()
}

/// Scenario 3: `plan.burst` products run out at once; from the first sale until every one
/// of their replenishments is Completed (stock received, ad resumed, read model written).
pub async fn throughput(
    stack: &ReplenishmentStack,
    temporal: &DevServer,
    plan: &Plan,
) -> anyhow::Result<Throughput> {
    let skus = out_of_stock_products(stack, "burst", plan.burst).await?;
    let gateway = stack.gateway.grpc.context("gateway without gRPC")?;
    let channels = channels(gateway, 4).await?;
    let watch = Watch {
        gateway: Some(stack.gateway.pid()),
        temporal: Some(temporal.pid()),
        others: vec![stack.worker.pid(), stack.factory.pid()],
        ..Watch::default()
    };
    let cpu_from = Reading::now(&watch);
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(skus.iter().enumerate())
        .map(|(i, sku)| {
            let mut client = SalesServiceClient::new(channels[i % channels.len()].clone());
            async move { buy_out_of_stock(&mut client, sku).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let db = stack.store.connection();
    let expected = skus.len() as u64;
    let completed = || async {
        replenishment::Entity::find()
            .filter(replenishment::Column::Sku.starts_with("burst-"))
            .filter(replenishment::Column::State.eq("Completed"))
            .count(db)
            .await
            .unwrap_or(0)
    };
    let waited = wait_until_every(
        "every burst replenishment Completed",
        Duration::from_secs(if plan.quick { 120 } else { 600 }),
        Duration::from_millis(20),
        &mut [],
        || async {
            let done = completed().await;
            if done >= expected {
                Ok(())
            } else {
                Err(format!("{done} completed"))
            }
        },
    )
    .await;
    let elapsed = started.elapsed();
    let cpu = CpuPerOp::between(
        &cpu_from,
        &Reading::now(&watch),
        skus.len() as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    if let Err(err) = waited {
        anyhow::bail!("{err}: {} of {expected} completed", completed().await);
    }
    let ids: Vec<String> = skus
        .iter()
        .map(|sku| restock_workflows::client::workflow_id(sku))
        .collect();
    Ok(Throughput {
        completed: skus.len(),
        elapsed,
        shape: history_shape(temporal, &ids).await,
        cpu,
    })
}
