//! The databases' own rate for the sale's statement, measured on the benchmark's own tables
//! with the database's own client, not through the driver under test:
//! `UPDATE products SET stock = stock - 1, updated_at = ? WHERE sku = ? AND stock >= 1`,
//! one autocommit transaction each — the least a sale can cost.
//!
//! - PostgreSQL: pgbench with that statement as its script, `-M prepared`, at the same
//!   concurrency as the purchases (capped below `max_connections`).
//! - SQLite: the C library itself (through rusqlite, which links the same libsqlite3 build as
//!   sqlx), one connection in a tight loop with a prepared statement and the store's settings
//!   (WAL, synchronous = NORMAL, the page size and checkpoint interval of
//!   `restock_inventory::store`). SQLite has one writer at a time, so more connections cannot
//!   raise it. Beside it, the whole keyed sale as the C library runs it: `BEGIN IMMEDIATE`,
//!   the `UPDATE`, the sale row's `INSERT` (its idempotency key under the unique index),
//!   `COMMIT`.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use sea_orm::{ConnectionTrait, Statement};
use std::time::Instant;

use crate::cpu::{CpuPerOp, Reading, Watch};
use crate::load::{HOT_SKU, SkuPicker, histogram, quantile_ms};
use crate::plan::{Plan, Shape};
use crate::system::{Backend, Database};

/// One ceiling measurement.
#[derive(Debug, Clone)]
pub struct Ceiling {
    /// How it was measured.
    pub tool: String,
    /// Concurrent clients it ran with.
    pub clients: usize,
    /// Statements per second.
    pub per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// The whole machine's CPU per statement (its idle share, its busy time): the
    /// processes' split is not kept, pgbench's backends come and go with it.
    pub cpu: CpuPerOp,
}

impl Ceiling {
    /// The ceiling with the machine's CPU per statement from `from` until now (its warm-up
    /// and set-up included: a slight overestimate).
    fn with_cpu(mut self, from: &Reading) -> Ceiling {
        let cpu = CpuPerOp::between(from, &Reading::now(&Watch::default()), self.per_second);
        self.cpu = CpuPerOp {
            idle: cpu.idle,
            machine_us: cpu.machine_us,
            ..CpuPerOp::default()
        };
        self
    }

    /// One line for the console.
    pub fn describe(&self) -> String {
        let cpu = match (self.cpu.machine_us, self.cpu.idle) {
            (Some(us), Some(idle)) => {
                format!(", CPU per statement {us:.0} µs, idle {:.0}%", idle * 100.0)
            }
            _ => String::new(),
        };
        format!(
            "{:.0}/s p50 {:.2} ms p99 {:.2} ms ({}, {} clients{cpu})",
            self.per_second, self.p50_ms, self.p99_ms, self.tool, self.clients
        )
    }
}

/// Measures the ceiling of `db` for `shape` at `concurrency`.
pub async fn measure(
    db: &Database,
    shape: Shape,
    concurrency: usize,
    plan: &Plan,
) -> anyhow::Result<Ceiling> {
    let from = Reading::now(&Watch::default());
    let ceiling = match db.backend {
        Backend::Sqlite => sqlite_loop(db, shape, plan, SqliteWork::Statement).await,
        Backend::Postgres => pgbench(db, shape, concurrency, plan).await,
    }?;
    Ok(ceiling.with_cpu(&from))
}

/// SQLite only: the whole keyed sale's transaction through the C library.
pub async fn sqlite_keyed_sale(
    db: &Database,
    shape: Shape,
    plan: &Plan,
) -> anyhow::Result<Ceiling> {
    let from = Reading::now(&Watch::default());
    let ceiling = sqlite_loop(db, shape, plan, SqliteWork::KeyedSale).await?;
    Ok(ceiling.with_cpu(&from))
}

/// Makes each SQLite loop's sale ids and keys unique.
static SQLITE_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What the SQLite loop runs per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqliteWork {
    /// The conditional `UPDATE`, autocommit.
    Statement,
    /// `BEGIN IMMEDIATE`, the `UPDATE`, the keyed sale row, `COMMIT`.
    KeyedSale,
}

async fn sqlite_loop(
    db: &Database,
    shape: Shape,
    plan: &Plan,
    work: SqliteWork,
) -> anyhow::Result<Ceiling> {
    let path = db
        .url
        .strip_prefix("sqlite://")
        .or_else(|| db.url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p).to_owned())
        .with_context(|| format!("not a SQLite file URL: {}", db.url))?;
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || sqlite_loop_blocking(&path, shape, &plan, work))
        .await
        .context("the SQLite ceiling's thread panicked")?
}

