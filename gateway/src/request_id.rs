//! A request id on every gRPC call: taken from the caller's `x-request-id` (when sane) or
//! made up, attached to the call's tracing span (so every log line of the call carries it)
//! and echoed in the response headers.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tracing::Instrument;

/// The header carrying the id.
pub const HEADER: &str = "x-request-id";

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

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| sane(v))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let span = tracing::info_span!("rpc", method = %request.uri().path(), request_id = %id);
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let mut response = future.await?;
                if let Ok(value) = http::HeaderValue::from_str(&id) {
                    response.headers_mut().insert(HEADER, value);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}
