//! HTTP client for placing orders with the legacy factory.
//!
//! The factory does not deduplicate: every order it accepts is produced. [`OrderError`]
//! therefore says not just *that* an order failed but whether the factory might have taken it
//! anyway, so the caller can retry what is safe to retry and never blindly resend the rest.
//!
//! # TLS crypto provider
//!
//! The workspace builds reqwest with `rustls-no-provider`, so a rustls crypto provider must be
//! installed process-wide **before** any client is built. Binaries (and tests) do this first
//! thing at startup:
//!
//! ```
//! let _ = rustls::crypto::ring::default_provider().install_default();
//! ```
//!
//! Without it, [`FactoryClient::new`] returns [`ClientBuildError::NoCryptoProvider`] instead of
//! letting reqwest panic. This crate never installs a provider itself: a second
//! `install_default` elsewhere in the process would then fail.

use std::error::Error as StdError;
use std::time::Duration;

use crate::wire::{ManufactureReply, ManufactureRequest, ORDER_PATH, WireError};

/// Default limit on one order request, from connecting to reading the whole reply.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a reply body an [`OrderError`] keeps, in characters.
const MAX_ERROR_BODY_CHARS: usize = 500;

/// Largest successful reply body read; the real reply is a few hundred bytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Places orders with the legacy factory (`POST {base}/api/manufactures`).
///
/// Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct FactoryClient {
    http: reqwest::Client,
}

/// An order the factory accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    /// The factory's own id for the order (`data.id` of its reply).
    pub factory_reference: String,
}

/// Why [`FactoryClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// No process-wide rustls crypto provider is installed (see the module docs).
    #[error(
        "no rustls crypto provider is installed; call \
         rustls::crypto::ring::default_provider().install_default() at startup"
    )]
    NoCryptoProvider,
    /// reqwest refused the configuration.
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// How placing an order failed, classified by whether the factory may have accepted it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Our request breaks the wire contract, so it was not sent. Not retryable.
    #[error("order request is invalid and was not sent: {0}")]
    Invalid(#[from] WireError),
    /// The request certainly did not reach the factory (invalid URL, DNS failure, connection
    /// refused or connect timeout). Safe to retry.
    #[error("order was not delivered to the factory: {0}")]
    NotSent(String),
    /// The factory answered 4xx (or another non-success, non-5xx status such as a redirect,
    /// which is not followed because a redirected POST may be replayed as a GET): it considers
    /// the request invalid. Not retryable.
    #[error("factory rejected the order with HTTP {status}: {body}")]
    Rejected {
        /// HTTP status code.
        status: u16,
        /// Start of the reply body.
        body: String,
    },
    /// The factory answered 5xx: it says it failed, so retrying is expected.
    ///
    /// Caveat: a 502/504 produced by a proxy in front of the factory can hide an order the
    /// factory did take; the legacy factory is reached directly, so this is treated as a failure.
    #[error("factory failed with HTTP {status}: {body}")]
    ServerError {
        /// HTTP status code.
        status: u16,
        /// Start of the reply body.
        body: String,
    },
    /// The outcome is unknown: a timeout or broken connection after the request may have been
    /// sent, or a 2xx reply we could not read. The factory may have accepted the order, so it
    /// must not be blindly resent.
    #[error("order outcome unknown, the factory may have accepted it: {0}")]
    Ambiguous(String),
}

impl OrderError {
    /// True when sending the same order again cannot produce a duplicate that the failed
    /// attempt did not already risk: [`NotSent`](Self::NotSent) and
    /// [`ServerError`](Self::ServerError).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::NotSent(_) | Self::ServerError { .. })
    }

    /// True when the factory may have accepted the order despite the error
    /// ([`Ambiguous`](Self::Ambiguous)).
    pub fn may_have_been_accepted(&self) -> bool {
        matches!(self, Self::Ambiguous(_))
    }
}

