//! [`run`]: serves the gRPC API and the HTTP listener, and runs the outbox relay, until
//! shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use futures::FutureExt;
use restock_factory::callback::CallbackSigner;
use restock_inventory::Store;
use restock_proto::v1::{
    inventory_service_server::InventoryServiceServer,
    replenishment_service_server::ReplenishmentServiceServer,
    sales_service_server::SalesServiceServer,
};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;

use crate::grpc::{InventoryApi, ReplenishmentApi, SalesApi};
use crate::http::HttpState;
use crate::relay::RelaySettings;
use crate::temporal::{TemporalLink, TemporalSettings};

/// Everything the gateway needs besides its listeners and store.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Where Temporal is; `None`: sell only (no relay, replenishment API unavailable).
    pub temporal: Option<TemporalSettings>,
    /// Verifies factory callback tokens (`RESTOCK_CALLBACK_SECRET`).
    pub signer: CallbackSigner,
    /// The outbox relay's pace and the durations given to workflows.
    pub relay: RelaySettings,
}

/// Serves gRPC on `grpc` and HTTP on `http`, and relays the outbox to Temporal, until
/// `shutdown` resolves; then lets in-flight requests finish and returns. Either server
/// failing stops both.
pub async fn run(
    grpc: TcpListener,
    http: TcpListener,
    store: Store,
    settings: GatewaySettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    let temporal = match &settings.temporal {
        Some(t) => TemporalLink::connect(t, shutdown.clone()),
        None => TemporalLink::disabled(),
    };
    let relay_wake = Arc::new(Notify::new());
    let relay = tokio::spawn(crate::relay::run(
        store.clone(),
        temporal.clone(),
        relay_wake.clone(),
        settings.relay.clone(),
        shutdown.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SalesServiceServer<SalesApi>>().await;
    health
        .set_serving::<InventoryServiceServer<InventoryApi>>()
        .await;
    health
        .set_serving::<ReplenishmentServiceServer<ReplenishmentApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(restock_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the gRPC reflection service")?;

    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let grpc_server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SalesServiceServer::new(SalesApi::new(
            store.clone(),
            relay_wake,
        )))
        .add_service(InventoryServiceServer::new(InventoryApi::new(
            store.clone(),
        )))
        .add_service(ReplenishmentServiceServer::new(ReplenishmentApi::new(
            store.clone(),
            temporal.clone(),
        )))
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown.clone());
    let http_state = HttpState {
        store,
        signer: settings.signer.clone(),
        temporal,
    };
    let http_server = axum::serve(http, crate::http::router(http_state))
        .with_graceful_shutdown(shutdown.clone())
        .into_future();
    tracing::info!(%grpc_addr, %http_addr, "gateway serving");

    let served = tokio::try_join!(
        async { grpc_server.await.context("gRPC server failed") },
        async { http_server.await.context("HTTP server failed") },
    );
    relay.abort();
    served?;
    tracing::info!("gateway stopped");
    Ok(())
}
