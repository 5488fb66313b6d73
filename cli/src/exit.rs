//! The exit codes of `restock`, documented in `restock --help` ([`HELP`]) and the README:
//! scripts can tell "out of stock" from "wrong arguments" from "try again later".

use crate::output::is_stdout_closed;

/// Done.
pub(crate) const OK: u8 = 0;
/// Any failure without a code of its own (an internal error, a failed wait, a server error).
pub(crate) const FAILURE: u8 = 1;
/// Usage error: bad flags or arguments (clap's code), or the gateway refused them as invalid
/// (INVALID_ARGUMENT).
pub(crate) const USAGE: u8 = 2;
/// `buy`: out of stock, nothing sold (a replenishment was requested).
pub(crate) const OUT_OF_STOCK: u8 = 3;
/// No such product or replenishment (NOT_FOUND).
pub(crate) const NOT_FOUND: u8 = 4;
/// Refused in the current state (FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED): e.g. no
/// replenishment running, a completion for another order, an idempotency key reused.
pub(crate) const REFUSED: u8 = 5;
/// Unavailable, try again later: the gateway cannot be reached, or its database or Temporal
/// is down (UNAVAILABLE), or it sheds load (RESOURCE_EXHAUSTED). Nothing was changed.
pub(crate) const UNAVAILABLE: u8 = 6;
/// No token, a wrong one, or one whose role may not do this (UNAUTHENTICATED,
/// PERMISSION_DENIED).
pub(crate) const DENIED: u8 = 7;
/// The outcome is unknown (UNKNOWN, DEADLINE_EXCEEDED): it may or may not have happened;
/// check before repeating (a `buy` repeated with the same `--key` sells at most once).
pub(crate) const OUTCOME_UNKNOWN: u8 = 8;

/// The table shown after `restock --help`.
pub(crate) const HELP: &str = "\
Exit codes:
  0  done (also when stdout is closed early, e.g. `restock stock | head -1`)
  1  any other failure
  2  usage error: bad flags or arguments, or the gateway refused them (INVALID_ARGUMENT)
  3  buy: out of stock, nothing sold (a replenishment was requested)
  4  not found: no such product or replenishment
  5  refused in the current state (FAILED_PRECONDITION), e.g. no replenishment running
  6  unavailable, try again later: gateway unreachable, its database or Temporal down,
     or too busy; nothing was changed
  7  no API token, a wrong one, or one without the role (RESTOCK_API_TOKEN)
  8  outcome unknown: it may or may not have happened; check before repeating";

/// A failure that ends the command with `code`, saying `message`.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to tell the person.
    pub message: String,
    /// The gRPC status code's name, when the gateway answered with an error.
    pub status: Option<String>,
    /// Fields the gateway named as invalid (google.rpc.BadRequest), with what is wrong.
    pub fields: Vec<(String, String)>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An error that ends the command with `code`, saying `message`.
pub(crate) fn failure(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
        status: None,
        fields: Vec::new(),
    })
}

/// The error as one JSON document, for `--json` callers: the message, the exit code, and
/// the gateway's status and invalid fields when it answered with an error.
pub(crate) fn to_json(err: &anyhow::Error) -> serde_json::Value {
    let failure = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>());
    let fields: Vec<serde_json::Value> = failure
        .map(|f| {
            f.fields
                .iter()
                .map(|(field, description)| serde_json::json!({"field": field, "description": description}))
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "error": {
            "message": format!("{err:#}"),
            "exit_code": for_error(err),
            "status": failure.and_then(|f| f.status.clone()),
            "fields": fields,
        }
    })
}

/// The exit code for a gRPC status code.
pub(crate) fn for_grpc(code: tonic::Code) -> u8 {
    use tonic::Code as C;
    match code {
        C::Ok => OK,
        C::InvalidArgument | C::OutOfRange => USAGE,
        C::NotFound => NOT_FOUND,
        C::FailedPrecondition | C::AlreadyExists | C::Aborted => REFUSED,
        C::Unavailable | C::ResourceExhausted => UNAVAILABLE,
        C::Unauthenticated | C::PermissionDenied => DENIED,
        C::Unknown | C::DeadlineExceeded => OUTCOME_UNKNOWN,
        C::Cancelled | C::Unimplemented | C::Internal | C::DataLoss => FAILURE,
    }
}

/// The exit code for a command's error: the first [`Failure`] in its chain, else
/// [`FAILURE`]; a closed stdout is [`OK`].
pub(crate) fn for_error(err: &anyhow::Error) -> u8 {
    if is_stdout_closed(err) {
        return OK;
    }
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Failure>().map(|f| f.code))
        .unwrap_or(FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let codes = [
            OK,
            FAILURE,
            USAGE,
            OUT_OF_STOCK,
            NOT_FOUND,
            REFUSED,
            UNAVAILABLE,
            DENIED,
            OUTCOME_UNKNOWN,
        ];
        for (i, code) in codes.iter().enumerate() {
            assert!(!codes[..i].contains(code), "{code} twice");
            assert!(
                HELP.contains(&format!("\n  {code}  ")),
                "{code} not in HELP"
            );
        }
    }

    #[test]
    fn errors_keep_their_code_through_context() {
        let err = failure(NOT_FOUND, "no such product").context("restock stock");
        assert_eq!(for_error(&err), NOT_FOUND);
        assert_eq!(for_error(&anyhow::anyhow!("other")), FAILURE);
        assert_eq!(for_grpc(tonic::Code::Unavailable), UNAVAILABLE);
        assert_eq!(for_grpc(tonic::Code::InvalidArgument), USAGE);
    }
}
