//! Which activity failures Temporal retries (with exponential backoff, until the dependency
//! answers) and which end the workflow, visibly, at once.

use restock_inventory::StoreError;
use temporalio_common::ActivityError;
use temporalio_sdk::ApplicationFailure;

/// Failure type of input the system will never accept (non-retryable).
pub const INVALID_INPUT: &str = "invalid-input";
/// Failure type of a product or factory that does not exist (non-retryable).
pub const NOT_FOUND: &str = "not-found";
/// Failure type of an order the factory refused as invalid (non-retryable).
pub const FACTORY_REJECTED: &str = "factory-rejected";

/// The failure types the workflow's retry policies never retry.
pub const NON_RETRYABLE: [&str; 3] = [INVALID_INPUT, NOT_FOUND, FACTORY_REJECTED];

/// A failure that ends the workflow: retrying cannot fix it.
pub fn fatal(type_name: &str, message: impl Into<String>) -> ActivityError {
    let message: String = message.into();
    ApplicationFailure::builder(message)
        .type_name(type_name.to_owned())
        .non_retryable(true)
        .build()
        .into()
}

/// Store errors: bad input and missing rows are fatal; an unavailable or failing database
/// is retried.
pub fn from_store(err: StoreError) -> ActivityError {
    match err {
        StoreError::InvalidInput(msg)
        | StoreError::InvalidField { message: msg, .. }
        | StoreError::FailedPrecondition(msg) => fatal(INVALID_INPUT, msg),
        StoreError::NotFound(msg) => fatal(NOT_FOUND, msg),
        other => anyhow::Error::new(other).into(),
    }
}
