//! [`StoreError`]: every way a store operation can fail, in the terms a caller acts on.

use sea_orm::{DbErr, RuntimeErr};

/// Why a store operation failed. Each variant maps to one gRPC status in the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input breaks a rule ([`crate::validate`]); nothing was changed.
    #[error("{0}")]
    InvalidInput(String),
    /// The product (or factory) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but conflicts with the current state (e.g. stock would go
    /// negative, an idempotency key reused for another request); nothing was changed.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database cannot be reached right now; the caller may retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] DbErr),
    /// Any other database failure (a bug or a broken schema); details are logged.
    #[error("database error: {0}")]
    Database(#[source] DbErr),
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
    fn from(err: DbErr) -> Self {
        match classify(&err) {
            DbErrKind::Unavailable | DbErrKind::Transient => StoreError::Unavailable(err),
            DbErrKind::UniqueViolation | DbErrKind::Other => StoreError::Database(err),
        }
    }
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

    #[test]
    fn constraint_and_syntax_errors_are_not_retried() {
        assert_eq!(classify_code("23514", None), DbErrKind::Other);
        assert_eq!(classify_code("42601", None), DbErrKind::Other);
        assert_eq!(classify_code("19", None), DbErrKind::Other);
    }
}
