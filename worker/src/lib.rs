//! The Temporal worker: hosts the replenish-stock workflow and its activities on the task
//! queue `restock`. Stateless: run as many as the load needs.
//!
//! # Layout
//! - [`WorkerSettings`]: task queue, concurrency, shutdown grace, the planner's schedule.
//! - [`run`]: connects (retrying until Temporal answers), polls until `shutdown`, then drains
//!   in-flight tasks for the grace period. It also hosts the planning workflow and creates its
//!   Temporal Schedule (`restock-planner`) when missing.

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use restock_activities::plan::PlannerSettings;
use restock_activities::{PlanningActivities, ReplenishActivities};
use restock_workflows::{PlanReplenishments, ReplenishStock};
use std::sync::Arc;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};

use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter,
};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Stops a background task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl WorkerSettings {
    /// Workflow tasks processed at once unless configured otherwise.
    pub const DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS: usize = 16;
    /// Activities run at once unless configured otherwise.
    pub const DEFAULT_MAX_CONCURRENT_ACTIVITIES: usize = 32;
    /// How long in-flight tasks may finish after shutdown unless configured otherwise.
    pub const DEFAULT_GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);
}

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Temporal address, namespace and credentials.
    pub temporal: restock_workflows::client::TemporalEndpoint,
    /// Task queue (`restock`).
    pub task_queue: String,
    /// Most workflow tasks processed at once.
    pub max_concurrent_workflow_tasks: usize,
    /// Most activities run at once.
    pub max_concurrent_activities: usize,
    /// How long in-flight tasks may finish after shutdown is asked.
    pub graceful_shutdown: Duration,
    /// Where to serve the Temporal SDK's Prometheus metrics (`None`: not served).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The replenishment planner.
    pub planner: PlannerConfig,
}

/// The replenishment planner: its schedule and what it measures.
#[derive(Debug, Clone, Default)]
pub struct PlannerConfig {
    /// Interval of the `restock-planner` schedule, created (or its interval updated) at
    /// start; `None`: left alone (`RESTOCK_PLANNER_EVERY_SECS=0`).
    pub every: Option<Duration>,
    /// Demand window and default lead time.
    pub settings: PlannerSettings,
}

/// Runs the worker until `shutdown` resolves. Waits (retrying) for Temporal when it is not up
/// yet, instead of exiting or polling nothing.
pub async fn run(
    settings: WorkerSettings,
    activities: ReplenishActivities,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = futures::FutureExt::shared(futures::FutureExt::boxed(shutdown));
    let Some(client) =
        restock_workflows::client::connect_with_retry(&settings.temporal, shutdown.clone()).await
    else {
        tracing::info!("shutdown before Temporal answered");
        return Ok(());
    };
    // The metrics server guard lives as long as the worker: dropping it stops the server.
    let (options, _metrics_server) = match settings.metrics_addr {
        Some(addr) => {
            let server = start_prometheus_metric_exporter(
                PrometheusExporterOptions::builder()
                    .socket_addr(addr)
                    .build(),
            )
            .map_err(|e| anyhow!("cannot serve worker metrics on {addr}: {e}"))?;
            tracing::info!(addr = %server.bound_addr, "worker metrics on /metrics");
            let telemetry = TelemetryOptions::builder()
                .metrics(server.meter.clone() as Arc<dyn CoreMeter>)
                .build();
            (
                RuntimeOptions::builder()
                    .telemetry_options(telemetry)
                    .build(),
                Some(AbortOnDrop(server.abort_handle)),
            )
        }
        None => (RuntimeOptions::builder().build(), None),
    };
    let options = options.map_err(|e| anyhow!("Temporal runtime options: {e}"))?;
    let runtime = Runtime::from_current_tokio(options)
        .map_err(|e| anyhow!("cannot start the Temporal runtime: {e}"))?;
    let tuner = TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(
            settings.max_concurrent_workflow_tasks.max(2),
        ))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(
            settings.max_concurrent_activities.max(1),
        ))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(
            settings.max_concurrent_activities.max(1),
        ))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build();
    if let Some(every) = settings.planner.every {
        tokio::spawn(ensure_schedule(
            client.clone(),
            settings.task_queue.clone(),
            every,
            shutdown.clone(),
        ));
    }
    tokio::spawn(deliver_overdue_notices(
        activities.clone(),
        shutdown.clone(),
    ));
    let planning = PlanningActivities::new(activities.store().clone(), settings.planner.settings);
    let options = WorkerOptions::new(settings.task_queue.clone())
        .register_workflow::<ReplenishStock>()
        .map_err(|e| anyhow!("cannot register the workflow: {e}"))?
        .register_workflow::<PlanReplenishments>()
        .map_err(|e| anyhow!("cannot register the planning workflow: {e}"))?
        .register_activities(activities)
        .register_activities(planning)
        .tuner(tuner)
        .graceful_shutdown_period(settings.graceful_shutdown)
        .build();
    let mut worker = Worker::new(&runtime, client, options)
        .map_err(|e| anyhow!("cannot create the Temporal worker: {e}"))?;
    let stop = worker.shutdown_handle();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("worker shutting down");
        stop();
    });
    tracing::info!(task_queue = %settings.task_queue, "worker polling");
    worker
        .run()
        .await
        .map_err(|e| anyhow!("the Temporal worker failed: {e}"))?;
    tracing::info!("worker stopped");
    Ok(())
}

/// How often the worker looks for overdue emails owed.
const NOTICE_POLL: Duration = Duration::from_secs(2);

/// Sends the overdue emails the runs owe (recorded by `record-replenishment`), and resumes
/// the ads that terminated runs left paused once their products are in stock, until
/// shutdown: outside any workflow task, so mail never holds up a run.
async fn deliver_overdue_notices(
    activities: ReplenishActivities,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        if let Err(err) = activities.deliver_overdue_notices().await {
            tracing::warn!(error = %err, "cannot read the overdue emails owed; retrying");
        }
        if let Err(err) = activities.resume_orphaned_ads().await {
            tracing::warn!(error = %err, "cannot look for ads left paused; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(NOTICE_POLL) => {}
            () = &mut shutdown => return,
        }
    }
}

/// Creates the planner's schedule, retrying every few seconds until it works or shutdown.
async fn ensure_schedule(
    client: temporalio_client::Client,
    task_queue: String,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        match restock_workflows::client::ensure_planner_schedule(&client, &task_queue, every).await
        {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot set up the planner schedule yet; retrying")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = &mut shutdown => return,
        }
    }
}
