//! Property test over Purchase requests through real gRPC: no request panics the gateway, a
//! rejected request changes nothing, and an accepted one changes exactly what it says.

use proptest::prelude::*;
use restock_proto::v1::{Outcome, PurchaseRequest};
use restock_testkit::{Backend, spawn_app};

fn requests() -> impl Strategy<Value = PurchaseRequest> {
    let sku = prop_oneof![
        Just("CP-502101".to_owned()),
        Just("CP-502103".to_owned()),
        Just("NOPE-1".to_owned()),
        ".{0,80}",
        "[A-Za-z0-9._-]{0,70}",
    ];
    let quantity = prop_oneof![0u32..4, any::<u32>()];
    let key = prop_oneof![Just(String::new()), "[a-z0-9-]{1,20}", ".{0,200}"];
    let requester = prop_oneof![Just(String::new()), ".{0,150}"];
    (sku, quantity, key, requester).prop_map(|(sku, quantity, idempotency_key, requester)| {
        PurchaseRequest {
            sku,
            quantity,
            idempotency_key,
            requester,
        }
    })
}

#[test]
fn arbitrary_purchases_change_nothing_unless_they_sell() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn_app(Backend::Sqlite)).unwrap();
    let client = runtime.block_on(app.sales());
    let mut config = ProptestConfig::with_cases(200);
    config.failure_persistence = None;
    proptest!(config, |(request in requests())| {
        runtime.block_on(async {
            let before = restock_testkit::store_snapshot(&app.store).await;
            // Arbitrary skus include invalid ones: no product, no stock.
            let stock_before = match restock_inventory::Sku::parse(&request.sku) {
                Ok(sku) => app.store.product(&sku).await.ok().map(|p| p.product.stock),
                Err(_) => None,
            };
            match client.clone().purchase(request.clone()).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    let stock_after = restock_testkit::product_of(&app.store, &request.sku).await.stock;
                    match reply.outcome() {
                        Outcome::Sold if reply.replayed => assert_eq!(stock_after, stock_before.unwrap()),
                        Outcome::Sold => assert_eq!(stock_after, stock_before.unwrap() - i64::from(request.quantity)),
                        Outcome::OutOfStock => assert_eq!(stock_after, stock_before.unwrap()),
                        Outcome::Unspecified => panic!("no outcome"),
                    }
                }
                Err(status) => {
                    assert!(!status.message().is_empty());
                    assert_eq!(restock_testkit::store_snapshot(&app.store).await, before, "rejected ({status:?}) yet changed");
                }
            }
        });
    });
    runtime.block_on(app.stop());
}
