//! The purchase load generator: `concurrency` clients, each sending its next `Purchase` as
//! soon as the last one is answered (closed loop), over a few HTTP/2 connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use restock_inventory::{NewProduct, Sku, Store};
use restock_proto::v1::sales_service_client::SalesServiceClient;
use restock_proto::v1::{Outcome, PurchaseRequest};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cpu::{CpuPerOp, Reading, Watch};
use crate::plan::{Plan, Shape};
use crate::system::{Backend, Proc};

/// Stock of every benchmark product: never runs out, so every sale sells.
pub const BENCH_STOCK: i64 = 1_000_000_000;

/// The hot product.
pub const HOT_SKU: &str = "bench-hot";

/// Most HTTP/2 connections a run opens (clients share them, as a client pool would).
const MAX_CONNECTIONS: usize = 8;

/// Makes each run's idempotency keys unique.
static RUN: AtomicU64 = AtomicU64::new(0);

/// The `i`-th product of the spread shape.
pub fn spread_sku(i: usize) -> String {
    format!("bench-s{i:04}")
}

/// Which product to buy next: the hot one, or a spread one drawn by xorshift (a different
/// sequence per `seed`).
pub struct SkuPicker {
    shape: Shape,
    spread: u64,
    x: u64,
}

impl SkuPicker {
    /// A picker for `shape` over `spread` products.
    pub fn new(shape: Shape, spread: usize, seed: u64) -> SkuPicker {
        SkuPicker {
            shape,
            spread: spread.max(1) as u64,
            x: 0x9E37_79B9_7F4A_7C15 ^ seed,
        }
    }

    /// The next sku.
    pub fn next_sku(&mut self) -> String {
        match self.shape {
            Shape::Hot => HOT_SKU.to_owned(),
            Shape::Spread => {
                self.x ^= self.x << 13;
                self.x ^= self.x >> 7;
                self.x ^= self.x << 17;
                spread_sku((self.x % self.spread) as usize)
            }
        }
    }
}

/// What one purchase run measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Purchases answered SOLD (no-ops answered SERVING) in the measured window.
    pub sold: u64,
    /// Other answers (OUT_OF_STOCK, errors): 0 in a sound run.
    pub other: u64,
    /// The first such answer, to report.
    pub first_other: Option<String>,
    /// SOLD (or SERVING) per second.
    pub per_second: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Where the measured window's CPU time went, per operation; its idle share well above 0
    /// means the point was waiting on something other than the CPU: hand-offs between
    /// threads, commits, locks.
    pub cpu: CpuPerOp,
}

impl std::fmt::Display for Measured {
    /// The console's line: rate, latencies, idle CPU.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s p50 {:.2} ms p99 {:.2} ms",
            self.per_second, self.p50_ms, self.p99_ms
        )?;
        if let Some(idle) = self.cpu.idle {
            write!(f, ", idle CPU {:.0}%", idle * 100.0)?;
        }
        let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        write!(
            f,
            ", CPU per call {} µs (generator {}, gateway {}, database {})",
            us(self.cpu.machine_us),
            us(self.cpu.generator_us),
            us(self.cpu.gateway_us),
            us(self.cpu.database_us)
        )
    }
}

/// A latency histogram in microseconds, up to a minute.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).context("creating a histogram")
}

/// Milliseconds at quantile `q` of a microsecond histogram.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Creates the hot product and the spread products (plenty of stock, no reorder point).
pub async fn create_products(store: &Store, plan: &Plan) -> anyhow::Result<()> {
    let product = |sku: Sku| NewProduct {
        name: format!("benchmark product {sku}"),
        sku,
        price: 100,
        stock: BENCH_STOCK,
        reorder_point: 0,
        reorder_quantity: 1,
        factory_id: restock_inventory::demo::DEMO_FACTORY.to_owned(),
        policy: None,
    };
    store.upsert_product(&product(Sku::parse(HOT_SKU)?)).await?;
    for i in 0..plan.spread_products {
        store
            .upsert_product(&product(Sku::parse(&spread_sku(i))?))
            .await?;
    }
    Ok(())
}

/// Connects `n` channels to `addr`.
pub async fn channels(addr: std::net::SocketAddr, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to the gateway at {addr}"))?;
        out.push(channel);
    }
    Ok(out)
}

