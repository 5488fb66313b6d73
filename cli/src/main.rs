//! `restock`: one binary for every part of the system and the client commands people use.
//!
//! # Layout
//! - [`config`]: flags with environment fallbacks (`RESTOCK_DATABASE_URL`, ...), shared by
//!   the subcommands.
//! - [`commands`]: one module per subcommand; each is a thin shell over a library crate.

mod commands;
mod config;

use clap::{Parser, Subcommand};

/// Automatic stock replenishment: sell, run out, reorder from the factory, restock.
#[derive(Debug, Parser)]
#[command(name = "restock", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    log: config::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system on this machine (Temporal dev server + UI, SQLite, factory
    /// simulator, worker, gateway) until Ctrl-C.
    Dev(commands::dev::Args),
    /// Create or update the database schema (and optionally load the demo catalogue).
    Migrate(commands::migrate::Args),
    /// Run the gRPC gateway (sales, inventory) and its HTTP listener.
    Gateway(commands::gateway::Args),
    /// Run the Temporal worker (the replenish-stock workflow and its activities).
    Worker(commands::worker::Args),
    /// Run the legacy factory simulator.
    Factory(commands::factory::Args),
    /// Buy a product through the gateway.
    Buy(commands::client::BuyArgs),
    /// Show stock: one product, or all of them.
    Stock(commands::client::StockArgs),
    /// List replenishments (state, age, overdue), newest first.
    Replenishments(commands::replenishments::ListArgs),
    /// Show one product's replenishment: live state and its history.
    Replenishment(commands::replenishments::ShowArgs),
    /// Report a factory delivery by hand (when its callback was lost).
    Complete(commands::replenishments::CompleteArgs),
    /// Cancel a product's running replenishment.
    Cancel(commands::replenishments::CancelArgs),
}

fn main() -> std::process::ExitCode {
    // One TLS crypto provider for the whole process (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    config::init_tracing(&cli.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => commands::dev::run(args).await,
            Command::Migrate(args) => commands::migrate::run(args).await,
            Command::Gateway(args) => commands::gateway::run(args).await,
            Command::Worker(args) => commands::worker::run(args).await,
            Command::Factory(args) => commands::factory::run(args).await,
            Command::Buy(args) => commands::client::buy(args).await,
            Command::Stock(args) => commands::client::stock(args).await,
            Command::Replenishments(args) => commands::replenishments::list(args).await,
            Command::Replenishment(args) => commands::replenishments::show(args).await,
            Command::Complete(args) => commands::replenishments::complete(args).await,
            Command::Cancel(args) => commands::replenishments::cancel(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
