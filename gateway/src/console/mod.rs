//! The shop's console: one web page at `/` on the HTTP listener (assets embedded in the
//! binary, no build step), fed by server-sent events, with the operator's Complete and Cancel
//! going through the same Temporal updates and audit trail as `restock complete` / `restock
//! cancel` (they call [`ReplenishmentApi`]).
//!
//! | path | who |
//! |---|---|
//! | `GET /`, `/console/*` (the page and its script) | anyone who may reach the console |
//! | `GET /api/console/whoami`, `/api/console/snapshot`, `/api/console/history`, `/api/console/events` | a `viewer`, `sales` or `admin` token |
//! | `POST /api/console/replenishments/{sku}/complete`, `.../cancel` | an `admin` token |
//!
//! The token travels as `Authorization: Bearer <token>`, never in a cookie, so another site
//! cannot make a browser act with it (no CSRF). Without API tokens configured the console,
//! like gRPC, is served only to loopback peers: anyone else gets 403.
//!
//! - [`feed`]: the live picture (products, the replenishment pipeline, charts) and when it is
//!   read.

pub mod feed;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::{Extension, Json, Router};
use futures::Stream;
use restock_proto::v1::replenishment_service_server::ReplenishmentService;
use restock_proto::v1::{CancelReplenishmentRequest, CompleteFactoryOrderRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

pub use feed::{Feed, WorkflowLinks};

use crate::auth::{ApiTokens, Caller, Role};
use crate::grpc::ReplenishmentApi;

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// What the console's handlers share.
#[derive(Clone, Debug)]
pub struct Console {
    /// The live picture.
    pub feed: Feed,
    /// Who may look and act.
    pub tokens: ApiTokens,
    /// Where Complete and Cancel go (the gRPC service's own code).
    pub replenishments: ReplenishmentApi,
}

/// The console's routes.
pub fn router(console: Console) -> Router {
    let console = Arc::new(console);
    // What a viewer may read; the caller is checked once, here, for all of it.
    let views = Router::new()
        .route("/api/console/whoami", get(whoami))
        .route("/api/console/snapshot", get(snapshot))
        .route("/api/console/history", get(history))
        .route("/api/console/events", get(events))
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            viewers_only,
        ));
    Router::new()
        .route("/", get(index))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
        .route("/api/console/replenishments/{sku}/{action}", post(act))
        .merge(views)
        .with_state(console)
}

/// Lets a request on only with at least a viewer's token (or from loopback when no tokens
/// are configured), and hands its [`Caller`] on in the request's extensions.
async fn viewers_only(
    State(console): State<Arc<Console>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ConsoleError> {
    let caller = caller_of(&console, &request, Role::Viewer)?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Why a console call was refused, as an HTTP status and a sentence.
#[derive(Debug)]
pub struct ConsoleError {
    status: StatusCode,
    message: String,
}

impl ConsoleError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<tonic::Status> for ConsoleError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let http = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(http, status.message())
    }
}

impl From<restock_inventory::StoreError> for ConsoleError {
    fn from(err: restock_inventory::StoreError) -> Self {
        crate::grpc::status::from_store(err).into()
    }
}

/// The address of the peer of an HTTP connection, plain or TLS (axum gives the peer of a
/// plain TCP listener only).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Whether the peer is on this machine (only loopback peers get the console without tokens).
fn from_loopback(request: &Request) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .is_some_and(|ConnectInfo(Peer(peer))| peer.ip().is_loopback())
}

/// The caller of a console call with at least `needed`, or why not.
fn authorize(
    tokens: &ApiTokens,
    headers: &HeaderMap,
    loopback: bool,
    needed: Role,
) -> Result<Caller, ConsoleError> {
    if tokens.is_empty() {
        if !loopback {
            return Err(not_on_loopback());
        }
        return Ok(Caller {
            name: "local".to_owned(),
            role: Role::Admin,
        });
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ConsoleError::new(
                StatusCode::UNAUTHORIZED,
                "missing API token: send `Authorization: Bearer <token>`",
            )
        })?;
    let caller = tokens
        .authenticate(bearer.trim())
        .ok_or_else(|| ConsoleError::new(StatusCode::UNAUTHORIZED, "invalid API token"))?;
    if caller.role < needed {
        return Err(ConsoleError::new(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} has the {} role; this needs an {} token",
                caller.name,
                caller.role.as_str(),
                needed.as_str()
            ),
        ));
    }
    tracing::Span::current().record("caller", tracing::field::display(&caller.name));
    Ok(caller)
}

fn not_on_loopback() -> ConsoleError {
    ConsoleError::new(
        StatusCode::FORBIDDEN,
        "without API tokens the console is served to this machine (loopback) only: set RESTOCK_API_TOKENS to open it to others",
    )
}

/// The caller of `request`, refusing it as [`authorize`] says.
fn caller_of(console: &Console, request: &Request, needed: Role) -> Result<Caller, ConsoleError> {
    authorize(
        &console.tokens,
        request.headers(),
        from_loopback(request),
        needed,
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Only our own script and style run; nothing is framed elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The page, to anyone when tokens are configured (it holds no data; it asks for a token).
async fn index(State(console): State<Arc<Console>>, request: Request) -> Response {
    if console.tokens.is_empty() && !from_loopback(&request) {
        return not_on_loopback().into_response();
    }
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

#[derive(Serialize)]
struct WhoAmI {
    name: String,
    role: &'static str,
    tokens_required: bool,
}

/// Who the token belongs to (the page shows it and hides what the role may not do).
async fn whoami(
    State(console): State<Arc<Console>>,
    Extension(caller): Extension<Caller>,
) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: caller.name,
        role: caller.role.as_str(),
        tokens_required: !console.tokens.is_empty(),
    })
}

