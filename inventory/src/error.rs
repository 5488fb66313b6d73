//! [`StoreError`]: every way a store operation can fail, in the terms a caller acts on.

use sea_orm::{DbErr, RuntimeErr};

/// Why a store operation failed. Each variant maps to one gRPC status in the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input breaks a rule ([`crate::validate`]); nothing was changed.
    #[error("{0}")]
    InvalidInput(String),
    /// One field of the input breaks a rule ([`crate::validate`]); nothing was changed. Like
    /// [`StoreError::InvalidInput`], and it names the field, so clients can point at it.
    #[error("{message}")]
    InvalidField {
        /// The field's name as the request spells it (`sku`, `quantity`, `product.sku`).
        field: String,
        /// What is wrong with it, for people.
        message: String,
    },
    /// The product (or factory) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but conflicts with the current state (e.g. stock would go
    /// negative, an idempotency key reused for another request); nothing was changed.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database cannot be reached right now, and nothing was changed: the request never
    /// reached it, or what it did was rolled back. The caller may retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] DbErr),
    /// The connection failed where a change may already have been committed (during `COMMIT`,
    /// or during a statement that commits itself): the change may or may not have happened.
    /// A purchase with an idempotency key may be repeated with the same key: it sells at most
    /// once.
    #[error("the database connection failed; the outcome is unknown: {0}")]
    OutcomeUnknown(#[source] DbErr),
    /// Too many purchases of the product already wait for its transaction; this one was
    /// refused before anything was done (nothing was sold). Retry after a short pause.
    #[error("{0}")]
    Busy(String),
    /// Any other database failure (a bug or a broken schema); details are logged.
    #[error("database error: {0}")]
    Database(#[source] DbErr),
}

impl StoreError {
    /// An invalid `field`, with what is wrong with it.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The invalid field this error names, if it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            StoreError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Places an invalid field inside the request's field `parent`: `sku` becomes
    /// `product.sku` when the request carries it in `product`. Other errors are unchanged.
    pub fn within(self, parent: &str) -> Self {
        match self {
            StoreError::InvalidField { field, message } => StoreError::InvalidField {
                field: format!("{parent}.{field}"),
                message,
            },
            other => other,
        }
    }
}

/// How a database error should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbErrKind {
    /// Connection lost, refused or pool exhausted: report UNAVAILABLE.
    Unavailable,
    /// Deadlock, serialization failure or a busy SQLite file: retry the transaction.
    Transient,
    /// A unique constraint was violated.
    UniqueViolation,
    /// Anything else.
    Other,
}

impl From<DbErr> for StoreError {
    /// Without knowing where the error happened: a lost connection mid-request may have lost a
    /// `COMMIT`'s answer, so only errors that surely changed nothing are
    /// [`StoreError::Unavailable`]; the others are [`StoreError::OutcomeUnknown`]. Code that
    /// knows it had not committed yet says so with [`before_commit`].
    fn from(err: DbErr) -> Self {
        match classify(&err) {
            DbErrKind::Unavailable if may_have_committed(&err) => StoreError::OutcomeUnknown(err),
            DbErrKind::Unavailable | DbErrKind::Transient => StoreError::Unavailable(err),
            DbErrKind::UniqueViolation | DbErrKind::Other => StoreError::Database(err),
        }
    }
}

/// A database error met before any `COMMIT` was sent (inside a transaction not yet
/// committed, or before one began): whatever it was, nothing was changed.
pub(crate) fn before_commit(err: DbErr) -> StoreError {
    match classify(&err) {
        DbErrKind::Unavailable | DbErrKind::Transient => StoreError::Unavailable(err),
        DbErrKind::UniqueViolation | DbErrKind::Other => StoreError::Database(err),
    }
}

/// Whether a write whose `COMMIT` (or self-committing statement) failed with `err` may have
/// been committed anyway. `false` only when that is known: the request never left this
/// process (no connection could be had) or the server answered with an error (it rolled the
/// transaction back). A connection that broke, a protocol error, a crashed driver or anything
/// unrecognised may have lost the answer to a `COMMIT` the server carried out.
pub(crate) fn may_have_committed(err: &DbErr) -> bool {
    let runtime = match err {
        // No connection could be had (sea-orm reports a failed connect as `Conn`).
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return false,
        DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return true,
    };
    let RuntimeErr::SqlxError(sqlx_err) = runtime else {
        return true;
    };
    use sea_orm::sqlx::Error as E;
    match sqlx_err.as_ref() {
        // Never sent: no connection was handed out.
        E::PoolTimedOut | E::PoolClosed => false,
        // The server answered: it rolled back. Except the codes that mean it is going away,
        // which can come after it committed.
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let mysql_number = db
                .try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number());
            server_may_have_committed(&code, mysql_number)
        }
        _ => true,
    }
}

/// For an error the server reported at `COMMIT`: whether it may have committed anyway (it
/// reports that it is shutting down or dropping the connection, which can follow a commit).
/// Every other reported error means the transaction was rolled back.
pub(crate) fn server_may_have_committed(code: &str, mysql_number: Option<u16>) -> bool {
    // MySQL/MariaDB: server shutdown, connection killed, server gone, lost connection.
    if matches!(
        mysql_number,
        Some(1053) | Some(1927) | Some(2006) | Some(2013)
    ) {
        return true;
    }
    // PostgreSQL admin/crash shutdown; SQLSTATE class 08 (connection exception) other than
    // the connect-time refusals 08001/08004.
    matches!(code, "57P01" | "57P02")
        || (code.starts_with("08") && !matches!(code, "08001" | "08004"))
}

