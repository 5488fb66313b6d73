//! The replenish-stock state machine: deterministic workflow code only (no database, network
//! or tokio). Filled in by the workflow issue.
