//! The console's live picture. One background task per gateway reads the database and
//! publishes a [`Snapshot`] whenever it changed: right after a sale through this gateway,
//! else every second while a console is open (a worker's restock or another gateway's sale
//! shows within that second). Every [`SAMPLE_EVERY`] it also keeps each product's stock for the
//! last hour's chart. The samples live in memory: a restarted gateway starts a new hour.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use restock_inventory::{ProductView, ReplenishmentRecord, Store, StoreError};
use restock_workflows::RestockState;
use serde::Serialize;
use tokio::sync::{Notify, watch};

/// Most products the console lists (the first ones by sku).
pub const MAX_PRODUCTS: u64 = 500;
/// Most open replenishments the console lists (the oldest first).
pub const MAX_OPEN: u64 = 200;
/// How often an open console is refreshed when no sale went through this gateway.
const REFRESH: Duration = Duration::from_secs(1);
/// The least time between two reads, however fast sales come.
const MIN_GAP: Duration = Duration::from_millis(100);
/// How often each product's stock is sampled for the chart.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);
/// How far back the charts go.
const HISTORY_MS: i64 = 3_600_000;
/// The least time between two publications of the chart data between samples (sales per
/// minute moves with every sale; the chart need not).
const HISTORY_GAP: Duration = Duration::from_secs(5);

/// One product's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProductRow {
    /// Sku.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Units on hand.
    pub stock: i64,
    /// A replenishment starts at or below this.
    pub reorder_point: i64,
    /// Units ordered per replenishment.
    pub reorder_quantity: i64,
    /// `fixed` or `adaptive`.
    pub policy: String,
    /// Units asked for per minute, as the planner last measured (`None`: not measured yet).
    pub demand_per_minute: Option<f64>,
    /// Seconds the stock lasts at that rate (`None`: no demand measured).
    pub cover_seconds: Option<f64>,
    /// Whether the product's advertisement runs.
    pub ad_active: bool,
}

/// How many replenishments are in one state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateCount {
    /// The state's name.
    pub state: &'static str,
    /// Replenishments in it (ended states: those that ended today, UTC).
    pub count: i64,
    /// Whether this is an ended state (counted for today only).
    pub ended: bool,
}

/// A replenishment not yet ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenReplenishment {
    /// Product.
    pub sku: String,
    /// Our order id, the one the factory was given.
    pub order_id: String,
    /// Its state.
    pub state: RestockState,
    /// Units ordered (0 until known).
    pub quantity: i64,
    /// Whether the factory's SLA passed without a delivery.
    pub overdue: bool,
    /// Unix ms when it started.
    pub started_at: i64,
    /// Unix ms of its last state change.
    pub updated_at: i64,
    /// Its workflow in the Temporal Web UI.
    pub workflow_url: Option<String>,
}

/// What the console shows, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Products, by sku.
    pub products: Vec<ProductRow>,
    /// Whether there are more products than [`MAX_PRODUCTS`].
    pub products_truncated: bool,
    /// Counts per state, in the order of the happy path.
    pub pipeline: Vec<StateCount>,
    /// Open replenishments, oldest first.
    pub open: Vec<OpenReplenishment>,
}

/// The charts' data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    /// Seconds between two stock samples.
    pub step_seconds: u64,
    /// Per sku: `[unix ms, stock, reorder point]`, oldest first, the last hour.
    pub stock: BTreeMap<String, Vec<[i64; 3]>>,
    /// `[minute start in unix ms, units sold]`, the last hour, oldest first.
    pub sales_per_minute: Vec<[i64; 2]>,
}

/// Where the console links a workflow to.
#[derive(Debug, Clone)]
pub struct WorkflowLinks {
    /// The Temporal Web UI's address.
    pub ui_url: String,
    /// The namespace the workflows run in.
    pub namespace: String,
}

impl WorkflowLinks {
    fn of(&self, sku: &str) -> String {
        restock_workflows::client::workflow_link(
            &self.ui_url,
            &self.namespace,
            &restock_inventory::replenishment_id(sku),
        )
    }
}

