//! Scenario 5, the service level: Poisson buyers against the real stack (gateway, worker,
//! Temporal, a factory simulator that delivers a lead time after each order), the fixed policy
//! (reorder point 0, as the old system) and the adaptive one side by side in one run.
//!
//! Products: 1, 5 and 20 units/s, and one whose demand steps from 5 to 15 units/s halfway;
//! each twice, once per policy. Both start with one order's worth on hand and order the same
//! quantity at first (1.5 lead times of demand): what differs is when they reorder (and that
//! the adaptive policy's planner keeps re-measuring). Each buyer asks for one unit; a refused
//! buyer does not come back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use restock_inventory::Sku;
use restock_inventory::entity::factory_order;
use restock_proto::v1::inventory_service_client::InventoryServiceClient;
use restock_proto::v1::sales_service_client::SalesServiceClient;
use restock_proto::v1::{
    GetProductRequest, Outcome, Product, PurchaseRequest, ReplenishmentPolicy, UpsertProductRequest,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::time::Instant;

use crate::chart::{self, Panel};
use crate::plan::Plan;
use crate::system::{Backend, StackSpec, System};

/// The factory's lead time, scaled down from the legacy factory's ~40 s.
pub const LEAD_TIME: Duration = Duration::from_secs(4);
/// Planner interval in the simulation (the default is a minute, for real lead times).
pub const PLANNER_EVERY_SECS: u64 = 2;
/// Demand window in the simulation.
pub const DEMAND_WINDOW_SECS: u64 = 120;
/// The default lead time the operator configured (a guess, not the factory's real 4 s).
pub const DEFAULT_LEAD_TIME_SECS: u64 = 5;
/// `(seconds, units on hand)` samples of one product.
type Samples = Vec<(f64, i64)>;
/// `(seconds, sold?)` per buyer of one product (`None`: the call failed).
type Calls = Vec<(f64, Option<bool>)>;

/// How often stock on hand is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// One product's demand.
#[derive(Debug, Clone)]
pub struct Demand {
    /// Label in the report.
    pub label: String,
    /// Units per second (from the start).
    pub rate: f64,
    /// Units per second from halfway on, when demand steps.
    pub step_to: Option<f64>,
}

/// Which policy a product runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Reorder point 0 (as the old system).
    Fixed,
    /// The planner's figures.
    Adaptive,
}

impl Policy {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fixed => "fixed, reorder point 0",
            Policy::Adaptive => "adaptive",
        }
    }
}

/// What one product under one policy went through.
#[derive(Debug, Clone)]
pub struct Outcomes {
    /// Its demand.
    pub demand: Demand,
    /// Its policy.
    pub policy: Policy,
    /// Units asked for.
    pub demanded: u64,
    /// Units sold.
    pub sold: u64,
    /// Calls that failed (neither sold nor out of stock).
    pub errors: u64,
    /// Seconds with nothing on hand (from the samples).
    pub out_of_stock_secs: f64,
    /// Time-weighted average on hand.
    pub average_on_hand: f64,
    /// Demand over one lead time at the final rate (the yardstick for hoarding).
    pub lead_time_demand: f64,
    /// Factory orders placed.
    pub factory_orders: u64,
    /// Units asked for and sold from three lead times after the step on (step products).
    pub after_step: Option<(u64, u64)>,
    /// Reorder point and quantity at the end.
    pub final_figures: (i64, i64),
    /// `(seconds, on hand)` samples.
    pub samples: Vec<(f64, i64)>,
}

impl Outcomes {
    /// Units sold ÷ units asked for.
    pub fn fill_rate(&self) -> f64 {
        if self.demanded == 0 {
            1.0
        } else {
            self.sold as f64 / self.demanded as f64
        }
    }

    /// Fill rate from three lead times after the step on.
    pub fn fill_after_step(&self) -> Option<f64> {
        self.after_step.map(|(asked, sold)| {
            if asked == 0 {
                1.0
            } else {
                sold as f64 / asked as f64
            }
        })
    }
}

/// The simulation's results.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// How long buyers came.
    pub seconds: f64,
    /// When demand stepped (seconds from the start).
    pub step_at: f64,
    /// One row per product and policy.
    pub rows: Vec<Outcomes>,
    /// The chart's file name (next to the report), or why there is none.
    pub chart: Result<String, String>,
}

/// The demands of a run.
pub fn demands() -> Vec<Demand> {
    let fixed = |rate: f64| Demand {
        label: format!("{rate} units/s"),
        rate,
        step_to: None,
    };
    vec![
        fixed(1.0),
        fixed(5.0),
        fixed(20.0),
        Demand {
            label: "5 -> 15 units/s halfway".to_owned(),
            rate: 5.0,
            step_to: Some(15.0),
        },
    ]
}

/// A small, seeded generator for arrival times (xorshift64*): the same run, the same buyers.
struct Arrivals(u64);

impl Arrivals {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Seconds to the next arrival at `rate` per second.
    fn gap(&mut self, rate: f64) -> f64 {
        -self.uniform().ln() / rate
    }
}

