//! `restock`: one binary for every part of the system and the client commands people use.
//!
//! # Layout
//! - [`config`]: flags with environment fallbacks (`RESTOCK_DATABASE_URL`, ...), shared by
//!   the subcommands.
//! - [`commands`]: one module per subcommand; each is a thin shell over a library crate.
//! - [`output`]: what client commands print (a closed stdout ends them quietly); [`exit`]:
//!   the documented exit codes.

#[macro_use]
mod output;
mod commands;
mod config;
mod exit;

use clap::{Parser, Subcommand};

/// Automatic stock replenishment: sell, run out, reorder from the factory, restock.
#[derive(Debug, Parser)]
#[command(
    name = "restock",
    version,
    about,
    propagate_version = true,
    after_help = exit::HELP
)]
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
    /// Change a product (`restock product set SKU --policy adaptive --service-level 99.5`).
    #[command(subcommand)]
    Product(commands::product::ProductCommand),
    /// List the factories, or create/change one (`restock factories set ID --manager-email ...`).
    Factories(commands::factories::Args),
    /// List replenishments (state, age, overdue), newest first.
    Replenishments(commands::replenishments::ListArgs),
    /// Show one product's replenishment: live state and its history.
    Replenishment(commands::replenishments::ShowArgs),
    /// Report a factory delivery by hand (when its callback was lost).
    Complete(commands::replenishments::CompleteArgs),
    /// Cancel a product's running replenishment.
    Cancel(commands::replenishments::CancelArgs),
    /// Print a shell completion script (`restock completions bash > ~/.local/share/bash-completion/completions/restock`).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; `restock man | man -l -`).
    Man,
}

/// Writes `shell`'s completion script for restock to stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut <Cli as clap::CommandFactory>::command(),
        "restock",
        &mut script,
    );
    output::bytes(&script)
}

/// Writes restock's man page (roff) to stdout.
fn man_page() -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut page)?;
    output::bytes(&page)
}

fn main() -> std::process::ExitCode {
    // One TLS crypto provider for the whole process (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let json = std::env::args_os().any(|a| a == "--json");
    config::init_tracing(&cli.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<u8> = runtime.block_on(async {
        let done = |r: anyhow::Result<()>| r.map(|()| exit::OK);
        match cli.command {
            Command::Dev(args) => done(commands::dev::run(args).await),
            Command::Migrate(args) => done(commands::migrate::run(args).await),
            Command::Gateway(args) => done(commands::gateway::run(args).await),
            Command::Worker(args) => done(commands::worker::run(args).await),
            Command::Factory(args) => done(commands::factory::run(args).await),
            Command::Buy(args) => commands::client::buy(args).await,
            Command::Stock(args) => done(commands::client::stock(args).await),
            Command::Product(command) => done(commands::product::run(command).await),
            Command::Factories(args) => done(commands::factories::run(args).await),
            Command::Replenishments(args) => done(commands::replenishments::list(args).await),
            Command::Replenishment(args) => done(commands::replenishments::show(args).await),
            Command::Complete(args) => done(commands::replenishments::complete(args).await),
            Command::Cancel(args) => done(commands::replenishments::cancel(args).await),
            Command::Completions { shell } => done(completions(shell)),
            Command::Man => done(man_page()),
        }
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(err) if output::is_stdout_closed(&err) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            use std::io::Write;
            // A script that asked for JSON gets the error as JSON too (on stdout, where it
            // reads the answer); people get the text on stderr either way.
            if json {
                let _ = writeln!(std::io::stdout(), "{}", exit::to_json(&err));
            }
            // Not eprintln!: a closed stderr must not turn an error into a panic either.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            std::process::ExitCode::from(exit::for_error(&err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completions_and_man_page_cover_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "restock", &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in ["buy", "replenishments", "product", "completions"] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH restock 1"), "{page}");
        assert!(page.contains("replenishments"), "{page}");
    }
}
