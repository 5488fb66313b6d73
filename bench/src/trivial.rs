//! The yardstick for replenishments per second: a workflow that runs one activity that does
//! nothing, on the same Temporal server, with a worker tuned like restock's (16 workflow
//! tasks, 32 activities at once).

// The #[activities] macro generates undocumented marker constants for each activity.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures::StreamExt;
use restock_workflows::client::TemporalEndpoint;
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::ActivityError;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::ActivityContext;
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{
    ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};
use tokio::time::Instant;

use crate::cpu::{CpuPerOp, Reading, Watch};
use crate::plan::Plan;
use crate::replenish::Throughput;
use crate::system::System;

const TASK_QUEUE: &str = "restock-bench-trivial";

/// The one activity: returns its input.
pub struct NoopActivities;

#[activities]
impl NoopActivities {
    /// Does nothing.
    #[activity(name = "bench-noop")]
    pub async fn noop(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: u64,
    ) -> Result<u64, ActivityError> {
        Ok(input)
    }
}

/// A workflow that runs [`NoopActivities::noop`] once.
#[workflow]
#[derive(Default)]
pub struct TrivialWorkflow;

#[workflow_methods]
impl TrivialWorkflow {
    /// Runs the activity and returns its result.
    #[run(name = "bench-trivial")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: u64) -> WorkflowResult<u64> {
        let out = ctx
            .execute_activity(
                NoopActivities::noop,
                input,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30)).build(),
            )
            .await?;
        Ok(out)
    }
}

/// Runs a worker for the trivial workflow on its own thread and runtime (the SDK's worker
/// future is not `Send`), as a worker process would; stops it when `stop` fires.
fn spawn_worker(
    endpoint: TemporalEndpoint,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let client = restock_workflows::client::connect(&endpoint).await?;
            let options = RuntimeOptions::builder()
                .build()
                .map_err(|e| anyhow!("Temporal runtime options: {e}"))?;
            let sdk = Runtime::from_current_tokio(options)
                .map_err(|e| anyhow!("cannot start the Temporal runtime: {e}"))?;
            let tuner = TunerHolder::builder()
                .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(16))
                .activity_task_slot_supplier(FixedSizeSlotSupplier::new(32))
                .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(32))
                .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .build();
            let options = WorkerOptions::new(TASK_QUEUE.to_owned())
                .register_workflow::<TrivialWorkflow>()
                .map_err(|e| anyhow!("registering the trivial workflow: {e}"))?
                .register_activities(NoopActivities)
                .tuner(tuner)
                .graceful_shutdown_period(Duration::from_secs(1))
                .build();
            let mut worker = Worker::new(&sdk, client, options)
                .map_err(|e| anyhow!("creating the trivial worker: {e}"))?;
            let shutdown = worker.shutdown_handle();
            tokio::spawn(async move {
                let _ = stop.await;
                shutdown();
            });
            worker
                .run()
                .await
                .map_err(|e| anyhow!("the trivial worker failed: {e}"))
        })
    })
}

/// Starts `plan.burst` trivial workflows at once and waits for all their results.
pub async fn throughput(system: &System, plan: &Plan) -> anyhow::Result<Throughput> {
    let endpoint = TemporalEndpoint::plain(&system.temporal.address, &system.temporal.namespace);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let worker = spawn_worker(endpoint.clone(), stopped);
    let client = restock_workflows::client::connect(&endpoint).await?;
    let pid = std::process::id();
    let start = |i: u64| {
        let client = client.clone();
        async move {
            client
                .start_workflow(
                    TrivialWorkflow::run,
                    i,
                    WorkflowStartOptions::new(
                        TASK_QUEUE.to_owned(),
                        format!("bench-trivial-{pid}-{i}"),
                    )
                    .build(),
                )
                .await
                .map_err(|e| anyhow!("starting a trivial workflow: {e}"))
                .map(|handle| (i, handle))
        }
    };
    type Handle =
        temporalio_client::WorkflowHandle<temporalio_client::Client, trivial_workflow::Run>;
    let finish = |(i, handle): (u64, Handle)| async move {
        let out = handle
            .get_result(WorkflowGetResultOptions::default())
            .await
            .map_err(|e| anyhow!("a trivial workflow's result: {e}"))?;
        anyhow::ensure!(out == i, "the trivial workflow returned {out}, not {i}");
        anyhow::Ok(())
    };
    // Warm up: one workflow end to end, so the worker is polling before the clock starts.
    finish(start(u64::MAX).await?)
        .await
        .context("warming up the trivial worker")?;
    // Like the replenishment burst: everything is started at once (32 requests in flight),
    // then the clock runs until the last one completes.
    let watch = Watch {
        temporal: Some(system.temporal.pid()),
        ..Watch::default()
    };
    let cpu_from = Reading::now(&watch);
    let started = Instant::now();
    let handles: Vec<anyhow::Result<_>> = futures::stream::iter(0..plan.burst as u64)
        .map(start)
        .buffer_unordered(32)
        .collect()
        .await;
    let handles = handles.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(handles)
        .map(finish)
        .buffer_unordered(plan.burst.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let cpu = CpuPerOp::between(
        &cpu_from,
        &Reading::now(&watch),
        plan.burst as f64 / elapsed.as_secs_f64().max(1e-9),
    );
    let _ = stop.send(());
    let joined = tokio::task::spawn_blocking(move || worker.join()).await;
    for r in results {
        r?;
    }
    match joined {
        Ok(Ok(result)) => result?,
        _ => anyhow::bail!("the trivial worker's thread panicked"),
    }
    let ids: Vec<String> = (0..plan.burst as u64)
        .map(|i| format!("bench-trivial-{pid}-{i}"))
        .collect();
    Ok(Throughput {
        completed: plan.burst,
        elapsed,
        shape: crate::replenish::history_shape(&system.temporal, &ids).await,
        cpu,
    })
}
