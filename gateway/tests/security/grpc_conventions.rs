//! The gRPC ecosystem's conventions, as other tools expect them: reflection in both versions
//! (v1 and v1alpha, which grpcurl and older clients still use), and health that follows the
//! database (NOT_SERVING while it does not answer and from the start of shutdown).

use std::time::{Duration, Instant};

use restock_gateway::GatewaySettings;
use restock_gateway::health::SERVICES;
use restock_inventory::{Store, StoreOptions};
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut now = Vec::new();
        for service in SERVICES {
            now.push((service, status(health, service).await));
        }
        if now.iter().all(|(_, s)| *s == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health never became {want:?} for all services: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
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

    proxy.take_down();
    wait_for_all(&mut health, ServingStatus::NotServing).await;
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
