//! `BENCHMARKS.md`: every figure of a run, beside its ceiling or anchor, with how it was
//! measured. The whole file is generated; edit this module, not the file.

use std::fmt::Write;

use crate::ceiling::Ceiling;
use crate::load::Measured;
use crate::machine::Machine;
use crate::plan::{Plan, Shape};
use crate::replenish::{OrderLatency, Throughput};
use crate::system::Backend;

/// One purchase point.
#[derive(Debug, Clone)]
pub struct PurchaseRow {
    /// Database.
    pub backend: Backend,
    /// Product shape.
    pub shape: Shape,
    /// Clients.
    pub concurrency: usize,
    /// Purchase grouping on.
    pub grouped: bool,
    /// Figures.
    pub measured: Measured,
}

/// Resident memory of one process.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Which process.
    pub process: String,
    /// VmRSS once started and ready, KiB.
    pub idle_kib: Option<u64>,
    /// VmHWM (peak) after the load, KiB.
    pub peak_kib: Option<u64>,
    /// What load the peak covers.
    pub load: String,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    plan: Plan,
    machine: Machine,
    /// Scenario 1.
    pub purchases: Vec<PurchaseRow>,
    /// Scenario 1's ceilings.
    pub ceilings: Vec<(Backend, Shape, usize, Ceiling)>,
    /// Scenario 1's gRPC no-op ceiling: the same generator and concurrency calling a method
    /// that does no work, per database's gateway.
    pub noops: Vec<(Backend, usize, Measured)>,
    /// SQLite: the whole keyed sale transaction through the C library.
    pub sale_ceilings: Vec<(Backend, Shape, Ceiling)>,
    /// Scenario 2.
    pub order_latency: Option<OrderLatency>,
    /// Scenario 3.
    pub replenishments: Option<Throughput>,
    /// Scenario 3's yardstick.
    pub trivial: Option<Throughput>,
    /// Scenario 4.
    pub memory: Vec<Memory>,
    /// Scenario 5.
    pub simulation: Option<crate::simulate::Simulation>,
    /// Things skipped or worth knowing.
    pub notes: Vec<String>,
}

/// The client count the goals are set at.
pub const GOAL_CONCURRENCY: usize = 64;

/// One goal and what the run measured for it.
#[derive(Debug, Clone)]
pub struct Goal {
    /// What is compared.
    pub what: String,
    /// The figure, when this run measured it.
    pub measured: Option<f64>,
    /// The bound.
    pub target: f64,
    /// `true`: measured ≤ target; `false`: measured ≥ target.
    pub at_most: bool,
}

impl Goal {
    fn at_least(what: String, measured: Option<f64>, target: f64) -> Goal {
        Goal {
            what,
            measured,
            target,
            at_most: false,
        }
    }

    fn at_most(what: String, measured: Option<f64>, target: f64) -> Goal {
        Goal {
            what,
            measured,
            target,
            at_most: true,
        }
    }

    /// Whether the run met it (`false` when not measured).
    pub fn met(&self) -> bool {
        match self.measured {
            Some(m) if self.at_most => m <= self.target,
            Some(m) => m >= self.target,
            None => false,
        }
    }

    /// The measured figure and the bound, e.g. `("0.52", "≥ 1")`.
    pub fn figures(&self) -> (String, String) {
        let sign = if self.at_most { "≤" } else { "≥" };
        (
            format!("{:.2}", self.measured.unwrap_or_default()),
            format!("{sign} {}", self.target),
        )
    }
}

/// Scenario 3's CPU per workflow: the Temporal server's for each kind, the workflows' own
/// processes', and the ratio the server alone leaves room for.
fn workflow_cpu(r: &Throughput, t: &Throughput) -> Option<String> {
    let ms = |us: f64| us / 1000.0;
    let server_r = r.cpu.temporal_us?;
    let server_t = t.cpu.temporal_us?;
    let restock = r.cpu.gateway_us? + r.cpu.others_us? + r.cpu.generator_us?;
    let trivial_worker = t.cpu.generator_us?;
    (server_r > 0.0).then(|| {
        format!(
            "Where the CPU went, per workflow (each process's CPU time from the first start to the last completion ÷ the workflows): the Temporal server {:.1} ms per replenishment and {:.1} ms per trivial workflow; restock's gateway, worker and factory simulator with the load generator {:.1} ms per replenishment; the trivial workflow's worker and starter (the load generator) {:.1} ms; the whole machine busy {} and {} ms, idle {} and {}. Had restock's own processes cost nothing, the server's share alone would allow a ratio of at most {:.2}.",
            ms(server_r),
            ms(server_t),
            ms(restock),
            ms(trivial_worker),
            r.cpu.machine_us.map_or_else(|| "-".to_owned(), |v| format!("{:.1}", ms(v))),
            t.cpu.machine_us.map_or_else(|| "-".to_owned(), |v| format!("{:.1}", ms(v))),
            r.cpu.idle.map_or_else(|| "-".to_owned(), |v| format!("{:.0}%", v * 100.0)),
            t.cpu.idle.map_or_else(|| "-".to_owned(), |v| format!("{:.0}%", v * 100.0)),
            (server_t + trivial_worker) / server_r
        )
    })
}

/// Operations a second `cpus` CPUs can run at most when each costs `us_per_op` µs of CPU and
/// none is idle (`None` for a cost of nothing).
fn most_per_second(cpus: usize, us_per_op: f64) -> Option<f64> {
    (us_per_op > 0.0).then(|| cpus.max(1) as f64 * 1_000_000.0 / us_per_op)
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.0} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".to_owned())
}

impl Report {
    /// An empty report for `plan` on `machine`.
    pub fn new(plan: Plan, machine: Machine) -> Report {
        Report {
            plan,
            machine,
            purchases: Vec::new(),
            ceilings: Vec::new(),
            noops: Vec::new(),
            sale_ceilings: Vec::new(),
            order_latency: None,
            replenishments: None,
            trivial: None,
            memory: Vec::new(),
            simulation: None,
            notes: Vec::new(),
        }
    }

    fn purchase(
        &self,
        backend: Backend,
        shape: Shape,
        c: usize,
        grouped: bool,
    ) -> Option<&Measured> {
        self.purchases
            .iter()
            .find(|r| {
                r.backend == backend
                    && r.shape == shape
                    && r.concurrency == c
                    && r.grouped == grouped
            })
            .map(|r| &r.measured)
    }

    fn ceiling(&self, backend: Backend, shape: Shape, c: usize) -> Option<&Ceiling> {
        self.ceilings
            .iter()
            .find(|(b, s, cc, _)| *b == backend && *s == shape && *cc == c)
            .map(|(_, _, _, ceiling)| ceiling)
    }

