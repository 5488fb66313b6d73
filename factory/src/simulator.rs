//! A simulator of the legacy factory, faithful to its wire contract by default, with knobs for
//! tests and benchmarks (injected 503s, extra latency, lost or repeated callbacks).
//!
//! Like the real factory it deduplicates nothing: every accepted order is produced and called
//! back. Unlike it, it counts accepted orders per `MessageGroupId` (`GET /simulator/orders`, or
//! [`Simulator::stats`] in-process) so tests can assert that no order was placed twice.
//!
//! Routes:
//! - `POST /api/manufactures`: the factory's order endpoint. A body that breaks the contract gets
//!   `400 {"error": "..."}`; an accepted order gets `201` and the factory's reply shape.
//! - `GET /simulator/orders`: [`SimulatorStats`] as JSON.
//! - `GET /healthz`: `200 ok`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::client::{ClientBuildError, error_chain, http_client_builder};
use crate::wire::{
    ManufactureReply, ManufactureReplyData, ManufactureRequest, ORDER_PATH, parse_callback_body,
};

/// The production steps the factory walks each order through, one [`step_interval`] apart.
///
/// [`step_interval`]: SimulatorConfig::step_interval
pub const PRODUCTION_STEPS: [&str; 5] = ["start", "prepare", "produce", "pack", "end"];

/// Path of the statistics endpoint.
pub const STATS_PATH: &str = "/simulator/orders";

/// Path of the health endpoint.
pub const HEALTH_PATH: &str = "/healthz";

/// How the simulator behaves. [`Default`] is the real factory: 10 s steps, no injected faults.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Time between production steps. The first step (`start`) happens on acceptance and the
    /// callback right after the fifth (`end`), so the callback comes
    /// [`production_time`](Self::production_time) = 4 × this after the order was accepted.
    /// Default 10 s.
    pub step_interval: Duration,
    /// Answer the first this-many order requests (valid or not) with 503, recording nothing.
    /// Default 0.
    pub fail_first: u32,
    /// Probability, `0.0..=1.0`, that any order request is answered 503 and not recorded
    /// (values outside the range are clamped, NaN counts as 0). Default 0.
    pub failure_rate: f64,
    /// Seed for the pseudo-random generator behind [`failure_rate`](Self::failure_rate); the
    /// same seed and request sequence give the same failures.
    pub seed: u64,
    /// Delay before every order reply. An accepted order is recorded and put into production
    /// *before* the delay, so a client that times out meanwhile has still placed the order —
    /// just as with a slow real factory.
    pub extra_latency: Duration,
    /// Never call back (production still runs). Default false.
    pub drop_callbacks: bool,
    /// Call back twice per order, one after the other. Default false.
    pub duplicate_callbacks: bool,
    /// Drop the callback of every Nth accepted order (the Nth, 2Nth, ...); 0 never. Default 0.
    pub drop_callback_every: u32,
    /// Timeout for each callback POST. Default 10 s.
    pub callback_timeout: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            step_interval: Duration::from_secs(10),
            fail_first: 0,
            failure_rate: 0.0,
            seed: 0x5EED_F00D,
            extra_latency: Duration::ZERO,
            drop_callbacks: false,
            duplicate_callbacks: false,
            drop_callback_every: 0,
            callback_timeout: Duration::from_secs(10),
        }
    }
}

impl SimulatorConfig {
    /// Time from accepting an order to calling back: four [`step_interval`]s (the gaps between
    /// the five [`PRODUCTION_STEPS`]).
    ///
    /// [`step_interval`]: Self::step_interval
    pub fn production_time(&self) -> Duration {
        self.step_interval * (PRODUCTION_STEPS.len() as u32 - 1)
    }
}

/// What the simulator has seen; served by `GET /simulator/orders`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimulatorStats {
    /// Accepted orders per `MessageGroupId`; a value above 1 is a duplicate order.
    pub orders_by_group: BTreeMap<String, u64>,
    /// Accepted orders in all.
    pub total: u64,
    /// Callback POSTs attempted (a duplicated callback counts twice).
    pub callbacks_sent: u64,
    /// Callback POSTs that failed or were answered with a non-2xx status (the factory ignores
    /// both; this is for tests).
    pub callbacks_failed: u64,
    /// Callbacks withheld by [`SimulatorConfig::drop_callbacks`] or
    /// [`SimulatorConfig::drop_callback_every`].
    pub callbacks_dropped: u64,
    /// Order requests answered 503 by [`SimulatorConfig::fail_first`] or
    /// [`SimulatorConfig::failure_rate`].
    pub injected_failures: u64,
    /// Order requests answered 400.
    pub malformed_requests: u64,
    /// When the last order for each product (`ProductId`) was accepted, in microseconds since
    /// the Unix epoch: what the benchmark measures a sale-to-factory latency against.
    pub accepted_at_us: BTreeMap<String, u64>,
}

