//! Migrations on SQLite, PostgreSQL and MariaDB: they run twice without error, and the schema
//! itself refuses negative stock (the CHECK constraint) and a second pending intent per product.

use restock_inventory::{Store, StoreOptions};
use restock_testkit::{Backend, TestDb};
use sea_orm::ConnectionTrait;

async fn migrations_run_twice_and_guard_the_data(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .unwrap();
    assert!(store.pending_migrations().await.unwrap() >= 2);
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
    restock_inventory::demo::load(&store).await.unwrap();
    restock_inventory::demo::load(&store).await.unwrap();

    let conn = store.connection();
    let exec = |sql: &'static str| conn.execute_unprepared(sql);
    let negative = exec("UPDATE products SET stock = -1 WHERE sku = 'CP-502101'").await;
    assert!(negative.is_err(), "the schema accepted negative stock");
    exec("INSERT INTO replenish_outbox (sku, reason, requested_at, attempts) VALUES ('CP-502101', 'test', 0, 0)")
        .await
        .unwrap();
    let second = exec("INSERT INTO replenish_outbox (sku, reason, requested_at, attempts) VALUES ('CP-502101', 'test', 0, 0)").await;
    assert!(second.is_err(), "two pending intents for one product");
    assert_eq!(
        restock_testkit::product_of(&store, "CP-502101").await.stock,
        3
    );
}

restock_testkit::on_three_databases! {
    migrations => migrations_run_twice_and_guard_the_data;
}