    fn noop(&self, backend: Backend, c: usize) -> Option<&Measured> {
        self.noops
            .iter()
            .find(|(b, cc, _)| *b == backend && *cc == c)
            .map(|(_, _, m)| m)
    }

    fn sale_ceiling(&self, backend: Backend, shape: Shape) -> Option<&Ceiling> {
        self.sale_ceilings
            .iter()
            .find(|(b, s, _)| *b == backend && *s == shape)
            .map(|(_, _, c)| c)
    }

    /// The goals the speed issue set, each with what this run measured (those it could).
    pub fn goals(&self) -> Vec<Goal> {
        let c = GOAL_CONCURRENCY;
        let mut goals = Vec::new();
        let rate = |m: Option<&Measured>| m.map(|m| m.per_second);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let sqlite_hot_grouped = rate(self.purchase(Backend::Sqlite, Shape::Hot, c, true));
        let sqlite_hot_ungrouped = rate(self.purchase(Backend::Sqlite, Shape::Hot, c, false));
        let sqlite_statement = self
            .ceiling(Backend::Sqlite, Shape::Hot, c)
            .map(|x| x.per_second);
        let sqlite_noop = rate(self.noop(Backend::Sqlite, c));
        goals.push(Goal::at_least(
            format!("SQLite hot product, {c} clients: grouped ÷ gRPC no-op"),
            ratio(sqlite_hot_grouped, sqlite_noop),
            0.5,
        ));
        goals.push(Goal::at_least(
            format!("SQLite hot product, {c} clients: grouped ÷ C-library statement ceiling"),
            ratio(sqlite_hot_grouped, sqlite_statement),
            0.3,
        ));
        goals.push(Goal::at_least(
            format!("SQLite hot product, {c} clients: ungrouped ÷ C-library statement ceiling"),
            ratio(sqlite_hot_ungrouped, sqlite_statement),
            0.1,
        ));
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let best = [Shape::Hot, Shape::Spread]
                .into_iter()
                .flat_map(|shape| [true, false].map(|g| (shape, g)))
                .filter_map(|(shape, g)| rate(self.purchase(backend, shape, c, g)))
                .fold(None, |best: Option<f64>, r| {
                    Some(best.map_or(r, |b| b.max(r)))
                });
            goals.push(Goal::at_least(
                format!(
                    "{}, {c} clients: the generator's no-op ÷ its best sale rate (the generator is not the limit)",
                    backend.name()
                ),
                ratio(rate(self.noop(backend, c)), best),
                3.0,
            ));
        }
        let pg_spread = self
            .ceiling(Backend::Postgres, Shape::Spread, c)
            .map(|x| x.per_second);
        let pg_hot = self
            .ceiling(Backend::Postgres, Shape::Hot, c)
            .map(|x| x.per_second);
        goals.push(Goal::at_least(
            format!(
                "PostgreSQL {} products, {c} clients: grouped ÷ pgbench",
                self.plan.spread_products
            ),
            ratio(
                rate(self.purchase(Backend::Postgres, Shape::Spread, c, true)),
                pg_spread,
            ),
            1.0,
        ));
        goals.push(Goal::at_least(
            format!("PostgreSQL hot product, {c} clients: grouped ÷ pgbench"),
            ratio(
                rate(self.purchase(Backend::Postgres, Shape::Hot, c, true)),
                pg_hot,
            ),
            2.0,
        ));
        goals.push(Goal::at_most(
            "Out-of-stock sale → order received, p50 (ms)".into(),
            self.order_latency.as_ref().map(|l| l.p50_ms),
            30.0,
        ));
        goals.push(Goal::at_most(
            "Out-of-stock sale → order received, p99 (ms)".into(),
            self.order_latency.as_ref().map(|l| l.p99_ms),
            60.0,
        ));
        goals.push(Goal::at_least(
            "Replenishments per second ÷ the trivial workflow".into(),
            match (&self.replenishments, &self.trivial) {
                (Some(r), Some(t)) => ratio(Some(r.per_second()), Some(t.per_second())),
                _ => None,
            },
            0.8,
        ));
        let peak = |gateway: bool| {
            self.memory
                .iter()
                .filter(|m| m.process.starts_with("gateway") == gateway)
                .filter_map(|m| m.peak_kib)
                .max()
                .map(|k| k as f64 / 1024.0)
        };
        goals.push(Goal::at_most(
            "Gateway peak RSS under load (MiB)".into(),
            peak(true),
            40.0,
        ));
        goals.push(Goal::at_most(
            "Worker peak RSS under load (MiB)".into(),
            peak(false),
            60.0,
        ));
        if let Some(sim) = &self.simulation {
            use crate::simulate::Policy;
            for row in sim.rows.iter().filter(|r| r.policy == Policy::Adaptive) {
                if row.demand.step_to.is_none() {
                    goals.push(Goal::at_least(
                        format!("Simulation {}: adaptive fill rate (%)", row.demand.label),
                        Some(row.fill_rate() * 100.0),
                        99.0,
                    ));
                    goals.push(Goal::at_most(
                        format!(
                            "Simulation {}: adaptive average on hand ÷ lead-time demand",
                            row.demand.label
                        ),
                        Some(row.average_on_hand / row.lead_time_demand.max(1e-9)),
                        3.0,
                    ));
                }
                if let Some(after) = row.fill_after_step() {
                    goals.push(Goal::at_least(
                        format!(
                            "Simulation {}: adaptive fill rate from 3 lead times after the step (%)",
                            row.demand.label
                        ),
                        Some(after * 100.0),
                        99.0,
                    ));
                }
            }
        }
        goals
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        out.push_str("# Benchmarks\n\n");
        let _ = writeln!(
            out,
            "Generated by `scripts/bench.sh`{} — do not edit by hand; the text comes from `bench/src/report.rs`.\n",
            if self.plan.quick {
                " --quick (CI smoke run: these figures mean nothing)"
            } else {
                ""
            }
        );
        out.push_str("## Machine\n\n");
        out.push_str("| | |\n|---|---|\n");
        let _ = writeln!(out, "| CPU | {} × {} |", m.cpus, m.cpu);
        let _ = writeln!(out, "| Memory | {:.1} GiB |", m.memory_gib);
        let _ = writeln!(out, "| Kernel | Linux {} |", m.kernel);
        let _ = writeln!(
            out,
            "| PostgreSQL | {} |",
            m.postgres.as_deref().unwrap_or("not benchmarked")
        );
        let _ = writeln!(
            out,
            "| SQLite | {} (WAL, synchronous = NORMAL, {}-byte pages, checkpoint every {} pages) |",
            m.sqlite,
            restock_inventory::store::SQLITE_PAGE_SIZE,
            restock_inventory::store::SQLITE_WAL_AUTOCHECKPOINT_PAGES
        );
        let _ = writeln!(out, "| Rust | {} |", m.rustc);
        let _ = writeln!(out, "| Build | {} |", m.profile);
        let _ = writeln!(out, "| Commit | {} |", m.commit);
        let _ = writeln!(out, "| Run | {} |", m.date);
        out.push_str("\nEverything — load generator, gateway, worker, factory simulator, Temporal dev server, the databases and pgbench — shares this machine, so every figure includes that competition. The machines are shared and noisy: compare figures of one run, not across runs.\n\n");

