//! Who may change stock: every call × credential (none, wrong, sales, admin) gives its
//! documented code and refused calls change nothing; the audit trail records who adjusted
//! stock; a TLS gateway serves a client that trusts its certificate and refuses plaintext, and
//! clients that never finish their TLS handshake do not hold up anyone else; a gateway without
//! tokens will not serve gRPC beyond loopback. [`grpc_conventions`]: what the open services
//! (reflection, health) answer.

#[path = "security/grpc_conventions.rs"]
mod grpc_conventions;

use restock_gateway::{ApiTokens, GatewaySettings, RelaySettings, TlsSettings};
use restock_proto::v1::{
    AdjustStockRequest, CancelReplenishmentRequest, CompleteFactoryOrderRequest, Factory,
    GetProductRequest, GetReplenishmentRequest, ListFactoriesRequest, ListProductsRequest,
    ListReplenishmentsRequest, Product, PurchaseRequest, UpsertFactoryRequest,
    UpsertProductRequest, inventory_service_client::InventoryServiceClient,
    replenishment_service_client::ReplenishmentServiceClient,
    sales_service_client::SalesServiceClient,
};
use restock_testkit::{Backend, TEST_CALLBACK_SECRET, TestApp, TestDb, spawn_gateway_with};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;

const SALES_TOKEN: &str = "sales-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

/// A certificate for `localhost` signed by itself, and the gateway's TLS settings with it
/// (rustls's provider installed for the test's clients).
fn self_signed() -> (rcgen::CertifiedKey, TlsSettings) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = TlsSettings {
        cert_pem: cert.cert.pem().into_bytes(),
        key_pem: cert.key_pair.serialize_pem().into_bytes(),
    };
    (cert, tls)
}

fn settings(tls: Option<TlsSettings>) -> GatewaySettings {
    GatewaySettings {
        temporal: None,
        signer: restock_factory::callback::CallbackSigner::new(TEST_CALLBACK_SECRET).unwrap(),
        relay: RelaySettings::default(),
        tokens: ApiTokens::parse(&format!(
            "till-7:sales:{SALES_TOKEN},ops-anna:admin:{ADMIN_TOKEN}"
        ))
        .unwrap(),
        tls,
        health_check_interval: restock_gateway::DEFAULT_HEALTH_CHECK_INTERVAL,
    }
}

