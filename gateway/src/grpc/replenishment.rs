//! `restock.v1.ReplenishmentService`: live state from the workflow (its `status` query), lists
//! from the database read model, and the operator's completion and cancellation as Temporal
//! updates: the run accepts them (answering with its status) or refuses them with its reason
//! (FAILED_PRECONDITION).

use std::time::Duration;

use restock_inventory::{ReplenishmentRecord, Sku, Store};
use restock_proto::v1::{
    CancelReplenishmentRequest, CompleteFactoryOrderRequest, GetReplenishmentRequest,
    ListReplenishmentsRequest, ListReplenishmentsResponse, Replenishment, StateChange,
    replenishment_service_server::ReplenishmentService,
};
use restock_workflows::client::{self, UpdateOutcome};
use restock_workflows::{CancelRequest, FactoryCompleted, ReplenishStatus, RestockState};
use temporalio_client::Client;
use tonic::{Request, Response, Status};

use super::status::{self, from_store};
use crate::auth::Caller;
use crate::temporal::TemporalLink;

/// Replenishments per page when the client asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Most replenishments per page.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Longer than any order id (`replenish-<sku>-<uuid>`, the sku at most 64 bytes).
const MAX_ORDER_ID_BYTES: usize = 128;
/// How long a live query may take before the read model answers instead.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// ReplenishmentService over Temporal and the read model.
#[derive(Debug, Clone)]
pub struct ReplenishmentApi {
    store: Store,
    temporal: TemporalLink,
}

impl ReplenishmentApi {
    /// A ReplenishmentService.
    pub fn new(store: Store, temporal: TemporalLink) -> Self {
        Self { store, temporal }
    }

    fn client(&self) -> Result<&Client, Status> {
        self.temporal.client().ok_or_else(|| {
            status::unavailable(
                status::reason::TEMPORAL_UNAVAILABLE,
                "Temporal is not reachable yet; sales go on and replenishments start when it is back",
            )
        })
    }

    /// The live state, or the read model's when the workflow cannot answer in time. With
    /// `order`, that run: the live one or the one it checks again after (both from the
    /// workflow, with their history), else the read model's row for that order. A run that
    /// Temporal closed before it recorded its end (Terminate) says so in `closed_by_temporal`.
    async fn current(&self, sku: &str, order: Option<&str>) -> Result<Replenishment, Status> {
        let sku = &Sku::parse(sku).map_err(from_store)?;
        if let Some(status) = &self.live(sku).await {
            match order {
                Some(order) if status.factory_order_id != order => {
                    if let Some(previous) = status
                        .previous_run
                        .as_deref()
                        .filter(|p| p.factory_order_id == order)
                    {
                        return Ok(from_status(previous));
                    }
                }
                _ => {
                    let mut reply = from_status(status);
                    if !status.state.is_terminal() {
                        reply.closed_by_temporal = self.closed_by_temporal(sku, status).await;
                    }
                    return Ok(reply);
                }
            }
        }
        let record = match order {
            None => self.store.latest_replenishment(sku).await,
            Some(order) => self.store.replenishment_by_order(sku, order).await,
        }
        .map_err(from_store)?;
        match (record, order) {
            // A run a newer one replaced while its copy still read open says so
            // (`closed_by_temporal`): the newer run marked it when it recorded itself.
            (Some(record), _) => Ok(from_record(&record)),
            (None, None) => Err(status::not_found(format!(
                "{sku} has no replenishment (one starts when it sells out)"
            ))),
            (None, Some(order)) => Err(status::not_found(format!(
                "{sku} has no replenishment with order {order:?} (`restock replenishment {sku}` shows its latest)"
            ))),
        }
    }

    /// How Temporal closed the latest run (`live`, not ended) if it did not end on its own,
    /// else empty (also when Temporal does not say in time: the answer is only a remark on
    /// the state). The read model learns it too: a closed run leaves the console's open list
    /// and the state metrics, and a run that runs again (Reset) comes back.
    async fn closed_by_temporal(&self, sku: &Sku, live: &ReplenishStatus) -> String {
        let Some(client) = self.temporal.client() else {
            return String::new();
        };
        let how = match tokio::time::timeout(QUERY_TIMEOUT, client::closed_by_temporal(client, sku))
            .await
        {
            Ok(Ok(how)) => how,
            Ok(Err(err)) => {
                tracing::warn!(%sku, error = %err, "describing the run failed");
                return String::new();
            }
            Err(_) => return String::new(),
        };
        let order_id = &live.factory_order_id;
        match self.store.record_closed_by_temporal(order_id, how).await {
            Ok(true) => {
                tracing::info!(%sku, %order_id, closed_by_temporal = how.unwrap_or("no: running"), "read model updated with what Temporal says of the run");
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(%sku, error = %err, "cannot mark the run in the read model");
            }
        }
        how.unwrap_or_default().to_owned()
    }

