//! `restock.v1.ReplenishmentService`: answers UNIMPLEMENTED until the replenish-stock
//! workflow lands; its messages are already part of the contract.

use restock_inventory::Store;
use restock_proto::v1::{
    CancelReplenishmentRequest, CompleteFactoryOrderRequest, GetReplenishmentRequest,
    ListReplenishmentsRequest, ListReplenishmentsResponse, Replenishment,
    replenishment_service_server::ReplenishmentService,
};
use tonic::{Request, Response, Status};

/// ReplenishmentService (not yet backed by Temporal).
#[derive(Debug, Clone)]
pub struct ReplenishmentApi {
    #[allow(dead_code)]
    store: Store,
}

impl ReplenishmentApi {
    /// A ReplenishmentService over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn not_yet() -> Status {
    Status::unimplemented(
        "replenishments are not available yet in this version; use the Temporal UI or CLI",
    )
}

#[tonic::async_trait]
impl ReplenishmentService for ReplenishmentApi {
    async fn get_replenishment(
        &self,
        _request: Request<GetReplenishmentRequest>,
    ) -> Result<Response<Replenishment>, Status> {
        Err(not_yet())
    }

    async fn list_replenishments(
        &self,
        _request: Request<ListReplenishmentsRequest>,
    ) -> Result<Response<ListReplenishmentsResponse>, Status> {
        Err(not_yet())
    }

    async fn complete_factory_order(
        &self,
        _request: Request<CompleteFactoryOrderRequest>,
    ) -> Result<Response<Replenishment>, Status> {
        Err(not_yet())
    }

    async fn cancel_replenishment(
        &self,
        _request: Request<CancelReplenishmentRequest>,
    ) -> Result<Response<Replenishment>, Status> {
        Err(not_yet())
    }
}
