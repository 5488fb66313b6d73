//! Beyond one machine, as processes: two gateways and two workers on PostgreSQL and one
//! Temporal server. Concurrent sales spread over both gateways never oversell; every product
//! that sells out gets exactly one workflow and one factory order; a worker killed with
//! SIGKILL mid-flight leaves its work to the other, which finishes it. The processes find
//! Temporal (on a port of its own, not 7233) only through a `temporal.toml` profile, as the
//! `temporal` CLI would; and over mTLS, configured only through the SDK's
//! `TEMPORAL_TLS_*_PATH` variables, behind a proxy that refuses clients without a certificate.
//! A gateway process writes one access-log line per call, with its request id and caller.

use std::path::Path;
use std::time::{Duration, Instant};

use restock_proto::v1::{
    ListReplenishmentsRequest, Outcome, replenishment_service_client::ReplenishmentServiceClient,
    sales_service_client::SalesServiceClient,
};
use restock_testkit::process::{
    Procs, free_port, http_get, sales_client, sell_one, wait_for, wait_healthy,
};
use restock_testkit::temporal::DevServer;
use restock_testkit::{Backend, TEST_CALLBACK_SECRET, TestDb, buy_one, one_unit};

const PRODUCTS: usize = 12;
const STOCK: i64 = 10;

