//! Who may call what: bearer tokens on gRPC, checked by one tower layer in front of every
//! service.
//!
//! | role | may call |
//! |---|---|
//! | `viewer` | `InventoryService.GetProduct`, `InventoryService.ListProducts`, `InventoryService.ListFactories`, and read the console ([`crate::console`]) |
//! | `sales` | what a viewer may, and `SalesService.Purchase` |
//! | `admin` | everything, including `UpsertProduct`, `AdjustStock`, `UpsertFactory`, all of `ReplenishmentService` and the console's Complete and Cancel |
//!
//! Health and reflection stay open. No token or a wrong one: UNAUTHENTICATED; a token whose
//! role is too low: PERMISSION_DENIED — before any handler runs, so nothing changes. Tokens are
//! kept only as SHA-256 digests and compared in constant time; they are never logged.
//!
//! Without tokens configured the gateway is open, and [`crate::run`] then serves gRPC only on
//! loopback addresses.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tonic::Status;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read the catalogue and the console.
    Viewer,
    /// Sell, and what a viewer may.
    Sales,
    /// Everything.
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "sales" => Some(Role::Sales),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role's name, as `RESTOCK_API_TOKENS` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Sales => "sales",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated caller, put into each request's extensions for handlers (audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (never the token itself).
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// The caller of a request, `local` when the gateway runs without tokens.
    pub fn of<T>(request: &tonic::Request<T>) -> String {
        request
            .extensions()
            .get::<Caller>()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "local".to_owned())
    }
}

struct ApiToken {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// Why a `RESTOCK_API_TOKENS` specification was refused (never showing a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenSpecError {
    /// An entry is not `name:role:token`.
    #[error("API token entry {entry} is not name:role:token")]
    NotNameRoleToken {
        /// Its position, from 1.
        entry: usize,
    },
    /// An entry's role is unknown.
    #[error("API token {name:?}: role must be viewer, sales or admin")]
    UnknownRole {
        /// The token's name.
        name: String,
    },
    /// A token is too short to be a secret.
    #[error("API token {name:?} is shorter than 16 characters")]
    TooShort {
        /// The token's name.
        name: String,
    },
    /// A name is empty, too long or not printable ASCII.
    #[error("API token entry {entry}: a bad name")]
    BadName {
        /// Its position, from 1.
        entry: usize,
    },
}

/// The configured API tokens (`RESTOCK_API_TOKENS`).
#[derive(Clone, Default)]
pub struct ApiTokens {
    tokens: Arc<Vec<ApiToken>>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("ApiTokens").field("names", &names).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiTokens {
    /// Parses `name:role:token` entries separated by commas or newlines (blank lines and
    /// `#` comments are skipped). Tokens must be at least 16 characters.
    pub fn parse(spec: &str) -> Result<Self, TokenSpecError> {
        let mut tokens = Vec::new();
        for (i, entry) in spec
            .split([',', '\n'])
            .map(str::trim)
            .enumerate()
            .filter(|(_, e)| !e.is_empty() && !e.starts_with('#'))
        {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(TokenSpecError::NotNameRoleToken { entry: i + 1 });
            };
            let role = Role::parse(role).ok_or_else(|| TokenSpecError::UnknownRole {
                name: name.to_owned(),
            })?;
            if token.len() < 16 {
                return Err(TokenSpecError::TooShort {
                    name: name.to_owned(),
                });
            }
            if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_graphic()) {
                return Err(TokenSpecError::BadName { entry: i + 1 });
            }
            tokens.push(ApiToken {
                name: name.to_owned(),
                role,
                digest: digest(token),
            });
        }
        Ok(Self {
            tokens: Arc::new(tokens),
        })
    }

    /// No tokens configured.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller a bearer token belongs to. Every configured token is compared, so the time
    /// taken does not depend on which one (if any) matched.
    pub fn authenticate(&self, bearer: &str) -> Option<Caller> {
        let presented = digest(bearer);
        let mut found = None;
        for token in self.tokens.iter() {
            if same(&token.digest, &presented) && found.is_none() {
                found = Some(Caller {
                    name: token.name.clone(),
                    role: token.role,
                });
            }
        }
        found
    }
}

/// Refuses to serve gRPC on `addr` without tokens unless it is a loopback address: anyone who
/// reaches an open gateway could change stock. The one place this rule is stated.
pub fn check_open_listener(tokens: &ApiTokens, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    if tokens.is_empty() && !addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve gRPC on {addr} without API tokens: anyone who reaches it could change stock. Set RESTOCK_API_TOKENS (name:role:token, roles viewer, sales and admin) or bind a loopback address such as 127.0.0.1:{}",
            addr.port()
        );
    }
    Ok(())
}

