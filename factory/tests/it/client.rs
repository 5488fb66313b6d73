//! `FactoryClient` against hand-made factories that misbehave in ways the simulator does not.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use restock_factory::{FactoryClient, ManufactureRequest, OrderError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn client() -> FactoryClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    FactoryClient::new().unwrap()
}

fn order() -> ManufactureRequest {
    ManufactureRequest {
        group_id: "order-1".into(),
        product_id: "CP-502101".into(),
        product_count: "10".into(),
        factory_id: "FF-500293".into(),
        requester: "restock-worker".into(),
        callback_url: "http://127.0.0.1:8080/factory/callbacks/CP-502101/order-1?token=ab".into(),
    }
}

/// Serves `POST /api/manufactures` with a fixed response; returns the base URL.
async fn stub_factory(status: StatusCode, body: &'static str) -> String {
    let app = Router::new().route(
        "/api/manufactures",
        post(move || async move { (status, body).into_response() }),
    );
    serve(app).await
}

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base_url
}

#[tokio::test]
async fn sends_the_six_string_fields_as_json() {
    let (sender, mut received) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/legacy/api/manufactures",
        post(move |headers: HeaderMap, body: Bytes| {
            let sender = sender.clone();
            async move {
                let _ = sender.send((headers.get(header::CONTENT_TYPE).cloned(), body));
                (StatusCode::CREATED, r#"{"data": {"id": "f-1"}}"#).into_response()
            }
        }),
    );
    let base_url = serve(app).await;

    let placed = client()
        .place_order(&format!("{base_url}/legacy/"), &order())
        .await
        .unwrap();
    assert_eq!(placed.factory_reference, "f-1");

    let (content_type, body) = received.recv().await.unwrap();
    assert_eq!(content_type.unwrap(), "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "MessageGroupId": "order-1",
            "MessageAttributeProductId": "CP-502101",
            "MessageAttributeProductCnt": "10",
            "MessageAttributeFactoryId": "FF-500293",
            "MessageAttributeRequester": "restock-worker",
            "CallbackUrl": "http://127.0.0.1:8080/factory/callbacks/CP-502101/order-1?token=ab",
        })
    );
}

#[tokio::test]
async fn accepts_200_with_extra_fields() {
    let base_url = stub_factory(
        StatusCode::OK,
        r#"{"status": "ok", "data": {"id": "abc-123", "reqestor": "x", "createdAt": 1, "data": null}}"#,
    )
    .await;
    let placed = client().place_order(&base_url, &order()).await.unwrap();
    assert_eq!(placed.factory_reference, "abc-123");
}

#[tokio::test]
async fn an_unreadable_success_is_ambiguous() {
    for body in ["<html>Created</html>", r#"{"data": {}}"#, ""] {
        let base_url = stub_factory(StatusCode::CREATED, body).await;
        let err = client().place_order(&base_url, &order()).await.unwrap_err();
        assert!(matches!(err, OrderError::Ambiguous(_)), "{body:?}: {err:?}");
    }
}

#[tokio::test]
async fn client_errors_are_rejected_with_a_truncated_body() {
    static LONG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| "e".repeat(5_000));
    let app = Router::new().route(
        "/api/manufactures",
        post(|| async { (StatusCode::UNPROCESSABLE_ENTITY, LONG.as_str()).into_response() }),
    );
    let base_url = serve(app).await;
    match client().place_order(&base_url, &order()).await {
        Err(OrderError::Rejected { status: 422, body }) => {
            assert!(body.chars().count() <= 501, "{}", body.len());
            assert!(body.starts_with("eee"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let base_url = stub_factory(StatusCode::INTERNAL_SERVER_ERROR, "boom").await;
    let err = client().place_order(&base_url, &order()).await.unwrap_err();
    assert_eq!(
        err,
        OrderError::ServerError {
            status: 500,
            body: "boom".into()
        }
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = Router::new().route(
        "/api/manufactures",
        post(|| async {
            Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, "/elsewhere")
                .body(axum::body::Body::empty())
                .unwrap()
        }),
    );
    let base_url = serve(app).await;
    let err = client().place_order(&base_url, &order()).await.unwrap_err();
    assert!(
        matches!(err, OrderError::Rejected { status: 307, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_connection_closed_after_the_request_is_ambiguous() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // Read the whole request (it ends with the JSON body's closing brace), then hang up.
        let mut request = Vec::new();
        let mut buffer = [0_u8; 4096];
        while !request.ends_with(b"}") {
            let read = socket.read(&mut buffer).await.unwrap();
            if read == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..read]);
        }
        drop(socket);
    });

    let err = client().place_order(&base_url, &order()).await.unwrap_err();
    assert!(matches!(err, OrderError::Ambiguous(_)), "{err:?}");
}
