//! The gRPC ecosystem's conventions, as other tools expect them: reflection in both versions
//! (v1 and v1alpha, which grpcurl and older clients still use), health that follows the
//! database (NOT_SERVING while it does not answer and from the start of shutdown), and errors
//! with google.rpc details (`ErrorInfo`, `BadRequest` naming the field, `RetryInfo`) read with
//! `tonic-types`.

use std::time::Duration;

use restock_gateway::GatewaySettings;
use restock_gateway::health::SERVICES;
use restock_inventory::{Store, StoreOptions};
use restock_proto::v1::{
    GetProductRequest, Outcome, Product, PurchaseRequest, UpsertProductRequest,
};
use restock_testkit::process::wait_until;
use restock_testkit::{
    Backend, FlakyProxy, TestDb, sales_only_settings, spawn_app, spawn_gateway_with, url_addr,
};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
use tonic_types::StatusExt;

/// One v1alpha reflection request, and its answer (tonic's reflection server answers an
/// unknown symbol with an error status on the stream, not with an `ErrorResponse`).
async fn try_reflect(
    channel: &Channel,
    request: MessageRequest,
) -> Result<MessageResponse, tonic::Status> {
    let mut client = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    Ok(answers
        .message()
        .await?
        .expect("one answer")
        .message_response
        .expect("an answer with a response"))
}

/// [`try_reflect`] that must succeed.
async fn reflect(channel: &Channel, request: MessageRequest) -> MessageResponse {
    try_reflect(channel, request).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_lists_and_describes_the_services() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let channel = app.channel().await;

    let MessageResponse::ListServicesResponse(list) =
        reflect(&channel, MessageRequest::ListServices(String::new())).await
    else {
        panic!("ListServices did not answer with a list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "restock.v1.InventoryService",
            "restock.v1.ReplenishmentService",
            "restock.v1.SalesService",
        ]
    );

    // "describe": the file that declares a method, with the method in it.
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &channel,
        MessageRequest::FileContainingSymbol("restock.v1.SalesService.Purchase".to_owned()),
    )
    .await
    else {
        panic!("FileContainingSymbol did not answer with file descriptors");
    };
    let files: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost::Message::decode(bytes.as_slice()).unwrap())
        .collect();
    let sales = files
        .iter()
        .find(|f| f.service.iter().any(|s| s.name() == "SalesService"))
        .unwrap_or_else(|| panic!("no file declares SalesService: {files:?}"));
    assert_eq!(sales.package(), "restock.v1");
    let service = sales
        .service
        .iter()
        .find(|s| s.name() == "SalesService")
        .unwrap();
    let purchase = service
        .method
        .iter()
        .find(|m| m.name() == "Purchase")
        .expect("SalesService.Purchase described");
    assert_eq!(purchase.input_type(), ".restock.v1.PurchaseRequest");

    // An unknown symbol is not found.
    let unknown = try_reflect(
        &channel,
        MessageRequest::FileContainingSymbol("restock.v1.NoSuchService".to_owned()),
    )
    .await;
    assert!(
        matches!(&unknown, Err(status) if status.code() == Code::NotFound),
        "{unknown:?}"
    );
    app.stop().await;
}

/// The status of `service`.
async fn status(health: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let reply = health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    reply.status()
}

