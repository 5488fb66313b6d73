//! The whole system for one test: a Temporal dev server (its own process, port and db file),
//! the factory simulator, a worker and a gateway (in-process, port 0), over a fresh database.

use std::net::SocketAddr;
use std::time::Duration;

use restock_activities::notify::Mailer;
use restock_activities::{ActivitySettings, ReplenishActivities};
use restock_factory::callback::CallbackSigner;
use restock_factory::{FactoryClient, Simulator, SimulatorConfig, SimulatorStats};
use restock_gateway::{GatewaySettings, RelaySettings, TemporalSettings};
use restock_proto::v1::replenishment_service_client::ReplenishmentServiceClient;
use restock_worker::WorkerSettings;
use restock_workflows::client::TemporalEndpoint;
use restock_workflows::{ReplenishSettings, ReplenishStatus, RestockState};

use crate::process::wait_until;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::temporal::DevServer;
use crate::{Backend, TEST_CALLBACK_SECRET, TestApp, TestDb, spawn_gateway_with};

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Database.
    pub backend: Backend,
    /// The factory simulator's behaviour (fast production by default).
    pub factory: SimulatorConfig,
    /// Durations given to workflows (seconds, not minutes).
    pub workflow: ReplenishSettings,
    /// The worker's factory request timeout.
    pub factory_timeout: Duration,
    /// Start a worker with the stack.
    pub worker: bool,
    /// SMTP server for notifications (`None`: logged).
    pub smtp_url: Option<String>,
    /// How often the gateway's relay sweeps its outbox (it also wakes on each sale and
    /// callback); a product handed over rests at least this long, or 10 s, while its run is
    /// open.
    pub relay_sweep: Duration,
    /// The worker's planner (no schedule by default: tests run the planner by hand).
    pub planner: restock_worker::PlannerConfig,
    /// The gateway's API tokens (none by default: open, on loopback). With tokens, the
    /// stack's own gRPC clients are refused; send a token yourself.
    pub tokens: restock_gateway::ApiTokens,
}

impl StackOptions {
    /// The defaults on `backend`.
    pub fn on(backend: Backend) -> Self {
        Self {
            backend,
            ..Self::default()
        }
    }

    /// The defaults, with a factory that takes `step` per step of an order (the default is
    /// quicker than the tests that watch a run in flight can look).
    pub fn factory_step(step: Duration) -> Self {
        let mut options = Self::default();
        options.factory.step_interval = step;
        options
    }

    /// The defaults, with a factory that never calls back: each order stays open until an
    /// operator (or the test) completes it.
    pub fn without_callbacks() -> Self {
        let mut options = Self::default();
        options.factory.drop_callbacks = true;
        options
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            factory: SimulatorConfig {
                step_interval: Duration::from_millis(50),
                callback_timeout: Duration::from_secs(5),
                ..SimulatorConfig::default()
            },
            workflow: ReplenishSettings {
                factory_sla_secs: 30,
                activity_timeout_secs: 10,
                retry_initial_secs: 1,
                retry_max_interval_secs: 2,
            },
            factory_timeout: Duration::from_secs(3),
            worker: true,
            smtp_url: None,
            relay_sweep: Duration::from_millis(500),
            planner: restock_worker::PlannerConfig::default(),
            tokens: restock_gateway::ApiTokens::default(),
        }
    }
}

/// A running system.
pub struct Stack {
    pub temporal: DevServer,
    pub app: TestApp,
    pub factory: Simulator,
    pub factory_addr: SocketAddr,
    pub options: StackOptions,
    pub temporal_client: temporalio_client::Client,
    worker: Option<RunningWorker>,
    factory_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct RunningWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Starts everything; `None` when the backend's URL is not configured outside CI.
pub async fn spawn_stack(options: StackOptions) -> Option<Stack> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::new(options.backend).await?;
    let store = db.store().await;
    let temporal = DevServer::start().await;

    let factory = Simulator::new(options.factory.clone());
    let factory_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let factory_addr = factory_listener.local_addr().unwrap();
    let (factory_stop, factory_stopped) = tokio::sync::oneshot::channel::<()>();
    {
        let factory = factory.clone();
        tokio::spawn(async move {
            let _ = factory
                .serve(factory_listener, async move {
                    let _ = factory_stopped.await;
                })
                .await;
        });
    }

    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let settings = GatewaySettings {
        temporal: Some(TemporalSettings {
            endpoint: TemporalEndpoint::plain(&temporal.address, &temporal.namespace),
            task_queue: restock_workflows::TASK_QUEUE.to_owned(),
            ui_url: Some(restock_workflows::client::default_ui_url()),
        }),
        signer: CallbackSigner::new(TEST_CALLBACK_SECRET).unwrap(),
        relay: RelaySettings {
            sweep_interval: options.relay_sweep,
            workflow: options.workflow.clone(),
        },
        tokens: options.tokens.clone(),
        tls: None,
        health_check_interval: restock_gateway::DEFAULT_HEALTH_CHECK_INTERVAL,
    };
    let app = spawn_gateway_with(db, store, grpc, http, settings);
    let temporal_client = restock_workflows::client::connect(&TemporalEndpoint::plain(
        &temporal.address,
        &temporal.namespace,
    ))
    .await
    .unwrap();
    let mut stack = Stack {
        temporal,
        app,
        factory,
        factory_addr,
        options,
        temporal_client,
        worker: None,
        factory_stop: Some(factory_stop),
    };
    let _ = http_addr;
    if stack.options.worker {
        stack.start_worker();
    }
    Some(stack)
}

