//! The HTTP listener: `GET /healthz` (200 when the database answers, else 503) and the
//! factory's completion callback ([`crate::callback`]).

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use restock_factory::callback::{CALLBACK_PATH, CallbackSigner};
use restock_inventory::Store;
use serde_json::json;

use crate::temporal::TemporalLink;

/// What the HTTP handlers share.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The inventory store.
    pub store: Store,
    /// Verifies callback tokens.
    pub signer: CallbackSigner,
    /// Where callbacks are signalled.
    pub temporal: TemporalLink,
}

/// The HTTP routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            &format!("{CALLBACK_PATH}/{{sku}}/{{order_id}}"),
            post(crate::callback::factory_callback),
        )
        .with_state(state)
}

async fn healthz(State(state): State<HttpState>) -> (StatusCode, Json<serde_json::Value>) {
    let temporal = if state.temporal.client().is_some() {
        "connected"
    } else {
        "not connected"
    };
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok", "temporal": temporal})),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({"status": "unavailable", "database": "unavailable", "temporal": temporal}),
                ),
            )
        }
    }
}
