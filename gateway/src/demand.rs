//! Demand the shelf could not serve: units asked for while a product was out of stock,
//! summed in memory per product and written every second ([`Store::record_demand_misses`]),
//! so the planner counts a sold-out product's buyers as demand without a database write per
//! refused sale. A gateway that dies loses at most the last second's sums: an estimate's input,
//! not stock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use restock_inventory::Store;

/// How often the sums are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Units turned away per product since the last flush.
#[derive(Debug, Clone, Default)]
pub struct MissedDemand {
    pending: Arc<Mutex<HashMap<String, i64>>>,
}

impl MissedDemand {
    /// Notes `units` of `sku` asked for and not sold.
    pub fn record(&self, sku: &str, units: u32) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending.entry(sku.to_owned()).or_default() += i64::from(units);
    }

    fn take(&self) -> Vec<(String, i64)> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.drain().collect()
    }

    /// Writes the sums every [`FLUSH_INTERVAL`] until `shutdown`, then once more.
    pub async fn flush_until(self, store: Store, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                () = &mut shutdown => true,
            };
            let misses = self.take();
            if let Err(err) = store.record_demand_misses(&misses).await {
                // Put them back: the next tick tries again.
                tracing::warn!(error = %err, products = misses.len(), "cannot record missed demand yet");
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (sku, units) in misses {
                    *pending.entry(sku).or_default() += units;
                }
            }
            if stopping {
                return;
            }
        }
    }
}
