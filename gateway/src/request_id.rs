//! A request id on every call, and one access-log line per call, on both listeners (gRPC and
//! HTTP). The id is taken from the caller's `x-request-id` (when sane) or made up, attached
//! to the call's tracing span (so every log line of the call carries it, and the caller's
//! token name once [`crate::auth`] has recorded it) and echoed in the response headers. The
//! access line (target `restock::access`) gives the method or path, the HTTP status, the
//! gRPC status and the latency; probes (`/healthz`, `/metrics`, gRPC health) log at debug.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tracing::Instrument;

/// The header carrying the id.
pub const HEADER: &str = "x-request-id";

/// The call's request id, in the request's extensions for handlers (a sale hands it to the
/// replenishment it asks for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The tower layer.
#[derive(Clone, Debug, Default)]
pub struct RequestIdLayer;

impl<S> tower::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// [`RequestIdLayer`]'s service.
#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
}

fn sane(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

impl<S, B, R> tower::Service<http::Request<B>> for RequestIdService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| sane(v))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        request.extensions_mut().insert(RequestId(id.clone()));
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "rpc",
            method = %path,
            request_id = %id,
            caller = tracing::field::Empty
        );
        let started = Instant::now();
        // Inside the span, so the auth layer below can record the caller in it.
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let result = future.await;
                match &result {
                    Ok(response) => log_access(&path, response, started),
                    Err(_) => tracing::warn!(
                        target: "restock::access",
                        latency_ms = elapsed_ms(started),
                        "call failed in the transport"
                    ),
                }
                let mut response = result?;
                if let Ok(value) = http::HeaderValue::from_str(&id) {
                    response.headers_mut().insert(HEADER, value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Health checks and scrapes: frequent and dull, so at debug.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics") || path.starts_with("/grpc.health.")
}

/// The access line of one call. gRPC errors travel in the response headers (trailers-only);
/// a gRPC response without `grpc-status` there carries it in its trailers, which is OK for
/// every unary call this gateway serves.
fn log_access<R>(path: &str, response: &http::Response<R>, started: Instant) {
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(|code| format!("{:?}", tonic::Code::from_i32(code)));
    let is_grpc = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let grpc = match (is_grpc, grpc_status) {
        (_, Some(code)) => code,
        (true, None) => "Ok".to_owned(),
        (false, None) => "-".to_owned(),
    };
    let status = response.status().as_u16();
    let latency_ms = elapsed_ms(started);
    if is_probe(path) {
        tracing::debug!(target: "restock::access", status, grpc = %grpc, latency_ms, "call");
    } else {
        tracing::info!(target: "restock::access", status, grpc = %grpc, latency_ms, "call");
    }
}