fn restock() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_restock"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_two_workers_one_temporal() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let store = db.store().await;
    for i in 0..PRODUCTS {
        store
            .upsert_product(&restock_testkit::product(
                &format!("TOPO-{i}"),
                STOCK,
                0,
                STOCK,
            ))
            .await
            .unwrap();
    }
    let temporal = DevServer::start().await;
    let logs = tempfile::tempdir().unwrap();
    let factory = free_port();
    let gateways = [(free_port(), free_port()), (free_port(), free_port())];
    let worker_metrics = [free_port(), free_port()];
    let config = logs.path().join("temporal.toml");
    std::fs::write(
        &config,
        format!(
            "[profile.default]\naddress = \"127.0.0.1:1\"\n\n[profile.shop]\naddress = \"{}\"\nnamespace = \"default\"\n",
            temporal.address
        ),
    )
    .unwrap();
    assert!(!temporal.address.ends_with(":7233"));
    let common = vec![
        ("RESTOCK_DATABASE_URL", db.url.clone()),
        ("TEMPORAL_CONFIG_FILE", config.display().to_string()),
        ("TEMPORAL_PROFILE", "shop".to_owned()),
        ("RESTOCK_CALLBACK_SECRET", TEST_CALLBACK_SECRET.to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut procs = Procs::new(restock(), logs.path());
    procs.factory(factory, 750, &common);
    for (i, &ports) in gateways.iter().enumerate() {
        let flags = [
            "--activity-timeout-secs=5",
            "--retry-max-interval-secs=2",
            "--relay-sweep-secs=1",
        ];
        procs.gateway(&format!("gateway-{i}"), ports, &flags, &common);
    }
    for (i, metrics) in worker_metrics.iter().enumerate() {
        // Callbacks go to the first gateway (either would do: both verify the same secret).
        let metrics = format!("--metrics-addr=127.0.0.1:{metrics}");
        let flags = [metrics.as_str(), "--shutdown-grace-secs=1"];
        procs.worker(
            &format!("worker-{i}"),
            (factory, gateways[0].1),
            &flags,
            &common,
        );
    }
    for (_, http) in gateways {
        wait_healthy(http, Duration::from_secs(60)).await;
    }

    // 32 clients, alternating gateways, buy every product until it is out of stock.
    let mut tasks = Vec::new();
    for c in 0..32usize {
        let (grpc, _) = gateways[c % 2];
        tasks.push(tokio::spawn(async move {
            let mut sales = SalesServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                .await
                .unwrap();
            let mut sold = vec![0i64; PRODUCTS];
            let mut open: Vec<usize> = (0..PRODUCTS).collect();
            let mut turn = c;
            while !open.is_empty() {
                turn = (turn + 1) % open.len();
                let product = open[turn];
                let reply = buy_one(&mut sales, &format!("TOPO-{product}")).await;
                match reply.outcome() {
                    Outcome::Sold => sold[product] += 1,
                    _ => {
                        open.retain(|p| *p != product);
                    }
                }
            }
            sold
        }));
    }
    let mut sold = vec![0i64; PRODUCTS];
    for t in tasks {
        for (total, n) in sold.iter_mut().zip(t.await.unwrap()) {
            *total += n;
        }
    }
    assert_eq!(sold, vec![STOCK; PRODUCTS], "units sold per product");

    // Once the factory has every order, kill one worker (SIGKILL) while the workflows wait.
    let orders_url = format!("http://127.0.0.1:{factory}/simulator/orders");
    wait_for(
        "all factory orders placed",
        Duration::from_secs(90),
        || async {
            http_get(&orders_url)
                .await
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["total"].as_u64() == Some(PRODUCTS as u64))
        },
    )
    .await;
    procs.kill_9("worker-0");

    // The other worker finishes everything.
    let mut api =
        ReplenishmentServiceClient::connect(format!("http://127.0.0.1:{}", gateways[1].0))
            .await
            .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let completed = api
            .list_replenishments(ListReplenishmentsRequest {
                page_size: 500,
                state: "Completed".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .replenishments
            .len();
        if completed == PRODUCTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{completed} of {PRODUCTS} replenishments completed; logs in {}",
            logs.path().display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let orders: serde_json::Value =
        serde_json::from_str(&http_get(&orders_url).await.unwrap()).unwrap();
    assert_eq!(orders["total"].as_u64(), Some(PRODUCTS as u64), "{orders}");
    for count in orders["orders_by_group"].as_object().unwrap().values() {
        assert_eq!(count.as_u64(), Some(1), "an order placed twice: {orders}");
    }
    for i in 0..PRODUCTS {
        let sku = format!("TOPO-{i}");
        assert_eq!(
            restock_testkit::product_of(&store, &sku).await.stock,
            STOCK,
            "{sku}"
        );
        assert_eq!(store.stock_receipts(&sku).await.unwrap().len(), 1, "{sku}");
        let runs = temporal.temporal_cli_ok(&[
            "workflow",
            "count",
            "--query",
            // A request that reached the run after its stock read adds one more run, which
            // reads the stock again and ends NotNeeded: one run that replenished.
            &format!("WorkflowId = 'replenish-{sku}' AND RestockState != 'NotNeeded'"),
        ]);
        assert!(runs.contains("Total: 1"), "{sku}: {runs}");
    }
    // The surviving worker exports the Temporal SDK's metrics.
    let metrics = http_get(&format!("http://127.0.0.1:{}/metrics", worker_metrics[1]))
        .await
        .unwrap();
    assert!(metrics.contains("temporal_"), "{metrics}");
}

/// Certificates for one mTLS test: a CA, the server's (for 127.0.0.1) and a client's, as PEM
/// files in `dir`.
struct TestPki {
    ca: std::path::PathBuf,
    server_cert: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

impl TestPki {
    fn new(dir: &Path) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>, usage| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let server = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(vec!["restock".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server.0),
            server_key: write("server.key", &server.1),
            client_cert: write("client.pem", &client.0),
            client_key: write("client.key", &client.1),
        }
    }
}

/// A TLS front for a plaintext Temporal dev server (which serves no TLS itself): it demands a
/// client certificate signed by the test CA, offers HTTP/2, and copies bytes to `upstream`.
/// Returns its port and the count of clients that presented a valid certificate.
async fn mtls_proxy(
    pki: &TestPki,
    upstream: String,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pki.ca).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_file(&pki.server_cert).unwrap()],
            PrivateKeyDer::from_pem_file(&pki.server_key).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let verified = Arc::new(AtomicUsize::new(0));
    let count = verified.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, upstream, count) = (acceptor.clone(), upstream.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                if tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty())
                {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                if let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (port, verified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_and_worker_reach_temporal_over_mtls_from_the_sdk_variables_alone() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let store = db.store().await;
    let sku = "MTLS-1";
    store
        .upsert_product(&restock_testkit::product(sku, 2, 0, 5))
        .await
        .unwrap();
    let temporal = DevServer::start().await;
    let logs = tempfile::tempdir().unwrap();
    let pki = TestPki::new(logs.path());
    let (proxy, verified) = mtls_proxy(&pki, temporal.address.clone()).await;

    // Without a client certificate the proxy lets no one through.
    let anonymous = restock_workflows::client::TemporalEndpoint {
        address: format!("127.0.0.1:{proxy}"),
        namespace: temporal.namespace.clone(),
        tls: Some(restock_workflows::client::TemporalTls {
            server_ca_pem: Some(std::fs::read(&pki.ca).unwrap()),
            server_name: None,
            client_cert_pem: None,
        }),
        api_key: None,
    };
    let attempt = tokio::time::timeout(
        Duration::from_secs(30),
        restock_workflows::client::connect(&anonymous),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "connected without a client certificate"
    );
    assert_eq!(verified.load(std::sync::atomic::Ordering::SeqCst), 0);

    let (factory, grpc, http) = (free_port(), free_port(), free_port());
    // The SDK's own variable names, and nothing else about Temporal.
    let env = vec![
        ("RESTOCK_DATABASE_URL", db.url.clone()),
        ("TEMPORAL_ADDRESS", format!("127.0.0.1:{proxy}")),
        (
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
            pki.ca.display().to_string(),
        ),
        (
            "TEMPORAL_TLS_CLIENT_CERT_PATH",
            pki.client_cert.display().to_string(),
        ),
        (
            "TEMPORAL_TLS_CLIENT_KEY_PATH",
            pki.client_key.display().to_string(),
        ),
        ("RESTOCK_CALLBACK_SECRET", TEST_CALLBACK_SECRET.to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut procs = Procs::new(restock(), logs.path());
    procs.factory(factory, 200, &env);
    procs.gateway("gateway", (grpc, http), &["--relay-sweep-secs=1"], &env);
    procs.worker(
        "worker",
        (factory, http),
        &["--shutdown-grace-secs=1"],
        &env,
    );
    wait_healthy(http, Duration::from_secs(60)).await;
    let mut sales = sales_client(grpc).await;
    for _ in 0..2 {
        sell_one(&mut sales, sku).await;
    }
    // Sold out: the replenishment runs through the proxy, ordered and restocked once.
    let restocked = async || {
        store
            .stock_receipts(sku)
            .await
            .is_ok_and(|receipts| receipts.len() == 1)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !restocked().await {
        assert!(
            Instant::now() < deadline,
            "not restocked over mTLS; logs in {}",
            logs.path().display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(restock_testkit::product_of(&store, sku).await.stock, 5);
    // Both the gateway (starting the run) and the worker (running it) came through the proxy.
    assert!(
        verified.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "clients with a certificate: {verified:?}"
    );
}

/// One access-log line per call, from the gateway process as an operator reads its log: the
/// method, the gRPC status, the latency, the caller's request id and token name; a refused
/// call too; never the token itself.
#[tokio::test]
async fn the_gateway_logs_one_access_line_per_call() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let store = db.store().await;
    store
        .upsert_product(&restock_testkit::product("LOG-1", 5, 0, 5))
        .await
        .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let token = "s3cret-token-value-for-the-shop";
    let mut procs = Procs::new(restock(), logs.path());
    procs.gateway(
        "gateway",
        (grpc, http),
        &[],
        &[
            ("RESTOCK_DATABASE_URL", db.url.clone()),
            // Sales go on without Temporal; nothing listens there.
            ("TEMPORAL_ADDRESS", "127.0.0.1:1".to_owned()),
            ("RESTOCK_CALLBACK_SECRET", TEST_CALLBACK_SECRET.to_owned()),
            ("RESTOCK_API_TOKENS", format!("till-3:sales:{token}")),
            ("RUST_LOG", "info".to_owned()),
        ],
    );
    wait_healthy(http, Duration::from_secs(60)).await;
    let mut sales = sales_client(grpc).await;
    let call = |token: &str, id: &str| {
        let mut request = tonic::Request::new(one_unit("LOG-1"));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
            .metadata_mut()
            .insert("x-request-id", id.parse().unwrap());
        request
    };
    let sold = sales.purchase(call(token, "req-sold-1")).await.unwrap();
    assert_eq!(
        sold.metadata().get("x-request-id").unwrap(),
        "req-sold-1",
        "the id is echoed"
    );
    let refused = sales
        .purchase(call("wrong-token", "req-refused-2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let log_path = logs.path().join("gateway.log");
    let line_of = |id: &str| {
        let log = std::fs::read_to_string(&log_path).unwrap();
        log.lines()
            .filter(|l| l.contains(id) && l.contains("restock::access"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_for("the access lines", Duration::from_secs(10), || async {
        !line_of("req-sold-1").is_empty() && !line_of("req-refused-2").is_empty()
    })
    .await;
    let sold_lines = line_of("req-sold-1");
    assert_eq!(sold_lines.len(), 1, "{sold_lines:?}");
    for part in [
        "/restock.v1.SalesService/Purchase",
        "caller=till-3",
        "grpc=Ok",
        "status=200",
        "latency_ms=",
    ] {
        assert!(
            sold_lines[0].contains(part),
            "{part} missing: {}",
            sold_lines[0]
        );
    }
    let refused_lines = line_of("req-refused-2");
    assert_eq!(refused_lines.len(), 1, "{refused_lines:?}");
    assert!(
        refused_lines[0].contains("grpc=Unauthenticated"),
        "{}",
        refused_lines[0]
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains(token), "the token is in the log");
}
