//! Prometheus metrics on `GET /metrics` (OpenMetrics text): sales by outcome, purchase
//! latency, purchase grouping, outbox depth and relay lag, factory callbacks by result, replenishments by state.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use restock_inventory::Store;

/// A label set with one `outcome`/`result`/`state` value.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackResult {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

/// The gateway's metrics (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    sales: Family<Outcome, Counter>,
    purchase_seconds: Histogram,
    callbacks: Family<CallbackResult, Counter>,
    relayed: Counter,
    relay_failures: Counter,
    relay_lag_seconds: Histogram,
    outbox_depth: Gauge,
    outbox_oldest_age_seconds: Gauge,
    replenishments: Family<State, Gauge>,
    grouped_sales: Counter,
    group_transactions: Counter,
    abandoned_purchases: Counter,
    /// Serialises bringing the three counters above up to the store's totals.
    grouping_sync: Arc<std::sync::Mutex<()>>,
    purchases_waiting: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` under `name` and gives it back (a handle to the same metric).
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("restock");
        let r = &mut registry;
        Self {
            sales: registered(
                r,
                "sales",
                "Purchase requests by outcome (sold, out_of_stock, replayed, or the refusing gRPC code)",
                Family::<Outcome, Counter>::default(),
            ),
            purchase_seconds: registered(
                r,
                "purchase_seconds",
                "Time to answer a Purchase",
                Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            ),
            callbacks: registered(
                r,
                "factory_callbacks",
                "Factory callbacks by result",
                Family::<CallbackResult, Counter>::default(),
            ),
            relayed: registered(
                r,
                "relay_handed_over",
                "Replenishment intents handed to Temporal",
                Counter::default(),
            ),
            relay_failures: registered(
                r,
                "relay_failures",
                "Attempts to hand an intent to Temporal that failed (retried)",
                Counter::default(),
            ),
            relay_lag_seconds: registered(
                r,
                "relay_lag_seconds",
                "Time from a sale writing a replenishment intent to Temporal holding it",
                Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            ),
            outbox_depth: registered(
                r,
                "outbox_depth",
                "Replenishment intents waiting for the relay",
                Gauge::default(),
            ),
            outbox_oldest_age_seconds: registered(
                r,
                "outbox_oldest_age_seconds",
                "Age of the oldest replenishment intent still waiting for the relay (0 when none waits)",
                Gauge::default(),
            ),
            replenishments: registered(
                r,
                "replenishments",
                "Replenishments by state (database read model)",
                Family::<State, Gauge>::default(),
            ),
            grouped_sales: registered(
                r,
                "grouped_sales",
                "Purchases sold in a transaction shared with other purchases of the product, since start",
                Counter::default(),
            ),
            group_transactions: registered(
                r,
                "group_transactions",
                "Transactions that sold two or more purchases of one product, since start",
                Counter::default(),
            ),
            abandoned_purchases: registered(
                r,
                "abandoned_purchases",
                "Purchases dropped unsold because their caller stopped waiting before their transaction began, since start",
                Counter::default(),
            ),
            purchases_waiting: registered(
                r,
                "purchases_waiting",
                "Purchases waiting for their product's next grouped transaction",
                Gauge::default(),
            ),
            grouping_sync: Arc::default(),
            registry: Arc::new(registry),
        }
    }

    /// Counts one Purchase answer and its latency.
    pub fn purchase(&self, outcome: &str, took: Duration) {
        self.sales
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.purchase_seconds.observe(took.as_secs_f64());
    }

    /// Counts one factory callback.
    pub fn callback(&self, result: &str) {
        self.callbacks
            .get_or_create(&CallbackResult {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts an intent handed to Temporal `lag` after the sale wrote it.
    pub fn relayed(&self, lag: Duration) {
        self.relayed.inc();
        self.relay_lag_seconds.observe(lag.as_secs_f64());
    }

    /// Counts a failed hand-over.
    pub fn relay_failed(&self) {
        self.relay_failures.inc();
    }

    /// Reads the gauges from the database and renders everything as OpenMetrics text.
    pub async fn render(&self, store: &Store) -> String {
        if let Some(counts) = store.purchase_grouping() {
            // Counters only grow: add what the store counted since the last scrape.
            let _one_at_a_time = self
                .grouping_sync
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (counter, total) in [
                (&self.grouped_sales, counts.shared_sales),
                (&self.group_transactions, counts.shared_transactions),
                (&self.abandoned_purchases, counts.abandoned),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        if let Some(queue) = store.purchase_queue() {
            self.purchases_waiting
                .set(i64::try_from(queue.waiting).unwrap_or(i64::MAX));
        }
        match store.outbox_depth().await {
            Ok(depth) => {
                self.outbox_depth
                    .set(i64::try_from(depth).unwrap_or(i64::MAX));
            }
            Err(err) => tracing::warn!(error = %err, "metrics: cannot read the outbox depth"),
        }
        match store.outbox_oldest().await {
            Ok(oldest) => {
                let age_ms = oldest
                    .map(|at| (restock_inventory::store::now_ms() - at).max(0))
                    .unwrap_or(0);
                self.outbox_oldest_age_seconds.set(age_ms / 1_000);
            }
            Err(err) => tracing::warn!(error = %err, "metrics: cannot read the outbox's age"),
        }
        match store.replenishments_by_state().await {
            Ok(counts) => {
                self.replenishments.clear();
                for (state, n) in counts {
                    self.replenishments
                        .get_or_create(&State {
                            state: state.as_str().to_owned(),
                        })
                        .set(n);
                }
            }
            Err(err) => tracing::warn!(error = %err, "metrics: cannot count replenishments"),
        }
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %err, "metrics: encoding failed");
        }
        text
    }
}