/// The live picture and its subscribers (cheap to clone).
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    links: Option<WorkflowLinks>,
    wake: Notify,
    snapshot: watch::Sender<Option<Arc<str>>>,
    history: watch::Sender<Option<Arc<str>>>,
    samples: Mutex<BTreeMap<String, VecDeque<[i64; 3]>>>,
    /// True once the gateway shuts down: open event streams end, so the HTTP server's
    /// graceful shutdown does not wait for a browser tab forever.
    closed: watch::Sender<bool>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("watchers", &self.inner.snapshot.receiver_count())
            .finish()
    }
}

impl Feed {
    /// A feed over `store`, linking workflows to the Temporal UI when `links` is given.
    pub fn new(store: Store, links: Option<WorkflowLinks>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                links,
                wake: Notify::new(),
                snapshot: watch::channel(None).0,
                history: watch::channel(None).0,
                samples: Mutex::new(BTreeMap::new()),
                closed: watch::channel(false).0,
            }),
        }
    }

    /// Stock changed here (a sale): refresh open consoles now.
    pub fn stock_changed(&self) {
        self.inner.wake.notify_one();
    }

    /// The snapshots as they are published (JSON), starting with the latest.
    pub fn snapshots(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.inner.wake.notify_one();
        self.inner.snapshot.subscribe()
    }

    /// The chart data as it is published (JSON), starting with the latest.
    pub fn histories(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.inner.history.subscribe()
    }

    /// Resolves once the gateway shuts down (at once if it has).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut closed = self.inner.closed.subscribe();
        async move {
            // An error means the feed is gone: closed too.
            let _ = closed.wait_for(|closed| *closed).await;
        }
    }

    /// Reads the picture from the database now.
    pub async fn read(&self) -> Result<Snapshot, StoreError> {
        let store = &self.inner.store;
        let mut products = store.list_products(None, MAX_PRODUCTS + 1).await?;
        let products_truncated = products.len() > MAX_PRODUCTS as usize;
        products.truncate(MAX_PRODUCTS as usize);
        let counts = store.replenishment_counts(start_of_today()).await?;
        let open = store.open_replenishments(MAX_OPEN).await?;
        Ok(Snapshot {
            products: products.into_iter().map(product_row).collect(),
            products_truncated,
            pipeline: pipeline(&counts),
            open: open.iter().map(|r| self.open_row(r)).collect(),
        })
    }

    fn open_row(&self, r: &ReplenishmentRecord) -> OpenReplenishment {
        OpenReplenishment {
            sku: r.sku.clone(),
            order_id: r.order_id.clone(),
            state: r.state,
            quantity: r.quantity,
            overdue: r.overdue,
            started_at: r.started_at,
            updated_at: r.updated_at,
            workflow_url: self.inner.links.as_ref().map(|l| l.of(&r.sku)),
        }
    }

    /// The chart data now: the kept samples and the last hour's sales.
    pub async fn history(&self) -> Result<History, StoreError> {
        let since = restock_inventory::store::now_ms() - HISTORY_MS;
        let sales = self.inner.store.sales_per_minute(since).await?;
        let stock = match self.inner.samples.lock() {
            Ok(samples) => samples
                .iter()
                .map(|(sku, points)| (sku.clone(), points.iter().copied().collect()))
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        Ok(History {
            step_seconds: SAMPLE_EVERY.as_secs(),
            stock,
            sales_per_minute: sales.into_iter().map(|(m, u)| [m, u]).collect(),
        })
    }

    fn sample(&self, snapshot: &Snapshot) {
        let now = restock_inventory::store::now_ms();
        let Ok(mut samples) = self.inner.samples.lock() else {
            return;
        };
        for p in &snapshot.products {
            samples
                .entry(p.sku.clone())
                .or_default()
                .push_back([now, p.stock, p.reorder_point]);
        }
        samples.retain(|_, points| {
            while points.front().is_some_and(|p| p[0] < now - HISTORY_MS) {
                points.pop_front();
            }
            !points.is_empty()
        });
    }

    /// Keeps the picture fresh until `shutdown`: reads after a sale (at most every
    /// [`MIN_GAP`]) or every [`REFRESH`] while someone watches, and samples stock every
    /// [`SAMPLE_EVERY`] whether or not anyone watches.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut sample_tick = tokio::time::interval(SAMPLE_EVERY);
        sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut history_published: Option<std::time::Instant> = None;
        loop {
            let sample_due = tokio::select! {
                () = &mut shutdown => {
                    self.inner.closed.send_replace(true);
                    return;
                }
                _ = sample_tick.tick() => true,
                () = self.inner.wake.notified() => false,
                () = tokio::time::sleep(REFRESH) => false,
            };
            let watched = self.inner.snapshot.receiver_count() > 0;
            if !watched && !sample_due {
                continue;
            }
            match self.read().await {
                Ok(snapshot) => {
                    if sample_due {
                        self.sample(&snapshot);
                    }
                    if watched {
                        let changed = self.publish_snapshot(&snapshot);
                        let gap_passed =
                            history_published.is_none_or(|at| at.elapsed() >= HISTORY_GAP);
                        if sample_due || (changed && gap_passed) {
                            self.publish_history().await;
                            history_published = Some(std::time::Instant::now());
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "console: cannot read the database"),
            }
            tokio::time::sleep(MIN_GAP).await;
        }
    }

    /// Publishes `snapshot` if it differs from the last one; whether it did.
    fn publish_snapshot(&self, snapshot: &Snapshot) -> bool {
        let Ok(json) = serde_json::to_string(snapshot) else {
            return false;
        };
        self.inner.snapshot.send_if_modified(|current| {
            if current.as_deref() == Some(json.as_str()) {
                return false;
            }
            *current = Some(json.into());
            true
        })
    }

    /// Publishes the chart data as it is now.
    async fn publish_history(&self) {
        match self.history().await {
            Ok(history) => {
                if let Ok(json) = serde_json::to_string(&history) {
                    self.inner.history.send_replace(Some(json.into()));
                }
            }
            Err(err) => tracing::warn!(error = %err, "console: cannot read sales per minute"),
        }
    }
}

fn product_row(view: ProductView) -> ProductRow {
    let p = view.product;
    let policy = view.policy.as_ref();
    let demand_per_second = policy.and_then(|row| row.demand_per_second);
    ProductRow {
        policy: policy
            .map(|row| row.policy.clone())
            .unwrap_or_else(|| "fixed".to_owned()),
        demand_per_minute: demand_per_second.map(|d| d * 60.0),
        cover_seconds: demand_per_second
            .filter(|d| *d > 0.0)
            .map(|d| p.stock.max(0) as f64 / d),
        sku: p.sku,
        name: p.name,
        stock: p.stock,
        reorder_point: p.reorder_point,
        reorder_quantity: p.reorder_quantity,
        ad_active: view.ad_active,
    }
}

/// Counts for every state in the happy path's order, zeros included, so the pipeline keeps
/// its shape.
fn pipeline(counts: &[(RestockState, i64)]) -> Vec<StateCount> {
    RestockState::ALL
        .into_iter()
        .map(|state| StateCount {
            state: state.as_str(),
            count: counts
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| n)
                .sum(),
            ended: state.is_terminal(),
        })
        .collect()
}

fn start_of_today() -> i64 {
    let now = restock_inventory::store::now_ms();
    now - now.rem_euclid(86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_has_every_state_once_and_marks_the_ended_ones() {
        let counts = vec![
            (RestockState::AwaitingFactory, 2),
            (RestockState::Completed, 5),
        ];
        let pipeline = pipeline(&counts);
        assert_eq!(pipeline.len(), RestockState::ALL.len());
        let find = |s: &str| pipeline.iter().find(|c| c.state == s).unwrap();
        assert_eq!(find("AwaitingFactory").count, 2);
        assert!(!find("AwaitingFactory").ended);
        assert_eq!(find("Completed").count, 5);
        assert!(find("Completed").ended);
        assert_eq!(find("Overdue").count, 0);
    }
}
