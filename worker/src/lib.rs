//! The Temporal worker that hosts the replenish-stock workflow and its activities. Filled in by
//! the workflow issue.
