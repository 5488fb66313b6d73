//! What a benchmark run does: the full run for `BENCHMARKS.md`, or `--quick` for CI.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// `restock-bench` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "restock-bench",
    about = "Benchmark restock and write BENCHMARKS.md"
)]
pub struct Args {
    /// A few seconds per scenario with small counts: keeps the benchmark working in CI; its
    /// figures mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the report (default: BENCHMARKS.md, or target/bench-quick.md with
    /// --quick).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// PostgreSQL server to benchmark on (a database `restock_bench_<pid>` is created and
    /// dropped there); PostgreSQL rows are skipped without it.
    #[arg(long, env = "RESTOCK_BENCH_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// The `restock` binary to run (default: next to this one).
    #[arg(long, env = "RESTOCK_BENCH_RESTOCK_BIN")]
    pub restock_bin: Option<PathBuf>,
    /// The `pgbench` binary (default: `pgbench` on PATH).
    #[arg(long, env = "RESTOCK_BENCH_PGBENCH", default_value = "pgbench")]
    pub pgbench: PathBuf,
    /// Seconds of measurement per purchase point (default 5, or 0.5 with --quick).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Purchase concurrencies, comma-separated (default 1,16,64,256, or 1,16 with --quick).
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Only the purchase scenario (1), for a quick look at the sale; the report says so.
    #[arg(long, conflicts_with = "replenishment_only")]
    pub purchases_only: bool,
    /// Only scenarios 2 to 4 (the replenishment path); the report says so.
    #[arg(long)]
    pub replenishment_only: bool,
    /// Out-of-stock sales timed one by one in scenario 2 (default 200, or 5 with --quick).
    #[arg(long)]
    pub latency_samples: Option<usize>,
    /// Replenishments (and trivial workflows) started at once in scenario 3 (default 300, or
    /// 10 with --quick).
    #[arg(long)]
    pub burst: Option<usize>,
    /// Seconds of the service-level simulation, scenario 5 (default 600, or 20 with --quick).
    #[arg(long)]
    pub simulation_secs: Option<f64>,
    /// Only the service-level simulation (scenario 5); the report says so.
    #[arg(long, conflicts_with_all = ["purchases_only", "replenishment_only"])]
    pub simulation_only: bool,
    /// Extra arguments for `temporal server start-dev` (repeat the flag per argument).
    #[arg(long, allow_hyphen_values = true)]
    pub temporal_arg: Vec<String>,
}

/// The product(s) a purchase run buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Every sale is of the same product: one row, one lock.
    Hot,
    /// Sales spread over [`Plan::spread_products`] products.
    Spread,
}

impl Shape {
    /// Label in the report.
    pub fn label(self, plan: &Plan) -> String {
        match self {
            Shape::Hot => "1 hot product".to_owned(),
            Shape::Spread => format!("{} products", plan.spread_products),
        }
    }
}

/// A resolved run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `--quick`.
    pub quick: bool,
    /// Report path.
    pub out: PathBuf,
    /// PostgreSQL server URL.
    pub postgres_url: Option<String>,
    /// `restock` binary.
    pub restock_bin: PathBuf,
    /// `pgbench` binary.
    pub pgbench: PathBuf,
    /// Purchase concurrencies.
    pub concurrency: Vec<usize>,
    /// Products of the spread shape.
    pub spread_products: usize,
    /// Warm-up before each purchase point (not measured).
    pub warmup: Duration,
    /// Measurement per purchase point and per ceiling.
    pub measure: Duration,
    /// Out-of-stock sales timed one by one (scenario 2).
    pub latency_samples: usize,
    /// Replenishments started at once (scenario 3), and trivial workflows.
    pub burst: usize,
    /// Skip scenarios 2 to 4's replenishment stack.
    pub purchases_only: bool,
    /// Skip scenario 1.
    pub replenishment_only: bool,
    /// Extra `temporal server start-dev` arguments.
    pub temporal_args: Vec<String>,
    /// How long the service-level simulation runs.
    pub simulation: Duration,
    /// Only scenario 5.
    pub simulation_only: bool,
}

impl Plan {
    /// Resolves `args` against defaults; the `restock` binary must exist.
    pub fn from_args(args: Args) -> anyhow::Result<Plan> {
        let restock_bin = match args.restock_bin {
            Some(bin) => bin,
            None => std::env::current_exe()?.with_file_name("restock"),
        };
        if !restock_bin.is_file() {
            anyhow::bail!(
                "no restock binary at {} (build it with `cargo build --release -p restock`, or pass --restock-bin)",
                restock_bin.display()
            );
        }
        let out = args.out.unwrap_or_else(|| {
            PathBuf::from(if args.quick {
                "target/bench-quick.md"
            } else {
                "BENCHMARKS.md"
            })
        });
        let seconds = args.seconds.unwrap_or(if args.quick { 0.5 } else { 5.0 });
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 600.0) {
            anyhow::bail!("--seconds must be between 0 and 600, got {seconds}");
        }
        let quick = args.quick;
        let simulation = args
            .simulation_secs
            .unwrap_or(if quick { 20.0 } else { 600.0 });
        if !(simulation.is_finite() && (10.0..=7_200.0).contains(&simulation)) {
            anyhow::bail!("--simulation-secs must be between 10 and 7200, got {simulation}");
        }
        if args.concurrency.iter().any(|&c| c == 0 || c > 4096) {
            anyhow::bail!("--concurrency values must be between 1 and 4096");
        }
        Ok(Plan {
            quick,
            out,
            postgres_url: args.postgres_url.filter(|u| !u.is_empty()),
            restock_bin,
            pgbench: args.pgbench,
            concurrency: match args.concurrency {
                c if !c.is_empty() => c,
                _ if quick => vec![1, 16],
                _ => vec![1, 16, 64, 256],
            },
            spread_products: if quick { 50 } else { 1000 },
            warmup: Duration::from_secs_f64(if quick { 0.2 } else { 1.0 }),
            measure: Duration::from_secs_f64(seconds),
            latency_samples: args
                .latency_samples
                .unwrap_or(if quick { 5 } else { 200 })
                .max(2),
            burst: args.burst.unwrap_or(if quick { 10 } else { 300 }).max(1),
            purchases_only: args.purchases_only,
            replenishment_only: args.replenishment_only || args.simulation_only,
            simulation: Duration::from_secs_f64(simulation),
            simulation_only: args.simulation_only,
            temporal_args: args.temporal_arg,
        })
    }

    /// Both product shapes.
    pub fn shapes(&self) -> [Shape; 2] {
        [Shape::Hot, Shape::Spread]
    }
}
