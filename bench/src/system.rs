//! The system under test: real `restock` processes (built like production), a Temporal dev
//! server, fresh databases; and the resident memory of each process, read from `/proc`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use restock_inventory::{Store, StoreOptions};
use restock_testkit::process::free_port;
use restock_testkit::temporal::{DevServer, DevServerOptions};
use sea_orm::ConnectionTrait;

use crate::plan::Plan;
use restock_process::{Supervised, wait_until};

/// The callback secret of the benchmark's processes (they live only for the run).
const BENCH_CALLBACK_SECRET: &str = "restock-bench-callback-secret-0123456789";

/// A database the benchmark runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (the embedded default).
    Sqlite,
    /// PostgreSQL (`--postgres-url`).
    Postgres,
}

impl Backend {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A fresh, migrated database with the demo factory.
pub struct Database {
    /// Which kind.
    pub backend: Backend,
    /// Its URL (never printed: it may hold a password).
    pub url: String,
    /// The benchmark's own connection, for set-up and checks.
    pub store: Store,
}

/// A running `restock` process.
pub struct Proc {
    process: Supervised,
    /// Its gRPC address, for a gateway.
    pub grpc: Option<SocketAddr>,
    /// Its HTTP address (gateway, factory).
    pub http: Option<SocketAddr>,
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Resident memory now (VmRSS), KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.process.status_kib("VmRSS:")
    }

    /// The most resident memory so far (VmHWM), KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.process.status_kib("VmHWM:")
    }

    /// Asks the process to stop (SIGTERM), then kills it if it has not within 10 s.
    pub async fn stop(mut self) {
        if self.process.stop(Duration::from_secs(10)).await.is_none() {
            eprintln!(
                "bench: {} did not stop on SIGTERM; killed it",
                self.process.name()
            );
        }
    }
}

/// Gateway, worker and factory simulator over one database, with Temporal.
pub struct ReplenishmentStack {
    /// The gateway.
    pub gateway: Proc,
    /// The worker.
    pub worker: Proc,
    /// The factory simulator (production takes no time).
    pub factory: Proc,
    /// Its database.
    pub store: Store,
}

impl ReplenishmentStack {
    /// Stops the three processes.
    pub async fn stop(self) {
        self.gateway.stop().await;
        self.worker.stop().await;
        self.factory.stop().await;
    }
}

/// How a replenishment stack differs from the default.
#[derive(Debug, Clone, Default)]
pub struct StackSpec {
    /// The factory simulator's step (its lead time is 4 steps); 0: instant.
    pub factory_step_ms: u64,
    /// Extra environment for the worker (e.g. the planner's settings).
    pub worker_env: Vec<(&'static str, String)>,
}

/// The benchmark's shared pieces: the Temporal dev server and a scratch directory.
pub struct System {
    plan: Plan,
    /// The Temporal dev server every process uses.
    pub temporal: DevServer,
    dir: tempfile::TempDir,
    databases: AtomicU32,
    /// PostgreSQL databases to drop at the end: (admin URL, name).
    created: Mutex<Vec<(String, String)>>,
}

impl System {
    /// Starts the Temporal dev server.
    pub async fn start(plan: &Plan) -> anyhow::Result<System> {
        let dir = tempfile::Builder::new()
            .prefix("restock-bench-")
            .tempdir()
            .context("creating a scratch directory")?;
        let temporal = DevServer::start_with(DevServerOptions {
            extra_args: plan.temporal_args.clone(),
            ..DevServerOptions::default()
        })
        .await;
        Ok(System {
            plan: plan.clone(),
            temporal,
            dir,
            databases: AtomicU32::new(0),
            created: Mutex::new(Vec::new()),
        })
    }

    /// Where process logs and SQLite files go.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh database of `backend`, migrated, with the demo factory.
    pub async fn database(&self, backend: Backend) -> anyhow::Result<Database> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let url = match backend {
            Backend::Sqlite => format!(
                "sqlite://{}?mode=rwc",
                self.dir.path().join(format!("bench-{n}.db")).display()
            ),
            Backend::Postgres => {
                let admin_url = self
                    .plan
                    .postgres_url
                    .clone()
                    .context("no PostgreSQL URL")?;
                let name = format!("restock_bench_{}_{n}", std::process::id());
                let admin = sea_orm::Database::connect(&admin_url)
                    .await
                    .context("connecting to PostgreSQL (--postgres-url)")?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .context("creating the benchmark database")?;
                admin.close().await.ok();
                self.created
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((admin_url.clone(), name.clone()));
                restock_testkit::replace_db_name(&admin_url, &name)
            }
        };
        let store = Store::connect(&url, &StoreOptions::default())
            .await
            .context("opening the benchmark database")?;
        store.migrate().await?;
        restock_inventory::demo::load(&store).await?;
        Ok(Database {
            backend,
            url,
            store,
        })
    }