    /// The status query's answer, or `None` (no run, or no answer in time: logged).
    async fn live(&self, sku: &Sku) -> Option<ReplenishStatus> {
        let client = self.temporal.client()?;
        match tokio::time::timeout(QUERY_TIMEOUT, client::query_status(client, sku)).await {
            Ok(Ok(status)) => status,
            Ok(Err(err)) => {
                tracing::warn!(%sku, error = %err, "status query failed; answering from the read model");
                None
            }
            Err(_) => {
                tracing::warn!(%sku, "status query timed out (no worker?); answering from the read model");
                None
            }
        }
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The wire form of a live status.
pub fn from_status(s: &ReplenishStatus) -> Replenishment {
    Replenishment {
        id: client::workflow_id(&s.sku),
        sku: s.sku.clone(),
        state: s.state.as_str().to_owned(),
        quantity: s.ordered_quantity,
        factory_order_id: s.factory_order_id.clone(),
        started_at: rfc3339(s.started_at),
        updated_at: rfc3339(s.updated_at),
        overdue: s.overdue,
        history: s
            .history
            .iter()
            .map(|t| StateChange {
                state: t.state.as_str().to_owned(),
                at: rfc3339(t.at),
            })
            .collect(),
        factory_reference: s.factory_reference.clone().unwrap_or_default(),
        factory_confirmed: s.factory_confirmed,
        received_quantity: s.received_quantity.unwrap_or_default(),
        order_attempts: s.order_attempts,
        reason: s.reason.clone().unwrap_or_default(),
        source: "workflow".to_owned(),
        closed_by_temporal: String::new(),
    }
}

/// The wire form of a read-model row.
pub fn from_record(r: &ReplenishmentRecord) -> Replenishment {
    Replenishment {
        id: r.workflow_id.clone(),
        sku: r.sku.clone(),
        state: r.state.as_str().to_owned(),
        quantity: u32::try_from(r.quantity).unwrap_or_default(),
        factory_order_id: r.order_id.clone(),
        started_at: rfc3339(r.started_at),
        updated_at: rfc3339(r.updated_at),
        overdue: r.overdue,
        source: "read_model".to_owned(),
        closed_by_temporal: r.closed_by_temporal.clone().unwrap_or_default(),
        ..Replenishment::default()
    }
}

/// The status an accepted update answered with, or the refusal as FAILED_PRECONDITION.
fn accepted(outcome: UpdateOutcome, sku: &str) -> Result<ReplenishStatus, Status> {
    match outcome {
        UpdateOutcome::Accepted(status) => Ok(*status),
        UpdateOutcome::Refused(reason) => Err(status::failed_precondition(format!(
            "the replenishment of {sku} refused: {reason}"
        ))),
        UpdateOutcome::NotRunning => Err(not_running(sku)),
    }
}

/// A Temporal call that failed: UNAVAILABLE, with the client's words.
fn temporal_unavailable(err: impl std::fmt::Display) -> Status {
    status::unavailable(status::reason::TEMPORAL_UNAVAILABLE, err.to_string())
}

fn not_running(sku: &str) -> Status {
    status::failed_precondition(format!(
        "{sku} has no replenishment running (see `restock replenishments`)"
    ))
}

#[tonic::async_trait]
impl ReplenishmentService for ReplenishmentApi {
    async fn get_replenishment(
        &self,
        request: Request<GetReplenishmentRequest>,
    ) -> Result<Response<Replenishment>, Status> {
        let r = request.into_inner();
        let order = match r.factory_order_id.as_str() {
            "" => None,
            order if order.len() > MAX_ORDER_ID_BYTES => {
                return Err(status::invalid_field(
                    "factory_order_id",
                    format!(
                        "factory_order_id is longer than any order id ({MAX_ORDER_ID_BYTES} bytes)"
                    ),
                ));
            }
            order => Some(order),
        };
        Ok(Response::new(self.current(&r.sku, order).await?))
    }

    async fn list_replenishments(
        &self,
        request: Request<ListReplenishmentsRequest>,
    ) -> Result<Response<ListReplenishmentsResponse>, Status> {
        let r = request.into_inner();
        let state = match r.state.as_str() {
            "" => None,
            name => Some(RestockState::parse(name).ok_or_else(|| {
                status::invalid_field(
                    "state",
                    format!(
                        "unknown state {:?}; one of: {}",
                        name.chars().take(40).collect::<String>(),
                        RestockState::ALL.map(RestockState::as_str).join(", ")
                    ),
                )
            })?),
        };
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(PageToken::decode(token).ok_or_else(|| {
                status::invalid_field("page_token", "page_token is not one this server issued")
            })?),
        };
        let mut rows = self
            .store
            .list_replenishments(
                state,
                after.as_ref().map(|t| (t.started_at, t.order_id.as_str())),
                u64::from(page_size) + 1,
            )
            .await
            .map_err(from_store)?;
        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => PageToken {
                started_at: last.started_at,
                order_id: last.order_id.clone(),
            }
            .encode(),
            _ => String::new(),
        };
        Ok(Response::new(ListReplenishmentsResponse {
            replenishments: rows.iter().map(from_record).collect(),
            next_page_token,
        }))
    }

