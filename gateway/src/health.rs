//! gRPC health (`grpc.health.v1.Health`) that follows the database: the same check as
//! `GET /healthz` (the database answers a ping), made every [`GatewaySettings::health_check_interval`]
//! by a background task. While it fails, the overall service (`""`) and the three `restock.v1`
//! services are NOT_SERVING; when it passes again, SERVING. At shutdown they turn NOT_SERVING
//! before the server stops taking calls, so load balancers stop sending new ones.
//!
//! [`GatewaySettings::health_check_interval`]: crate::GatewaySettings::health_check_interval

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use restock_inventory::Store;
use restock_proto::v1::{
    inventory_service_server::InventoryServiceServer,
    replenishment_service_server::ReplenishmentServiceServer,
    sales_service_server::SalesServiceServer,
};
use tokio::sync::Mutex;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::grpc::{InventoryApi, ReplenishmentApi, SalesApi};

/// The services whose status follows the database: the whole server (`""`) and each
/// `restock.v1` service.
pub const SERVICES: [&str; 4] = [
    "",
    <SalesServiceServer<SalesApi> as NamedService>::NAME,
    <InventoryServiceServer<InventoryApi> as NamedService>::NAME,
    <ReplenishmentServiceServer<ReplenishmentApi> as NamedService>::NAME,
];

/// The shortest time one check may take before it counts as failed (a ping that hangs is a
/// database that does not answer).
const MIN_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The gRPC health statuses of [`SERVICES`], set from database checks until [`stop`] sets
/// them NOT_SERVING for good (a check that finishes after it changes nothing).
///
/// [`stop`]: DatabaseHealth::stop
#[derive(Clone, Debug)]
pub struct DatabaseHealth {
    reporter: HealthReporter,
    stopped: Arc<Mutex<bool>>,
}

impl DatabaseHealth {
    /// Statuses kept in `reporter` (the one serving `grpc.health.v1.Health`).
    pub fn new(reporter: HealthReporter) -> Self {
        Self {
            reporter,
            stopped: Arc::new(Mutex::new(false)),
        }
    }

    /// SERVING when `healthy`, else NOT_SERVING; nothing once stopped.
    async fn set(&self, healthy: bool) {
        let stopped = self.stopped.lock().await;
        if !*stopped {
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_all(&self.reporter, status).await;
        }
    }

    /// NOT_SERVING from now on (shutdown has begun).
    pub async fn stop(&self) {
        let mut stopped = self.stopped.lock().await;
        *stopped = true;
        set_all(&self.reporter, ServingStatus::NotServing).await;
    }

    /// Checks the database once and sets the statuses from the result; returns it.
    pub async fn check_now(&self, store: &Store, interval: Duration) -> bool {
        let healthy = database_answers(store, interval.max(MIN_CHECK_TIMEOUT)).await;
        self.set(healthy).await;
        healthy
    }

    /// Checks the database every `interval` and sets the statuses accordingly, until
    /// `shutdown` resolves; `healthy` is the result of the check made before (see
    /// [`DatabaseHealth::check_now`]). Changes are logged once each, not every check.
    pub async fn follow_database(
        self,
        store: Store,
        interval: Duration,
        mut healthy: bool,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {}
            }
            let now = tokio::select! {
                () = &mut shutdown => return,
                now = database_answers(&store, interval.max(MIN_CHECK_TIMEOUT)) => now,
            };
            if now != healthy {
                if now {
                    tracing::info!("the database answers again: gRPC health SERVING");
                } else {
                    tracing::warn!("the database does not answer: gRPC health NOT_SERVING");
                }
                self.set(now).await;
                healthy = now;
            }
        }
    }
}

/// Sets every one of [`SERVICES`] to `status`.
async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Whether the database answers a ping within `timeout`.
pub async fn database_answers(store: &Store, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "health check: database unavailable");
            false
        }
        Err(_) => {
            tracing::debug!(?timeout, "health check: database did not answer in time");
            false
        }
    }
}