        let goals: Vec<Goal> = self
            .goals()
            .into_iter()
            .filter(|g| g.measured.is_some())
            .collect();
        if !goals.is_empty() {
            out.push_str("## Goals\n\n");
            out.push_str("| | measured | goal | met |\n|---|---:|---:|---|\n");
            for g in &goals {
                let (measured, bound) = g.figures();
                let met = if g.met() { "yes" } else { "**no**" };
                let _ = writeln!(out, "| {} | {measured} | {bound} | {met} |", g.what);
            }
            out.push('\n');
        }

        self.purchases_section(&mut out);
        self.replenishment_section(&mut out);
        self.memory_section(&mut out);
        self.simulation_section(&mut out);

        if !self.notes.is_empty() {
            out.push_str("## Notes from this run\n\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{}", METHOD);
        out
    }

    fn purchases_section(&self, out: &mut String) {
        out.push_str("## 1. Purchases against the database's own rate\n\n");
        let _ = writeln!(
            out,
            "Closed-loop gRPC clients buying 1 unit each (each with its own idempotency key, as real clients send), {:.1} s measured after {:.1} s of warm-up per point; the gateway is a separate `restock gateway` process with its default pool of 16 connections. Two ceilings beside each figure: the **gRPC no-op**, the same generator at the same concurrency calling `grpc.health.v1.Health/Check` on the same gateway (no database, no work: the transport's and the generator's own limit), and the **statement ceiling**, the database running the sale's conditional `UPDATE` alone with its own client (see *Method*). Latencies are p50 / p99 in ms; after them, the share of the machine's CPU time that was idle in the measured window: where it is well above 0 the point waited on something other than the CPU (see *Method*, *Waiting, not working*).\n",
            self.plan.measure.as_secs_f64(),
            self.plan.warmup.as_secs_f64()
        );
        let mut backends: Vec<Backend> = Vec::new();
        for row in &self.purchases {
            if !backends.contains(&row.backend) {
                backends.push(row.backend);
            }
        }
        for backend in backends {
            for shape in self.plan.shapes() {
                let _ = writeln!(out, "### {}, {}\n", backend.name(), shape.label(&self.plan));
                out.push_str("| clients | ungrouped /s (p50 / p99; idle CPU) | grouped /s (p50 / p99; idle CPU) | gRPC no-op /s (p50 / p99; idle CPU) | statement ceiling /s (p50 / p99) | ungrouped ÷ ceiling | grouped ÷ ceiling | grouped ÷ no-op |\n");
                out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
                for &c in &self.plan.concurrency {
                    let u = self.purchase(backend, shape, c, false);
                    let g = self.purchase(backend, shape, c, true);
                    let noop = self.noop(backend, c);
                    let ceiling = self.ceiling(backend, shape, c);
                    let figure = |m: Option<&Measured>| {
                        m.map(|m| {
                            let idle = m
                                .cpu
                                .idle
                                .map(|i| format!("; {:.0}%", i * 100.0))
                                .unwrap_or_default();
                            format!(
                                "{:.0} ({:.2} / {:.2}{idle})",
                                m.per_second, m.p50_ms, m.p99_ms
                            )
                        })
                        .unwrap_or_else(|| "n/a".into())
                    };
                    let ratio = |m: Option<&Measured>, of: Option<f64>| match (m, of) {
                        (Some(m), Some(of)) if of > 0.0 => format!("{:.2}", m.per_second / of),
                        _ => "n/a".into(),
                    };
                    let ceiling_rate = ceiling.map(|x| x.per_second);
                    let ceiling_cell = match ceiling {
                        Some(x) => format!(
                            "{:.0}{} ({:.2} / {:.2})",
                            x.per_second,
                            if x.clients == c || backend == Backend::Sqlite {
                                String::new()
                            } else {
                                format!(" at {} clients", x.clients)
                            },
                            x.p50_ms,
                            x.p99_ms
                        ),
                        None => "n/a".into(),
                    };
                    let _ = writeln!(
                        out,
                        "| {c} | {} | {} | {} | {ceiling_cell} | {} | {} | {} |",
                        figure(u),
                        figure(g),
                        figure(noop),
                        ratio(u, ceiling_rate),
                        ratio(g, ceiling_rate),
                        ratio(g, noop.map(|n| n.per_second)),
                    );
                }
                self.cpu_table(out, backend, shape);
                if let Some(sale) = self.sale_ceiling(backend, shape) {
                    let _ = writeln!(
                        out,
                        "\nThe whole keyed sale as the C library runs it (`BEGIN IMMEDIATE`, the `UPDATE`, the sale row with its unique key, `COMMIT`; one connection): {:.0}/s (p50 {:.3} / p99 {:.3} ms).",
                        sale.per_second, sale.p50_ms, sale.p99_ms
                    );
                }
                out.push('\n');
            }
        }
        let failures: Vec<String> = self
            .purchases
            .iter()
            .filter(|r| r.measured.other > 0)
            .map(|r| {
                format!(
                    "{} {} c={} {}: {} answers were not SOLD, first: {}",
                    r.backend.name(),
                    r.shape.label(&self.plan),
                    r.concurrency,
                    if r.grouped { "grouped" } else { "ungrouped" },
                    r.measured.other,
                    r.measured.first_other.as_deref().unwrap_or("?")
                )
            })
            .collect();
        if failures.is_empty() {
            out.push_str("Every purchase in the measured windows was answered SOLD.\n\n");
        } else {
            out.push_str("**Not every purchase sold:**\n\n");
            for f in failures {
                let _ = writeln!(out, "- {f}");
            }
            out.push('\n');
        }
    }

