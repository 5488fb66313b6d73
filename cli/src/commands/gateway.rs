//! `restock gateway`: serves gRPC and HTTP until SIGINT/SIGTERM.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::config::{DatabaseArgs, shutdown_signal};

/// `restock gateway` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Address of the gRPC API.
    #[arg(long, env = "RESTOCK_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// Address of the HTTP listener (health, factory callbacks).
    #[arg(long, env = "RESTOCK_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
}

/// Runs the gateway.
pub async fn run(args: Args) -> anyhow::Result<()> {
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
    let http = TcpListener::bind(args.http_addr).await.with_context(|| {
        format!(
            "cannot listen for HTTP on {} (RESTOCK_HTTP_ADDR)",
            args.http_addr
        )
    })?;
    restock_gateway::run(grpc, http, store, shutdown_signal()).await
}
