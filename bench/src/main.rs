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
            for goal in report.goals().iter().filter(|g| g.measured.is_some()) {
                let (measured, bound) = goal.figures();
                let met = if goal.met() { "met" } else { "NOT met" };
                eprintln!("bench: goal {}: {measured} (goal {bound}) {met}", goal.what);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