    /// Where the CPU went per operation at the goals' concurrency (64, else the highest run),
    /// and on PostgreSQL the most the grouped sale could reach against pgbench on this
    /// machine if the gateway cost nothing beyond the no-op.
    fn cpu_table(&self, out: &mut String, backend: Backend, shape: Shape) {
        let Some(c) = self
            .plan
            .concurrency
            .iter()
            .copied()
            .find(|&c| c == 64)
            .or_else(|| self.plan.concurrency.iter().copied().max())
        else {
            return;
        };
        let ungrouped = self.purchase(backend, shape, c, false);
        let grouped = self.purchase(backend, shape, c, true);
        let noop = self.noop(backend, c);
        let ceiling = self.ceiling(backend, shape, c);
        let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        let idle =
            |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.0}%", v * 100.0));
        let database = match backend {
            Backend::Sqlite => "SQLite: inside the gateway",
            Backend::Postgres => "PostgreSQL",
        };
        let _ = writeln!(
            out,
            "\nWhere the CPU went at {c} clients, µs per call or statement (each process's CPU time in the measured window ÷ the calls answered; *Method*, *CPU per operation*):\n\n| | whole machine, busy | load generator | gateway | {database} | idle |\n|---|---:|---:|---:|---:|---:|"
        );
        for (what, m) in [
            ("ungrouped sale", ungrouped),
            ("grouped sale", grouped),
            ("gRPC no-op", noop),
        ] {
            if let Some(m) = m {
                let cpu = &m.cpu;
                let _ = writeln!(
                    out,
                    "| {what} | {} | {} | {} | {} | {} |",
                    us(cpu.machine_us),
                    us(cpu.generator_us),
                    us(cpu.gateway_us),
                    if backend == Backend::Sqlite {
                        "-".to_owned()
                    } else {
                        us(cpu.database_us)
                    },
                    idle(cpu.idle)
                );
            }
        }
        if let Some(x) = ceiling {
            let _ = writeln!(
                out,
                "| statement ceiling ({}) | {} | | | | {} |",
                x.tool,
                us(x.cpu.machine_us),
                idle(x.cpu.idle)
            );
        }
        if let Some(best) = self.best_grouped_against_ceiling(backend, shape, c) {
            let _ = writeln!(out, "\n{best}");
        }
    }

    /// PostgreSQL: the most the grouped sale could sell at `c` clients if a sale cost the
    /// machine only what a no-op call does plus what PostgreSQL spent per grouped sale in
    /// this run, with nothing idle — and that against pgbench.
    fn best_grouped_against_ceiling(
        &self,
        backend: Backend,
        shape: Shape,
        c: usize,
    ) -> Option<String> {
        if backend != Backend::Postgres {
            return None;
        }
        let transport = self.noop(backend, c)?.cpu.machine_us?;
        let grouped = self.purchase(backend, shape, c, true)?;
        let database = grouped.cpu.database_us?;
        let ceiling = self.ceiling(backend, shape, c)?;
        let best = most_per_second(self.machine.cpus, transport + database)?;
        if ceiling.per_second <= 0.0 {
            return None;
        }
        Some(format!(
            "Had a grouped sale cost the machine only what a no-op call costs ({transport:.0} µs: the load generator and the gRPC transport) plus what PostgreSQL spent per grouped sale here ({database:.0} µs), with nothing idle, {} CPUs could sell at most {best:.0}/s: {:.2} × pgbench's rate. The grouped sale measured {} µs at {:.0}/s.",
            self.machine.cpus,
            best / ceiling.per_second,
            grouped
                .cpu
                .machine_us
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}")),
            grouped.per_second
        ))
    }

    fn replenishment_section(&self, out: &mut String) {
        out.push_str("## 2. Out-of-stock sale → order received by the factory\n\n");
        match &self.order_latency {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "One out-of-stock sale at a time on SQLite ({} timed after one warm-up), Temporal dev server as `restock dev` runs it: from sending the Purchase to the factory simulator accepting the order — the sale and its outbox intent, the relay's signal-with-start, the workflow's first task (check-stock and record-replenishment as local activities, inside that task), then order-from-factory, a regular activity with its retry policy.\n",
                    l.samples
                );
                let _ = writeln!(
                    out,
                    "| | p50 | p99 | max |\n|---|---:|---:|---:|\n| restock | {:.1} ms | {:.1} ms | {:.1} ms |\n| anchor: one SNS → Lambda hop | 73 ms | 225 ms | |\n",
                    l.p50_ms, l.p99_ms, l.max_ms
                );
                if !l.steps.is_empty() {
                    let _ = writeln!(
                        out,
                        "Where the time goes (median over about {} of the timed sales, spread over the run, from their workflow histories; ms after the Purchase was sent; the last row is the simulator's clock, the others Temporal's):\n\n| step done | ms |\n|---|---:|",
                        crate::replenish::BREAKDOWN_SAMPLES.min(l.samples)
                    );
                    for (step, ms) in &l.steps {
                        let _ = writeln!(out, "| {step} | {ms:.1} |");
                    }
                    out.push('\n');
                }
            }
            None => {
                out.push_str("Not measured in this run.\n\n");
            }
        }
        out.push_str("## 3. Replenishments completed per second\n\n");
        match (&self.replenishments, &self.trivial) {
            (Some(r), Some(t)) => {
                let _ = writeln!(
                    out,
                    "{} products run out at once (one out-of-stock sale each, 32 in flight); the factory simulator produces instantly. The clock stops when the last replenishment is Completed in the read model (stock received, ad resumed). The yardstick is a workflow running one activity that does nothing, {} started the same way, on the same Temporal server, with a worker tuned the same.\n",
                    r.completed, t.completed
                );
                let _ = writeln!(
                    out,
                    "| | completed | seconds | per second |\n|---|---:|---:|---:|\n| replenish-stock (1 regular and 9 local activities, a signal, the factory, the gateway) | {} | {:.2} | {:.1} |\n| trivial one-activity workflow | {} | {:.2} | {:.1} |\n| ratio | | | {:.2} |\n",
                    r.completed,
                    r.elapsed.as_secs_f64(),
                    r.per_second(),
                    t.completed,
                    t.elapsed.as_secs_f64(),
                    t.per_second(),
                    r.per_second() / t.per_second().max(1e-9)
                );
                let shape = |t: &Throughput| match t.shape {
                    Some(s) => {
                        format!("{} workflow tasks and {} history events", s.tasks, s.events)
                    }
                    None => "not read".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "One run (the median of {} histories each): replenish-stock {}; the trivial workflow {}.\n",
                    crate::replenish::SHAPE_SAMPLES,
                    shape(r),
                    shape(t)
                );
                if let Some(cpu) = workflow_cpu(r, t) {
                    let _ = writeln!(out, "{cpu}\n");
                }
            }
            _ => {
                out.push_str("Not measured in this run.\n\n");
            }
        }
    }

    fn simulation_section(&self, out: &mut String) {
        out.push_str(
            "## 5. Service level: the replenishment policy under steady demand
\n",
        );
        let Some(sim) = &self.simulation else {
            out.push_str("Not measured in this run.\n\n");
            return;
        };
        let _ = writeln!(
            out,
            "Poisson buyers (one unit each) for {:.0} s against the real stack, a factory that delivers {:.0} s after each order, the fixed policy (reorder point 0, as the old system) and the adaptive one side by side. Both start with one order on hand and order the same quantity at first (1.5 lead times of demand); the planner runs every {} s over a {} s demand window, with a default lead time of {} s until it has measured one. Fill rate = units sold ÷ units asked for; on hand is time-weighted from samples every 200 ms. The step product's demand goes from 5 to 15 units/s at {:.0} s.\n",
            sim.seconds,
            crate::simulate::LEAD_TIME.as_secs_f64(),
            crate::simulate::PLANNER_EVERY_SECS,
            crate::simulate::DEMAND_WINDOW_SECS,
            crate::simulate::DEFAULT_LEAD_TIME_SECS,
            sim.step_at,
        );
        out.push_str("| demand | policy | fill rate | turned away | out of stock | average on hand | lead-time demand | factory orders | final reorder point / quantity |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for row in &sim.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}%{} | {} | {:.0} s | {:.1} | {:.0} | {} | {} / {} |",
                row.demand.label,
                row.policy.name(),
                row.fill_rate() * 100.0,
                row.fill_after_step()
                    .map(|f| format!(" ({:.1}% from 3 lead times after the step)", f * 100.0))
                    .unwrap_or_default(),
                row.demanded - row.sold,
                row.out_of_stock_secs,
                row.average_on_hand,
                row.lead_time_demand,
                row.factory_orders,
                row.final_figures.0,
                row.final_figures.1,
            );
        }
        let errors: u64 = sim.rows.iter().map(|r| r.errors).sum();
        if errors > 0 {
            let _ = writeln!(
                out,
                "\n{errors} purchase calls failed (counted as not sold)."
            );
        }
        match &sim.chart {
            Ok(name) => {
                let _ = writeln!(
                    out,
                    "\n![Units on hand over time, fixed vs adaptive]({name})\n"
                );
            }
            Err(why) => {
                let _ = writeln!(out, "\nNo chart: {why}\n");
            }
        }
    }

    fn memory_section(&self, out: &mut String) {
        out.push_str("## 4. Resident memory\n\n");
        out.push_str("VmRSS once the process answered (idle) and VmHWM (its peak) after the load; anchor: the 128 MB Lambda each part replaced.\n\n");
        out.push_str("| process | idle | peak under load | load |\n|---|---:|---:|---|\n");
        for m in &self.memory {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                m.process,
                mib(m.idle_kib),
                mib(m.peak_kib),
                m.load
            );
        }
        out.push('\n');
    }
}

