//! The factory's "production complete" callback:
//! `POST /factory/callbacks/{sku}/{order_id}?token=...` with the original order as its body.
//!
//! A verified delivery is written to the delivery inbox ([`restock_inventory::deliveries`])
//! before it is answered, so it outlives a Temporal outage; the relay hands it to the
//! replenishment. The factory only echoes our own order, so a count other than the ordered
//! one is never genuine.
//!
//! | request | answer | effect |
//! |---|---|---|
//! | missing or wrong token | 401 | none |
//! | body not the six string fields, count not a plain positive number, or an order other than the URL's | 400 | none |
//! | a count other than the ordered quantity | 400 | none |
//! | valid, first time | 200 `accepted` | stored; handed to the replenishment by the relay |
//! | valid, again (a repeated callback) | 200 `already received` | none |
//! | valid, database unreachable | 503 | none |

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use restock_factory::wire::parse_callback_body;
use restock_inventory::Sku;
use restock_inventory::deliveries::DeliveryRecorded;
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
            _ => "already_received",
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
    // Signed by us, so well-formed unless the secret leaked; checked all the same.
    let sku = match Sku::parse(&sku) {
        Ok(sku) => sku,
        Err(err) => return reply(StatusCode::BAD_REQUEST, &err.to_string()),
    };
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
    let order = match state.store.factory_order(&order_id).await {
        Ok(Some(order)) => order,
        Ok(None) => {
            // The token is ours, so the order was ours; its record is missing.
            tracing::error!(%sku, %order_id, "verified callback for an order with no record");
            return reply(StatusCode::NOT_FOUND, "no such order");
        }
        Err(err) => {
            tracing::error!(%sku, %order_id, error = %err, "cannot read the order for a factory callback");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
        }
    };
    if i64::from(quantity) != order.quantity || order.sku != sku {
        tracing::warn!(%sku, %order_id, quantity, ordered = order.quantity, "factory callback with a count other than the ordered one refused");
        return reply(
            StatusCode::BAD_REQUEST,
            &format!(
                "the count {quantity} is not the {} units ordered; nothing was changed",
                order.quantity
            ),
        );
    }
    match state
        .store
        .record_delivery(&order_id, &sku, i64::from(quantity))
        .await
    {
        Ok(DeliveryRecorded::New) => {
            tracing::info!(%sku, %order_id, quantity, "factory delivery received");
            state.relay_wake.notify_one();
            reply(StatusCode::OK, "accepted")
        }
        Ok(DeliveryRecorded::AlreadyReceived) => {
            tracing::info!(%sku, %order_id, "repeated factory callback; nothing to do");
            reply(StatusCode::OK, "already received")
        }
        Err(err) => {
            tracing::error!(%sku, %order_id, error = %err, "cannot store the factory delivery");
            reply(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
        }
    }
}
