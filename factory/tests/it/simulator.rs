//! The simulator end to end: a real `FactoryClient` against a simulator on a real port, with a
//! callback receiver standing in for the gateway.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use restock_factory::{
    FactoryClient, ManufactureRequest, OrderError, Simulator, SimulatorConfig, SimulatorStats,
    parse_callback_body,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Long enough for anything that should happen; only reached when a test fails.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(500);

fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn fast(config: SimulatorConfig) -> SimulatorConfig {
    SimulatorConfig {
        step_interval: Duration::from_millis(50),
        ..config
    }
}

struct RunningSimulator {
    simulator: Simulator,
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl RunningSimulator {
    async fn start(config: SimulatorConfig) -> Self {
        install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let simulator = Simulator::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn({
            let simulator = simulator.clone();
            async move {
                simulator
                    .serve(listener, async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        Self {
            simulator,
            base_url,
            stop: Some(stop),
            server,
        }
    }

    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, self.server)
            .await
            .expect("simulator did not stop")
            .unwrap()
            .unwrap();
    }

    /// Waits until the stats satisfy `done` (callback counters are updated after the POST
    /// returns, so they can trail the receiver by a moment).
    async fn stats_when(&self, done: impl Fn(&SimulatorStats) -> bool) -> SimulatorStats {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let stats = self.simulator.stats();
            if done(&stats) || tokio::time::Instant::now() > deadline {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A stand-in for the gateway's callback endpoint.
struct CallbackReceiver {
    base_url: String,
    received: mpsc::UnboundedReceiver<ReceivedCallback>,
}

#[derive(Debug)]
struct ReceivedCallback {
    content_type: Option<String>,
    body: Bytes,
}

impl CallbackReceiver {
    async fn start() -> Self {
        let (sender, received) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/callbacks/{order}",
            post(move |headers: HeaderMap, body: Bytes| {
                let sender = sender.clone();
                async move {
                    let content_type = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let _ = sender.send(ReceivedCallback { content_type, body });
                    StatusCode::OK
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base_url, received }
    }

    fn url_for(&self, order_id: &str) -> String {
        format!("{}/callbacks/{order_id}?token=t0k3n", self.base_url)
    }

    async fn next_within(&mut self, wait: Duration) -> Option<ReceivedCallback> {
        tokio::time::timeout(wait, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

fn order(order_id: &str, callback_url: String) -> ManufactureRequest {
    ManufactureRequest {
        group_id: order_id.to_owned(),
        product_id: "CP-502101".to_owned(),
        product_count: "10".to_owned(),
        factory_id: "FF-500293".to_owned(),
        requester: "restock-worker".to_owned(),
        callback_url,
    }
}

fn client() -> FactoryClient {
    install_crypto_provider();
    FactoryClient::new().unwrap()
}

/// A simulator (fast, then changed by `configure`), a receiver for its callbacks, and the
/// order `id` placed with it (called back to the receiver).
async fn one_order(
    configure: impl FnOnce(&mut SimulatorConfig),
    id: &str,
) -> (RunningSimulator, CallbackReceiver, ManufactureRequest) {
    let mut config = fast(SimulatorConfig::default());
    configure(&mut config);
    let factory = RunningSimulator::start(config).await;
    let receiver = CallbackReceiver::start().await;
    let request = order(id, receiver.url_for(id));
    client()
        .place_order(&factory.base_url, &request)
        .await
        .unwrap();
    (factory, receiver, request)
}

#[tokio::test]
async fn an_order_is_accepted_and_called_back_once_with_the_original_body() {
    let factory = RunningSimulator::start(fast(SimulatorConfig::default())).await;
    let mut receiver = CallbackReceiver::start().await;
    let request = order("order-1", receiver.url_for("order-1"));

    let placed = client()
        .place_order(&factory.base_url, &request)
        .await
        .unwrap();
    assert!(!placed.factory_reference.is_empty());

    let callback = receiver.next_within(PATIENCE).await.expect("no callback");
    assert_eq!(callback.content_type.as_deref(), Some("application/json"));
    assert_eq!(parse_callback_body(&callback.body).unwrap(), request);
    // Exactly the six fields, all strings: the body is the request, unchanged.
    let json: serde_json::Value = serde_json::from_slice(&callback.body).unwrap();
    let fields = json.as_object().unwrap();
    assert_eq!(fields.len(), 6);
    assert!(fields.values().all(serde_json::Value::is_string));
    assert_eq!(fields["MessageAttributeProductCnt"], "10");

    assert!(
        receiver.next_within(QUIET).await.is_none(),
        "second callback"
    );
    let stats = factory.stats_when(|stats| stats.callbacks_sent == 1).await;
    assert_eq!(stats.orders_for("order-1"), 1);
    assert_eq!(stats.total, 1);
    assert_eq!((stats.callbacks_sent, stats.callbacks_failed), (1, 0));
    factory.shut_down().await;
}

#[tokio::test]
async fn the_reply_has_the_factory_shape() {
    let factory = RunningSimulator::start(fast(SimulatorConfig::default())).await;
    install_crypto_provider();
    let request = order("order-shape", "http://127.0.0.1:9/cb".to_owned());

    let response = reqwest::Client::new()
        .post(format!("{}/api/manufactures", factory.base_url))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let reply: serde_json::Value = response.json().await.unwrap();
    let data = &reply["data"];
    assert!(uuid::Uuid::parse_str(data["id"].as_str().unwrap()).is_ok());
    assert_eq!(data["reqestor"], "restock-worker");
    assert_eq!(data["data"], serde_json::to_value(&request).unwrap());
    factory.shut_down().await;
}

#[tokio::test]
async fn fail_first_answers_503_without_recording_then_accepts() {
    let factory = RunningSimulator::start(fast(SimulatorConfig {
        fail_first: 2,
        drop_callbacks: true,
        ..SimulatorConfig::default()
    }))
    .await;
    let client = client();
    let request = order("order-flaky", "http://127.0.0.1:9/cb".to_owned());

    for attempt in 1..=2 {
        let err = client
            .place_order(&factory.base_url, &request)
            .await
            .unwrap_err();
        assert!(
            matches!(err, OrderError::ServerError { status: 503, .. }),
            "attempt {attempt}: {err:?}"
        );
        assert!(err.is_retryable());
    }
    client
        .place_order(&factory.base_url, &request)
        .await
        .unwrap();

    let stats = factory.simulator.stats();
    assert_eq!(stats.orders_for("order-flaky"), 1);
    assert_eq!((stats.total, stats.injected_failures), (1, 2));
    factory.shut_down().await;
}

#[tokio::test]
async fn failure_rate_is_seeded_and_deterministic() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let factory = RunningSimulator::start(fast(SimulatorConfig {
            failure_rate: 0.5,
            seed,
            drop_callbacks: true,
            ..SimulatorConfig::default()
        }))
        .await;
        let client = client();
        let mut accepted = Vec::new();
        for n in 0..20 {
            let request = order(&format!("order-{n}"), "http://127.0.0.1:9/cb".to_owned());
            match client.place_order(&factory.base_url, &request).await {
                Ok(_) => accepted.push(true),
                Err(OrderError::ServerError { status: 503, .. }) => accepted.push(false),
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        let stats = factory.simulator.stats();
        let accepted_count = accepted.iter().filter(|ok| **ok).count() as u64;
        assert_eq!(stats.total, accepted_count);
        assert_eq!(stats.injected_failures, 20 - accepted_count);
        factory.shut_down().await;
        accepted
    }

    let first = outcomes(42).await;
    assert_eq!(first, outcomes(42).await);
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");

    let always = RunningSimulator::start(fast(SimulatorConfig {
        failure_rate: 1.0,
        ..SimulatorConfig::default()
    }))
    .await;
    for _ in 0..5 {
        let err = client()
            .place_order(
                &always.base_url,
                &order("o", "http://127.0.0.1:9/cb".into()),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, OrderError::ServerError { status: 503, .. }));
    }
    assert_eq!(always.simulator.stats().total, 0);
    always.shut_down().await;
}

#[tokio::test]
async fn duplicate_callbacks_call_back_twice() {
    let (factory, mut receiver, request) =
        one_order(|c| c.duplicate_callbacks = true, "order-twice").await;

    for _ in 0..2 {
        let callback = receiver
            .next_within(PATIENCE)
            .await
            .expect("missing callback");
        assert_eq!(parse_callback_body(&callback.body).unwrap(), request);
    }
    assert!(
        receiver.next_within(QUIET).await.is_none(),
        "third callback"
    );
    let stats = factory.stats_when(|stats| stats.callbacks_sent == 2).await;
    assert_eq!(stats.orders_for("order-twice"), 1);
    assert_eq!(stats.callbacks_sent, 2);
    factory.shut_down().await;
}

#[tokio::test]
async fn drop_callbacks_never_calls_back() {
    let (factory, mut receiver, _) = one_order(|c| c.drop_callbacks = true, "order-lost").await;

    assert!(receiver.next_within(QUIET).await.is_none());
    let stats = factory
        .stats_when(|stats| stats.callbacks_dropped == 1)
        .await;
    assert_eq!(
        (stats.total, stats.callbacks_sent, stats.callbacks_dropped),
        (1, 0, 1)
    );
    factory.shut_down().await;
}

#[tokio::test]
async fn drop_callback_every_drops_every_nth_order() {
    let factory = RunningSimulator::start(fast(SimulatorConfig {
        drop_callback_every: 2,
        ..SimulatorConfig::default()
    }))
    .await;
    let mut receiver = CallbackReceiver::start().await;
    let client = client();
    for n in 1..=4 {
        let id = format!("order-{n}");
        client
            .place_order(&factory.base_url, &order(&id, receiver.url_for(&id)))
            .await
            .unwrap();
    }

    let mut called_back = Vec::new();
    while let Some(callback) = receiver.next_within(QUIET * 2).await {
        called_back.push(parse_callback_body(&callback.body).unwrap().group_id);
    }
    called_back.sort();
    assert_eq!(called_back, ["order-1", "order-3"]);
    let stats = factory
        .stats_when(|stats| stats.callbacks_sent == 2 && stats.callbacks_dropped == 2)
        .await;
    assert_eq!((stats.callbacks_sent, stats.callbacks_dropped), (2, 2));
    factory.shut_down().await;
}

#[tokio::test]
async fn malformed_orders_get_400_and_are_not_counted() {
    let factory = RunningSimulator::start(fast(SimulatorConfig::default())).await;
    install_crypto_provider();
    let valid = serde_json::to_value(order("order-bad", "http://127.0.0.1:9/cb".into())).unwrap();
    let with = |field: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[field] = value;
        body.to_string()
    };
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("CallbackUrl");

    let bodies = [
        (
            "count abc",
            with("MessageAttributeProductCnt", "abc".into()),
        ),
        ("count -1", with("MessageAttributeProductCnt", "-1".into())),
        ("count 0", with("MessageAttributeProductCnt", "0".into())),
        (
            "count as number",
            with("MessageAttributeProductCnt", 10.into()),
        ),
        ("relative callback", with("CallbackUrl", "/cb".into())),
        (
            "empty requester",
            with("MessageAttributeRequester", "".into()),
        ),
        ("missing field", missing.to_string()),
        ("not json", "MessageGroupId=order-bad".to_owned()),
    ];
    let http = reqwest::Client::new();
    for (name, body) in &bodies {
        let response = http
            .post(format!("{}/api/manufactures", factory.base_url))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().is_some_and(|text| !text.is_empty()),
            "{name}"
        );
    }

    // Our own client refuses to send such an order at all.
    let err = client()
        .place_order(
            &factory.base_url,
            &ManufactureRequest {
                product_count: "abc".into(),
                ..order("order-bad", "http://127.0.0.1:9/cb".into())
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OrderError::Invalid(_)), "{err:?}");

    let stats = factory.simulator.stats();
    assert_eq!(stats.total, 0);
    assert!(stats.orders_by_group.is_empty());
    assert_eq!(stats.malformed_requests, bodies.len() as u64);
    factory.shut_down().await;
}

#[tokio::test]
async fn a_slow_factory_is_ambiguous_and_has_taken_the_order() {
    let factory = RunningSimulator::start(fast(SimulatorConfig {
        extra_latency: Duration::from_secs(2),
        drop_callbacks: true,
        ..SimulatorConfig::default()
    }))
    .await;
    install_crypto_provider();
    let client = FactoryClient::with_timeout(Duration::from_millis(300)).unwrap();

    let err = client
        .place_order(
            &factory.base_url,
            &order("order-slow", "http://127.0.0.1:9/cb".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OrderError::Ambiguous(_)), "{err:?}");
    assert!(err.may_have_been_accepted() && !err.is_retryable());
    // The reason resending blindly is wrong: the factory did take it.
    assert_eq!(factory.simulator.stats().orders_for("order-slow"), 1);
    factory.shut_down().await;
}

#[tokio::test]
async fn a_closed_port_is_not_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);

    let request = order("order-nowhere", "http://127.0.0.1:9/cb".into());
    let err = client()
        .place_order(&format!("http://{address}"), &request)
        .await
        .unwrap_err();
    assert!(matches!(err, OrderError::NotSent(_)), "{err:?}");
    assert!(err.is_retryable());

    let err = client()
        .place_order("not a url", &request)
        .await
        .unwrap_err();
    assert!(matches!(err, OrderError::NotSent(_)), "{err:?}");
}

#[tokio::test]
async fn run_serves_stats_and_health_until_shutdown() {
    install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(Simulator::run(
        listener,
        fast(SimulatorConfig {
            drop_callbacks: true,
            ..SimulatorConfig::default()
        }),
        async {
            let _ = stopped.await;
        },
    ));

    let http = reqwest::Client::new();
    let health = http
        .get(format!("{base_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let client = client();
    for id in ["order-a", "order-b", "order-a"] {
        client
            .place_order(&base_url, &order(id, "http://127.0.0.1:9/cb".into()))
            .await
            .unwrap();
    }
    let stats: serde_json::Value = http
        .get(format!("{base_url}/simulator/orders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["orders_by_group"],
        serde_json::json!({"order-a": 2, "order-b": 1})
    );
    assert_eq!(stats["total"], 3);
    assert_eq!(stats["callbacks_sent"], 0);
    assert_eq!(stats["callbacks_failed"], 0);

    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, server)
        .await
        .expect("run did not return after shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_abandons_orders_in_production() {
    let (factory, mut receiver, _) = one_order(
        |c| c.step_interval = Duration::from_millis(200),
        "order-late",
    )
    .await;
    let simulator = factory.simulator.clone();
    factory.shut_down().await;

    assert!(
        receiver
            .next_within(Duration::from_millis(1200))
            .await
            .is_none()
    );
    let stats = simulator.stats();
    assert_eq!((stats.total, stats.callbacks_sent), (1, 0));
}

#[tokio::test]
async fn unreachable_callbacks_are_counted_as_failed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let factory = RunningSimulator::start(fast(SimulatorConfig::default())).await;
    client()
        .place_order(
            &factory.base_url,
            &order("order-x", format!("http://{closed}/cb")),
        )
        .await
        .unwrap();

    let stats = factory
        .stats_when(|stats| stats.callbacks_failed == 1)
        .await;
    assert_eq!((stats.callbacks_sent, stats.callbacks_failed), (1, 1));
    factory.shut_down().await;
}
