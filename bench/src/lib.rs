//! restock's benchmark: starts the system, drives it, measures it against its ceilings and
//! writes `BENCHMARKS.md`. Run it with `scripts/bench.sh` (release build); CI runs
//! `scripts/bench.sh --quick` for a few seconds to keep it working.
//!
//! # Layout
//! - [`plan`]: what to run (`--quick` or the full run) and where from.
//! - [`system`]: the processes under test (`restock gateway`, `worker`, `factory`, a
//!   Temporal dev server) and their resident memory.
//! - [`load`]: the load generator (tonic clients, hdrhistogram): purchases, and the gRPC
//!   no-op that measures the generator's and the transport's own limit.
//! - [`cpu`]: where a measured window's CPU time went, per operation (the machine, the
//!   generator, the gateway, PostgreSQL).
//! - [`ceiling`]: the databases' own rate for the sale's conditional `UPDATE` (pgbench for
//!   PostgreSQL, the C library for SQLite), and SQLite's for the whole keyed sale.
//! - [`replenish`]: out-of-stock sale → factory order latency, and replenishments per second.
//! - [`trivial`]: the one-activity workflow that replenishments per second are compared with.
//! - [`simulate`]: scenario 5, the service level: Poisson buyers against the real stack, the
//!   fixed and the adaptive replenishment policy side by side; [`chart`] draws it.
//! - [`machine`]: the machine description at the top of the report.
//! - [`report`]: the markdown.

pub mod ceiling;
pub mod chart;
pub mod cpu;
pub mod load;
pub mod machine;
pub mod plan;
pub mod replenish;
pub mod report;
pub mod simulate;
pub mod system;
pub mod trivial;

use std::time::Duration;

use anyhow::Context;

use crate::plan::Plan;
use crate::report::{Memory, PurchaseRow, Report};
use crate::system::{Backend, System};