/// The role a gRPC method needs; `None`: open to all (health, reflection).
pub fn required_role(path: &str) -> Option<Role> {
    let open = ["/grpc.health.v1.Health/", "/grpc.reflection."];
    if open.iter().any(|p| path.starts_with(p)) {
        return None;
    }
    match path {
        "/restock.v1.InventoryService/GetProduct"
        | "/restock.v1.InventoryService/ListProducts"
        | "/restock.v1.InventoryService/ListFactories" => Some(Role::Viewer),
        "/restock.v1.SalesService/Purchase" => Some(Role::Sales),
        _ => Some(Role::Admin),
    }
}

/// Decides one call: the caller, or the status that refuses it.
pub fn check(
    tokens: &ApiTokens,
    path: &str,
    authorization: Option<&str>,
) -> Result<Option<Caller>, Status> {
    let Some(needed) = required_role(path) else {
        return Ok(None);
    };
    if tokens.is_empty() {
        return Ok(None);
    }
    let Some(bearer) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
        return Err(crate::grpc::status::unauthenticated(
            "missing API token: send `authorization: Bearer <token>` (RESTOCK_API_TOKEN for the restock CLI)",
        ));
    };
    let Some(caller) = tokens.authenticate(bearer.trim()) else {
        return Err(crate::grpc::status::unauthenticated("invalid API token"));
    };
    if caller.role < needed {
        return Err(crate::grpc::status::permission_denied(format!(
            "token {:?} has the {} role; this call needs {} token",
            caller.name,
            caller.role.as_str(),
            match needed {
                Role::Admin => "an admin",
                Role::Sales => "a sales or admin",
                Role::Viewer => "a viewer, sales or admin",
            }
        )));
    }
    Ok(Some(caller))
}

/// The tower layer that checks every gRPC call.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    tokens: ApiTokens,
}

impl AuthLayer {
    /// A layer enforcing `tokens` (open when empty).
    pub fn new(tokens: ApiTokens) -> Self {
        Self { tokens }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// [`AuthLayer`]'s service.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    tokens: ApiTokens,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match check(&self.tokens, request.uri().path(), authorization) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    // For the access log (the span of crate::request_id).
                    tracing::Span::current()
                        .record("caller", tracing::field::display(&caller.name));
                    request.extensions_mut().insert(caller);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::info!(path = %request.uri().path(), code = ?status.code(), "call refused");
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn tokens() -> ApiTokens {
        ApiTokens::parse(
            "till-1:sales:sales-token-0123456789, ops:admin:admin-token-0123456789, eye:viewer:viewer-token-0123456789",
        )
        .unwrap()
    }

    #[test]
    fn roles_by_method() {
        let t = tokens();
        let sales = Some("Bearer sales-token-0123456789");
        let admin = Some("Bearer admin-token-0123456789");
        let purchase = "/restock.v1.SalesService/Purchase";
        let adjust = "/restock.v1.InventoryService/AdjustStock";
        assert_eq!(check(&t, purchase, sales).unwrap().unwrap().name, "till-1");
        assert_eq!(check(&t, purchase, admin).unwrap().unwrap().name, "ops");
        assert_eq!(
            check(&t, adjust, sales).unwrap_err().code(),
            Code::PermissionDenied
        );
        assert!(check(&t, adjust, admin).is_ok());
        assert_eq!(
            check(&t, adjust, None).unwrap_err().code(),
            Code::Unauthenticated
        );
        assert_eq!(
            check(&t, purchase, Some("Bearer nope-nope-nope-nope"))
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        assert_eq!(
            check(&t, purchase, Some("sales-token-0123456789"))
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        assert!(
            check(&t, "/grpc.health.v1.Health/Check", None)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            check(
                &t,
                "/restock.v1.ReplenishmentService/ListReplenishments",
                sales
            )
            .unwrap_err()
            .code(),
            Code::PermissionDenied
        );
        // A viewer reads the catalogue but does not sell.
        let viewer = Some("Bearer viewer-token-0123456789");
        assert_eq!(
            check(&t, "/restock.v1.InventoryService/GetProduct", viewer)
                .unwrap()
                .unwrap()
                .role,
            Role::Viewer
        );
        assert_eq!(
            check(&t, purchase, viewer).unwrap_err().code(),
            Code::PermissionDenied
        );
        // An unknown method needs admin.
        assert_eq!(
            check(&t, "/restock.v1.SalesService/Refund", sales)
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn open_without_tokens() {
        let empty = ApiTokens::default();
        assert!(check(&empty, "/restock.v1.InventoryService/AdjustStock", None).is_ok());
    }

    #[test]
    fn bad_specs_are_refused_and_tokens_never_printed() {
        assert!(ApiTokens::parse("x:root:0123456789abcdef").is_err());
        assert!(ApiTokens::parse("x:admin:short").is_err());
        assert!(ApiTokens::parse("just-a-token-0123456789").is_err());
        let t = tokens();
        assert!(!format!("{t:?}").contains("token-0123"));
        assert!(ApiTokens::parse("# comment\n\nops:admin:admin-token-0123456789\n").is_ok());
    }
}
