//! The one place store errors become gRPC statuses, with messages a person can act on.
//! Database details go to the log, never to the client.

use restock_inventory::StoreError;
use tonic::Status;

/// Maps a store error to its gRPC status.
pub fn from_store(err: StoreError) -> Status {
    match err {
        StoreError::InvalidInput(msg) => Status::invalid_argument(msg),
        StoreError::NotFound(msg) => Status::not_found(msg),
        StoreError::FailedPrecondition(msg) => Status::failed_precondition(msg),
        StoreError::Unavailable(source) => {
            tracing::warn!(error = %source, "database unavailable");
            Status::unavailable(
                "the inventory database is unavailable right now; nothing was changed, try again shortly",
            )
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

    fn sea_orm_err(msg: &str) -> restock_inventory::DbErr {
        restock_inventory::DbErr::Custom(msg.to_owned())
    }
}