impl SimulatorStats {
    /// Accepted orders for one `MessageGroupId`.
    pub fn orders_for(&self, group_id: &str) -> u64 {
        self.orders_by_group.get(group_id).copied().unwrap_or(0)
    }
}

/// The factory simulator. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: SimulatorConfig,
    ledger: Mutex<Ledger>,
    /// Built once; kept as the error if that failed, so [`Simulator::serve`] can refuse to start.
    callback_http: Result<reqwest::Client, ClientBuildError>,
    /// Set to `true` to abandon every order still in production.
    stop_production: watch::Sender<bool>,
}

#[derive(Debug)]
struct Ledger {
    order_requests: u64,
    rng: XorShift64,
    stats: SimulatorStats,
}

/// An accepted order on its way through production.
#[derive(Debug)]
struct ProductionOrder {
    request: ManufactureRequest,
    factory_reference: String,
    callbacks: u8,
}

impl Simulator {
    /// A simulator with `config`. Needs a rustls crypto provider installed for its callback
    /// client (see [`crate::client`]); without one, [`serve`](Self::serve) refuses to start and
    /// a router used directly counts every callback as failed.
    pub fn new(config: SimulatorConfig) -> Self {
        let callback_http =
            http_client_builder(config.callback_timeout).and_then(|builder| Ok(builder.build()?));
        let ledger = Ledger {
            order_requests: 0,
            rng: XorShift64::new(config.seed),
            stats: SimulatorStats::default(),
        };
        Self {
            shared: Arc::new(Shared {
                config,
                ledger: Mutex::new(ledger),
                callback_http,
                stop_production: watch::Sender::new(false),
            }),
        }
    }

    /// The configuration this simulator runs with.
    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.config
    }

    /// The simulator's routes, ready to serve.
    pub fn router(&self) -> Router {
        Router::new()
            .route(ORDER_PATH, post(order))
            .route(STATS_PATH, get(stats))
            .route(HEALTH_PATH, get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimulatorStats {
        self.ledger().stats.clone()
    }

    /// Abandons every order still in production: no further steps, no callbacks. Orders
    /// accepted afterwards are abandoned at once. [`serve`](Self::serve) calls this on shutdown.
    pub fn stop_production(&self) {
        self.shared.stop_production.send_replace(true);
    }

    /// Builds a simulator with `config` and serves it on `listener` until `shutdown` completes.
    pub async fn run(
        listener: TcpListener,
        config: SimulatorConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        Self::new(config).serve(listener, shutdown).await
    }

    /// Serves this simulator on `listener` until `shutdown` completes, then lets in-flight
    /// requests finish and abandons orders still in production.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if let Err(err) = &self.shared.callback_http {
            anyhow::bail!("factory simulator cannot make callbacks: {err}");
        }
        let address = listener.local_addr()?;
        info!(%address, config = ?self.shared.config, "factory simulator listening");
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        self.stop_production();
        served?;
        info!(%address, "factory simulator stopped");
        Ok(())
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The counters stay meaningful even if a holder panicked.
        self.shared
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides the fate of one order request and, if accepted, starts its production.
    fn admit(&self, body: &[u8]) -> Response {
        let config = &self.shared.config;
        let parsed = parse_callback_body(body);

        let accepted = {
            let mut ledger = self.ledger();
            ledger.order_requests += 1;
            let roll = ledger.rng.next_unit();
            if ledger.order_requests <= u64::from(config.fail_first)
                || roll < clamped_probability(config.failure_rate)
            {
                ledger.stats.injected_failures += 1;
                drop(ledger);
                debug!("injected factory failure");
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "factory temporarily unavailable (simulated)",
                );
            }
            let request = match parsed {
                Ok(request) => request,
                Err(err) => {
                    ledger.stats.malformed_requests += 1;
                    drop(ledger);
                    info!(error = %err, "rejected malformed order");
                    return error_response(StatusCode::BAD_REQUEST, &err.to_string());
                }
            };
            let stats = &mut ledger.stats;
            stats.total += 1;
            *stats
                .orders_by_group
                .entry(request.group_id.clone())
                .or_default() += 1;
            stats
                .accepted_at_us
                .insert(request.product_id.clone(), unix_micros());
            let sequence = stats.total;
            let dropped = config.drop_callbacks
                || (config.drop_callback_every > 0
                    && sequence.is_multiple_of(u64::from(config.drop_callback_every)));
            ProductionOrder {
                request,
                factory_reference: uuid::Uuid::new_v4().to_string(),
                callbacks: match (dropped, config.duplicate_callbacks) {
                    (true, _) => 0,
                    (false, true) => 2,
                    (false, false) => 1,
                },
            }
        };

        info!(
            group_id = %accepted.request.group_id,
            product_id = %accepted.request.product_id,
            count = %accepted.request.product_count,
            factory_reference = %accepted.factory_reference,
            "order accepted"
        );
        let reply = ManufactureReply {
            data: ManufactureReplyData {
                id: accepted.factory_reference.clone(),
                requester: Some(accepted.request.requester.clone()),
                request: serde_json::to_value(&accepted.request).ok(),
            },
        };
        tokio::spawn(self.clone().produce(accepted));
        (StatusCode::CREATED, Json(reply)).into_response()
    }

    /// Walks one order through production and calls back, unless production is stopped first.
    async fn produce(self, order: ProductionOrder) {
        let mut stopped = self.shared.stop_production.subscribe();
        let factory_reference = order.factory_reference.clone();
        tokio::select! {
            () = self.run_production(order) => {}
            _ = stopped.wait_for(|stopped| *stopped) => {
                debug!(%factory_reference, "production abandoned at shutdown");
            }
        }
    }

    async fn run_production(&self, order: ProductionOrder) {
        for (index, step) in PRODUCTION_STEPS.iter().enumerate() {
            if index > 0 {
                tokio::time::sleep(self.shared.config.step_interval).await;
            }
            debug!(factory_reference = %order.factory_reference, step, "production step");
        }
        if order.callbacks == 0 {
            self.ledger().stats.callbacks_dropped += 1;
            info!(factory_reference = %order.factory_reference, "callback dropped (simulated)");
            return;
        }
        for _ in 0..order.callbacks {
            self.call_back(&order).await;
        }
    }

    /// One callback POST of the original request body. The response is ignored, as the real
    /// factory does; failures are only logged and counted.
    async fn call_back(&self, order: &ProductionOrder) {
        let url = &order.request.callback_url;
        let outcome = match &self.shared.callback_http {
            Ok(http) => match http.post(url).json(&order.request).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("answered HTTP {}", response.status())),
                Err(err) => Err(error_chain(&err)),
            },
            Err(err) => Err(err.to_string()),
        };
        let mut ledger = self.ledger();
        ledger.stats.callbacks_sent += 1;
        match outcome {
            Ok(()) => {
                drop(ledger);
                info!(factory_reference = %order.factory_reference, "callback delivered");
            }
            Err(why) => {
                ledger.stats.callbacks_failed += 1;
                drop(ledger);
                warn!(
                    factory_reference = %order.factory_reference,
                    callback_url = %url,
                    error = %why,
                    "callback failed; the factory never retries it"
                );
            }
        }
    }
}