fn sku(index: usize, policy: Policy) -> String {
    match policy {
        Policy::Fixed => format!("SIM-{index}-FIXED"),
        Policy::Adaptive => format!("SIM-{index}-ADAPTIVE"),
    }
}

/// Runs the simulation for `plan`'s length on a fresh SQLite stack.
pub async fn run(system: &System, plan: &Plan) -> anyhow::Result<Simulation> {
    let seconds = plan.simulation.as_secs_f64();
    let step_at = seconds / 2.0;
    let db = system.database(Backend::Sqlite).await?;
    let step_ms = (LEAD_TIME.as_millis() / 4) as u64;
    let stack = system
        .replenishment_stack_with(
            &db,
            &StackSpec {
                factory_step_ms: step_ms,
                worker_env: vec![
                    ("RESTOCK_PLANNER_EVERY_SECS", PLANNER_EVERY_SECS.to_string()),
                    ("RESTOCK_DEMAND_WINDOW_SECS", DEMAND_WINDOW_SECS.to_string()),
                    (
                        "RESTOCK_DEFAULT_LEAD_TIME_SECS",
                        DEFAULT_LEAD_TIME_SECS.to_string(),
                    ),
                ],
            },
        )
        .await?;
    let grpc = stack.gateway.grpc.context("gateway without gRPC")?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .connect()
        .await
        .context("connecting to the simulation's gateway")?;
    let mut inventory = InventoryServiceClient::new(channel.clone());
    let sales = SalesServiceClient::new(channel);
    let lead = LEAD_TIME.as_secs_f64();

    let demands = demands();
    let mut products = Vec::new();
    for (index, demand) in demands.iter().enumerate() {
        let quantity = (1.5 * demand.rate * lead).ceil() as i64;
        for policy in [Policy::Fixed, Policy::Adaptive] {
            let sku = sku(index, policy);
            inventory
                .upsert_product(UpsertProductRequest {
                    product: Some(Product {
                        sku: sku.clone(),
                        name: format!("simulated {} ({})", demand.label, policy.name()),
                        price: 100,
                        stock: quantity,
                        reorder_point: 0,
                        reorder_quantity: quantity,
                        factory_id: restock_inventory::demo::DEMO_FACTORY.to_owned(),
                        policy: match policy {
                            Policy::Fixed => ReplenishmentPolicy::Fixed,
                            Policy::Adaptive => ReplenishmentPolicy::Adaptive,
                        } as i32,
                        ..Default::default()
                    }),
                    update_mask: None,
                })
                .await
                .with_context(|| format!("creating {sku}"))?;
            products.push((index, policy, sku));
        }
    }

    eprintln!(
        "bench: simulation: {} products, {seconds:.0} s, lead time {lead} s",
        products.len()
    );
    let started = Instant::now();
    let deadline = started + plan.simulation;
    // Sampler: stock on hand of every product, every SAMPLE_EVERY.
    let samples: Arc<Mutex<Vec<Samples>>> = Arc::new(Mutex::new(vec![Vec::new(); products.len()]));
    let sampler = {
        let samples = samples.clone();
        let skus: Vec<String> = products.iter().map(|(_, _, s)| s.clone()).collect();
        let mut inventory = inventory.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            while Instant::now() < deadline {
                tick.tick().await;
                let t = started.elapsed().as_secs_f64();
                for (i, sku) in skus.iter().enumerate() {
                    if let Ok(p) = inventory
                        .get_product(GetProductRequest { sku: sku.clone() })
                        .await
                    {
                        samples
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)[i]
                            .push((t, p.into_inner().stock));
                    }
                }
            }
        })
    };
    // Buyers: one Poisson process per product; each buyer is its own call.
    let buyers = products.iter().enumerate().map(|(slot, (index, _, sku))| {
        let demand = demands[*index].clone();
        let sales = sales.clone();
        let sku = sku.clone();
        async move {
            let mut arrivals = Arrivals(0x9E37_79B9_7F4A_7C15 ^ ((*index as u64 + 1) * 7919));
            let mut t = 0.0;
            let mut calls = Vec::new();
            let mut n = 0u64;
            loop {
                let rate = match demand.step_to {
                    Some(to) if t >= step_at => to,
                    _ => demand.rate,
                };
                t += arrivals.gap(rate);
                if t >= seconds {
                    break;
                }
                tokio::time::sleep_until(started + Duration::from_secs_f64(t)).await;
                n += 1;
                let mut sales = sales.clone();
                let request = PurchaseRequest {
                    sku: sku.clone(),
                    quantity: 1,
                    idempotency_key: format!("{sku}-{n}"),
                    requester: "simulation".to_owned(),
                };
                let at = t;
                // Its own task: a slow answer must not delay the next buyer.
                calls.push(tokio::spawn(async move {
                    let sold = match sales.purchase(request).await {
                        Ok(r) if r.get_ref().outcome() == Outcome::Sold => Some(true),
                        Ok(_) => Some(false),
                        Err(_) => None,
                    };
                    (at, sold)
                }));
            }
            let mut outcomes: Calls = Vec::new();
            for call in calls {
                outcomes.push(call.await.unwrap_or((0.0, None)));
            }
            (slot, outcomes)
        }
    });
    let finished: Vec<(usize, Calls)> = futures::future::join_all(buyers).await;
    let _ = sampler.await;
    let samples = std::mem::take(
        &mut *samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );

    let mut rows = Vec::new();
    for (slot, calls) in finished {
        let (index, policy, sku) = &products[slot];
        let demand = demands[*index].clone();
        let asked = calls.len() as u64;
        let sold = calls.iter().filter(|(_, s)| *s == Some(true)).count() as u64;
        let errors = calls.iter().filter(|(_, s)| s.is_none()).count() as u64;
        let after_step = demand.step_to.map(|_| {
            let from = step_at + 3.0 * lead;
            let late: Vec<_> = calls.iter().filter(|(t, _)| *t >= from).collect();
            (
                late.len() as u64,
                late.iter().filter(|(_, s)| *s == Some(true)).count() as u64,
            )
        });
        let series = samples.get(slot).cloned().unwrap_or_default();
        let (out_of_stock_secs, average_on_hand) = time_weighted(&series, seconds);
        let factory_orders = factory_order::Entity::find()
            .filter(factory_order::Column::Sku.eq(sku.as_str()))
            .count(db.store.connection())
            .await?;
        let product = db.store.product(&Sku::parse(sku)?).await?.product;
        rows.push(Outcomes {
            lead_time_demand: demand.step_to.unwrap_or(demand.rate) * lead,
            demand,
            policy: *policy,
            demanded: asked,
            sold,
            errors,
            out_of_stock_secs,
            average_on_hand,
            factory_orders,
            after_step,
            final_figures: (product.reorder_point, product.reorder_quantity),
            samples: series,
        });
    }
    stack.stop().await;

    let chart_name = chart_file_name(plan);
    let chart_path = plan
        .out
        .parent()
        .map(|d| d.join(&chart_name))
        .unwrap_or_else(|| chart_name.clone().into());
    let panels: Vec<Panel> = demands
        .iter()
        .enumerate()
        .map(|(index, demand)| {
            let of = |policy: Policy| {
                rows.iter()
                    .find(|r| sku_index(r, &demands) == Some(index) && r.policy == policy)
                    .map(|r| r.samples.clone())
                    .unwrap_or_default()
            };
            Panel {
                title: demand.label.clone(),
                fixed: of(Policy::Fixed),
                adaptive: of(Policy::Adaptive),
                marker: demand.step_to.map(|_| step_at),
            }
        })
        .collect();
    if let Some(dir) = chart_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ok();
    }
    let chart = chart::draw(&chart_path, &panels, seconds)
        .map(|()| chart_name)
        .map_err(|e| format!("{e:#}"));
    if let Err(e) = &chart {
        eprintln!("bench: no simulation chart: {e}");
    }
    Ok(Simulation {
        seconds,
        step_at,
        rows,
        chart,
    })
}

