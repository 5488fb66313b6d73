//! The Temporal dev server as restock starts it (`restock dev`, the tests and the
//! benchmark): its command line and its readiness check, said once.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::SEARCH_ATTRIBUTES;

/// Flags that keep the `temporal` CLI from reading the developer's `TEMPORAL_*` environment
/// and config file (which could point it at another server, namespace or TLS setting).
pub const ISOLATION_FLAGS: [&str; 2] = ["--disable-config-file", "--disable-config-env"];

/// Arguments [`start_command`] gives every dev server, beyond ports and files.
///
/// - Its SQLite file in WAL mode with `synchronous=normal`: the server's default journal
///   syncs every state change, which made an out-of-stock sale take ~445 ms to reach the
///   factory instead of ~250 ms (BENCHMARKS.md). A dev server's data survives a crash of the
///   server this way; only a power loss can cost the last changes.
/// - Its history queues read as soon as a task is written: each queue reader is limited to
///   20 reads a second *per history shard*, and a dev server has one shard (a cluster has
///   hundreds). Past 20 new tasks a second (every sale that runs out, every signal) each
///   task waited for the next read, ~25 ms on average, before the worker could see it: the
///   largest part of an out-of-stock sale's way to the factory.
pub const DEV_SERVER_ARGS: [&str; 10] = [
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=10000",
    "--dynamic-config-value",
    "history.timerProcessorMaxPollRPS=10000",
    "--dynamic-config-value",
    "history.visibilityProcessorMaxPollRPS=10000",
];

/// `temporal server start-dev` on `127.0.0.1:port` with its database in `db`: restock's
/// search attributes registered, [`DEV_SERVER_ARGS`], only warnings logged, the Web UI on
/// `ui_port` (without fetching news from the internet) or none (`None`: headless).
pub fn start_command(bin: &Path, db: &Path, port: u16, ui_port: Option<u16>) -> Command {
    let mut command = Command::new(bin);
    command
        .args([
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "warn",
        ])
        .arg("--db-filename")
        .arg(db)
        .args(DEV_SERVER_ARGS)
        .args(ISOLATION_FLAGS)
        .args(["--port", &port.to_string()]);
    match ui_port {
        Some(ui_port) => {
            command.args(["--ui-port", &ui_port.to_string(), "--ui-disable-news-fetch"])
        }
        None => command.arg("--headless"),
    };
    for (name, kind) in SEARCH_ATTRIBUTES {
        command.args(["--search-attribute", &format!("{name}={kind}")]);
    }
    command
}

/// Whether the dev server at `address` is ready: it lists every one of restock's search
/// attributes (the last thing it sets up). `Err` says what it answered instead.
pub async fn search_attributes_listed(bin: &Path, address: &str) -> Result<(), String> {
    let out = tokio::process::Command::new(bin)
        .args(["operator", "search-attribute", "list"])
        .args(["--address", address, "--command-timeout", "5s"])
        .args(ISOLATION_FLAGS)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("could not run {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "`temporal operator search-attribute list` failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if SEARCH_ATTRIBUTES
        .iter()
        .all(|(name, _)| stdout.contains(name))
    {
        Ok(())
    } else {
        Err(format!("search attributes not listed yet:\n{stdout}"))
    }
}