impl Stack {
    /// Starts a worker (in this process) if none runs.
    pub fn start_worker(&mut self) {
        if self.worker.is_some() {
            return;
        }
        let activities = ReplenishActivities::new(
            self.app.store.clone(),
            FactoryClient::with_timeout(self.options.factory_timeout).unwrap(),
            CallbackSigner::new(TEST_CALLBACK_SECRET).unwrap(),
            ActivitySettings {
                default_factory_url: Some(format!("http://{}", self.factory_addr)),
                callback_base_url: format!("http://{}", self.app.http_addr),
                requester: "restock-test".to_owned(),
                mailer: Mailer::new(
                    self.options.smtp_url.as_deref(),
                    restock_activities::notify::DEFAULT_FROM,
                )
                .unwrap(),
                temporal_ui_url: restock_workflows::client::default_ui_url(),
                namespace: self.temporal.namespace.clone(),
            },
        );
        let settings = WorkerSettings {
            temporal: TemporalEndpoint::plain(&self.temporal.address, &self.temporal.namespace),
            task_queue: restock_workflows::TASK_QUEUE.to_owned(),
            max_concurrent_workflow_tasks: WorkerSettings::DEFAULT_MAX_CONCURRENT_WORKFLOW_TASKS,
            max_concurrent_activities: WorkerSettings::DEFAULT_MAX_CONCURRENT_ACTIVITIES,
            graceful_shutdown: Duration::from_secs(1),
            metrics_addr: None,
            planner: self.options.planner.clone(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The SDK's worker future is not Send: give it a thread and a runtime of its own,
        // as a separate worker process would have.
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let result = runtime.block_on(restock_worker::run(settings, activities, async move {
                let _ = stopped.await;
            }));
            if let Err(err) = result {
                eprintln!("test worker failed: {err:#}");
            }
        });
        self.worker = Some(RunningWorker { stop, thread });
    }

    /// Stops the worker and waits for it.
    pub async fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.stop.send(());
            let _ = tokio::task::spawn_blocking(move || w.thread.join()).await;
        }
    }

    /// The simulator's counters.
    pub fn factory_stats(&self) -> SimulatorStats {
        self.factory.stats()
    }

    /// A ReplenishmentService client.
    pub async fn replenishments(&self) -> ReplenishmentServiceClient<Channel> {
        ReplenishmentServiceClient::new(self.app.channel().await)
    }

    /// The live `status` of the product's replenishment, if any.
    pub async fn status(&self, sku: &str) -> Option<ReplenishStatus> {
        restock_workflows::client::query_status(&self.temporal_client, sku)
            .await
            .ok()
            .flatten()
    }

    /// Waits (up to `timeout`) until the product's replenishment is in `state`; panics
    /// otherwise with the last status seen.
    pub async fn wait_for_state(
        &self,
        sku: &str,
        timeout: Duration,
        state: RestockState,
    ) -> ReplenishStatus {
        self.wait_for_status(sku, timeout, |s| s.state == state)
            .await
    }

    /// Waits (up to `timeout`) until `check` holds for the product's status; panics otherwise
    /// with the last status seen.
    pub async fn wait_for_status(
        &self,
        sku: &str,
        timeout: Duration,
        check: impl Fn(&ReplenishStatus) -> bool,
    ) -> ReplenishStatus {
        let reached = wait_until(
            &format!("{sku}: the condition"),
            timeout,
            &mut [],
            || async {
                match self.status(sku).await {
                    Some(status) if check(&status) => Ok(status),
                    last => Err(format!("{last:#?}")),
                }
            },
        )
        .await;
        reached.unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", self.temporal.log_tail(30)))
    }

    /// Waits until the product's current workflow run has closed (its last state is
    /// published a moment before the run ends).
    pub async fn wait_closed(&self, sku: &str) {
        let handle = self
            .temporal_client
            .get_workflow_handle::<restock_workflows::ReplenishStock>(
                restock_workflows::client::workflow_id(sku),
            );
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            handle.get_result(Default::default()),
        )
        .await
        .expect("the workflow did not close");
        // A cancelled replenishment ends Canceled in Temporal; that is a close too.
        if let Err(err) = result {
            assert!(
                matches!(
                    err,
                    temporalio_client::errors::WorkflowGetResultError::Cancelled { .. }
                ),
                "the workflow did not complete: {err:?}"
            );
        }
    }

    /// Waits until `check` holds; panics after `timeout` ([`crate::process::wait_for`]).
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        crate::process::wait_for(what, timeout, check).await;
    }

    /// Stops everything (the dev server stops when dropped).
    pub async fn stop(mut self) {
        self.stop_worker().await;
        if let Some(stop) = self.factory_stop.take() {
            let _ = stop.send(());
        }
        self.app.stop().await;
    }
}
