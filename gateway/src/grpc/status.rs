//! The one place errors become gRPC statuses, with messages a person can act on and details a
//! program can act on (google.rpc's richer error model, through `tonic-types`): every status
//! carries an `ErrorInfo` (domain [`DOMAIN`], a [`reason`]); an invalid field also a
//! `BadRequest` field violation naming it; UNAVAILABLE and RESOURCE_EXHAUSTED a `RetryInfo`.
//! Database details go to the log, never to the client.

use std::collections::HashMap;
use std::time::Duration;

use restock_inventory::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `ErrorInfo` restock sends.
pub const DOMAIN: &str = "restock";

/// The `reason`s of restock's `ErrorInfo`s: stable identifiers for programs (the message is
/// for people and may change).
pub mod reason {
    /// INVALID_ARGUMENT: the request breaks a rule; a `BadRequest` names the field when one is
    /// to blame.
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    /// NOT_FOUND: no such product, factory or replenishment.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// FAILED_PRECONDITION: valid, but the current state refuses it (stock would go below
    /// zero, an idempotency key reused for another purchase, no replenishment running, a
    /// replenishment that refused an operator's action).
    pub const FAILED_PRECONDITION: &str = "FAILED_PRECONDITION";
    /// UNAVAILABLE: the database does not answer; nothing was changed.
    pub const DATABASE_UNAVAILABLE: &str = "DATABASE_UNAVAILABLE";
    /// UNAVAILABLE: Temporal does not answer (replenishment calls only; sales go on).
    pub const TEMPORAL_UNAVAILABLE: &str = "TEMPORAL_UNAVAILABLE";
    /// UNKNOWN: the connection failed while a change was committed; it may have happened.
    pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";
    /// RESOURCE_EXHAUSTED: too many purchases of the product wait already; nothing was sold.
    pub const BUSY: &str = "BUSY";
    /// INTERNAL: a database failure that is not an outage (details in the gateway log).
    pub const INTERNAL: &str = "INTERNAL";
    /// UNAUTHENTICATED: no API token, or one the gateway does not know.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// PERMISSION_DENIED: the token's role may not make this call.
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
}

/// How long a client should wait before retrying UNAVAILABLE or RESOURCE_EXHAUSTED (the
/// gateway's health check runs every second; a queue drains in far less).
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The message of [`StoreError::OutcomeUnknown`] for requests in general.
pub const OUTCOME_UNKNOWN: &str = "the inventory database connection failed while the change was being committed: it may or may not have been applied; check before repeating it (a purchase repeated with the same idempotency key sells at most once)";

/// A status with an `ErrorInfo` of `reason`, and whatever `more` adds.
fn with_details(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    more: impl FnOnce(&mut ErrorDetails),
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, HashMap::new());
    more(&mut details);
    Status::with_error_details(code, message, details)
}

/// INVALID_ARGUMENT that no single field is to blame for.
pub fn invalid_argument(message: impl Into<String>) -> Status {
    with_details(
        Code::InvalidArgument,
        message,
        reason::INVALID_ARGUMENT,
        |_| {},
    )
}

/// INVALID_ARGUMENT naming the request's `field` (`sku`, `product.reorder_quantity`) in a
/// `BadRequest` field violation.
pub fn invalid_field(field: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    with_details(
        Code::InvalidArgument,
        message.clone(),
        reason::INVALID_ARGUMENT,
        |d| {
            d.add_bad_request_violation(field, message);
        },
    )
}

/// NOT_FOUND.
pub fn not_found(message: impl Into<String>) -> Status {
    with_details(Code::NotFound, message, reason::NOT_FOUND, |_| {})
}

/// FAILED_PRECONDITION.
pub fn failed_precondition(message: impl Into<String>) -> Status {
    with_details(
        Code::FailedPrecondition,
        message,
        reason::FAILED_PRECONDITION,
        |_| {},
    )
}

/// UNAVAILABLE for `reason` ([`reason::DATABASE_UNAVAILABLE`], [`reason::TEMPORAL_UNAVAILABLE`]),
/// with a `RetryInfo`.
pub fn unavailable(reason: &str, message: impl Into<String>) -> Status {
    with_details(Code::Unavailable, message, reason, |d| {
        d.set_retry_info(Some(RETRY_DELAY));
    })
}

/// UNKNOWN: the change may or may not have happened.
pub fn outcome_unknown(message: impl Into<String>) -> Status {
    with_details(Code::Unknown, message, reason::OUTCOME_UNKNOWN, |_| {})
}

/// UNAUTHENTICATED.
pub fn unauthenticated(message: impl Into<String>) -> Status {
    with_details(
        Code::Unauthenticated,
        message,
        reason::UNAUTHENTICATED,
        |_| {},
    )
}

