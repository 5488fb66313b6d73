//! The one place store errors become gRPC statuses, with messages a person can act on.
//! Database details go to the log, never to the client.

use restock_inventory::StoreError;
use tonic::Status;

/// The message of [`StoreError::OutcomeUnknown`] for requests in general.
pub const OUTCOME_UNKNOWN: &str = "the inventory database connection failed while the change was being committed: it may or may not have been applied; check before repeating it (a purchase repeated with the same idempotency key sells at most once)";

/// Maps a store error to its gRPC status.
pub fn from_store(err: StoreError) -> Status {
    match err {
        StoreError::InvalidInput(msg) => Status::invalid_argument(msg),
        StoreError::NotFound(msg) => Status::not_found(msg),
        StoreError::FailedPrecondition(msg) => Status::failed_precondition(msg),
        // The store says Unavailable only when nothing was changed (see StoreError).
        StoreError::Unavailable(source) => {
            tracing::warn!(error = %source, "database unavailable");
            Status::unavailable(
                "the inventory database is unavailable right now; nothing was changed, try again shortly",
            )
        }
        // UNKNOWN, not UNAVAILABLE: the change may have happened, and clients (and gRPC retry
        // policies) retry UNAVAILABLE as "nothing happened", which would repeat it.
        StoreError::OutcomeUnknown(source) => {
            tracing::error!(error = %source, "database connection failed; outcome unknown");
            Status::unknown(OUTCOME_UNKNOWN)
        }
        // Load shedding, not an outage: RESOURCE_EXHAUSTED tells clients to back off rather
        // than retry at once, and keeps overload apart from outages in the metrics.
        StoreError::Busy(msg) => {
            tracing::debug!(%msg, "purchase refused: queue full");
            Status::resource_exhausted(msg)
        }
        StoreError::Database(source) => {
            tracing::error!(error = %source, "database error");
            Status::internal(
                "internal database error; nothing was changed (details are in the gateway log)",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_store_error_has_its_code() {
        let cases = [
            (StoreError::InvalidInput("x".into()), Code::InvalidArgument),
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