/// Sorts a database error into what we do about it.
pub(crate) fn classify(err: &DbErr) -> DbErrKind {
    let runtime = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return DbErrKind::Unavailable,
        DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return DbErrKind::Other,
    };
    let RuntimeErr::SqlxError(sqlx_err) = runtime else {
        return DbErrKind::Other;
    };
    use sea_orm::sqlx::Error as E;
    match sqlx_err.as_ref() {
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::PoolClosed => {
            DbErrKind::Unavailable
        }
        E::WorkerCrashed => DbErrKind::Unavailable,
        E::Database(db) => {
            if matches!(db.kind(), sea_orm::sqlx::error::ErrorKind::UniqueViolation) {
                return DbErrKind::UniqueViolation;
            }
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let mysql_number = db
                .try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number());
            classify_code(&code, mysql_number)
        }
        _ => DbErrKind::Other,
    }
}

/// Classifies a database error code: a SQLSTATE (PostgreSQL, MySQL), a SQLite result code, or
/// a MySQL error number.
pub(crate) fn classify_code(code: &str, mysql_number: Option<u16>) -> DbErrKind {
    match mysql_number {
        // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
        Some(1213) | Some(1205) => return DbErrKind::Transient,
        // ER_CON_COUNT_ERROR, server shutdown, connection killed
        Some(1040) | Some(1053) | Some(1927) | Some(2006) | Some(2013) => {
            return DbErrKind::Unavailable;
        }
        _ => {}
    }
    match code {
        // PostgreSQL: serialization_failure, deadlock_detected.
        "40001" | "40P01" => DbErrKind::Transient,
        // PostgreSQL: admin/crash shutdown, cannot connect now, database dropped.
        "57P01" | "57P02" | "57P03" | "57P04" => DbErrKind::Unavailable,
        // SQLite primary and extended BUSY / LOCKED codes.
        "5" | "6" | "261" | "262" | "517" | "773" => DbErrKind::Transient,
        // SQLSTATE class 08: connection exception.
        c if c.starts_with("08") => DbErrKind::Unavailable,
        _ => DbErrKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlocks_and_busy_files_are_transient() {
        assert_eq!(classify_code("40P01", None), DbErrKind::Transient);
        assert_eq!(classify_code("40001", None), DbErrKind::Transient);
        assert_eq!(classify_code("HY000", Some(1213)), DbErrKind::Transient);
        assert_eq!(classify_code("5", None), DbErrKind::Transient);
        assert_eq!(classify_code("517", None), DbErrKind::Transient);
    }

    #[test]
    fn lost_connections_are_unavailable() {
        assert_eq!(classify_code("57P01", None), DbErrKind::Unavailable);
        assert_eq!(classify_code("08006", None), DbErrKind::Unavailable);
        assert_eq!(classify_code("HY000", Some(2013)), DbErrKind::Unavailable);
    }

    fn sqlx(err: sea_orm::sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(err)))
    }

    fn io_reset() -> DbErr {
        sqlx(sea_orm::sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )))
    }

    #[test]
    fn a_commit_may_have_happened_unless_it_never_left_or_the_server_refused_it() {
        // Never sent: no connection.
        assert!(!may_have_committed(&DbErr::ConnectionAcquire(
            sea_orm::ConnAcquireErr::Timeout
        )));
        assert!(!may_have_committed(&sqlx(
            sea_orm::sqlx::Error::PoolTimedOut
        )));
        assert!(!may_have_committed(&DbErr::Conn(RuntimeErr::Internal(
            "connect refused".into()
        ))));
        // Sent, answer lost.
        assert!(may_have_committed(&io_reset()));
        assert!(may_have_committed(&sqlx(sea_orm::sqlx::Error::Protocol(
            "unexpected message".into()
        ))));
        assert!(may_have_committed(&sqlx(
            sea_orm::sqlx::Error::WorkerCrashed
        )));
        assert!(may_have_committed(&DbErr::Custom("?".into())));
    }

    #[test]
    fn server_errors_at_commit_are_rollbacks_unless_it_is_going_away() {
        // Serialization failure, deadlock, constraint: rolled back.
        assert!(!server_may_have_committed("40001", None));
        assert!(!server_may_have_committed("40P01", None));
        assert!(!server_may_have_committed("23505", None));
        assert!(!server_may_have_committed("HY000", Some(1213)));
        // Connection refused at connect time: never sent.
        assert!(!server_may_have_committed("08001", None));
        // Shutting down / connection lost: may follow the commit.
        assert!(server_may_have_committed("57P01", None));
        assert!(server_may_have_committed("08006", None));
        assert!(server_may_have_committed("HY000", Some(2013)));
        assert!(server_may_have_committed("HY000", Some(1927)));
    }

    #[test]
    fn only_errors_that_surely_changed_nothing_are_unavailable() {
        assert!(matches!(
            StoreError::from(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(io_reset()),
            StoreError::OutcomeUnknown(_)
        ));
        // Before COMMIT, the same lost connection changed nothing.
        assert!(matches!(
            before_commit(io_reset()),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn an_invalid_field_is_named_and_can_be_nested() {
        let err = StoreError::invalid_field("sku", "sku is empty");
        assert_eq!(err.to_string(), "sku is empty");
        assert_eq!(err.field(), Some("sku"));
        let nested = err.within("product");
        assert_eq!(nested.field(), Some("product.sku"));
        assert_eq!(nested.to_string(), "sku is empty");
        assert_eq!(StoreError::InvalidInput("x".into()).field(), None);
    }

    #[test]
    fn constraint_and_syntax_errors_are_not_retried() {
        assert_eq!(classify_code("23514", None), DbErrKind::Other);
        assert_eq!(classify_code("42601", None), DbErrKind::Other);
        assert_eq!(classify_code("19", None), DbErrKind::Other);
    }
}