async fn order(State(simulator): State<Simulator>, body: Bytes) -> Response {
    // Decide (and start production) before the delay: the delay models a slow reply, not a
    // slow acceptance.
    let response = simulator.admit(&body);
    let latency = simulator.shared.config.extra_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    response
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn stats(State(simulator): State<Simulator>) -> Json<SimulatorStats> {
    Json(simulator.stats())
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn clamped_probability(probability: f64) -> f64 {
    if probability.is_nan() {
        0.0
    } else {
        probability.clamp(0.0, 1.0)
    }
}

/// xorshift64* (Vigna): small, fast and good enough to decide which requests fail; not for
/// anything that needs real randomness.
#[derive(Debug, Clone)]
struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    fn new(seed: u64) -> Self {
        // One splitmix64 step spreads nearby seeds apart; xorshift must not start at zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self {
            state: if z == 0 { 0x9E37_79B9_7F4A_7C15 } else { z },
        }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_deterministic_per_seed() {
        let first: Vec<u64> = {
            let mut rng = XorShift64::new(7);
            (0..5).map(|_| rng.next_u64()).collect()
        };
        let again: Vec<u64> = {
            let mut rng = XorShift64::new(7);
            (0..5).map(|_| rng.next_u64()).collect()
        };
        let other: Vec<u64> = {
            let mut rng = XorShift64::new(8);
            (0..5).map(|_| rng.next_u64()).collect()
        };
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn prng_units_are_in_range_and_roughly_uniform() {
        let mut rng = XorShift64::new(0);
        let rolls: Vec<f64> = (0..10_000).map(|_| rng.next_unit()).collect();
        assert!(rolls.iter().all(|roll| (0.0..1.0).contains(roll)));
        let below_quarter = rolls.iter().filter(|roll| **roll < 0.25).count();
        assert!((2_200..2_800).contains(&below_quarter), "{below_quarter}");
    }

    #[test]
    fn probabilities_are_clamped() {
        assert_eq!(clamped_probability(f64::NAN), 0.0);
        assert_eq!(clamped_probability(-1.0), 0.0);
        assert_eq!(clamped_probability(2.0), 1.0);
        assert_eq!(clamped_probability(0.3), 0.3);
    }

    #[test]
    fn production_time_is_four_intervals() {
        let config = SimulatorConfig {
            step_interval: Duration::from_millis(50),
            ..SimulatorConfig::default()
        };
        assert_eq!(config.production_time(), Duration::from_millis(200));
        assert_eq!(
            SimulatorConfig::default().production_time(),
            Duration::from_secs(40)
        );
    }
}