/// Runs every scenario of `plan` and writes the report to `plan.out`.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let machine = machine::describe(&plan).await;
    eprintln!("bench: {}", machine.summary());
    let system = System::start(&plan).await?;
    let mut report = Report::new(plan.clone(), machine);

    // 1. Purchases against their ceiling, per database.
    let mut backends = vec![Backend::Sqlite];
    match &plan.postgres_url {
        Some(_) => backends.push(Backend::Postgres),
        None => report
            .notes
            .push("PostgreSQL skipped: no --postgres-url / RESTOCK_BENCH_POSTGRES_URL.".into()),
    }
    if plan.replenishment_only {
        backends.clear();
        report
            .notes
            .push("--replenishment-only: the purchase scenario was not run.".into());
    }
    for backend in backends {
        let db = system.database(backend).await?;
        load::create_products(&db.store, &plan).await?;
        for grouped in [false, true] {
            let gateway = system
                .gateway(
                    &db,
                    grouped,
                    &format!("gateway-{}-{grouped}", backend.name()),
                )
                .await?;
            let idle = gateway.rss_kib();
            if grouped {
                // The transport's limit: the same generator calling a method with no work.
                for &concurrency in &plan.concurrency {
                    let noop =
                        load::closed_loop(&gateway, backend, load::Call::Noop, concurrency, &plan)
                            .await
                            .with_context(|| format!("no-op at {concurrency}"))?;
                    eprintln!("bench: {} no-op c={concurrency}: {noop}", backend.name());
                    report.noops.push((backend, concurrency, noop));
                }
            }
            for shape in plan.shapes() {
                for &concurrency in &plan.concurrency {
                    let measured = load::purchases(&gateway, backend, shape, concurrency, &plan)
                        .await
                        .with_context(|| {
                            format!("{} {shape:?} at {concurrency}", backend.name())
                        })?;
                    eprintln!(
                        "bench: {} {shape:?} c={concurrency} grouped={grouped}: {measured}",
                        backend.name()
                    );
                    report.purchases.push(PurchaseRow {
                        backend,
                        shape,
                        concurrency,
                        grouped,
                        measured,
                    });
                }
            }
            report.memory.push(Memory {
                process: format!(
                    "gateway ({}, {})",
                    backend.name(),
                    if grouped { "grouped" } else { "ungrouped" }
                ),
                idle_kib: idle,
                peak_kib: gateway.peak_rss_kib(),
                load: "the purchase runs above".into(),
            });
            gateway.stop().await;
        }
        for shape in plan.shapes() {
            let mut single_writer: Option<ceiling::Ceiling> = None;
            for &concurrency in &plan.concurrency {
                // SQLite's ceiling is one writer's: the same for every client count.
                let ceiling = match (&single_writer, backend) {
                    (Some(known), Backend::Sqlite) => known.clone(),
                    _ => ceiling::measure(&db, shape, concurrency, &plan).await?,
                };
                if backend == Backend::Sqlite {
                    single_writer = Some(ceiling.clone());
                }
                eprintln!(
                    "bench: ceiling {} {shape:?} c={concurrency}: {}",
                    backend.name(),
                    ceiling.describe()
                );
                report.ceilings.push((backend, shape, concurrency, ceiling));
            }
            if backend == Backend::Sqlite {
                let sale = ceiling::sqlite_keyed_sale(&db, shape, &plan).await?;
                eprintln!(
                    "bench: keyed sale transaction {} {shape:?}: {}",
                    backend.name(),
                    sale.describe()
                );
                report.sale_ceilings.push((backend, shape, sale));
            }
        }
    }

    if plan.purchases_only {
        report.notes.push(
            "--purchases-only: scenarios 2 and 3 and the worker's memory were not run.".into(),
        );
        return finish(report, system, &plan).await;
    }

    if plan.simulation_only {
        report
            .notes
            .push("--simulation-only: scenarios 1 to 4 were not run.".into());
        return simulation(report, system, &plan).await;
    }

    // 2-4. The replenishment path, on the embedded default (SQLite).
    let db = system.database(Backend::Sqlite).await?;
    let stack = system.replenishment_stack(&db).await?;
    // Let the worker settle (connections, pollers) before calling its memory idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let worker_idle = stack.worker.rss_kib();
    let gateway_idle = stack.gateway.rss_kib();
    let latency = replenish::order_latency(&stack, &system.temporal, &plan).await?;
    eprintln!(
        "bench: out-of-stock sale -> factory order: p50 {:.1} ms p99 {:.1} ms",
        latency.p50_ms, latency.p99_ms
    );
    report.order_latency = Some(latency);
    let replenishments = replenish::throughput(&stack, &system.temporal, &plan).await?;
    eprintln!(
        "bench: {} replenishments in {:.2} s",
        replenishments.completed,
        replenishments.elapsed.as_secs_f64()
    );
    report.replenishments = Some(replenishments);
    let trivial = trivial::throughput(&system, &plan).await?;
    eprintln!(
        "bench: {} trivial workflows in {:.2} s",
        trivial.completed,
        trivial.elapsed.as_secs_f64()
    );
    report.trivial = Some(trivial);
    report.memory.push(Memory {
        process: "gateway (SQLite, with Temporal)".into(),
        idle_kib: gateway_idle,
        peak_kib: stack.gateway.peak_rss_kib(),
        load: "scenarios 2 and 3".into(),
    });
    report.memory.push(Memory {
        process: "worker".into(),
        idle_kib: worker_idle,
        peak_kib: stack.worker.peak_rss_kib(),
        load: "scenarios 2 and 3".into(),
    });
    stack.stop().await;
    if plan.replenishment_only {
        // (--simulation-only returned above.)
        report
            .notes
            .push("--replenishment-only: the service-level simulation (5) was not run.".into());
        return finish(report, system, &plan).await;
    }
    simulation(report, system, &plan).await
}

/// 5. The service level, then the report.
async fn simulation(mut report: Report, system: System, plan: &Plan) -> anyhow::Result<Report> {
    let simulated = simulate::run(&system, plan).await?;
    for row in &simulated.rows {
        eprintln!(
            "bench: simulation {} {}: fill {:.1}%, {:.0} s out of stock, {:.1} on hand, {} orders",
            row.demand.label,
            row.policy.name(),
            row.fill_rate() * 100.0,
            row.out_of_stock_secs,
            row.average_on_hand,
            row.factory_orders
        );
    }
    report.simulation = Some(simulated);
    finish(report, system, plan).await
}

async fn finish(report: Report, system: System, plan: &Plan) -> anyhow::Result<Report> {
    system.stop().await;
    let text = report.markdown();
    if let Some(dir) = plan.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&plan.out, text).with_context(|| format!("writing {}", plan.out.display()))?;
    eprintln!("bench: wrote {}", plan.out.display());
    Ok(report)
}