async fn spawn(tls: Option<TlsSettings>) -> TestApp {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let store = db.store().await;
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_gateway_with(db, store, grpc, http, settings(tls))
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// A new product for UpsertProduct (sku as given, the demo factory).
fn new_product(sku: &str) -> Product {
    Product {
        sku: sku.into(),
        name: "new".into(),
        price: 100,
        stock: 5,
        reorder_point: 0,
        reorder_quantity: 10,
        factory_id: restock_inventory::demo::DEMO_FACTORY.into(),
        ad_active: true,
        ..Default::default()
    }
}

/// Makes one call of the named RPC and returns its code.
async fn call(channel: &Channel, rpc: &str, token: Option<&str>) -> Code {
    let sku = restock_inventory::demo::DEMO_SKU.to_owned();
    let mut sales = SalesServiceClient::new(channel.clone());
    let mut inventory = InventoryServiceClient::new(channel.clone());
    let mut replenishments = ReplenishmentServiceClient::new(channel.clone());
    // `client.method(message)` with the token, reduced to its status code.
    macro_rules! code {
        ($client:ident . $method:ident ( $message:expr )) => {
            $client
                .$method(with_token($message, token))
                .await
                .err()
                .map(|s| s.code())
                .unwrap_or(Code::Ok)
        };
    }
    match rpc {
        "Purchase" => code!(sales.purchase(PurchaseRequest {
            sku,
            quantity: 1,
            ..Default::default()
        })),
        "GetProduct" => code!(inventory.get_product(GetProductRequest { sku })),
        "ListProducts" => code!(inventory.list_products(ListProductsRequest::default())),
        "UpsertProduct" => code!(inventory.upsert_product(UpsertProductRequest {
            product: Some(new_product("NEW-1")),
            update_mask: None,
        })),
        "AdjustStock" => code!(inventory.adjust_stock(AdjustStockRequest {
            sku,
            delta: 5,
            reason: "stock-take".into(),
        })),
        "GetReplenishment" => {
            code!(replenishments.get_replenishment(GetReplenishmentRequest {
                sku,
                ..Default::default()
            }))
        }
        "ListReplenishments" => {
            code!(replenishments.list_replenishments(ListReplenishmentsRequest::default()))
        }
        "CompleteFactoryOrder" => {
            code!(
                replenishments.complete_factory_order(CompleteFactoryOrderRequest {
                    sku,
                    quantity: 0,
                    ..Default::default()
                })
            )
        }
        "CancelReplenishment" => {
            code!(
                replenishments.cancel_replenishment(CancelReplenishmentRequest {
                    sku,
                    reason: "x".into(),
                })
            )
        }
        "ListFactories" => code!(inventory.list_factories(ListFactoriesRequest {})),
        "UpsertFactory" => code!(inventory.upsert_factory(UpsertFactoryRequest {
            factory: Some(Factory {
                id: "FF-SEC".into(),
                name: "sec".into(),
                manager_email: "sec@works.example".into(),
                api_url: String::new(),
            }),
        })),
        other => panic!("unknown rpc {other}"),
    }
}

const SALES_RPCS: [&str; 4] = ["Purchase", "GetProduct", "ListProducts", "ListFactories"];
const ADMIN_RPCS: [&str; 7] = [
    "UpsertProduct",
    "UpsertFactory",
    "AdjustStock",
    "GetReplenishment",
    "ListReplenishments",
    "CompleteFactoryOrder",
    "CancelReplenishment",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_by_credential() {
    let app = spawn(None).await;
    let channel = app.channel().await;
    let wrong = Some("wrong-token-0123456789abcdef");
    for rpc in SALES_RPCS.iter().chain(ADMIN_RPCS.iter()) {
        let before = restock_testkit::store_snapshot(&app.store).await;
        assert_eq!(
            call(&channel, rpc, None).await,
            Code::Unauthenticated,
            "{rpc} without a token"
        );
        assert_eq!(
            call(&channel, rpc, wrong).await,
            Code::Unauthenticated,
            "{rpc} with a wrong token"
        );
        if ADMIN_RPCS.contains(rpc) {
            assert_eq!(
                call(&channel, rpc, Some(SALES_TOKEN)).await,
                Code::PermissionDenied,
                "{rpc} with a sales token"
            );
        }
        assert_eq!(
            restock_testkit::store_snapshot(&app.store).await,
            before,
            "a refused {rpc} changed something"
        );
    }
    // Allowed calls get past authentication (this gateway has no Temporal: replenishment
    // calls answer from the read model or UNAVAILABLE, never an auth error).
    for rpc in SALES_RPCS {
        assert_eq!(
            call(&channel, rpc, Some(SALES_TOKEN)).await,
            Code::Ok,
            "{rpc} with sales"
        );
    }
    for rpc in SALES_RPCS.iter().chain(ADMIN_RPCS.iter()) {
        let code = call(&channel, rpc, Some(ADMIN_TOKEN)).await;
        assert!(
            ![Code::Unauthenticated, Code::PermissionDenied].contains(&code),
            "{rpc} with admin: {code:?}"
        );
    }
    // The audit trail names the admin who adjusted stock, and why.
    let trail = app
        .store
        .audit_trail(restock_inventory::demo::DEMO_SKU)
        .await
        .unwrap();
    let adjust = trail.iter().find(|a| a.action == "adjust_stock").unwrap();
    assert_eq!(adjust.actor, "ops-anna");
    assert_eq!(adjust.reason, "stock-take");
    assert!(adjust.detail.contains("delta=+5"), "{}", adjust.detail);

    // Health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_gateway_serves_trusting_clients_and_refuses_plaintext() {
    let (cert, tls) = self_signed();
    let app = spawn(Some(tls)).await;
    let port = app.grpc_addr.port();

    let trusted = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert.cert.pem()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(trusted)
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        call(&channel, "Purchase", Some(SALES_TOKEN)).await,
        Code::Ok
    );

    // A plaintext client gets nowhere.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let code = call(&plain, "Purchase", Some(SALES_TOKEN)).await;
        assert_ne!(
            code,
            Code::Ok,
            "a plaintext call succeeded against a TLS gateway"
        );
    }

    // The HTTP listener speaks TLS too.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = http
        .get(format!(
            "https://localhost:{}/healthz",
            app.http_addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    // The console works over it: the page, and its API with a token (a sales token may look).
    let console = format!("https://localhost:{}", app.http_addr.port());
    let page = http.get(format!("{console}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("/console/console.js"));
    let whoami = http
        .get(format!("{console}/api/console/whoami"))
        .bearer_auth(SALES_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status().as_u16(), 200);
    assert!(whoami.text().await.unwrap().contains("till-7"));
    let plain_http = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.http_addr.port()))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain_http.is_err() || !plain_http.unwrap().status().is_success());
    app.stop().await;
}

/// Clients that open a TCP connection to the HTTPS listener and never start their handshake
/// do not delay anyone else: each handshake runs on its own (the timeout is 10 s, so handshakes
/// done one at a time inside `accept` made this request wait 30 s behind three of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_clients_do_not_block_the_https_listener() {
    let (cert, tls) = self_signed();
    let app = spawn(Some(tls)).await;
    let port = app.http_addr.port();

    // Five clients connect, send nothing and stay connected, queued ahead of the real one.
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let health = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        http.get(format!("https://localhost:{port}/healthz")).send(),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "GET /healthz over TLS got no answer in {:?} behind 5 silent clients",
            started.elapsed()
        )
    })
    .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    drop(silent);
    app.stop().await;
}

