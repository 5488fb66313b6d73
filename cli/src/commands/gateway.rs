//! `restock gateway`: serves gRPC and HTTP until SIGINT/SIGTERM.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use std::time::Duration;

use restock_gateway::{ApiTokens, GatewaySettings, RelaySettings, TemporalSettings, TlsSettings};
use restock_workflows::ReplenishSettings;

use crate::config::{CallbackArgs, DatabaseArgs, Secret, TemporalArgs, shutdown_signal};

/// `restock gateway` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Address of the gRPC API.
    #[arg(long, env = "RESTOCK_GRPC_ADDR", default_value = restock_gateway::DEFAULT_GRPC_ADDR)]
    grpc_addr: SocketAddr,
    #[command(flatten)]
    callback: CallbackArgs,
    #[command(flatten)]
    temporal: TemporalArgs,
    #[command(flatten)]
    workflow: WorkflowArgs,
    /// API tokens for gRPC, `name:role:token` separated by commas (roles: viewer, sales, admin).
    /// Without tokens the gateway serves gRPC on loopback addresses only. Never printed.
    #[arg(long, env = "RESTOCK_API_TOKENS", hide_env_values = true)]
    api_tokens: Option<Secret>,
    /// A file of API tokens, one `name:role:token` per line (instead of RESTOCK_API_TOKENS).
    #[arg(long, env = "RESTOCK_API_TOKENS_FILE", conflicts_with = "api_tokens")]
    api_tokens_file: Option<std::path::PathBuf>,
    /// TLS certificate chain (PEM) for the gRPC and HTTP listeners.
    #[arg(long, env = "RESTOCK_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) for the gRPC and HTTP listeners.
    #[arg(long, env = "RESTOCK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// How often gRPC health checks the database (NOT_SERVING while it does not answer).
    #[arg(long, env = "RESTOCK_HEALTH_CHECK_SECS", default_value_t = restock_gateway::DEFAULT_HEALTH_CHECK_INTERVAL.as_secs())]
    health_check_secs: u64,
}

/// Durations given to every replenish-stock workflow (and the relay's pace).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkflowArgs {
    /// How long to wait for the factory's callback before a replenishment is Overdue.
    #[arg(long, env = "RESTOCK_FACTORY_SLA_SECS", default_value_t = ReplenishSettings::default().factory_sla_secs)]
    pub factory_sla_secs: u64,
    /// Start-to-close timeout of one activity attempt.
    #[arg(long, env = "RESTOCK_ACTIVITY_TIMEOUT_SECS", default_value_t = ReplenishSettings::default().activity_timeout_secs)]
    pub activity_timeout_secs: u64,
    /// Longest pause between activity retries (they back off exponentially up to this).
    #[arg(long, env = "RESTOCK_RETRY_MAX_INTERVAL_SECS", default_value_t = ReplenishSettings::default().retry_max_interval_secs)]
    pub retry_max_interval_secs: u64,
    /// How often the outbox relay sweeps for intents (it also wakes right after each sale).
    #[arg(long, env = "RESTOCK_RELAY_SWEEP_SECS", default_value_t = RelaySettings::default().sweep_interval.as_secs())]
    pub relay_sweep_secs: u64,
}

impl WorkflowArgs {
    /// The relay settings these flags describe.
    pub(crate) fn relay(&self) -> RelaySettings {
        RelaySettings {
            sweep_interval: Duration::from_secs(self.relay_sweep_secs.max(1)),
            workflow: ReplenishSettings {
                factory_sla_secs: self.factory_sla_secs.max(1),
                activity_timeout_secs: self.activity_timeout_secs.max(1),
                retry_initial_secs: ReplenishSettings::default().retry_initial_secs,
                retry_max_interval_secs: self.retry_max_interval_secs.max(1),
            },
        }
    }
}

/// Runs the gateway.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let signer = args.callback.signer()?;
    let tokens = match (&args.api_tokens, &args.api_tokens_file) {
        (Some(spec), _) => ApiTokens::parse(spec.expose())
            .map_err(|e| anyhow::anyhow!("RESTOCK_API_TOKENS: {e}"))?,
        (None, Some(path)) => {
            let spec = std::fs::read_to_string(path)
                .with_context(|| format!("reading the API tokens file {}", path.display()))?;
            ApiTokens::parse(&spec).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        (None, None) => ApiTokens::default(),
    };
    restock_gateway::auth::check_open_listener(&tokens, args.grpc_addr)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSettings::from_files(cert, key)?),
        _ => None,
    };
    let store = args.db.connect().await?;
    let pending = store
        .pending_migrations()
        .await
        .context("reading the schema version")?;
    if pending > 0 {
        bail!("the database schema is {pending} migration(s) behind: run `restock migrate` first");
    }
    let grpc = TcpListener::bind(args.grpc_addr).await.with_context(|| {
        format!(
            "cannot listen for gRPC on {} (RESTOCK_GRPC_ADDR)",
            args.grpc_addr
        )
    })?;
    let http_addr = args.callback.http_addr;
    let http = TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {http_addr} (RESTOCK_HTTP_ADDR)"))?;
    let settings = GatewaySettings {
        temporal: Some(TemporalSettings {
            endpoint: args.temporal.endpoint()?,
            task_queue: args.temporal.task_queue.clone(),
            ui_url: Some(args.temporal.temporal_ui_url.clone()),
        }),
        signer,
        relay: args.workflow.relay(),
        tokens,
        tls,
        health_check_interval: Duration::from_secs(args.health_check_secs.max(1)),
    };
    restock_gateway::run(grpc, http, store, settings, shutdown_signal()).await
}
