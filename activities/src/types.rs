//! Inputs and outputs of the replenish-stock activities. They travel as JSON through
//! Temporal's history, so they hold no secrets (the callback token is made inside the
//! order activity, never passed through the workflow).

use serde::{Deserialize, Serialize};

/// What `check-stock` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Product.
    pub sku: String,
    /// Units on hand.
    pub stock: i64,
    /// Replenish at or below this.
    pub reorder_point: i64,
    /// Units per factory order.
    pub reorder_quantity: i64,
    /// Factory that makes it.
    pub factory_id: String,
}

impl StockLevel {
    /// Whether stock is at or below the reorder point.
    pub fn needs_replenishment(&self) -> bool {
        self.stock <= self.reorder_point
    }
}

/// Input of `order-from-factory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactoryOrderInput {
    /// Our order id (also the factory's `MessageGroupId`); unique per replenishment.
    pub order_id: String,
    /// Product.
    pub sku: String,
    /// Units to produce.
    pub quantity: u32,
    /// Factory to ask.
    pub factory_id: String,
    /// The request id (`x-request-id`) of the call that asked for the replenishment, for the
    /// logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Output of `order-from-factory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactoryOrderPlaced {
    /// Our order id.
    pub order_id: String,
    /// The factory's id for the order, when it confirmed it.
    pub factory_reference: Option<String>,
    /// False when we cannot know whether the factory took the order (a timeout after sending):
    /// the workflow waits for the callback as usual, and an operator completes it otherwise.
    pub confirmed: bool,
    /// Send attempts so far.
    pub attempts: u32,
    /// Units already received for this order, when its delivery came before this call (a
    /// re-run after an operator's `temporal workflow reset`): the run completes with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u32>,
}

/// Input of `increment-stock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementInput {
    /// The order whose delivery this is (the idempotency key of the increment).
    pub order_id: String,
    /// Product.
    pub sku: String,
    /// Units delivered.
    pub quantity: u32,
    /// The workflow id.
    pub replenishment_id: String,
}

/// Output of `increment-stock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockIncremented {
    /// Stock after the increment.
    pub stock: i64,
    /// False when this delivery had already been applied (a retry): nothing was added.
    pub applied: bool,
}

/// Input of `record-replenishment`: the workflow's state for the read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplenishmentSnapshot {
    /// Order id.
    pub order_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Product.
    pub sku: String,
    /// Where the run is (serialized as its contract name).
    pub state: restock_inventory::RestockState,
    /// Units ordered (0 until known).
    pub quantity: u32,
    /// SLA passed.
    pub overdue: bool,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// Input of `pause-advertising` and `resume-advertising`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdChange {
    /// The replenishment's order id (keys the email: one per replenishment and transition).
    pub order_id: String,
    /// Product.
    pub sku: String,
    /// The workflow id (linked from the email).
    pub replenishment_id: String,
}

/// Output of `pause-advertising` and `resume-advertising`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdChanged {
    /// Whether the product has an advertisement at all.
    pub has_ad: bool,
    /// Whether its manager was notified by this call (false when an earlier attempt did).
    pub notified: bool,
    /// The mail could not be delivered and was given up (the ad changed all the same).
    #[serde(default)]
    pub mail_failed: bool,
}
