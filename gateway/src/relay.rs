//! The relay: hands each replenishment intent (written with the sale that caused it) to
//! Temporal, then deletes it; and hands each factory delivery (written by the callback) to its
//! replenishment, then settles it. It wakes right after a sale commits an intent or a callback
//! stores a delivery, and also sweeps on an interval, so what a crash or a Temporal outage
//! left behind is handed over later. Nothing is lost: an intent is deleted only after
//! Temporal holds the request, and only at the revision the relay acted on; a delivery is
//! settled only once its replenishment accepted it or its units are in stock.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use restock_inventory::entity::replenish_outbox;
use restock_inventory::{Sku, Store};
use restock_workflows::client;
use restock_workflows::{FactoryCompleted, ReplenishInput, ReplenishSettings, RestockState};
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::temporal::TemporalLink;

/// Intents handed to Temporal at once.
const CONCURRENT_STARTS: usize = 8;
/// Intents read per pass.
const BATCH: u64 = 64;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How often to look for intents nobody woke us for.
    pub sweep_interval: Duration,
    /// Durations passed to every workflow.
    pub workflow: ReplenishSettings,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(5),
            workflow: ReplenishSettings::default(),
        }
    }
}

/// Runs the relay until `shutdown`.
pub async fn run(
    store: Store,
    link: TemporalLink,
    wake: Arc<Notify>,
    settings: RelaySettings,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut recent = RecentHandovers::new(settings.sweep_interval.max(MIN_REPEAT_INTERVAL));
    let mut signalled = RecentHandovers::new(SIGNAL_REPEAT_INTERVAL);
    loop {
        if link.client().is_some() {
            // Side by side: a burst of starts must not hold up the deliveries that end
            // runs (nor the other way round); they share nothing but the store.
            tokio::join!(
                drain(&store, &link, &settings, &metrics, &mut recent),
                deliver(&store, &link, &metrics, &mut signalled),
            );
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(settings.sweep_interval) => {}
            _ = link.wait_connected(), if link.client().is_none() => {}
        }
    }
}

/// Hands every pending intent to Temporal; stops at the first pass that makes no progress.
async fn drain(
    store: &Store,
    link: &TemporalLink,
    settings: &RelaySettings,
    metrics: &Metrics,
    recent: &mut RecentHandovers,
) {
    recent.release_ended(store).await;
    loop {
        let resting = recent.resting();
        let intents = match store.pending_outbox_except(&resting, BATCH).await {
            Ok(intents) => intents,
            Err(err) => {
                tracing::warn!(error = %err, "relay cannot read the outbox");
                return;
            }
        };
        if intents.is_empty() {
            return;
        }
        let count = intents.len();
        let handed: Vec<(String, Handover)> = futures::stream::iter(intents)
            .map(|intent| async move {
                let sku = intent.sku.clone();
                (sku, hand_over(store, link, settings, metrics, intent).await)
            })
            .buffer_unordered(CONCURRENT_STARTS)
            .collect()
            .await;
        let mut done = 0;
        for (sku, outcome) in handed {
            if outcome.signalled {
                recent.handed_over(sku);
            }
            done += usize::from(outcome.removed);
        }
        if done < count || (count as u64) < BATCH {
            return;
        }
    }
}

/// The shortest time between two hand-overs for the same product while its run is open. The
/// first request for a product is handed over at once; more requests for it (out-of-stock
/// sales keep coming while the factory works) wait here, so they become at most one signal
/// per interval instead of one per sale, and the workflow's history stays small. A run that
/// ends (the read model records a final state after the hand-over) ends the rest: the
/// product's next request starts its next run at once, not when the interval is over (a
/// sold-out product with no order in flight loses a sale every moment it waits).
const MIN_REPEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Products handed over recently, resting before their next hand-over.
struct RecentHandovers {
    interval: Duration,
    /// When each was handed over: the monotonic instant, and unix ms to compare with the
    /// read model's `updated_at`.
    at: std::collections::HashMap<String, (tokio::time::Instant, i64)>,
}