const METHOD: &str = r#"## Method

- **Command**: `scripts/bench.sh` builds `restock` and `restock-bench` in release mode and runs
  every scenario; PostgreSQL rows need `RESTOCK_BENCH_POSTGRES_URL` (the script sets it when
  PostgreSQL answers on 127.0.0.1:5432). `scripts/bench.sh --quick` is the CI smoke run: same
  code, small counts, a report in `target/bench-quick.md`.
- **System under test**: real processes (`restock gateway`, `restock worker`,
  `restock factory`) and a Temporal dev server from `scripts/install-temporal.sh`, each
  database fresh and migrated. Benchmark products never run out (scenario 1) or start empty
  (scenarios 2 and 3).
- **Ceiling, PostgreSQL**: `pgbench -n -M prepared` running
  `UPDATE products SET stock = stock - 1, updated_at = 0 WHERE sku = … AND stock >= 1` on the
  same table, one autocommit transaction per statement, with as many clients as the purchase
  run (capped at `max_connections - 20`); its tps covers its whole run, its latencies come
  from its per-transaction log. A sale does more: the same `UPDATE`, the sale row (and, at
  the reorder point, the outbox intent) in one transaction, behind gRPC.
- **Ceiling, SQLite**: the same `UPDATE` in a tight loop through the C library (rusqlite, which
  links the same SQLite build as sqlx), one prepared statement on one connection with the
  store's settings. SQLite has a single writer, so the figure is the same for every client
  count. Beside it, the keyed sale's own transaction (`BEGIN IMMEDIATE`, `UPDATE`, the sale
  row's `INSERT` under the key's unique index, `COMMIT`) the same way.
- **No-op ceiling**: the purchase generator's own loop, clients and connections (8 HTTP/2
  connections shared by the clients), calling `grpc.health.v1.Health/Check` on the gateway
  under test, which answers from memory. A sale cannot beat it on this machine; the goals
  table also checks it reaches 3× the best sale rate, so the generator is not what limits
  the sale.
- **Grouping** (`RESTOCK_GROUP_PURCHASES`, on by default; `inventory/src/sale/grouped.rs`):
  sales that arrive while their queue's transaction is in flight share the next one — per
  product one `UPDATE` for their total, one multi-row `INSERT`, one commit (on SQLite the
  whole group one job on the sale thread, below); on PostgreSQL all of it one statement that commits itself (data-modifying
  CTEs locking the group's rows in sku order), one round trip a group — and each still
  gets its exact outcome. A queue is SQLite's one writer, or on PostgreSQL one of
  `RESTOCK_PURCHASE_LANES` (2) lanes of products. On a hot row the
  ceiling pays one commit (a WAL flush) per sale while the row stays locked; grouping pays
  one per group, which is how it beats the ceiling.
- **The keyed sale reads nothing first**: the idempotency key's unique index decides inside
  the sale's transaction, and a conflict is answered as the replay of the first sale; only
  an OUT_OF_STOCK answer looks the key up (a retry of a sale that sold must hear SOLD).
- **Lanes or a queue per product** (PostgreSQL, 1000 products, 64 clients, release build, one
  run each on a busy machine; grouped ÷ ungrouped of the same run): 0 lanes (a queue per
  product, the old grouping) 0.69 — per-product queues cost on spread load and never group;
  8 lanes 1.62; 16 lanes 0.80. Then one `UPDATE` per product was one round trip per product
  in the group, so a lane's transaction grew with its group. Since one `UPDATE` takes every
  product's total (grouped ÷ pgbench at 64 / 256 clients, one quick run each, 2 × AMD EPYC):
  8 lanes 0.48 / 0.92 (0.43 at 64 before the change), 4 lanes 0.72 / 1.27, 2 lanes
  0.78 / 0.82, 1 lane 0.64 / 0.43. Fewer lanes make bigger groups, one commit each, more
  lanes more commits at once, and a PostgreSQL commit waits for its WAL flush
  (`synchronous_commit = on`), which is what bounds a lane. Since the group statement looks
  its rows up by index and a connection is no longer pinged before each group (below),
  alternated runs (release build, 2026-12-04, 5 s a point; grouped ÷ pgbench, grouped ÷
  the no-op): at 64 clients 2 lanes 0.72 and 0.92, 0.22 and 0.27; 4 lanes 0.47 and 0.64,
  0.16 and 0.19; 8 lanes 0.45 and 0.58, 0.13 and 0.16; at 256 clients (one run each) 2
  lanes 1.32, 0.28; 4 lanes 0.95, 0.25. 2 is the default.
- **One statement a group** (PostgreSQL) **and one `UPDATE` for every product's total**
  (SQLite, until the sale thread replaced it), against the transaction of several statements before them: four quick runs
  each, alternated, 64 clients, grouped sales ÷ the same run's no-op, mean (range).
  PostgreSQL 1000 products 0.156 (0.128-0.174) → 0.178 (0.172-0.186); hot product 0.29 →
  0.29. SQLite 1000 products 0.163 (0.140-0.189) → 0.198 (0.172-0.234), measured with the
  sale rows as one `INSERT … SELECT … FROM json_each(?)` too; that `INSERT` made the hot
  product slower (0.28 → 0.25), so the rows stay in power-of-two chunks (this mix was not
  run separately).
  Every run shared the machine's two cores between the load generator (no-op
  30,000-43,000/s), the gateway and the database (the SQLite runs left some of them idle:
  see *Waiting, not working*).
