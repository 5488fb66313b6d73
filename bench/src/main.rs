//! `restock-bench`: see the `restock_bench` library and `scripts/bench.sh`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // One TLS crypto provider for the process (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = restock_bench::plan::Args::parse();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let plan = restock_bench::plan::Plan::from_args(args)?;
                restock_bench::run(plan).await
            })
        });
    match result {
        Ok(report) => {
            if let Some((ungrouped, grouped)) = report.goal_ratios() {
                eprintln!(
                    "bench: PostgreSQL hot product at 64 clients: ungrouped {ungrouped:.2}x, grouped {grouped:.2}x the pgbench ceiling"
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