impl RecentHandovers {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            at: std::collections::HashMap::new(),
        }
    }

    fn handed_over(&mut self, sku: String) {
        self.at.insert(
            sku,
            (
                tokio::time::Instant::now(),
                restock_inventory::store::now_ms(),
            ),
        );
    }

    /// Skus still resting (and forgets those whose rest is over).
    fn resting(&mut self) -> Vec<String> {
        let interval = self.interval;
        self.at.retain(|_, (at, _)| at.elapsed() < interval);
        self.at.keys().cloned().collect()
    }

    /// Ends the rest of each product whose run has ended since its hand-over: its newest
    /// read-model row since then is in a final state. A product whose read model cannot be
    /// read keeps resting (the interval still ends it).
    async fn release_ended(&mut self, store: &Store) {
        let resting = self.resting();
        let Some(since) = self.at.values().map(|(_, ms)| *ms).min() else {
            return;
        };
        let rows = match store.replenishments_changed_since(&resting, since).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::debug!(error = %err, "relay cannot read the replenishments; products rest their full interval");
                return;
            }
        };
        let mut newest: std::collections::HashMap<String, (i64, RestockState)> =
            std::collections::HashMap::new();
        for (sku, state, updated_at) in rows {
            let entry = newest.entry(sku).or_insert((i64::MIN, state));
            if updated_at >= entry.0 {
                *entry = (updated_at, state);
            }
        }
        for (sku, (updated_at, state)) in newest {
            let ended = state.is_terminal();
            let after_hand_over = self.at.get(&sku).is_some_and(|(_, ms)| updated_at >= *ms);
            if ended && after_hand_over {
                self.at.remove(&sku);
            }
        }
    }
}

/// What one hand-over did.
struct Handover {
    /// Temporal got the request (the product then rests before its next one).
    signalled: bool,
    /// The intent is gone from the outbox.
    removed: bool,
}

/// Starts (or signals) one intent's workflow.
async fn hand_over(
    store: &Store,
    link: &TemporalLink,
    settings: &RelaySettings,
    metrics: &Metrics,
    intent: replenish_outbox::Model,
) -> Handover {
    let failed = Handover {
        signalled: false,
        removed: false,
    };
    let Some(client) = link.client() else {
        return failed;
    };
    // Stock back above the reorder point (a replenishment finished while this intent
    // waited): the request is moot. A sale that changes stock meanwhile bumps the revision, so
    // the delete then misses and the intent stays for the next pass.
    if let Ok(sku) = Sku::parse(&intent.sku)
        && let Ok(view) = store.product(&sku).await
        && view.product.stock > view.product.reorder_point
    {
        return Handover {
            signalled: false,
            removed: store
                .delete_outbox(intent.id, intent.revision)
                .await
                .unwrap_or(false),
        };
    }
    let input = ReplenishInput {
        sku: intent.sku.clone(),
        reason: intent.reason.to_string(),
        settings: settings.workflow.clone(),
        carried: None,
        request_id: intent.request_id.clone(),
        previous_run: None,
    };
    match client::request_replenishment(client, link.task_queue(), input).await {
        Ok(run_id) => {
            let lag_ms = restock_inventory::store::now_ms().saturating_sub(intent.requested_at);
            metrics.relayed(Duration::from_millis(
                u64::try_from(lag_ms).unwrap_or_default(),
            ));
            match store.delete_outbox(intent.id, intent.revision).await {
                Ok(removed) => {
                    tracing::info!(sku = %intent.sku, %run_id, reason = %intent.reason, request_id = intent.request_id.as_deref().unwrap_or("-"), "replenishment requested");
                    Handover {
                        signalled: true,
                        removed,
                    }
                }
                Err(err) => {
                    tracing::warn!(sku = %intent.sku, error = %err, "cannot delete a relayed intent; it will be relayed again (harmless)");
                    Handover {
                        signalled: true,
                        removed: false,
                    }
                }
            }
        }
        Err(err) => {
            tracing::warn!(sku = %intent.sku, error = %err, "cannot start the replenishment yet; will retry");
            metrics.relay_failed();
            let _ = store
                .outbox_attempt_failed(intent.id, &err.to_string())
                .await;
            failed
        }
    }
}