- **The sale thread** (SQLite; `inventory/src/sale/sqlite_thread.rs`): a SQLite file's
  sale transactions run whole on one thread that holds its own connection through the C
  library (rusqlite) — one hand-off there and back per transaction (one sale, or a group)
  instead of one per statement through sqlx's SQLite thread, and queued transactions run
  back to back. Alternated runs (three each, 64 clients, 6 s a point, release build,
  2026-12-04), through sqlx → on the thread: hot product ungrouped 2,763-3,607 →
  12,057-13,187 sales/s, grouped 14,459-15,495 → 19,644-22,192; 1,000 products ungrouped
  2,618-2,870 → 10,842-11,550, grouped 6,577-9,501 → 10,304-13,188. The gateway's peak RSS
  stayed at 31-33 MiB; the idle CPU at the hot product fell from 22-31% to 17-21%. The
  no-op ran 37,800-54,200/s in those runs, so the generator's margin over the best sale
  rate fell to about 2.3× (the goals table shows it).
- **Where a sale's time goes, on the sale thread** (`perf record -g -p` on the gateway for
  4 s, grouped, SQLite hot product, 64 clients, release build, 17,000 sales/s): the gateway
  used about 1.1 cores, the load generator most of the rest. 35% of its samples are the
  sale thread (about 0.37 of a core, so it is not what limits the rate): SQLite's B-tree and
  page cache, and the kernel copying WAL frames into the page cache (`pwrite`, ext4). 65%
  are tokio's workers: h2 and tonic (framing, HPACK, the handler), `malloc`/`free` (about
  8% of all samples), copies (`memmove` 5%) and the kernel switching threads (6%).
- **Checkpoints off the sale thread** (`inventory/src/sale/sqlite_thread.rs`): timing the
  sale thread's jobs from inside (grouped, hot product, 64 clients, about 16 sales a
  transaction) showed it in a transaction 55% of the wall clock but on the CPU 36%; `perf
  record -g -t` on it put 60% of its samples in `COMMIT`, 25% of them in the automatic WAL
  checkpoint that the commit crossing the limit runs (its `fsync`s 12%, and more waiting
  off the CPU), the rest writing WAL frames. A second thread with its own connection now
  checkpoints (`PASSIVE`, nudged by the sale thread's commits, at most every 250 ms; the
  sale connection's own checkpoint stays as a backstop at four times the interval).
  Alternated runs of the two builds (two each, 64 clients, 8 s a point, release build,
  2026-12-04; before → after): grouped hot product 17,663 and 19,823 → 22,096 and 20,514
  sales/s, its p99 15.1 and 12.1 → 8.8 and 9.4 ms, idle CPU 20 and 19% → 15 and 15%;
  ungrouped hot product 11,410 and 14,272 → 14,109 and 13,620/s (the noise), its p99 12.8
  and 15.8 → 22.0 and 22.5 ms (the checkpoint's writeback now overlaps the sales' WAL
  writes). The no-op ran 44,500-56,800/s in those runs.
- **mimalloc, tried and not kept**: with `malloc`/`free` at 8% of the gateway's samples,
  `restock` was built with mimalloc as its global allocator and run against the same
  build without it (three alternated runs each, 64 clients, release build, 2026-12-04;
  glibc → mimalloc): hot product ungrouped 12,950-15,042 → 13,480-16,438 sales/s, grouped
  16,423-22,677 → 19,100-24,849; 1,000 products grouped 10,275-15,341 → 11,892-15,531 —
  within the noise — while the gateway's peak RSS rose from 31-33 to 53-57 MiB, past the
  40 MiB goal.
- **Where a sale's time goes, before the sale thread** (`perf record -g` on the gateway for
  10 s at 64 clients, SQLite hot product, release build): ungrouped, about half of the gateway's samples are the kernel
  switching threads — sqlx runs each SQLite statement on a worker thread of its own, and an
  ungrouped sale is four hand-offs there and back (`BEGIN IMMEDIATE`, `UPDATE … RETURNING`,
  `INSERT`, `COMMIT`); SQLite itself is a few percent. Grouped (`perf record -g --call-graph
  dwarf` for 5 s, 1 KiB pages, 12,000 sales/s; the gateway used about 0.9 of a core, the load
  generator the rest of the machine): 34% of the gateway's samples are on sqlx's SQLite
  thread (SQLite's commit 10%, its `pwrite`s of WAL frames 11%, the B-tree inserts most of
  the rest), 27% the HTTP/2 connection's task (h2 framing; `writev` 9%), 15% the request
  tasks (tonic, the tower layers, the handler), 8% the grouped sale's own code (its queue,
  its outcomes, sea-orm building the statements), the rest tokio's scheduler, `malloc`
  (5.5%) and the kernel switching threads. Sale ids are time-ordered (UUID v7), so the
  primary key's inserts land on its last page instead of a random one.
- **Waiting, not working** (the idle CPU beside each figure): before the sale thread, at 64
  clients on SQLite's hot product about a quarter of the machine was idle (`vmstat`, 2026-12-04: 24-29% ungrouped at
  66,000 context switches a second, 22% grouped), while the no-op left 3%. Both sale paths
  wait on hand-offs between threads more than they compute: every SQLite statement is a
  round trip between a tokio task and sqlx's SQLite thread, one transaction at a time on
  the one writer. sqlx also pinged each connection as it left the pool — one more round
  trip before every transaction. SQLite's connections are no longer pinged (a local file
  does not hang up): in alternated runs (three each, 64 clients, release build) ungrouped hot
  sales went from 2,440-2,591 to 2,674-2,811/s, grouped ones did not move (12,000-13,500/s:
  a group pays the ping once). PostgreSQL and MySQL ping a connection only once it has been
  idle for 250 ms (`restock_inventory::store::PING_IF_IDLE_FOR`): after a server restart
  that still finds a dead connection before a sale is sent on it, so the sale answers
  UNAVAILABLE, nothing sold, instead of "outcome unknown"
  (`reliability::database_stopped_and_started_again` failed with no ping at all), while
  under load, where a connection is back within moments, a group no longer pays a second
  round trip: on the hot product a lane's cycle was two round trips to PostgreSQL (see the
  next item for the figures).
