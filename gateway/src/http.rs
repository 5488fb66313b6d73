//! The HTTP listener: `GET /healthz` (200 when the database answers, else 503),
//! `GET /metrics` (Prometheus), and the
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

use crate::metrics::Metrics;
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
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Wakes the relay (a delivery was stored).
    pub relay_wake: std::sync::Arc<tokio::sync::Notify>,
}

/// The HTTP routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            &format!("{CALLBACK_PATH}/{{sku}}/{{order_id}}"),
            post(crate::callback::factory_callback),
        )
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.store).await,
    )
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
