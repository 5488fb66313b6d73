//! `restock factory`: the legacy factory simulator (same wire contract, plus fault knobs).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use restock_factory::{Simulator, SimulatorConfig};
use tokio::net::TcpListener;

use crate::config::shutdown_signal;

/// `restock factory` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to listen.
    #[arg(long, env = "RESTOCK_FACTORY_ADDR", default_value = restock_factory::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Time between the five production steps (the callback comes 4 steps after the order).
    #[arg(long, env = "RESTOCK_FACTORY_STEP_MS", default_value_t = SimulatorConfig::default().step_interval.as_millis() as u64)]
    step_interval_ms: u64,
    /// Answer the first N orders with 503.
    #[arg(long, default_value_t = 0)]
    fail_first: u32,
    /// Probability (0..1) of answering an order with 503.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Seed of the failure draws.
    #[arg(long, default_value_t = SimulatorConfig::default().seed)]
    seed: u64,
    /// Extra delay before each order reply (the order is taken before the delay).
    #[arg(long, default_value_t = 0)]
    extra_latency_ms: u64,
    /// Never call back.
    #[arg(long)]
    drop_callbacks: bool,
    /// Drop the callback of every Nth order (0: never).
    #[arg(long, default_value_t = 0)]
    drop_callback_every: u32,
    /// Call back twice.
    #[arg(long)]
    duplicate_callbacks: bool,
}

/// Runs the simulator until SIGINT/SIGTERM.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let config = SimulatorConfig {
        step_interval: Duration::from_millis(args.step_interval_ms),
        fail_first: args.fail_first,
        failure_rate: args.failure_rate,
        seed: args.seed,
        extra_latency: Duration::from_millis(args.extra_latency_ms),
        drop_callbacks: args.drop_callbacks,
        drop_callback_every: args.drop_callback_every,
        duplicate_callbacks: args.duplicate_callbacks,
        ..SimulatorConfig::default()
    };
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {} (RESTOCK_FACTORY_ADDR)", args.addr))?;
    tracing::info!(addr = %args.addr, production = ?config.production_time(), "factory simulator serving");
    Simulator::run(listener, config, shutdown_signal()).await
}
