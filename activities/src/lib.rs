//! Temporal activities of the replenish-stock workflow: all of its I/O. Every activity is
//! idempotent, so Temporal may retry it freely (the retries replace the old DLQ):
//! the factory order is keyed by the replenishment's order id and never sent twice, the
//! increment is keyed by the same id in `stock_receipts`, and each email by replenishment and
//! transition in `notifications`.
//!
//! # Layout
//! - [`types`]: activity inputs and outputs (shared with the workflow crate).
//! - [`replenish`]: [`ReplenishActivities`], the activities themselves, and their names.
//! - [`plan`]: [`PlanningActivities`], the planner's one activity (a pass of the
//!   replenishment policy).
//! - [`notify`]: email through SMTP (`RESTOCK_SMTP_URL`), or the log without it.
//! - [`errors`]: which failures are retryable and which end the workflow.

pub mod errors;
pub mod notify;
pub mod plan;
pub mod replenish;
pub mod types;

pub use plan::PlanningActivities;
pub use replenish::{ActivitySettings, ReplenishActivities};

/// A workflow's page in the Temporal Web UI at `ui_url` (emails and the console link to it).
pub fn workflow_link(ui_url: &str, namespace: &str, workflow_id: &str) -> String {
    format!(
        "{}/namespaces/{namespace}/workflows/{workflow_id}",
        ui_url.trim_end_matches('/')
    )
}

/// The most units one factory order may ask for (the legacy factory's contract).
pub const MAX_ORDER_QUANTITY: u32 = restock_factory::wire::MAX_QUANTITY;

#[cfg(test)]
mod tests {
    #[test]
    fn a_workflow_link_is_the_ui_page_of_that_workflow_in_its_namespace() {
        let page = "http://localhost:8233/namespaces/shop/workflows/replenish-CP-1";
        assert_eq!(
            super::workflow_link("http://localhost:8233", "shop", "replenish-CP-1"),
            page
        );
        // A configured UI URL with a trailing slash gives the same page.
        assert_eq!(
            super::workflow_link("http://localhost:8233/", "shop", "replenish-CP-1"),
            page
        );
    }
}
