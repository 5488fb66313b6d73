//! `restock worker`: the Temporal worker (replenish-stock workflow + activities).

use std::time::Duration;

use anyhow::{Context, anyhow};
use restock_activities::notify::Mailer;
use restock_activities::{ActivitySettings, ReplenishActivities};
use restock_factory::FactoryClient;
use restock_worker::{PlannerConfig, WorkerSettings};

use crate::config::{CallbackArgs, DatabaseArgs, Secret, TemporalArgs, shutdown_signal};

/// `restock worker` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    temporal: TemporalArgs,
    #[command(flatten)]
    callback: CallbackArgs,
    /// Base URL of the legacy factory API, for factories without their own api_url.
    #[arg(long, env = "RESTOCK_FACTORY_URL")]
    factory_url: Option<String>,
    /// How long one factory order request may take before its outcome counts as unknown.
    #[arg(long, env = "RESTOCK_FACTORY_TIMEOUT_SECS", default_value_t = restock_factory::client::DEFAULT_REQUEST_TIMEOUT.as_secs())]
    factory_timeout_secs: u64,
    /// Most activities run at once.
    #[arg(long, env = "RESTOCK_WORKER_MAX_ACTIVITIES", default_value_t = WorkerSettings::DEFAULT_MAX_CONCURRENT_ACTIVITIES)]
    max_concurrent_activities: usize,
    /// Most workflow tasks processed at once.
    #[arg(long, env = "RESTOCK_WORKER_MAX_WORKFLOW_TASKS", default_value_t = WorkerSettings::DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS)]
    max_concurrent_workflow_tasks: usize,
    /// SMTP server for notifications (smtp://host:port, smtps://user:pass@host); without it
    /// notifications are logged. Never printed.
    #[arg(long, env = "RESTOCK_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<Secret>,
    /// Sender of notifications.
    #[arg(long, env = "RESTOCK_MAIL_FROM", default_value = restock_activities::notify::DEFAULT_FROM)]
    mail_from: String,
    /// Where to serve the Temporal SDK's Prometheus metrics (e.g. 127.0.0.1:9464); off when
    /// unset.
    #[arg(long, env = "RESTOCK_WORKER_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// How long in-flight work may finish after SIGINT/SIGTERM.
    #[arg(long, env = "RESTOCK_WORKER_SHUTDOWN_SECS", default_value_t = WorkerSettings::DEFAULT_GRACEFUL_SHUTDOWN.as_secs())]
    shutdown_grace_secs: u64,
    #[command(flatten)]
    planner: PlannerArgs,
}

/// The replenishment planner's flags.
#[derive(Debug, clap::Args)]
pub(crate) struct PlannerArgs {
    /// Seconds between planner passes (the `restock-planner` Temporal Schedule, created or
    /// updated at start); 0 leaves the schedule alone.
    #[arg(long, env = "RESTOCK_PLANNER_EVERY_SECS", default_value_t = restock_workflows::DEFAULT_PLANNER_INTERVAL.as_secs_f64())]
    planner_every_secs: f64,
    /// Demand is measured over this many seconds.
    #[arg(long, env = "RESTOCK_DEMAND_WINDOW_SECS", default_value_t = restock_inventory::PlannerSettings::default().demand_window_secs)]
    demand_window_secs: u64,
    /// Lead time assumed for a factory that has delivered nothing yet, in seconds.
    #[arg(long, env = "RESTOCK_DEFAULT_LEAD_TIME_SECS", default_value_t = restock_inventory::PlannerSettings::default().default_lead_time_secs)]
    default_lead_time_secs: f64,
}

impl PlannerArgs {
    /// The worker's planner configuration; refuses numbers that make no sense.
    pub(crate) fn config(&self) -> anyhow::Result<PlannerConfig> {
        anyhow::ensure!(
            self.planner_every_secs.is_finite()
                && (self.planner_every_secs == 0.0
                    || (1.0..=86_400.0).contains(&self.planner_every_secs)),
            "RESTOCK_PLANNER_EVERY_SECS must be 0 (off) or between 1 and 86400 seconds, not {}",
            self.planner_every_secs
        );
        anyhow::ensure!(
            (10..=30 * 86_400).contains(&self.demand_window_secs),
            "RESTOCK_DEMAND_WINDOW_SECS must be between 10 and 2592000 seconds (30 days), not {}",
            self.demand_window_secs
        );
        anyhow::ensure!(
            self.default_lead_time_secs.is_finite() && self.default_lead_time_secs >= 0.0,
            "RESTOCK_DEFAULT_LEAD_TIME_SECS must be a number of seconds, 0 or more, not {}",
            self.default_lead_time_secs
        );
        Ok(PlannerConfig {
            every: (self.planner_every_secs > 0.0)
                .then(|| Duration::from_secs_f64(self.planner_every_secs)),
            settings: restock_activities::plan::PlannerSettings {
                demand_window_secs: self.demand_window_secs,
                default_lead_time_secs: self.default_lead_time_secs,
            },
        })
    }
}

/// Runs the worker until SIGINT/SIGTERM.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let planner = args.planner.config()?;
    let temporal = args.temporal.endpoint()?;
    let signer = args.callback.signer()?;
    let store = args.db.connect().await?;
    let factory =
        FactoryClient::with_timeout(Duration::from_secs(args.factory_timeout_secs.max(1)))
            .map_err(|e| anyhow!("{e}"))?;
    let activities = ReplenishActivities::new(
        store,
        factory,
        signer,
        ActivitySettings {
            default_factory_url: args.factory_url.clone().filter(|u| !u.is_empty()),
            callback_base_url: args.callback.base_url(),
            requester: "restock".to_owned(),
            mailer: Mailer::new(args.smtp_url.as_ref().map(Secret::expose), &args.mail_from)?,
            temporal_ui_url: args.temporal.temporal_ui_url.clone(),
            namespace: temporal.namespace.clone(),
        },
    );
    let settings = WorkerSettings {
        temporal,
        task_queue: args.temporal.task_queue.clone(),
        max_concurrent_workflow_tasks: args.max_concurrent_workflow_tasks,
        max_concurrent_activities: args.max_concurrent_activities,
        graceful_shutdown: Duration::from_secs(args.shutdown_grace_secs),
        metrics_addr: args.metrics_addr,
        planner,
    };
    restock_worker::run(settings, activities, shutdown_signal())
        .await
        .context("the worker stopped with an error")
}