- **A PostgreSQL group's statement and its pings** (a `perf` profile and the gateway's
  `/metrics` during PostgreSQL 1000 products grouped, 64 clients: 8 sales a group on
  average, 11-19% of the machine idle, the gateway's samples mostly h2, waking threads and
  `malloc`; `EXPLAIN ANALYZE` of the group statement's cached plan): the statement found
  its rows with `IN (SELECT …)`, and PostgreSQL's cached plan scanned all 1,000 products
  twice per group, joining them by hash (about a fifth of the statement's time); with
  `sku = ANY(ARRAY(…))` it looks each product up in the primary key's index. Together with
  the ping only after 250 ms idle (above), alternated runs of the three builds (two each,
  64 clients, 6 s a point, release build, 2026-12-04; before → ping only → both): 1,000
  products grouped ÷ pgbench 0.60 and 0.65 → 0.55 and 0.55 → 0.72 and 0.80 (8,175 and
  8,317 → 9,819 and 6,375 → 13,361 and 10,631 sales/s, pgbench 11,607-18,538/s); hot
  product grouped 10,620 and 13,365 → 17,254 and 8,947 → 19,344 and 18,548 sales/s;
  1,000 products ungrouped 3,553 and 4,121 → 4,286 and 3,144 → 5,979 and 5,882/s. The
  machine's speed moved by half between runs (the no-op ran 45,600-73,500/s), so the
  ratios within a run are what to compare.
- **Nagle's algorithm on PostgreSQL's connections** (PostgreSQL hot product, 256 clients,
  grouped: 7,000-8,000 sales/s with three quarters of the machine idle and p50 48 ms).
  `strace -f -tt -e trace=sendto,recvfrom` on the gateway showed why: its connections to
  PostgreSQL are TLS (sqlx's default `sslmode=prefer`, and the server offers it), a group
  of 256 sales is a statement of about 20 KiB, TLS cuts it into two records of at most
  16 KiB, written by two `sendto`s, and sqlx 0.9.0 had stopped setting `TCP_NODELAY` on
  its sockets (sqlx issue 4335), so the kernel held the second record until the server's
  delayed ACK: each such statement answered about 46 ms after it was sent, against about
  8 ms in one record. sqlx 0.9.1 sets `TCP_NODELAY` again (`Cargo.lock`). Alternated runs
  (two each, release build, 2026-12-04; sqlx 0.9.0 → 0.9.1): hot product grouped at 256
  clients 7,946 and 6,920 → 27,417 and 27,289 sales/s, p50 48.3 and 49.7 → 9.1 and
  9.1 ms, idle CPU 74 and 78% → 14 and 14%; at 64 clients, where a group stays under one
  record, nothing moved beyond the noise (hot product grouped 18,985 and 18,548 → 17,870
  and 17,068; 1,000 products grouped 14,409 and 15,119 → 14,486 and 14,178).
- **SQLite's page size** (`restock_inventory::store::SQLITE_PAGE_SIZE`: 1 KiB, with a WAL
  checkpoint every 4,096 pages, the 4 MiB of SQLite's defaults): a commit writes each page
  it touched to the WAL whole, and the keys of 64 clients land on as many leaf pages of the
  idempotency key's index. A loop of grouped sales through Python's `sqlite3` (40 rows a
  transaction, keys from 64 clients, two runs each) ran 1.5 times as fast with 1 KiB pages
  as with 4 KiB (2 KiB: 1.2 times). Through the gateway (64 clients, release build, runs of
  the two builds alternated on a noisy machine, three or four each, mean): grouped hot
  product 8,625 → 10,058 sales/s, 1,000 products 5,204 → 6,627, ungrouped hot product
  2,387 → 2,716. SQLite's own rates rose more — the C-library statement ceiling from
  34,000-45,000 to 49,000-69,000/s, its keyed sale transaction from 5,500-8,100 to
  7,500-15,000/s — so the ratios to those ceilings fell while every sale rate rose. A file
  created with 4 KiB pages keeps them.
- **The replenishment path**: every step but the factory order is a local activity since the
  patch `local-bookkeeping-v3` (check-stock and record-replenishment since `exactly-once-v2`).
  A replenishment by callback takes 1 regular activity; its workflow tasks and history
  events are counted in scenario 3 (before `exactly-once-v2`: 12 tasks, 78 events and 10
  regular activities; with it: 7, 52 and 4). Without outside queries a run takes 3 tasks;
  the relay's status query before it signals a delivery, reaching a run in the middle of a
  workflow task (here while its local activities ran), makes it end that task early and
  take a fourth. The relay hands intents and deliveries over 8 at a time, the two side by
  side (a burst of starts does not hold up the deliveries that end runs); a delivery
  signalled a moment ago is not queried again.
  Eager workflow start is not used: the relay starts runs with signal-with-start (a request
  must also reach a run already going), which Temporal does not start eagerly.
- **Where scenario 3's CPU goes** (each process's CPU time from `/proc` every second during
  a run with 300 replenishments, release build, 2026-12-04: 300 in 10.56 s, the trivial
  workflows in 6.11 s, ratio 0.58): while replenishments ran the machine was busy (about
  185 of 200 ticks a second); the Temporal dev server took 121 ticks a second, restock's
  own processes (gateway, worker, factory simulator) 52, the load generator 3. Per
  replenishment that is about 43 ms of the server's CPU and 18 ms of restock's; per trivial
  workflow the server spent about 28 ms (135 ticks a second at 49 a second) and its worker
  5 ms. So the server alone spends 1.55 times as much on a replenishment as on the trivial
  workflow: with restock's own processes costing nothing the ratio would still be at most
  about 0.65. The difference is the work the workflow asks of the server: a signal-with-start,
  three workflow tasks instead of two, the delivery's status query and signal, the SLA
  timer started and cancelled, and the state search attribute on each of its 6 transitions
  (each a visibility write), 36 history events against 11.
- **Where PostgreSQL 1000 products' CPU goes** (64 clients; each process's CPU time from
  `/proc` over 8 s of the point, release build, 2026-12-05; four runs' grouped ÷ pgbench
  0.79, 0.86, 0.78 and 0.81): in the last run the grouped sale ran at 13,105/s with
  PostgreSQL taking 77 ticks a second, the gateway 56, the load generator 37, and 14% of the
  machine idle: per sale about 59 µs of PostgreSQL, 43 µs of the gateway and 28 µs of the
  generator, 130 µs in all. pgbench ran at 16,083/s with PostgreSQL taking 159 ticks a
  second and pgbench 30: per transaction about 99 µs of PostgreSQL and 19 µs of its client
  (its per-transaction log, written for the latencies, kept the kernel's writeback busy
  besides). So grouping already costs PostgreSQL less per sale than pgbench's bare `UPDATE`
  (one commit per group of about 8); what a sale adds is the gRPC round trip, 71 µs on the
  gateway and the generator together, and the idle share. The idle fits the lanes' commits
  (not measured directly): `pg_test_fsync` put one `fdatasync` at 1.2-1.6 ms here, a lane
  sells one group per commit and waits for it, and while both lanes wait little else can
  run. The gateway's own profile (`perf record --call-graph dwarf`, 5 s) is flat: tonic,
  hyper and h2 handling the calls about 35% of its samples, the kernel's TCP sends 11%, `malloc`/`free` 14%, the sea-orm and
  sqlx query 10%, the lanes' grouping 8%. One tokio worker thread for the gateway and the
  generator (`TOKIO_WORKER_THREADS=1`) did not help: 0.76, idle 20%.