/// Waits until every service of [`SERVICES`] reports `want`; fails after a generous deadline
/// (this checks that the status changes, not how fast).
async fn wait_for_all(health: &mut HealthClient<Channel>, want: ServingStatus) {
    let health = &*health;
    let all = wait_until(
        &format!("health {want:?} for all services"),
        Duration::from_secs(60),
        &mut [],
        || async {
            let mut now = Vec::new();
            for service in SERVICES {
                now.push((service, status(&mut health.clone(), service).await));
            }
            if now.iter().all(|(_, s)| *s == want) {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .await;
    if let Err(e) = all {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    db.store().await; // migrate + demo catalogue directly
    let proxy = FlakyProxy::start(url_addr(&db.url)).await;
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let store = Store::connect(&proxy.url_through(&db.url), &options)
        .await
        .unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = GatewaySettings {
        health_check_interval: Duration::from_millis(200),
        ..sales_only_settings()
    };
    let app = spawn_gateway_with(db, store, grpc, http, settings);
    let channel = app.channel().await;
    let mut health = HealthClient::new(channel.clone());
    for service in SERVICES {
        assert_eq!(
            status(&mut health, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }

    // Sales work, then the database goes: NOT_SERVING, and a sale is refused with a reason
    // and a retry delay.
    let mut sales =
        restock_proto::v1::sales_service_client::SalesServiceClient::new(channel.clone());
    let buy = PurchaseRequest {
        sku: restock_inventory::demo::DEMO_SKU.to_owned(),
        quantity: 1,
        idempotency_key: String::new(),
        requester: "test".to_owned(),
    };
    let sold = sales.purchase(buy.clone()).await.unwrap().into_inner();
    assert_eq!(sold.outcome(), Outcome::Sold);
    proxy.take_down();
    wait_for_all(&mut health, ServingStatus::NotServing).await;
    restock_testkit::wait_out_ping_window().await;
    let err = sales.purchase(buy).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        reason_and_fields(&err),
        (
            "DATABASE_UNAVAILABLE".to_owned(),
            "restock".to_owned(),
            vec![]
        )
    );
    assert!(
        err.get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some_and(|d| d > Duration::ZERO),
        "{err:?}"
    );
    proxy.bring_up();
    wait_for_all(&mut health, ServingStatus::Serving).await;

    // Shutdown: a watcher sees NOT_SERVING before the server goes.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopped = tokio::spawn(app.stop());
    let next = watch
        .message()
        .await
        .unwrap()
        .expect("the watch ended without a NOT_SERVING");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    drop(health);
    drop(channel);
    stopped.await.unwrap();
}

/// The `ErrorInfo` reason and the fields a `BadRequest` names, as a client reads them.
fn reason_and_fields(status: &tonic::Status) -> (String, String, Vec<String>) {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo: {status:?}"));
    let fields = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    (info.reason.clone(), info.domain.clone(), fields)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_machine_readable_details() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let mut sales = app.sales().await;
    let buy = |sku: &str, quantity: u32| PurchaseRequest {
        sku: sku.to_owned(),
        quantity,
        idempotency_key: String::new(),
        requester: "test".to_owned(),
    };
    let sku = restock_inventory::demo::DEMO_SKU;
    for (request, field) in [
        (buy(sku, 0), "quantity"),
        (buy(sku, 10_001), "quantity"),
        (buy("CP 1", 1), "sku"),
        (buy("", 1), "sku"),
        (
            PurchaseRequest {
                idempotency_key: "a key".to_owned(),
                ..buy(sku, 1)
            },
            "idempotency_key",
        ),
    ] {
        let err = sales.purchase(request.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}: {err:?}");
        assert_eq!(
            reason_and_fields(&err),
            (
                "INVALID_ARGUMENT".to_owned(),
                "restock".to_owned(),
                vec![field.to_owned()]
            ),
            "{request:?}"
        );
        let violation = &err.get_details_bad_request().unwrap().field_violations[0];
        assert!(
            violation.description.contains(field),
            "{request:?}: {violation:?}"
        );
    }

    // A field inside a message is named by its path.
    let mut inventory = app.inventory().await;
    let err = inventory
        .upsert_product(UpsertProductRequest {
            product: Some(Product {
                reorder_quantity: 0,
                ..super::new_product("NEW-1")
            }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason_and_fields(&err).2,
        ["product.reorder_quantity"],
        "{err:?}"
    );

    // Not found: a reason, no field.
    let err = inventory
        .get_product(GetProductRequest {
            sku: "NOPE-1".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        reason_and_fields(&err),
        ("NOT_FOUND".to_owned(), "restock".to_owned(), vec![])
    );
    app.stop().await;
}

/// A sku is checked once, where it enters: every call that names one refuses a bad one with
/// INVALID_ARGUMENT naming the field (the ListProducts page token too), and so does a
/// correctly signed factory callback (and an order id longer than any, where one is asked
/// for); nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sku_is_refused_where_it_enters_and_changes_nothing() {
    use restock_proto::v1::replenishment_service_client::ReplenishmentServiceClient;
    use restock_proto::v1::{
        AdjustStockRequest, CancelReplenishmentRequest, CompleteFactoryOrderRequest,
        GetReplenishmentRequest, ListProductsRequest,
    };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let before = restock_inventory::demo::products();
    let stock_before = restock_testkit::product_of(&app.store, restock_inventory::demo::DEMO_SKU)
        .await
        .stock;
    let bad = "CP 1!";
    let mut inventory = app.inventory().await;
    let mut replenishments = ReplenishmentServiceClient::new(app.channel().await);
    let refusals: Vec<(&str, tonic::Status, &str)> = vec![
        (
            "GetProduct",
            inventory
                .get_product(GetProductRequest { sku: bad.into() })
                .await
                .unwrap_err(),
            "sku",
        ),
        (
            "AdjustStock",
            inventory
                .adjust_stock(AdjustStockRequest {
                    sku: bad.into(),
                    delta: 5,
                    reason: "stock-take".into(),
                })
                .await
                .unwrap_err(),
            "sku",
        ),
        (
            "UpsertProduct",
            inventory
                .upsert_product(UpsertProductRequest {
                    product: Some(super::new_product(bad)),
                    update_mask: None,
                })
                .await
                .unwrap_err(),
            "product.sku",
        ),
        (
            "ListProducts",
            inventory
                .list_products(ListProductsRequest {
                    page_size: 10,
                    page_token: bad.into(),
                })
                .await
                .unwrap_err(),
            "page_token",
        ),
        (
            "GetReplenishment",
            replenishments
                .get_replenishment(GetReplenishmentRequest {
                    sku: bad.into(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            "sku",
        ),
        (
            "GetReplenishment (order)",
            replenishments
                .get_replenishment(GetReplenishmentRequest {
                    sku: restock_inventory::demo::DEMO_SKU.into(),
                    factory_order_id: "x".repeat(129),
                })
                .await
                .unwrap_err(),
            "factory_order_id",
        ),
        (
            "CompleteFactoryOrder",
            replenishments
                .complete_factory_order(CompleteFactoryOrderRequest {
                    sku: bad.into(),
                    quantity: 10,
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            "sku",
        ),
        (
            "CancelReplenishment",
            replenishments
                .cancel_replenishment(CancelReplenishmentRequest {
                    sku: bad.into(),
                    reason: "test".into(),
                })
                .await
                .unwrap_err(),
            "sku",
        ),
    ];
    for (call, err, field) in refusals {
        assert_eq!(err.code(), Code::InvalidArgument, "{call}: {err:?}");
        assert_eq!(reason_and_fields(&err).2, [field], "{call}: {err:?}");
    }

    // A signed callback for a bad sku (only a leaked secret could make one) is refused too.
    let signer =
        restock_factory::callback::CallbackSigner::new(restock_testkit::TEST_CALLBACK_SECRET)
            .unwrap();
    let url = signer.url(&format!("http://{}", app.http_addr), "bad!sku", "order-1");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("sku"));

    // Nothing changed: the catalogue, the stock, no audit record, no delivery.
    let after: Vec<String> = app
        .store
        .list_products(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.product.sku)
        .collect();
    let mut expected: Vec<String> = before.into_iter().map(|p| p.sku.into()).collect();
    expected.sort();
    assert_eq!(after, expected);
    assert_eq!(
        restock_testkit::product_of(&app.store, restock_inventory::demo::DEMO_SKU)
            .await
            .stock,
        stock_before
    );
    assert!(
        app.store
            .audit_trail(restock_inventory::demo::DEMO_SKU)
            .await
            .unwrap()
            .is_empty()
    );
    let deliveries = {
        use sea_orm::{EntityTrait, PaginatorTrait};
        restock_inventory::entity::factory_delivery::Entity::find()
            .count(app.store.connection())
            .await
            .unwrap()
    };
    assert_eq!(deliveries, 0);
    app.stop().await;
}