#[tokio::test]
async fn no_tokens_means_loopback_only() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let store = db.store().await;
    let grpc = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = GatewaySettings {
        tokens: ApiTokens::default(),
        ..settings(None)
    };
    let err = restock_gateway::run(grpc, http, store, open, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("without API tokens"), "{err}");
    assert!(err.contains("RESTOCK_API_TOKENS"), "{err}");
}

/// Without tokens the console, like gRPC, is for this machine only: a peer reaching the HTTP
/// listener on a non-loopback address gets 403 for the page and its API, while the factory's
/// callbacks and health stay reachable there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_console_is_served_to_loopback_only() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // This machine's own non-loopback address (no packet is sent: UDP connect picks a route).
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let outside_ip = probe
        .connect("192.0.2.255:9")
        .or_else(|_| probe.connect("10.255.255.255:9"))
        .ok()
        .and_then(|()| probe.local_addr().ok())
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    let Some(outside_ip) = outside_ip else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI machines have a non-loopback address: this test must run there"
        );
        eprintln!("SKIPPED: this machine has no non-loopback IPv4 address to call from");
        return;
    };
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let store = db.store().await;
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = http.local_addr().unwrap().port();
    let open = GatewaySettings {
        tokens: ApiTokens::default(),
        ..settings(None)
    };
    let app = spawn_gateway_with(db, store, grpc, http, open);
    let client = reqwest::Client::new();
    let status = |host: String, path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{host}:{port}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let outside = outside_ip.to_string();
    assert_eq!(status(outside.clone(), "/").await, 403);
    assert_eq!(status(outside.clone(), "/api/console/snapshot").await, 403);
    assert_eq!(status(outside.clone(), "/healthz").await, 200);
    assert_eq!(status("127.0.0.1".into(), "/").await, 200);
    assert_eq!(
        status("127.0.0.1".into(), "/api/console/snapshot").await,
        200
    );
    app.stop().await;
}
