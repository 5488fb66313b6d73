//! The databases' own rate for the sale's statement, measured on the benchmark's own tables:
//! `UPDATE products SET stock = stock - 1, updated_at = ? WHERE sku = ? AND stock >= 1`,
//! one autocommit transaction each — the least a sale can cost.
//!
//! - PostgreSQL: pgbench with that statement as its script, `-M prepared`, at the same
//!   concurrency as the purchases (capped below `max_connections`).
//! - SQLite: one connection in a tight loop, with the store's settings (WAL, synchronous =
//!   NORMAL). SQLite has one writer at a time, so more connections cannot raise it.

use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;

use anyhow::Context;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::sqlx::{ConnectOptions, Connection};
use sea_orm::{ConnectionTrait, Statement};
use tokio::time::Instant;

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
}

impl Ceiling {
    /// One line for the console.
    pub fn describe(&self) -> String {
        format!(
            "{:.0}/s p50 {:.2} ms p99 {:.2} ms ({}, {} clients)",
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
    match db.backend {
        Backend::Sqlite => sqlite_loop(db, shape, plan).await,
        Backend::Postgres => pgbench(db, shape, concurrency, plan).await,
    }
}

async fn sqlite_loop(db: &Database, shape: Shape, plan: &Plan) -> anyhow::Result<Ceiling> {
    let mut conn = SqliteConnectOptions::from_str(&db.url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .context("opening the SQLite file for the ceiling")?;
    let mut latencies = histogram()?;
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.measure;
    let mut done = 0u64;
    let mut skus = SkuPicker::new(shape, plan.spread_products, 0);
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let sku = skus.next_sku();
        let result = sea_orm::sqlx::query(
            "UPDATE products SET stock = stock - 1, updated_at = ? WHERE sku = ? AND stock >= 1",
        )
        .bind(0_i64)
        .bind(sku)
        .execute(&mut conn)
        .await?;
        if result.rows_affected() != 1 {
            anyhow::bail!("the SQLite ceiling's UPDATE changed no row");
        }
        if sent >= measure_from {
            done += 1;
            latencies.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        }
    }
    conn.close().await.ok();
    Ok(Ceiling {
        tool: "tight loop, 1 connection".to_owned(),
        clients: 1,
        per_second: done as f64 / plan.measure.as_secs_f64(),
        p50_ms: quantile_ms(&latencies, 0.5),
        p99_ms: quantile_ms(&latencies, 0.99),
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