/// What each client of a closed loop calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `Purchase` of one unit with a fresh idempotency key, of the shape's products.
    Purchase(Shape),
    /// `grpc.health.v1.Health/Check`: answered from memory, no database, no work. The same
    /// generator at the same concurrency calling it measures the transport's and the
    /// generator's own limit: the ceiling no gRPC method can pass on this machine.
    Noop,
}

/// Buys one unit at a time from `gateway` with `concurrency` clients for the plan's warm-up
/// and measurement windows; only purchases sent inside the measurement window count.
pub async fn purchases(
    gateway: &Proc,
    backend: Backend,
    shape: Shape,
    concurrency: usize,
    plan: &Plan,
) -> anyhow::Result<Measured> {
    closed_loop(gateway, backend, Call::Purchase(shape), concurrency, plan).await
}

/// Runs `call` from `concurrency` closed-loop clients over at most [`MAX_CONNECTIONS`]
/// HTTP/2 connections; only calls sent inside the measurement window count. A purchase
/// counts when SOLD, a no-op when SERVING.
pub async fn closed_loop(
    gateway: &Proc,
    backend: Backend,
    call: Call,
    concurrency: usize,
    plan: &Plan,
) -> anyhow::Result<Measured> {
    let addr = gateway.grpc.context("the gateway has no gRPC address")?;
    let channels = channels(addr, concurrency.min(MAX_CONNECTIONS)).await?;
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let spread = plan.spread_products;
    let started = Instant::now();
    let measure_from = started + plan.warmup;
    let end = measure_from + plan.measure;
    let watch = Watch {
        gateway: Some(gateway.pid()),
        postgres: backend == Backend::Postgres,
        ..Watch::default()
    };
    let readings = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        let from = Reading::now(&watch);
        tokio::time::sleep_until(end).await;
        (from, Reading::now(&watch))
    });
    let mut tasks = Vec::with_capacity(concurrency);
    for client_no in 0..concurrency {
        let channel = channels[client_no % channels.len()].clone();
        let mut sales = SalesServiceClient::new(channel.clone());
        let mut health = HealthClient::new(channel);
        let mut latencies = histogram()?;
        tasks.push(tokio::spawn(async move {
            let mut measured = Measured::default();
            let shape = match call {
                Call::Purchase(shape) => shape,
                Call::Noop => Shape::Hot,
            };
            let mut skus = SkuPicker::new(shape, spread, client_no as u64 + 1);
            let mut n: u64 = 0;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                n += 1;
                let answer: Result<(), String> = match call {
                    Call::Purchase(_) => {
                        let sku = skus.next_sku();
                        match sales
                            .purchase(PurchaseRequest {
                                sku,
                                quantity: 1,
                                idempotency_key: format!("bench-{pid}-{run}-{client_no}-{n}"),
                                requester: "bench".to_owned(),
                            })
                            .await
                        {
                            Ok(r) if r.get_ref().outcome() == Outcome::Sold => Ok(()),
                            Ok(r) => Err(format!("{:?}", r.into_inner())),
                            Err(status) => Err(format!("{status}")),
                        }
                    }
                    Call::Noop => match health
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                    {
                        Ok(r) if r.get_ref().status() == ServingStatus::Serving => Ok(()),
                        Ok(r) => Err(format!("{:?}", r.into_inner())),
                        Err(status) => Err(format!("{status}")),
                    },
                };
                if sent < measure_from {
                    continue;
                }
                latencies.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                match answer {
                    Ok(()) => measured.sold += 1,
                    Err(first) => {
                        measured.other += 1;
                        measured.first_other.get_or_insert(first);
                    }
                }
            }
            (measured, latencies)
        }));
    }
    let mut total = Measured::default();
    let mut latencies = histogram()?;
    for task in tasks {
        let (m, h) = task.await.context("a load client panicked")?;
        total.sold += m.sold;
        total.other += m.other;
        if total.first_other.is_none() {
            total.first_other = m.first_other;
        }
        latencies.add(&h).context("merging histograms")?;
    }
    total.per_second = total.sold as f64 / plan.measure.as_secs_f64();
    total.p50_ms = quantile_ms(&latencies, 0.50);
    total.p99_ms = quantile_ms(&latencies, 0.99);
    let (from, to) = readings.await.context("the CPU sampler panicked")?;
    total.cpu = CpuPerOp::between(&from, &to, total.per_second);
    // Let the last answers' transactions settle before the next point starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(total)
}