    async fn complete_factory_order(
        &self,
        request: Request<CompleteFactoryOrderRequest>,
    ) -> Result<Response<Replenishment>, Status> {
        let actor = Caller::of(&request);
        let r = request.into_inner();
        Sku::parse(&r.sku).map_err(from_store)?;
        if r.quantity > restock_factory::wire::MAX_QUANTITY {
            return Err(status::invalid_field(
                "quantity",
                format!(
                    "quantity must be at most {} (the most one factory order holds)",
                    restock_factory::wire::MAX_QUANTITY
                ),
            ));
        }
        if r.factory_order_id.len() > MAX_ORDER_ID_BYTES {
            return Err(status::invalid_field(
                "factory_order_id",
                format!(
                    "factory_order_id is longer than any order id ({MAX_ORDER_ID_BYTES} bytes)"
                ),
            ));
        }
        let client = self.client()?;
        let order_id = if r.factory_order_id.is_empty() {
            match client::query_status(client, &r.sku)
                .await
                .map_err(temporal_unavailable)?
            {
                Some(status) if !status.state.is_terminal() => status.factory_order_id,
                _ => return Err(not_running(&r.sku)),
            }
        } else {
            r.factory_order_id.clone()
        };
        let completion = FactoryCompleted {
            quantity: (r.quantity > 0).then_some(r.quantity),
            factory_order_id: Some(order_id.clone()),
        };
        let outcome = match client::complete_and_confirm(client, &r.sku, completion).await {
            Ok(outcome) => outcome,
            // Not seen in time: the run may have taken it and already moved on to a new run
            // (a re-check); its receipt says so.
            Err(err) => match self.store.receipt(&order_id).await {
                Ok(Some(_)) => match client::query_status(client, &r.sku).await {
                    Ok(Some(now)) => UpdateOutcome::Accepted(Box::new(now)),
                    _ => return Err(temporal_unavailable(err)),
                },
                _ => return Err(temporal_unavailable(err)),
            },
        };
        let status = accepted(outcome, &r.sku)?;
        tracing::info!(sku = %r.sku, %order_id, quantity = r.quantity, %actor, "factory order completed by an operator");
        let detail = match r.quantity {
            0 => format!("order={order_id} quantity=ordered"),
            q => format!("order={order_id} quantity={q}"),
        };
        self.store
            .record_audit(&actor, "complete_factory_order", &r.sku, &detail, "")
            .await
            .map_err(from_store)?;
        Ok(Response::new(from_status(&status)))
    }

    async fn cancel_replenishment(
        &self,
        request: Request<CancelReplenishmentRequest>,
    ) -> Result<Response<Replenishment>, Status> {
        let actor = Caller::of(&request);
        let r = request.into_inner();
        Sku::parse(&r.sku).map_err(from_store)?;
        restock_inventory::validate::reason(&r.reason).map_err(from_store)?;
        let cancel = CancelRequest {
            reason: (!r.reason.is_empty()).then(|| r.reason.clone()),
        };
        let outcome = client::cancel_and_confirm(self.client()?, &r.sku, cancel)
            .await
            .map_err(temporal_unavailable)?;
        let status = accepted(outcome, &r.sku)?;
        tracing::info!(sku = %r.sku, reason = %r.reason, %actor, "replenishment cancel accepted");
        self.store
            .record_audit(&actor, "cancel_replenishment", &r.sku, "", &r.reason)
            .await
            .map_err(from_store)?;
        Ok(Response::new(from_status(&status)))
    }
}

/// `ListReplenishments`' page token: the last row of the page, in the list's order. Hex, so
/// clients treat it as opaque; a keyset, so rows changing between pages never skip or repeat.
#[derive(Debug, PartialEq)]
struct PageToken {
    started_at: i64,
    order_id: String,
}

impl PageToken {
    fn encode(&self) -> String {
        format!("{}:{}", self.started_at, self.order_id)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn decode(token: &str) -> Option<Self> {
        if !token.len().is_multiple_of(2) || token.len() > 600 {
            return None;
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        let text = String::from_utf8(bytes).ok()?;
        let (started_at, order_id) = text.split_once(':')?;
        Some(Self {
            started_at: started_at.parse().ok()?,
            order_id: order_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PageToken;

    #[test]
    fn page_tokens_round_trip_and_refuse_what_the_server_did_not_issue() {
        let token = PageToken {
            started_at: 1_764_000_000_000,
            order_id: "ord-SKU-1:7f3e".into(),
        };
        assert_eq!(PageToken::decode(&token.encode()), Some(token));
        for bad in ["10", "zz", "abc", "3a", "", "12"] {
            assert_eq!(PageToken::decode(bad), None, "{bad:?}");
        }
    }
}