    fn spawn(
        &self,
        name: &str,
        args: &[String],
        env: &[(&str, String)],
    ) -> anyhow::Result<Supervised> {
        let mut command = Command::new(&self.plan.restock_bin);
        command
            .args(args)
            .env_remove("RESTOCK_API_TOKENS")
            .env("TEMPORAL_ADDRESS", &self.temporal.address)
            .env("RESTOCK_CALLBACK_SECRET", BENCH_CALLBACK_SECRET)
            .env("RUST_LOG", "warn");
        for (k, v) in env {
            command.env(k, v);
        }
        let log = self.dir.path().join(format!("{name}.log"));
        Supervised::spawn(name, command, &log)
            .with_context(|| format!("starting {}", self.plan.restock_bin.display()))
    }

    /// Waits until the process answers `GET path` on its HTTP address.
    async fn ready(&self, mut proc: Proc, path: &str) -> anyhow::Result<Proc> {
        let Some(http) = proc.http else {
            return Ok(proc);
        };
        let url = format!("http://{http}{path}");
        wait_until(
            &format!("{} answering {path}", proc.process.name()),
            Duration::from_secs(60),
            std::slice::from_mut(&mut proc.process),
            || async {
                restock_testkit::process::http_get(&url)
                    .await
                    .map(|_| ())
                    .ok_or("no 2xx answer")
            },
        )
        .await?;
        Ok(proc)
    }

    /// A gateway over `db`, purchases grouped or not.
    pub async fn gateway(&self, db: &Database, grouped: bool, name: &str) -> anyhow::Result<Proc> {
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let process = self.spawn(
            name,
            &[
                "gateway".into(),
                "--grpc-addr".into(),
                grpc.to_string(),
                "--http-addr".into(),
                http.to_string(),
            ],
            &[
                ("RESTOCK_DATABASE_URL", db.url.clone()),
                ("RESTOCK_GROUP_PURCHASES", grouped.to_string()),
            ],
        )?;
        let proc = Proc {
            process,
            grpc: Some(grpc),
            http: Some(http),
        };
        self.ready(proc, "/healthz").await
    }

    /// Gateway (grouped), worker and a factory simulator that produces instantly, over `db`.
    pub async fn replenishment_stack(&self, db: &Database) -> anyhow::Result<ReplenishmentStack> {
        self.replenishment_stack_with(db, &StackSpec::default())
            .await
    }

    /// [`System::replenishment_stack`] with a factory lead time and worker settings.
    pub async fn replenishment_stack_with(
        &self,
        db: &Database,
        spec: &StackSpec,
    ) -> anyhow::Result<ReplenishmentStack> {
        let factory_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let factory = self.spawn(
            "factory",
            &[
                "factory".into(),
                "--addr".into(),
                factory_addr.to_string(),
                "--step-interval-ms".into(),
                spec.factory_step_ms.to_string(),
            ],
            &[],
        )?;
        let factory = self
            .ready(
                Proc {
                    process: factory,
                    grpc: None,
                    http: Some(factory_addr),
                },
                restock_factory::simulator::STATS_PATH,
            )
            .await?;
        let gateway = self.gateway(db, true, "gateway-replenish").await?;
        let gateway_http = gateway.http.context("gateway without HTTP")?;
        // Its metrics endpoint answers once the worker's runtime is up.
        let worker_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let worker = self.spawn(
            "worker",
            &[
                "worker".into(),
                "--factory-url".into(),
                format!("http://{factory_addr}"),
                "--http-addr".into(),
                gateway_http.to_string(),
                "--metrics-addr".into(),
                worker_metrics.to_string(),
            ],
            &[("RESTOCK_DATABASE_URL", db.url.clone())]
                .into_iter()
                .chain(spec.worker_env.iter().cloned())
                .collect::<Vec<_>>(),
        )?;
        let worker = self
            .ready(
                Proc {
                    process: worker,
                    grpc: None,
                    http: Some(worker_metrics),
                },
                "/metrics",
            )
            .await?;
        Ok(ReplenishmentStack {
            gateway,
            worker,
            factory,
            store: db.store.clone(),
        })
    }

    /// Stops Temporal and drops the PostgreSQL databases made for the run.
    pub async fn stop(self) {
        let created = std::mem::take(
            &mut *self
                .created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (admin_url, name) in created {
            if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                admin.close().await.ok();
            }
        }
        drop(self.temporal);
    }
}
