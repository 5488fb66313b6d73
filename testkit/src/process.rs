//! Running restock binaries as separate processes in tests: spawned with logs to files,
//! killed by pid when the test ends however it ends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use restock_process::{Supervised, wait_until};

/// A free port on 127.0.0.1 (bound and released: good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An environment variable for a child: name, value.
pub type Env<'a> = (&'a str, String);

/// `restock` processes of one test, by name, logging to `<logs>/<name>.log`; all are killed
/// (by pid) and reaped on drop.
pub struct Procs {
    bin: PathBuf,
    logs: PathBuf,
    running: Vec<Supervised>,
}

impl Procs {
    /// None yet; each will run `bin` (the `restock` binary) and log into `logs`.
    pub fn new(bin: &Path, logs: &Path) -> Procs {
        Procs {
            bin: bin.to_path_buf(),
            logs: logs.to_path_buf(),
            running: Vec::new(),
        }
    }

    /// Starts `restock args...` as `name` with `env`. Temporal's connection and the API
    /// tokens come from `env` alone, never from the machine's shell.
    pub fn spawn(&mut self, name: &str, args: &[&str], env: &[(&str, String)]) {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env_remove("RESTOCK_API_TOKENS")
            .env_remove("TEMPORAL_ADDRESS")
            .env_remove("TEMPORAL_NAMESPACE")
            .env_remove("TEMPORAL_PROFILE")
            .env_remove("TEMPORAL_CONFIG_FILE")
            .env_remove("TEMPORAL_API_KEY");
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("TEMPORAL_TLS")) {
                command.env_remove(key);
            }
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let log = self.logs.join(format!("{name}.log"));
        self.running
            .push(Supervised::spawn(name, command, &log).unwrap());
    }

    /// `restock factory` (named `factory`) on 127.0.0.1:`port`, a production step of
    /// `step_ms`.
    pub fn factory(&mut self, port: u16, step_ms: u64, env: &[(&str, String)]) {
        let addr = format!("--addr=127.0.0.1:{port}");
        let step = format!("--step-interval-ms={step_ms}");
        self.spawn("factory", &["factory", &addr, &step], env);
    }

    /// `restock gateway` as `name` on 127.0.0.1:`grpc` and :`http` (`ports`), with `extra`
    /// flags.
    pub fn gateway(&mut self, name: &str, ports: (u16, u16), extra: &[&str], env: &[Env]) {
        self.spawn_service(name, "gateway", ports, extra, env);
    }

    /// `restock worker` as `name`, ordering from the factory on 127.0.0.1:`factory` with
    /// callbacks to the gateway's HTTP listener on :`http` (`ports`), with `extra` flags.
    pub fn worker(&mut self, name: &str, ports: (u16, u16), extra: &[&str], env: &[Env]) {
        self.spawn_service(name, "worker", ports, extra, env);
    }

    fn spawn_service(
        &mut self,
        name: &str,
        command: &str,
        (first, http): (u16, u16),
        extra: &[&str],
        env: &[Env],
    ) {
        let first = match command {
            "gateway" => format!("--grpc-addr=127.0.0.1:{first}"),
            _ => format!("--factory-url=http://127.0.0.1:{first}"),
        };
        let http = format!("--http-addr=127.0.0.1:{http}");
        let args: Vec<&str> = [command, &first, &http]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        self.spawn(name, &args, env);
    }

    /// Kills one process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_9(&mut self, name: &str) {
        let index = self.running.iter().position(|p| p.name() == name).unwrap();
        let mut child = self.running.remove(index);
        assert!(child.exited().is_none(), "{name} had already exited");
        child.kill();
    }
}

/// GET `url`; the body when the answer is 2xx.
pub async fn http_get(url: &str) -> Option<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    response.status().is_success().then_some(())?;
    response.text().await.ok()
}

/// Polls `check` until it holds; panics with `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let check = || {
        let pending = check();
        async move { if pending.await { Ok(()) } else { Err("no") } }
    };
    if let Err(e) = wait_until(what, timeout, &mut [], check).await {
        panic!("{e}");
    }
}

/// Waits up to `timeout` until the gateway whose HTTP listener is on 127.0.0.1:`http_port`
/// answers `GET /healthz`.
pub async fn wait_healthy(http_port: u16, timeout: Duration) {
    let url = format!("http://127.0.0.1:{http_port}/healthz");
    wait_for(
        &format!("the gateway at {url} healthy"),
        timeout,
        || async { http_get(&url).await.is_some() },
    )
    .await;
}

/// A SalesService client of the gateway on 127.0.0.1:`grpc_port`.
pub async fn sales_client(
    grpc_port: u16,
) -> restock_proto::v1::sales_service_client::SalesServiceClient<tonic::transport::Channel> {
    restock_proto::v1::sales_service_client::SalesServiceClient::connect(format!(
        "http://127.0.0.1:{grpc_port}"
    ))
    .await
    .unwrap()
}

/// Buys one unit of `sku`; panics unless it sold.
pub async fn sell_one(
    sales: &mut restock_proto::v1::sales_service_client::SalesServiceClient<
        tonic::transport::Channel,
    >,
    sku: &str,
) {
    let reply = crate::buy_one(sales, sku).await;
    assert_eq!(
        reply.outcome(),
        restock_proto::v1::Outcome::Sold,
        "{sku}: {}",
        reply.message
    );
}