/// Hands every pending delivery to its replenishment and settles it once its units are in
/// stock (its receipt exists). The run that waits for the order gets the `factory-completed`
/// signal naming it (at most once per [`SIGNAL_REPEAT_INTERVAL`]); a run that is not waiting
/// yet, or is counting, is left alone until a later pass; a delivery no run is on (cancelled,
/// terminated, or the product has moved on to a later order) is still goods in the shop: it is
/// added to stock directly, keyed by its order id like every increment, so it counts once
/// whoever gets there first.
///
/// A signal, not the `complete` update: an update accepted in the same workflow task as an
/// activity's result was seen to make the history unreplayable (SDK 1.1.1, TMPRL1100), and
/// the relay needs no answer: the receipt is its evidence.
async fn deliver(
    store: &Store,
    link: &TemporalLink,
    metrics: &Metrics,
    signalled: &mut RecentHandovers,
) {
    let Some(client) = link.client() else {
        return;
    };
    let deliveries = match store.pending_deliveries(BATCH).await {
        Ok(deliveries) => deliveries,
        Err(err) => {
            tracing::warn!(error = %err, "relay cannot read the delivery inbox");
            return;
        }
    };
    let resting = signalled.resting();
    // Several at once, like the hand-overs: each waits on a query and a signal, and a burst
    // of callbacks must not queue behind one another.
    let newly_signalled: Vec<String> = futures::stream::iter(deliveries)
        .map(|delivery| deliver_one(store, client, metrics, &resting, delivery))
        .buffer_unordered(CONCURRENT_STARTS)
        .filter_map(|signalled| async move { signalled })
        .collect()
        .await;
    for order_id in newly_signalled {
        signalled.handed_over(order_id);
    }
}

/// One delivery of [`deliver`]: settles it when its units are in stock, signals the run that
/// waits for it (unless signalled recently: `resting`), or adds it directly when no run is on
/// its order. The order id when it was signalled.
async fn deliver_one(
    store: &Store,
    client: &temporalio_client::Client,
    metrics: &Metrics,
    resting: &[String],
    delivery: restock_inventory::entity::factory_delivery::Model,
) -> Option<String> {
    let order_id = delivery.order_id.clone();
    let sku = delivery.sku.clone();
    match store.receipt(&order_id).await {
        Ok(Some(_)) => {
            settle(store, &order_id, "in stock (its replenishment counted it)").await;
            return None;
        }
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(%order_id, error = %err, "relay cannot read receipts");
            return None;
        }
    }
    // Signalled a moment ago and not counted yet: the run is on it; no query needed.
    if resting.contains(&order_id) {
        return None;
    }
    // Bounded: a query needs a worker, and the outbox must not wait behind it.
    let status = match tokio::time::timeout(QUERY_TIMEOUT, client::query_status(client, &sku))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the status query timed out (no worker?)")))
    {
        Ok(status) => status,
        Err(err) => {
            attempt_failed(
                store,
                metrics,
                &delivery,
                "cannot see the replenishment yet",
                &err,
            )
            .await;
            return None;
        }
    };
    let on_this_order = status
        .as_ref()
        .filter(|s| s.factory_order_id == order_id && !s.state.is_terminal());
    match on_this_order.map(|s| s.state) {
        Some(state) if state.accepts_completion() => {
            let completion = FactoryCompleted {
                quantity: Some(u32::try_from(delivery.quantity).unwrap_or(u32::MAX)),
                factory_order_id: Some(order_id.clone()),
            };
            match client::signal_factory_completed(client, &sku, completion).await {
                Ok(client::Delivery::Delivered) => {
                    tracing::info!(%sku, %order_id, "delivery signalled to its replenishment");
                    return Some(order_id);
                }
                // Closed since the query (or terminated: its last state still reads
                // waiting): nobody will count it but us.
                Ok(client::Delivery::NotRunning) => {
                    mark_closed(store, client, &sku, &order_id).await;
                    if let Some(outcome) =
                        add_directly(store, &delivery, "its replenishment is not running").await
                    {
                        settle(store, &order_id, &outcome).await;
                    }
                }
                Err(err) => {
                    attempt_failed(
                        store,
                        metrics,
                        &delivery,
                        "cannot signal a delivery yet",
                        &err,
                    )
                    .await;
                }
            }
        }
        // Still ordering (the callback beat the order's reply), or counting it now.
        Some(_) => {}
        None => {
            let why = match &status {
                None => "no replenishment running".to_owned(),
                Some(s) if s.factory_order_id != order_id => {
                    format!("its replenishment moved on to order {}", s.factory_order_id)
                }
                Some(s) => format!("its replenishment ended {}", s.state),
            };
            if let Some(outcome) = add_directly(store, &delivery, &why).await {
                settle(store, &order_id, &outcome).await;
            }
        }
    }
    None
}

