//! `replenishments`: a read model of the replenish-stock workflows, written by the workflow's
//! `record-replenishment` activity on every state change, so listing and filtering
//! replenishments needs only the database. The live truth stays in Temporal.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One replenishment (one workflow run).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "replenishments")]
pub struct Model {
    /// The order id of this replenishment (unique per run).
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    /// Workflow id: `replenish-<sku>`.
    pub workflow_id: String,
    /// Product.
    pub sku: String,
    /// Where the run is.
    pub state: RestockState,
    /// Units ordered (0 until known).
    pub quantity: i64,
    /// Whether the factory SLA passed without a delivery.
    pub overdue: bool,
    /// Unix ms when the workflow started.
    pub started_at: i64,
    /// Unix ms of the last state change.
    pub updated_at: i64,
    /// Set when Temporal closed the run before it recorded its end, so `state` is only the
    /// last state it entered: "Terminated" (or "TimedOut") once the gateway saw it so, or
    /// "Closed" once a newer run of the product recorded itself (only the latest run is open).
    /// Such a row is no longer counted or listed as open. Cleared when the run writes its row
    /// again (the UI's Reset of a terminated run runs it again).
    pub closed_by_temporal: Option<String>,
}

/// Relations of `replenishments`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where a replenishment is. The names are the contract (`status` query, `RestockState`
/// search attribute, `Replenishment.state`, this table's `state` column). Defined beside the
/// column so the store reads and filters it typed; the transitions between the states are the
/// workflow's, in `restock_workflows::state`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Default,
    EnumIter,
    DeriveActiveEnum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum RestockState {
    /// Reading the product's stock.
    #[default]
    #[sea_orm(string_value = "CheckingStock")]
    CheckingStock,
    /// Stock is above the reorder point again: nothing to do (end).
    #[sea_orm(string_value = "NotNeeded")]
    NotNeeded,
    /// Sending the order to the factory (retried until it answers).
    #[sea_orm(string_value = "OrderingFromFactory")]
    OrderingFromFactory,
    /// The factory has the order; waiting for its completion callback.
    #[sea_orm(string_value = "AwaitingFactory")]
    AwaitingFactory,
    /// The factory SLA passed without a callback; operators are alerted; still waiting.
    #[sea_orm(string_value = "Overdue")]
    Overdue,
    /// Adding the delivered units to stock.
    #[sea_orm(string_value = "Restocking")]
    Restocking,
    /// Stock was replenished (end).
    #[sea_orm(string_value = "Completed")]
    Completed,
    /// Cancelled by an operator (end).
    #[sea_orm(string_value = "Cancelled")]
    Cancelled,
    /// Ended by an error retrying cannot fix (end).
    #[sea_orm(string_value = "Failed")]
    Failed,
}

impl RestockState {
    /// Every state, in the order of the happy path.
    pub const ALL: [RestockState; 9] = [
        RestockState::CheckingStock,
        RestockState::NotNeeded,
        RestockState::OrderingFromFactory,
        RestockState::AwaitingFactory,
        RestockState::Overdue,
        RestockState::Restocking,
        RestockState::Completed,
        RestockState::Cancelled,
        RestockState::Failed,
    ];

    /// The state's contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            RestockState::CheckingStock => "CheckingStock",
            RestockState::NotNeeded => "NotNeeded",
            RestockState::OrderingFromFactory => "OrderingFromFactory",
            RestockState::AwaitingFactory => "AwaitingFactory",
            RestockState::Overdue => "Overdue",
            RestockState::Restocking => "Restocking",
            RestockState::Completed => "Completed",
            RestockState::Cancelled => "Cancelled",
            RestockState::Failed => "Failed",
        }
    }

    /// Parses a contract name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The states in which the workflow has ended.
    pub const ENDED: [RestockState; 4] = [
        RestockState::NotNeeded,
        RestockState::Completed,
        RestockState::Cancelled,
        RestockState::Failed,
    ];

    /// Whether the workflow has ended in this state.
    pub fn is_terminal(self) -> bool {
        Self::ENDED.contains(&self)
    }

    /// Whether a factory completion (signal `factory-completed`, update `complete`) may be
    /// accepted in this state: only while the run waits for the factory. Before that no order
    /// exists to complete; after it the delivery is already being counted.
    pub fn accepts_completion(self) -> bool {
        matches!(self, RestockState::AwaitingFactory | RestockState::Overdue)
    }

    /// Whether a cancel (signal or update `cancel`, or Temporal's own cancellation) may be
    /// accepted in this state: in any live state before Restocking.
    pub fn accepts_cancel(self) -> bool {
        !self.is_terminal() && self != RestockState::Restocking
    }
}

impl std::fmt::Display for RestockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_holds_the_contract_names() {
        for state in RestockState::ALL {
            assert_eq!(state.to_value(), state.as_str());
            assert_eq!(
                RestockState::try_from_value(&state.to_value()).ok(),
                Some(state)
            );
        }
        assert_eq!(
            <RestockState as sea_orm::Iterable>::iter().count(),
            RestockState::ALL.len()
        );
    }
}