/// PERMISSION_DENIED.
pub fn permission_denied(message: impl Into<String>) -> Status {
    with_details(
        Code::PermissionDenied,
        message,
        reason::PERMISSION_DENIED,
        |_| {},
    )
}

/// Maps a store error to its gRPC status.
pub fn from_store(err: StoreError) -> Status {
    match err {
        StoreError::InvalidInput(msg) => invalid_argument(msg),
        StoreError::InvalidField { field, message } => invalid_field(&field, message),
        StoreError::NotFound(msg) => not_found(msg),
        StoreError::FailedPrecondition(msg) => failed_precondition(msg),
        // The store says Unavailable only when nothing was changed (see StoreError).
        StoreError::Unavailable(source) => {
            tracing::warn!(error = %source, "database unavailable");
            unavailable(
                reason::DATABASE_UNAVAILABLE,
                "the inventory database is unavailable right now; nothing was changed, try again shortly",
            )
        }
        // UNKNOWN, not UNAVAILABLE: the change may have happened, and clients (and gRPC retry
        // policies) retry UNAVAILABLE as "nothing happened", which would repeat it.
        StoreError::OutcomeUnknown(source) => {
            tracing::error!(error = %source, "database connection failed; outcome unknown");
            outcome_unknown(OUTCOME_UNKNOWN)
        }
        // Load shedding, not an outage: RESOURCE_EXHAUSTED tells clients to back off rather
        // than retry at once, and keeps overload apart from outages in the metrics.
        StoreError::Busy(msg) => {
            tracing::debug!(%msg, "purchase refused: queue full");
            with_details(Code::ResourceExhausted, msg, reason::BUSY, |d| {
                d.set_retry_info(Some(RETRY_DELAY));
            })
        }
        StoreError::Database(source) => {
            tracing::error!(error = %source, "database error");
            with_details(
                Code::Internal,
                "internal database error; nothing was changed (details are in the gateway log)",
                reason::INTERNAL,
                |_| {},
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_store_error_has_its_code() {
        let cases = [
            (StoreError::InvalidInput("x".into()), Code::InvalidArgument),
            (StoreError::invalid_field("sku", "x"), Code::InvalidArgument),
            (StoreError::NotFound("x".into()), Code::NotFound),
            (
                StoreError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (
                StoreError::Unavailable(sea_orm_err("connection refused")),
                Code::Unavailable,
            ),
            (StoreError::Database(sea_orm_err("syntax")), Code::Internal),
            (
                StoreError::OutcomeUnknown(sea_orm_err("connection reset")),
                Code::Unknown,
            ),
            (StoreError::Busy("x".into()), Code::ResourceExhausted),
        ];
        for (err, code) in cases {
            assert_eq!(from_store(err).code(), code);
        }
    }

    #[test]
    fn each_status_says_why_to_programs() {
        let status = from_store(StoreError::invalid_field(
            "quantity",
            "quantity must be at least 1",
        ));
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("INVALID_ARGUMENT", DOMAIN)
        );
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "quantity");
        assert_eq!(violations[0].description, "quantity must be at least 1");
        assert_eq!(status.message(), "quantity must be at least 1");

        let unavailable = from_store(StoreError::Unavailable(sea_orm_err("refused")));
        let details = unavailable.get_error_details();
        assert_eq!(
            details.error_info().unwrap().reason,
            reason::DATABASE_UNAVAILABLE
        );
        assert_eq!(details.retry_info().unwrap().retry_delay, Some(RETRY_DELAY));
        assert!(details.bad_request().is_none());

        let not_found = from_store(StoreError::NotFound("no such product".into()));
        assert_eq!(
            not_found.get_details_error_info().unwrap().reason,
            reason::NOT_FOUND
        );
        assert!(not_found.get_details_retry_info().is_none());
    }

    #[test]
    fn database_details_stay_in_the_log() {
        let status = from_store(StoreError::Database(sea_orm_err("password=hunter2")));
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn only_known_failures_say_nothing_was_changed() {
        let unknown = from_store(StoreError::OutcomeUnknown(sea_orm_err("reset")));
        assert!(!unknown.message().contains("nothing was changed"));
        assert!(unknown.message().contains("may or may not"));
        let unavailable = from_store(StoreError::Unavailable(sea_orm_err("refused")));
        assert!(unavailable.message().contains("nothing was changed"));
    }

    fn sea_orm_err(msg: &str) -> restock_inventory::DbErr {
        restock_inventory::DbErr::Custom(msg.to_owned())
    }
}