/// The read model learns that `order_id`'s run, which still read waiting, is closed
/// (Terminate): so it leaves the console's open list, and an ad it paused can be resumed once
/// the delivery is in stock. A row that recorded its own end is left as it is.
async fn mark_closed(store: &Store, client: &temporalio_client::Client, sku: &str, order_id: &str) {
    let how =
        match tokio::time::timeout(QUERY_TIMEOUT, client::closed_by_temporal(client, sku)).await {
            Ok(Ok(Some(how))) => how,
            // Replaced by a newer run already, or Temporal does not say: closed, how unknown.
            _ => restock_inventory::CLOSED_BY_NEWER_RUN,
        };
    match store.record_closed_by_temporal(order_id, Some(how)).await {
        Ok(true) => {
            tracing::info!(%sku, %order_id, closed_by_temporal = how, "run closed by Temporal before it recorded its end; read model marked");
        }
        Ok(false) => {}
        Err(err) => {
            tracing::warn!(%sku, %order_id, error = %err, "cannot mark the closed run in the read model");
        }
    }
}

/// Marks a delivery settled.
/// A delivery's hand-over failed this time: logged, counted, and noted on the delivery (it
/// stays in the inbox for the next pass).
async fn attempt_failed(
    store: &Store,
    metrics: &Metrics,
    delivery: &restock_inventory::entity::factory_delivery::Model,
    what: &str,
    err: &anyhow::Error,
) {
    tracing::warn!(sku = %delivery.sku, order_id = %delivery.order_id, error = %err, "{what}; will retry");
    metrics.relay_failed();
    let _ = store
        .delivery_attempt_failed(&delivery.order_id, &err.to_string())
        .await;
}

async fn settle(store: &Store, order_id: &str, outcome: &str) {
    tracing::info!(%order_id, %outcome, "delivery settled");
    if let Err(err) = store.settle_delivery(order_id, outcome).await {
        tracing::warn!(%order_id, error = %err, "cannot settle a delivery; it will be looked at again (harmless)");
    }
}

/// How long the relay waits for a replenishment's status.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the relay waits before signalling the same delivery again (the run may be busy,
/// or its worker down: the signal it has is durable).
const SIGNAL_REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// Adds a delivery whose replenishment is not there to take it, once (keyed by its order id).
async fn add_directly(
    store: &Store,
    delivery: &restock_inventory::entity::factory_delivery::Model,
    why: &str,
) -> Option<String> {
    let replenishment_id = client::workflow_id(&delivery.sku);
    let received = match Sku::parse(&delivery.sku) {
        Ok(sku) => {
            store
                .receive_stock(
                    &delivery.order_id,
                    &sku,
                    delivery.quantity,
                    &replenishment_id,
                )
                .await
        }
        Err(err) => Err(err),
    };
    match received {
        Ok(received) if received.applied => Some(format!(
            "added to stock directly ({why}); stock now {}",
            received.stock
        )),
        Ok(_) => Some(format!("already in stock ({why})")),
        Err(err) => {
            tracing::warn!(order_id = %delivery.order_id, error = %err, "cannot add a delivery to stock yet; will retry");
            let _ = store
                .delivery_attempt_failed(&delivery.order_id, &err.to_string())
                .await;
            None
        }
    }
}
