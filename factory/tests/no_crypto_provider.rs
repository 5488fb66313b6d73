//! Without a rustls crypto provider, building a client is an error rather than reqwest's panic.
//! This file is its own test binary so that no other test has installed a provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use restock_factory::{ClientBuildError, FactoryClient, Simulator, SimulatorConfig};

#[tokio::test]
async fn missing_crypto_provider_is_reported_not_panicked() {
    assert!(matches!(
        FactoryClient::new(),
        Err(ClientBuildError::NoCryptoProvider)
    ));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = Simulator::run(listener, SimulatorConfig::default(), async {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("crypto provider"), "{err}");
}