- **CPU per operation** (the tables under each shape in section 1; `bench/src/cpu.rs`): at
  the start and the end of each measured window the benchmark reads the machine's CPU time
  (`/proc/stat`) and that of the load generator (itself), the gateway and every PostgreSQL
  process (`/proc/<pid>/stat`; a process must live through the window to count, which the
  gateway's pooled connections do). Each share of the window's CPU time, times the CPUs, ÷
  the calls answered per second, is the µs per call. On SQLite the database runs inside the
  gateway (the sale thread), so its figure is the gateway's. The statement ceilings show
  the whole machine only: pgbench's backends start and end with it, and its window includes
  its connecting and its log (a slight overestimate). Below PostgreSQL's tables, the most
  the grouped sale could reach on this machine if the gateway did nothing a no-op call does
  not: the no-op's CPU per call (the generator and the transport) plus PostgreSQL's per
  grouped sale, with nothing idle. The first runs with it (2026-12-05, 64 clients) put that
  at 0.85-1.1 × pgbench on 1,000 products, against 0.53-0.65 measured: a grouped sale cost
  the generator 25-46 µs and the gateway 38-67 µs where a no-op call cost each 15-26 µs,
  the generator doing the same work per call either way. A saturated no-op keeps every
  thread busy; a sale waits on its lane's commit (11-18% idle), and each wait parks and
  wakes threads. `perf stat` on the no-op: the gateway made 1.05 `writev`s per call, the
  generator 1.3 — one write per response even at saturation. Scenario 3 counts the same
  way per workflow, from the first start to the last completion: the Temporal server;
  restock's gateway, worker and factory simulator with the load generator that starts the
  runs; for the trivial workflow the load generator, which hosts its worker. With both runs
  keeping the machine busy, replenishments could run at most (the trivial workflow's server
  and worker CPU ÷ a replenishment's server CPU) times the trivial rate if restock's own
  processes cost nothing.
- **The generator's own HTTP/2 connections, tried and not kept**: tonic's `Channel` puts a
  buffer task between each call and its connection. The closed loop calling
  `hyper::client::conn::http2` connections directly instead (two alternated runs each,
  64 clients, release build, 2026-12-05): the generator's CPU per no-op call 15.2-16.3 →
  14.7-15.8 µs, per grouped PostgreSQL sale 32-35 → 25 µs in the quieter run and 38 in the
  noisier one; the rates moved within the noise (1,000 products grouped 11,882 and 11,202
  → 15,075 and 10,007/s).
- **Hot row, PostgreSQL**: pgbench's rate on one row falls as clients rise (every waiter
  queues on the row lock and re-checks it); the gateway never puts more than its pool of 16
  connections on the row, and an ungrouped sale that sells is one statement (data-modifying
  CTEs), so it holds the lock as briefly as the bare `UPDATE`.
- **Temporal dev server**: started like `restock dev` starts it (`DEV_SERVER_ARGS`), with
  its SQLite file in WAL mode and `synchronous=normal` — with the server's default journal,
  scenario 2 took about 445 ms p50 and scenario 3 ran at a third of the rate — and its
  history queues' reads not rate-limited (`history.transferProcessorMaxPollRPS` and the
  timer and visibility ones). That limit is 20 reads a second *per history shard*; a dev
  server has one shard (a cluster has hundreds), so once runs and signals passed 20 new
  tasks a second every task waited for the next read, about 25 ms on average, before the
  worker could see it. That was most of scenario 2's "first workflow task picked up" step
  (p50 44.7 ms → 27.6 ms for the whole path, first run with the change).
- **Memory**: `/proc/<pid>/status` of each process: VmRSS when ready (the worker: its
  metrics endpoint answering, then 1 s), VmHWM at the end. Bounds on what the database
  side may hold: prepared statements (SQLite's writer keeps 16, a PostgreSQL or MySQL
  connection 32) and SQLite's page caches (the writer SQLite's default 2,000 KiB; each of up
  to eight readers 256 KiB, since in WAL mode a reader's cache is dropped whenever the
  writer has written). The readers' bound did not move the purchase runs' peak (their load
  is on the writer). What the gateway's peak holds (`heaptrack` and `smaps_rollup`, SQLite
  at 256 clients): about 22 MiB is the binary's own pages, file-backed and the same at
  idle; the rest is the heap — SQLite's page cache and prepared statements, and each
  request's handler future (about 4 KiB, boxed by tonic). A sale selling alone waits for a
  writer slot (a semaphore the size of the writer pool) instead of inside the pool, where
  sea-orm held each waiting transaction's begin future in a box of about 15 KiB: the
  ungrouped SQLite gateway's peak went from 41 to 33 MiB (quick runs, one each). A group's
  sale rows go in in power-of-two chunks (at most nine statement shapes, 1 to 256 rows,
  instead of one statement prepared and cached for every group size; on PostgreSQL they
  are part of its one statement when every total fits): with the chunks the grouped SQLite
  gateway's peak went from 38-39 to 36-37 MiB, and PostgreSQL's hot
  product at 256 clients from about 4,000 to 13,400 sales/s (a new group size no longer
  meant a new prepared statement on the server).
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cpus_at_100_us_an_operation_run_20_000_a_second_at_most() {
        assert_eq!(most_per_second(2, 100.0), Some(20_000.0));
        assert_eq!(most_per_second(0, 100.0), Some(10_000.0));
        assert_eq!(most_per_second(2, 0.0), None);
    }
}
