//! The catalogue through real gRPC on a port-0 gateway, on SQLite, PostgreSQL and MariaDB: a
//! product may not be given a reorder quantity the legacy factory would refuse to produce
//! (INVALID_ARGUMENT naming the limit, nothing written), and the factory's maximum itself is
//! accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use restock_inventory::entity::{audit_log, product};
use restock_proto::v1::{GetProductRequest, Product, UpsertProductRequest};
use restock_testkit::{Backend, spawn_app};
use sea_orm::EntityTrait;
use tonic::Code;

/// The legacy factory's largest order (`MessageAttributeProductCnt`).
const FACTORY_MAX: i64 = restock_factory::wire::MAX_QUANTITY as i64;

async fn reorder_quantity_is_capped_at_the_factory_maximum(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut inventory = app.inventory().await;
    let sku = restock_inventory::demo::DEMO_SKU;
    let get = |sku: &str| GetProductRequest {
        sku: sku.to_owned(),
    };
    let upsert = |product: Product| UpsertProductRequest {
        product: Some(product),
    };
    let snapshot = || async {
        let db = app.store.connection();
        format!(
            "{:?}{:?}",
            product::Entity::find().all(db).await.unwrap(),
            audit_log::Entity::find().all(db).await.unwrap(),
        )
    };
    let original = inventory.get_product(get(sku)).await.unwrap().into_inner();
    let before = snapshot().await;

    // One unit more than the factory makes in one order: refused, naming the limit.
    for target in [sku, "CP-NEW-1"] {
        let too_many = Product {
            sku: target.to_owned(),
            reorder_quantity: FACTORY_MAX + 1,
            ..original.clone()
        };
        let status = inventory
            .upsert_product(upsert(too_many))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(&FACTORY_MAX.to_string())
                && status.message().contains("factory"),
            "the message does not name the factory's limit: {:?}",
            status.message()
        );
    }
    assert_eq!(
        snapshot().await,
        before,
        "a refused upsert changed something"
    );
    assert_eq!(
        inventory.get_product(get(sku)).await.unwrap().into_inner(),
        original
    );
    assert_eq!(
        inventory
            .get_product(get("CP-NEW-1"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // The factory's maximum itself is a valid reorder quantity.
    let at_limit = Product {
        reorder_quantity: FACTORY_MAX,
        ..original.clone()
    };
    let saved = inventory
        .upsert_product(upsert(at_limit.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.reorder_quantity, FACTORY_MAX);
    assert_eq!(
        inventory.get_product(get(sku)).await.unwrap().into_inner(),
        at_limit
    );
    app.stop().await;
}

#[tokio::test]
async fn sqlite_reorder_quantity_is_capped_at_the_factory_maximum() {
    reorder_quantity_is_capped_at_the_factory_maximum(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_reorder_quantity_is_capped_at_the_factory_maximum() {
    reorder_quantity_is_capped_at_the_factory_maximum(Backend::Postgres).await;
}

#[tokio::test]
async fn mariadb_reorder_quantity_is_capped_at_the_factory_maximum() {
    reorder_quantity_is_capped_at_the_factory_maximum(Backend::MySql).await;
}
