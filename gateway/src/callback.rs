//! The factory's "production complete" callback:
//! `POST /factory/callbacks/{sku}/{order_id}?token=...` with the original order as its body.
//!
//! | request | answer | effect |
//! |---|---|---|
//! | missing or wrong token | 401 | none |
//! | body not the six string fields, count not a plain positive number, or an order other than the URL's | 400 | none |
//! | valid, replenishment waiting | 200 `accepted` | `factory-completed` signalled |
//! | valid, replenishment already finished (a repeated callback) | 200 `already finished` | none |
//! | valid, Temporal unreachable | 503 | none (the workflow goes Overdue; an operator completes it) |

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use restock_factory::wire::parse_callback_body;
use restock_workflows::FactoryCompleted;
use restock_workflows::client::{Delivery, signal_factory_completed};
use serde_json::{Value, json};

use crate::http::HttpState;

type Reply = (StatusCode, Json<Value>);

fn reply(status: StatusCode, text: &str) -> Reply {
    let key = if status.is_success() {
        "status"
    } else {
        "error"
    };
    (status, Json(json!({ key: text })))
}

/// Handles one callback (and counts its result).
pub async fn factory_callback(
    State(state): State<HttpState>,
    Path((sku, order_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Reply {
    let reply = handle(&state, sku, order_id, query, body).await;
    let result = match reply.0 {
        StatusCode::OK => match reply.1.get("status").and_then(Value::as_str) {
            Some("accepted") => "accepted",
            _ => "already_finished",
        },
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::BAD_REQUEST => "bad_request",
        _ => "unavailable",
    };
    state.metrics.callback(result);
    reply
}

async fn handle(
    state: &HttpState,
    sku: String,
    order_id: String,
    query: HashMap<String, String>,
    body: Bytes,
) -> Reply {
    let token = query.get("token").map(String::as_str).unwrap_or_default();
    if !state.signer.verify(&sku, &order_id, token) {
        tracing::warn!(%sku, "factory callback with an invalid token refused");
        return reply(
            StatusCode::UNAUTHORIZED,
            "invalid or missing callback token",
        );
    }
    let order = match parse_callback_body(&body) {
        Ok(order) => order,
        Err(err) => {
            tracing::warn!(%sku, %order_id, error = %err, "malformed factory callback");
            return reply(StatusCode::BAD_REQUEST, &err.to_string());
        }
    };
    if order.group_id != order_id || order.product_id != sku {
        return reply(
            StatusCode::BAD_REQUEST,
            "the body's MessageGroupId and MessageAttributeProductId do not match the order in the URL",
        );
    }
    let quantity = match order.quantity() {
        Ok(q) => q,
        Err(err) => return reply(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let Some(client) = state.temporal.client() else {
        tracing::error!(%sku, %order_id, "factory callback while Temporal is unreachable; an operator must complete it");
        return reply(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
    };
    let signal = FactoryCompleted {
        quantity: Some(quantity),
        factory_order_id: Some(order_id.clone()),
    };
    match signal_factory_completed(client, &sku, signal).await {
        Ok(Delivery::Delivered) => {
            tracing::info!(%sku, %order_id, quantity, "factory completion signalled");
            reply(StatusCode::OK, "accepted")
        }
        Ok(Delivery::NotRunning) => {
            tracing::info!(%sku, %order_id, "factory callback for a finished replenishment; nothing to do");
            reply(StatusCode::OK, "already finished")
        }
        Err(err) => {
            tracing::error!(%sku, %order_id, error = %err, "cannot signal the factory completion");
            reply(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
        }
    }
}
