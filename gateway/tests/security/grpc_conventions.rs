//! The gRPC ecosystem's conventions, as other tools expect them: reflection in both versions
//! (v1 and v1alpha, which grpcurl and older clients still use).

use restock_testkit::{Backend, spawn_app};
use tonic::Code;
use tonic::transport::Channel;
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