fn sku_index(row: &Outcomes, demands: &[Demand]) -> Option<usize> {
    demands.iter().position(|d| d.label == row.demand.label)
}

/// `BENCHMARKS-simulation.png` beside `BENCHMARKS.md` (the report's own stem).
fn chart_file_name(plan: &Plan) -> String {
    let stem = plan
        .out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "BENCHMARKS".to_owned());
    format!("{stem}-simulation.png")
}

/// Seconds at zero and the time-weighted average of step samples over `[0, end]`.
fn time_weighted(samples: &[(f64, i64)], end: f64) -> (f64, f64) {
    let mut zero = 0.0;
    let mut area = 0.0;
    let mut covered = 0.0;
    for pair in samples.windows(2) {
        let (t0, v0) = pair[0];
        let (t1, _) = pair[1];
        let dt = (t1 - t0).max(0.0);
        covered += dt;
        area += v0 as f64 * dt;
        if v0 == 0 {
            zero += dt;
        }
    }
    if let Some(&(t, v)) = samples.last() {
        let dt = (end - t).max(0.0);
        covered += dt;
        area += v as f64 * dt;
        if v == 0 {
            zero += dt;
        }
    }
    let average = if covered > 0.0 { area / covered } else { 0.0 };
    (zero, average)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_weighted_counts_zero_time_and_the_average() {
        let samples = [(0.0, 10), (1.0, 0), (3.0, 4)];
        let (zero, average) = time_weighted(&samples, 4.0);
        assert_eq!(zero, 2.0);
        // 10 for 1 s, 0 for 2 s, 4 for 1 s over 4 s.
        assert_eq!(average, 3.5);
    }

    #[test]
    fn arrivals_average_their_rate() {
        let mut a = Arrivals(42);
        let n = 20_000;
        let total: f64 = (0..n).map(|_| a.gap(5.0)).sum();
        let rate = n as f64 / total;
        assert!((rate - 5.0).abs() < 0.15, "{rate}");
    }
}
