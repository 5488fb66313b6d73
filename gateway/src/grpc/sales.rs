//! `restock.v1.SalesService`: the sale.

use restock_inventory::{PurchaseOutcome, PurchaseRequest, Store, StoreError};
use restock_proto::v1::{
    Outcome, PurchaseRequest as PurchaseRequestPb, PurchaseResponse,
    sales_service_server::SalesService,
};
use std::sync::Arc;

use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use super::status::{self, from_store};
use crate::console::Feed;
use crate::demand::MissedDemand;
use crate::metrics::Metrics;

/// SalesService on top of the store.
#[derive(Debug, Clone)]
pub struct SalesApi {
    store: Store,
    /// Wakes the outbox relay right after a sale commits a replenishment intent.
    relay_wake: Arc<Notify>,
    metrics: Metrics,
    /// Units asked for while out of stock, for the planner's demand.
    missed: MissedDemand,
    /// Told of every sale, so an open console shows it at once.
    console: Feed,
}

impl SalesApi {
    /// A SalesService selling from `store`, waking `relay_wake` after each new intent and
    /// noting refused units in `missed` and telling `console` of each sale.
    pub fn new(
        store: Store,
        relay_wake: Arc<Notify>,
        metrics: Metrics,
        missed: MissedDemand,
        console: Feed,
    ) -> Self {
        Self {
            store,
            relay_wake,
            metrics,
            missed,
            console,
        }
    }
}

/// The `outcome` label of a Purchase answer.
fn outcome_label(result: &Result<Response<PurchaseResponse>, Status>) -> String {
    match result {
        Ok(reply) if reply.get_ref().replayed => "replayed".to_owned(),
        Ok(reply) => match reply.get_ref().outcome() {
            Outcome::Sold => "sold".to_owned(),
            Outcome::OutOfStock => "out_of_stock".to_owned(),
            Outcome::Unspecified => "unspecified".to_owned(),
        },
        Err(status) => format!("{:?}", status.code()).to_lowercase(),
    }
}

/// A failed purchase's status: [`from_store`], with the sale's own words when its outcome
/// is unknown (what a retry does depends on whether it carried an idempotency key).
fn purchase_error(err: StoreError, keyed: bool) -> Status {
    match err {
        StoreError::OutcomeUnknown(source) => {
            tracing::error!(error = %source, keyed, "purchase outcome unknown");
            status::outcome_unknown(if keyed {
                "the inventory database connection failed while the sale was being committed: it may or may not have been sold; retrying with the same idempotency key is safe (it sells at most once)"
            } else {
                "the inventory database connection failed while the sale was being committed: it may or may not have been sold; this purchase had no idempotency key, so check the stock before buying again (send a key to make retries safe)"
            })
        }
        other => from_store(other),
    }
}

#[tonic::async_trait]
impl SalesService for SalesApi {
    /// The caller's deadline is respected without code here: tonic's server drops this future
    /// when the `grpc-timeout` passes (its `GrpcTimeout` layer) or the client resets the
    /// stream or closes the connection (hyper). Dropping it drops the sale's place in its
    /// product's queue ([`Store::purchase`]): a sale whose transaction has not begun is not
    /// sold. One whose transaction has begun completes; its caller has gone by then.
    async fn purchase(
        &self,
        request: Request<PurchaseRequestPb>,
    ) -> Result<Response<PurchaseResponse>, Status> {
        let started = std::time::Instant::now();
        let request_id = request
            .extensions()
            .get::<crate::request_id::RequestId>()
            .map(|id| id.0.clone());
        let result = self.sell(request.into_inner(), request_id).await;
        self.metrics
            .purchase(&outcome_label(&result), started.elapsed());
        result
    }
}

impl SalesApi {
    async fn sell(
        &self,
        r: PurchaseRequestPb,
        request_id: Option<String>,
    ) -> Result<Response<PurchaseResponse>, Status> {
        let mut purchase =
            PurchaseRequest::new(&r.sku, r.quantity, &r.idempotency_key, &r.requester)
                .map_err(from_store)?;
        if let Some(id) = &request_id {
            purchase = purchase.with_request_id(id);
        }
        let outcome = self
            .store
            .purchase(&purchase)
            .await
            .map_err(|err| purchase_error(err, purchase.idempotency_key().is_some()))?;
        if matches!(
            outcome,
            PurchaseOutcome::OutOfStock { .. }
                | PurchaseOutcome::Sold {
                    replenishment_id: Some(_),
                    replayed: false,
                    ..
                }
        ) {
            self.relay_wake.notify_one();
        }
        if matches!(
            outcome,
            PurchaseOutcome::Sold {
                replayed: false,
                ..
            }
        ) {
            self.console.stock_changed();
        }
        let reply = match outcome {
            PurchaseOutcome::Sold {
                sale_id,
                remaining_stock,
                replenishment_id,
                replayed,
            } => {
                let mut message =
                    format!("sold {} x {}; {remaining_stock} left", r.quantity, r.sku);
                if replayed {
                    message.push_str(" (repeated request: this is the first sale's result)");
                }
                if replenishment_id.is_some() {
                    message.push_str("; replenishment requested");
                }
                PurchaseResponse {
                    outcome: Outcome::Sold.into(),
                    remaining_stock,
                    sale_id,
                    replenishment_id: replenishment_id.unwrap_or_default(),
                    message,
                    replayed,
                }
            }
            PurchaseOutcome::OutOfStock {
                stock,
                replenishment_id,
            } => {
                self.missed.record(&r.sku, r.quantity);
                PurchaseResponse {
                    outcome: Outcome::OutOfStock.into(),
                    remaining_stock: stock,
                    sale_id: String::new(),
                    message: format!(
                        "out of stock: {} has {stock} left, {} asked for; nothing sold, replenishment {replenishment_id} requested",
                        r.sku, r.quantity
                    ),
                    replenishment_id,
                    replayed: false,
                }
            }
        };
        tracing::debug!(sku = %r.sku, outcome = ?reply.outcome(), "purchase");
        Ok(Response::new(reply))
    }
}
