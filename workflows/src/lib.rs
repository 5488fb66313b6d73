//! The replenish-stock workflow: a Step Functions-style state machine on Temporal.
//!
//! Workflow code is deterministic only: no database, network, clock or tokio. All I/O is in
//! `restock-activities`; time and randomness come from the workflow context. ([`client`] is
//! the starter's side, used by the gateway and CLI, never inside a workflow.)
//!
//! # Layout
//! - [`state`]: [`RestockState`] and [`Event`], with every allowed transition in one function
//!   ([`state::next`]) — pure, unit-tested.
//! - [`client`]: the starter side: connect, start (UseExisting), signal, query.
//! - [`dev_server`]: the Temporal dev server's command line and readiness check, as
//!   `restock dev`, the tests and the benchmark start it.
//! - [`replenish`]: [`ReplenishStock`], the workflow (type `replenish-stock`): its input,
//!   signals (`factory-completed`, `cancel`), query (`status`) and search attributes.
//! - [`plan`]: [`PlanReplenishments`], the planning workflow (type `plan-replenishments`)
//!   the Temporal Schedule `restock-planner` starts.

pub mod client;
pub mod dev_server;
pub mod plan;
pub mod replenish;
pub mod state;

pub use plan::{
    DEFAULT_PLANNER_INTERVAL, PLAN_WORKFLOW_TYPE, PLANNER_SCHEDULE_ID, PlanReplenishments,
};
pub use replenish::{
    CancelRequest, CarriedOrder, CompletionRefusal, FactoryCompleted, MAX_REQUESTS_PER_RUN,
    PATCH_EXACTLY_ONCE, ReplenishInput, ReplenishOutcome, ReplenishRequested, ReplenishSettings,
    ReplenishStatus, ReplenishStock, SEARCH_ATTRIBUTE_SKU, SEARCH_ATTRIBUTE_STATE,
    SEARCH_ATTRIBUTES, TASK_QUEUE, WORKFLOW_TYPE,
};
pub use state::{Event, RestockState};
