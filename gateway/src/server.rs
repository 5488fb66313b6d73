//! [`run`]: serves the gRPC API and the HTTP listener, and runs the outbox relay, until
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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

use crate::auth::{ApiTokens, AuthLayer};
use crate::console::{Console, Feed, WorkflowLinks};
use crate::grpc::{InventoryApi, ReplenishmentApi, SalesApi};
use crate::http::HttpState;
use crate::metrics::Metrics;
use crate::relay::RelaySettings;
use crate::request_id::RequestIdLayer;
use crate::temporal::{TemporalLink, TemporalSettings};
use crate::tls::{TlsListener, TlsSettings};

/// Everything the gateway needs besides its listeners and store.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Where Temporal is; `None`: sell only (no relay, replenishment API unavailable).
    pub temporal: Option<TemporalSettings>,
    /// Verifies factory callback tokens (`RESTOCK_CALLBACK_SECRET`).
    pub signer: CallbackSigner,
    /// The outbox relay's pace and the durations given to workflows.
    pub relay: RelaySettings,
    /// API tokens for gRPC; empty: open, and then gRPC is served on loopback only.
    pub tokens: ApiTokens,
    /// TLS for both listeners; `None`: plaintext.
    pub tls: Option<TlsSettings>,
    /// How often gRPC health checks the database (`RESTOCK_HEALTH_CHECK_SECS`, see
    /// [`crate::health`]).
    pub health_check_interval: Duration,
}

/// Where the gateway serves gRPC unless told otherwise (`RESTOCK_GRPC_ADDR`).
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
/// Where the gateway serves HTTP (health, metrics, callbacks, the console) unless told
/// otherwise (`RESTOCK_HTTP_ADDR`).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// The default of [`GatewaySettings::health_check_interval`].
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

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
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    crate::auth::check_open_listener(&settings.tokens, grpc_addr)?;
    let shutdown = shutdown.boxed().shared();
    let temporal = match &settings.temporal {
        Some(t) => TemporalLink::connect(t, shutdown.clone()),
        None => TemporalLink::disabled(),
    };
    let metrics = Metrics::new();
    let relay_wake = Arc::new(Notify::new());
    let relay = tokio::spawn(crate::relay::run(
        store.clone(),
        temporal.clone(),
        relay_wake.clone(),
        settings.relay.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let console_feed = Feed::new(
        store.clone(),
        settings.temporal.as_ref().and_then(|t| {
            t.ui_url.as_ref().map(|ui_url| WorkflowLinks {
                ui_url: ui_url.clone(),
                namespace: t.endpoint.namespace.clone(),
            })
        }),
    );
    let console_task = tokio::spawn(console_feed.clone().run(shutdown.clone()));

    let missed = crate::demand::MissedDemand::default();
    let missed_task = tokio::spawn(missed.clone().flush_until(store.clone(), shutdown.clone()));

    // Health follows the database from the first call on: checked once before serving, then
    // in the background; NOT_SERVING as soon as shutdown begins.
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = crate::health::DatabaseHealth::new(reporter);
    let interval = settings.health_check_interval;
    let healthy = health.check_now(&store, interval).await;
    if !healthy {
        tracing::warn!("the database does not answer: gRPC health starts NOT_SERVING");
    }
    let health_task = tokio::spawn(health.clone().follow_database(
        store.clone(),
        interval,
        healthy,
        shutdown.clone(),
    ));
    let grpc_shutdown = {
        let shutdown = shutdown.clone();
        let health = health.clone();
        async move {
            shutdown.await;
            health.stop().await;
        }
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("building the gRPC reflection service (v1)")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building the gRPC reflection service (v1alpha)")?;

    let replenishments = ReplenishmentApi::new(store.clone(), temporal.clone());
    let console = Console {
        feed: console_feed.clone(),
        tokens: settings.tokens.clone(),
        replenishments: replenishments.clone(),
    };

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &settings.tls {
        builder = builder
            .tls_config(tls.grpc())
            .context("the gRPC TLS certificate or key is not usable")?;
    }
    let grpc_server = builder
        .layer(RequestIdLayer)
        .layer(AuthLayer::new(settings.tokens.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(SalesServiceServer::new(SalesApi::new(
            store.clone(),
            relay_wake.clone(),
            metrics.clone(),
            missed,
            console_feed.clone(),
        )))
        .add_service(InventoryServiceServer::new(InventoryApi::new(
            store.clone(),
        )))
        .add_service(ReplenishmentServiceServer::new(replenishments.clone()))
        .serve_with_incoming_shutdown(no_delay(TcpListenerStream::new(grpc)), grpc_shutdown);
    let http_state = HttpState {
        store,
        signer: settings.signer.clone(),
        temporal,
        metrics,
        relay_wake,
    };
    let router = crate::http::router(http_state)
        .merge(crate::console::router(console))
        .layer(RequestIdLayer)
        // The console serves tokenless callers on loopback only: it needs the peer's address.
        .into_make_service_with_connect_info::<crate::console::Peer>();
    let http_server = async {
        match &settings.tls {
            Some(tls) => {
                let listener = TlsListener::new(http, tls.acceptor()?)?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.clone())
                    .await
            }
            None => {
                axum::serve(http, router)
                    .with_graceful_shutdown(shutdown.clone())
                    .await
            }
        }
        .context("HTTP server failed")
    };
    tracing::info!(
        %grpc_addr,
        %http_addr,
        tls = settings.tls.is_some(),
        api_tokens = !settings.tokens.is_empty(),
        "gateway serving"
    );

    let served = tokio::try_join!(
        async { grpc_server.await.context("gRPC server failed") },
        http_server,
    );
    relay.abort();
    health_task.abort();
    console_task.abort();
    // The last second's missed demand is written before the gateway returns.
    if let Err(err) = missed_task.await {
        tracing::warn!(error = %err, "the missed-demand writer stopped early");
    }
    served?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// The reflection service's descriptors: restock's, health's and both reflection versions',
/// so that either version lists every service the server has (tonic's builder would add only
/// the descriptor of the version being built).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(restock_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// Turns Nagle's algorithm off on accepted gRPC connections: a reply written in several
/// pieces must not wait for the client's ACK of the first one.
fn no_delay(
    incoming: TcpListenerStream,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    incoming.map(|accepted| {
        if let Ok(stream) = &accepted
            && let Err(err) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY on a gRPC connection");
        }
        accepted
    })
}