fn sqlite_loop_blocking(
    path: &str,
    shape: Shape,
    plan: &Plan,
    work: SqliteWork,
) -> anyhow::Result<Ceiling> {
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("opening {path} for the SQLite ceiling"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The gateway's settings (the file, made by the gateway's store, has its page size).
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        restock_inventory::store::SQLITE_WAL_AUTOCHECKPOINT_PAGES,
    )?;
    let mut update = conn.prepare(
        "UPDATE products SET stock = stock - 1, updated_at = ?1 WHERE sku = ?2 AND stock >= 1",
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO sales (id, sku, quantity, remaining_stock, idempotency_key, requester, \
         requested_replenishment, created_at) VALUES (?1, ?2, 1, 0, ?3, 'ceiling', 0, 0)",
    )?;
    let mut latencies = histogram()?;
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.measure;
    let mut done = 0u64;
    let mut n = 0u64;
    let mut skus = SkuPicker::new(shape, plan.spread_products, 0);
    let run = format!(
        "{}-{}",
        std::process::id(),
        SQLITE_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        n += 1;
        let sku = skus.next_sku();
        match work {
            SqliteWork::Statement => {
                if update.execute(rusqlite::params![0_i64, sku])? != 1 {
                    anyhow::bail!("the SQLite ceiling's UPDATE changed no row");
                }
            }
            SqliteWork::KeyedSale => {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                if update.execute(rusqlite::params![0_i64, sku])? != 1 {
                    anyhow::bail!("the SQLite ceiling's UPDATE changed no row");
                }
                let id = format!("ceiling-{run}-{n}");
                insert.execute(rusqlite::params![id, sku, id])?;
                conn.execute_batch("COMMIT")?;
            }
        }
        if sent >= measure_from {
            done += 1;
            latencies.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        }
    }
    Ok(Ceiling {
        tool: match work {
            SqliteWork::Statement => "C library, 1 connection",
            SqliteWork::KeyedSale => "C library, keyed sale transaction, 1 connection",
        }
        .to_owned(),
        clients: 1,
        per_second: done as f64 / plan.measure.as_secs_f64(),
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
        cpu: CpuPerOp::default(),
    })
}

async fn pgbench(
    db: &Database,
    shape: Shape,
    concurrency: usize,
    plan: &Plan,
) -> anyhow::Result<Ceiling> {
    let max_connections: usize = db
        .store
        .connection()
        .query_one_raw(Statement::from_string(
            db.store.backend(),
            "SHOW max_connections",
        ))
        .await?
        .and_then(|row| row.try_get_by_index::<String>(0).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Leave room for the benchmark's own pools and other sessions.
    let clients = concurrency.min(max_connections.saturating_sub(20).max(1));
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("sale.sql");
    let statement = match shape {
        Shape::Hot => format!(
            "UPDATE products SET stock = stock - 1, updated_at = 0 WHERE sku = '{HOT_SKU}' AND stock >= 1;\n"
        ),
        Shape::Spread => format!(
            "\\set n random(0, {})\nUPDATE products SET stock = stock - 1, updated_at = 0 WHERE sku = 'bench-s' || lpad(:n::text, 4, '0') AND stock >= 1;\n",
            plan.spread_products - 1
        ),
    };
    std::fs::write(&script, statement)?;
    let seconds = (plan.warmup + plan.measure).as_secs_f64().ceil().max(1.0) as u64;
    let prefix = dir.path().join("tx");
    let output = tokio::process::Command::new(&plan.pgbench)
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &seconds.to_string()])
        .arg("-l")
        .arg("--log-prefix")
        .arg(&prefix)
        .arg(&db.url)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| {
            format!(
                "running {} (install PostgreSQL's client tools, or pass --pgbench)",
                plan.pgbench.display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tps = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
    let latencies = transaction_log(dir.path())?;
    Ok(Ceiling {
        tool: "pgbench -M prepared".to_owned(),
        clients,
        per_second: tps,
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
        cpu: CpuPerOp::default(),
    })
}

/// Latencies from pgbench's per-transaction logs (`tx.*` files; the third field is the
/// transaction's latency in microseconds).
fn transaction_log(dir: &Path) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let mut latencies = histogram()?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("tx."));
        if !is_log {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                latencies.saturating_record(us.max(1));
            }
        }
    }
    Ok(latencies)
}