/// The picture now, read from the database.
async fn snapshot(
    State(console): State<Arc<Console>>,
) -> Result<Json<feed::Snapshot>, ConsoleError> {
    Ok(Json(console.feed.read().await?))
}

/// The charts' data now.
async fn history(State(console): State<Arc<Console>>) -> Result<Json<feed::History>, ConsoleError> {
    Ok(Json(console.feed.history().await?))
}

/// Server-sent events: `snapshot` whenever the picture changes, `history` whenever a stock
/// sample is taken; each starts with the latest.
async fn events(
    State(console): State<Arc<Console>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let snapshots = WatchStream::new(console.feed.snapshots())
        .filter_map(|json| json.map(|json| Event::default().event("snapshot").data(&*json)));
    let histories = WatchStream::new(console.feed.histories())
        .filter_map(|json| json.map(|json| Event::default().event("history").data(&*json)));
    // Ends when the gateway shuts down, so the HTTP server's graceful shutdown can finish.
    let stream =
        futures::StreamExt::take_until(snapshots.merge(histories).map(Ok), console.feed.closed());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The body of a Complete.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// Units delivered; 0 or absent: the quantity ordered.
    #[serde(default)]
    pub quantity: u32,
    /// The factory order being completed; absent: the current run's.
    #[serde(default)]
    pub factory_order_id: String,
}

/// The body of a Cancel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why (kept in the audit trail).
    #[serde(default)]
    pub reason: String,
}

/// A JSON body, or 400 saying what is wrong with it.
fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ConsoleError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ConsoleError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {err}")))
}

/// The most bytes an action's body may have.
const MAX_BODY: usize = 4096;

async fn read_body(request: Request) -> Result<axum::body::Bytes, ConsoleError> {
    axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|_| ConsoleError::new(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"))
}

/// What an accepted Complete or Cancel answers: the replenishment's state after it.
#[derive(Debug, Serialize)]
pub struct ActionDone {
    /// Product.
    pub sku: String,
    /// The state the run answered with.
    pub state: String,
    /// The factory order it concerns.
    pub factory_order_id: String,
}

impl From<restock_proto::v1::Replenishment> for ActionDone {
    fn from(r: restock_proto::v1::Replenishment) -> Self {
        Self {
            sku: r.sku,
            state: r.state,
            factory_order_id: r.factory_order_id,
        }
    }
}

/// A gRPC request carrying the console's caller, so the audit trail names the token.
fn as_caller<T>(message: T, caller: Caller) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(caller);
    request
}

/// Completes a factory order (`.../complete`) or cancels a replenishment (`.../cancel`) by
/// hand (admin): the same Update and audit record as `CompleteFactoryOrder` and
/// `CancelReplenishment`.
async fn act(
    State(console): State<Arc<Console>>,
    Path((sku, action)): Path<(String, String)>,
    request: Request,
) -> Result<Json<ActionDone>, ConsoleError> {
    let caller = caller_of(&console, &request, Role::Admin)?;
    let body = read_body(request).await?;
    let api = &console.replenishments;
    let done = match action.as_str() {
        "complete" => {
            let body: CompleteBody = json_body(&body)?;
            let message = CompleteFactoryOrderRequest {
                sku,
                quantity: body.quantity,
                factory_order_id: body.factory_order_id,
            };
            api.complete_factory_order(as_caller(message, caller))
                .await?
        }
        "cancel" => {
            let body: CancelBody = json_body(&body)?;
            let message = CancelReplenishmentRequest {
                sku,
                reason: body.reason,
            };
            api.cancel_replenishment(as_caller(message, caller)).await?
        }
        _ => {
            return Err(ConsoleError::new(
                StatusCode::NOT_FOUND,
                "no such action: use complete or cancel",
            ));
        }
    };
    console.feed.stock_changed();
    Ok(Json(done.into_inner().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ApiTokens {
        ApiTokens::parse(
            "eye:viewer:viewer-token-0123456789,till:sales:sales-token-0123456789,ops:admin:admin-token-0123456789",
        )
        .unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[test]
    fn viewers_read_admins_act_and_no_token_is_refused() {
        let t = tokens();
        let viewer = bearer("viewer-token-0123456789");
        let admin = bearer("admin-token-0123456789");
        assert_eq!(
            authorize(&t, &viewer, false, Role::Viewer).unwrap().name,
            "eye"
        );
        let refused = authorize(&t, &viewer, false, Role::Admin).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(
            refused.message.contains("viewer role"),
            "{}",
            refused.message
        );
        assert_eq!(
            authorize(&t, &bearer("sales-token-0123456789"), false, Role::Admin)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            authorize(&t, &admin, false, Role::Admin).unwrap().name,
            "ops"
        );
        assert_eq!(
            authorize(&t, &HeaderMap::new(), true, Role::Viewer)
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authorize(&t, &bearer("not-a-token-at-all-00"), true, Role::Viewer)
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn without_tokens_only_loopback_peers_get_the_console() {
        let open = ApiTokens::default();
        assert_eq!(
            authorize(&open, &HeaderMap::new(), true, Role::Admin)
                .unwrap()
                .name,
            "local"
        );
        assert_eq!(
            authorize(&open, &HeaderMap::new(), false, Role::Viewer)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
    }
}