impl FactoryClient {
    /// A client with the [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn new() -> Result<Self, ClientBuildError> {
        Self::with_timeout(DEFAULT_REQUEST_TIMEOUT)
    }

    /// A client whose order requests give up (as [`OrderError::Ambiguous`], or
    /// [`OrderError::NotSent`] while still connecting) after `request_timeout`.
    pub fn with_timeout(request_timeout: Duration) -> Result<Self, ClientBuildError> {
        let http = http_client_builder(request_timeout)?
            // A redirected POST may be replayed as a GET; report the redirect instead.
            .redirect(reqwest::redirect::Policy::none())
            // Orders are not idempotent: never let the HTTP layer resend one.
            .retry(reqwest::retry::never())
            // The connect phase gets half the budget, so a factory that cannot be reached fails
            // as a connect error (certainly not sent) rather than as an ambiguous overall timeout.
            .connect_timeout(request_timeout / 2)
            .build()?;
        Ok(Self { http })
    }

    /// Wraps an existing reqwest client, keeping its timeouts and policies.
    pub fn from_reqwest(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// Places one order: `POST {base_url}/api/manufactures` with `request` as its JSON body.
    ///
    /// `base_url` is the factory's root (a trailing `/` is fine; a path prefix is kept). Any 2xx
    /// with a `{"data": {"id": ...}}` body is success (the factory sends 201; 200 and extra
    /// fields are accepted too). The request is validated first and not sent if invalid.
    pub async fn place_order(
        &self,
        base_url: &str,
        request: &ManufactureRequest,
    ) -> Result<PlacedOrder, OrderError> {
        request.validate()?;
        let url = order_url(base_url)?;

        let response = self
            .http
            .post(url)
            .json(request)
            .send()
            .await
            .map_err(classify_send_error)?;

        let status = response.status();
        if status.is_success() {
            let body = read_prefix(response, MAX_REPLY_BYTES)
                .await
                .map_err(|err| {
                    OrderError::Ambiguous(format!(
                        "HTTP {status}, but reading the reply failed: {}",
                        error_chain(&err)
                    ))
                })?;
            if !body.complete {
                return Err(OrderError::Ambiguous(format!(
                    "HTTP {status}, but the reply is longer than {MAX_REPLY_BYTES} bytes"
                )));
            }
            let reply = ManufactureReply::parse(&body.bytes).map_err(|err| {
                OrderError::Ambiguous(format!(
                    "HTTP {status}, but {err}; body: {}",
                    truncate(&String::from_utf8_lossy(&body.bytes), MAX_ERROR_BODY_CHARS)
                ))
            })?;
            return Ok(PlacedOrder {
                factory_reference: reply.data.id,
            });
        }

        // The status already decides the outcome; the body is only there to explain it.
        // Up to 4 bytes per character, so the prefix holds enough characters to truncate.
        let body = match read_prefix(response, MAX_ERROR_BODY_CHARS * 4).await {
            Ok(prefix) => truncate(
                &String::from_utf8_lossy(&prefix.bytes),
                MAX_ERROR_BODY_CHARS,
            ),
            Err(err) => format!("<reply body unreadable: {}>", error_chain(&err)),
        };
        let status = status.as_u16();
        if (500..600).contains(&status) {
            Err(OrderError::ServerError { status, body })
        } else {
            Err(OrderError::Rejected { status, body })
        }
    }
}

/// A reqwest builder with the request timeout set, after checking that building it will not
/// panic for want of a crypto provider. Shared with the simulator's callback client.
pub(crate) fn http_client_builder(
    request_timeout: Duration,
) -> Result<reqwest::ClientBuilder, ClientBuildError> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        return Err(ClientBuildError::NoCryptoProvider);
    }
    Ok(reqwest::Client::builder().timeout(request_timeout))
}

fn order_url(base_url: &str) -> Result<reqwest::Url, OrderError> {
    let joined = format!("{}{ORDER_PATH}", base_url.trim_end_matches('/'));
    let url = reqwest::Url::parse(&joined)
        .map_err(|err| OrderError::NotSent(format!("invalid factory URL {base_url:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OrderError::NotSent(format!(
            "factory URL {base_url:?} is not http(s)"
        )));
    }
    Ok(url)
}

/// Sorts a failed `send()` by whether the request can have reached the factory.
fn classify_send_error(err: reqwest::Error) -> OrderError {
    let description = error_chain(&err);
    // Connect errors (including a connect timeout) happen before any byte of the request is
    // written; builder errors before any connection is made.
    if err.is_connect() || err.is_builder() {
        OrderError::NotSent(description)
    } else if err.is_timeout() {
        OrderError::Ambiguous(format!("timed out waiting for the factory: {description}"))
    } else {
        // Reset or closed connection mid-exchange: the factory may have read the whole request.
        OrderError::Ambiguous(description)
    }
}

/// The first `cap` bytes of a body, and whether that was all of it.
struct BodyPrefix {
    bytes: Vec<u8>,
    complete: bool,
}

/// Reads the body up to `cap` bytes; the rest, if any, is left unread.
async fn read_prefix(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<BodyPrefix, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(BodyPrefix {
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(BodyPrefix {
        bytes,
        complete: true,
    })
}

/// `err` and all its sources, joined; reqwest's own message alone rarely says what went wrong.
pub(crate) fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// At most `max_chars` characters of `text`, marked when shortened.
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_url_joins_base_and_path() {
        for (base, expected) in [
            ("http://f.example", "http://f.example/api/manufactures"),
            ("http://f.example/", "http://f.example/api/manufactures"),
            (
                "http://f.example:81/legacy/",
                "http://f.example:81/legacy/api/manufactures",
            ),
        ] {
            assert_eq!(order_url(base).unwrap().as_str(), expected);
        }
        for base in ["", "not a url", "ftp://f.example", "/api"] {
            assert!(
                matches!(order_url(base), Err(OrderError::NotSent(_))),
                "{base:?}"
            );
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("부산도너츠", 2), "부산…");
        assert_eq!(truncate(&"x".repeat(600), 500).chars().count(), 501);
    }

    #[test]
    fn retry_classification() {
        assert!(OrderError::NotSent("refused".into()).is_retryable());
        assert!(
            OrderError::ServerError {
                status: 503,
                body: String::new()
            }
            .is_retryable()
        );
        let rejected = OrderError::Rejected {
            status: 400,
            body: String::new(),
        };
        assert!(!rejected.is_retryable() && !rejected.may_have_been_accepted());
        let ambiguous = OrderError::Ambiguous("timeout".into());
        assert!(!ambiguous.is_retryable() && ambiguous.may_have_been_accepted());
    }
}
