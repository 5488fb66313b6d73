//! Grouped sales on SQLite, PostgreSQL and MariaDB when another transaction holds a product's
//! row: the group waits for it and sells from the stock that transaction left, never from the
//! stock it saw when it began (a lost update would add the other transaction's units back).

use restock_inventory::{PurchaseOutcome, PurchaseRequest, StoreOptions};
use restock_testkit::{Backend, TestDb};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use std::time::Duration;

restock_testkit::on_three_databases! {
    a_group_waiting_for_a_row_sells_from_its_newest_stock
        => a_group_waiting_for_a_row_sells_from_its_newest_stock;
}

/// The product another transaction changes while sales of it wait.
const HELD: &str = "HELD-1";
/// A product nobody holds, sold first so that the sales of [`HELD`] queue behind it and are
/// sold together.
const FREE: &str = "FREE-1";

/// The sales of [`HELD`] formed one group in every run tried (its transaction, or on
/// PostgreSQL its one statement, then waits for the row); when the machine is slow enough for
/// [`FREE`]'s sale to finish first, the first of them is sold alone and also waits. Either way
/// each must sell from the stock the other transaction left.
async fn a_group_waiting_for_a_row_sells_from_its_newest_stock(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // One lane: both products' purchases wait in the same queue, so the sales of HELD that
    // arrive while FREE's sale is in flight become one group.
    let store = db
        .store_with_options(&StoreOptions {
            purchase_lanes: 1,
            ..StoreOptions::default()
        })
        .await;
    for sku in [HELD, FREE] {
        store
            .upsert_product(&restock_testkit::product(sku, 100, 0, 10))
            .await
            .unwrap();
    }

    // Another client takes 10 units of HELD and keeps its transaction open a while.
    let other = Database::connect(&db.url).await.unwrap();
    let held = other.begin().await.unwrap();
    held.execute_unprepared(&format!(
        "UPDATE products SET stock = stock - 10 WHERE sku = '{HELD}'"
    ))
    .await
    .unwrap();

    let buy = |sku: &'static str, key: String| {
        let store = store.clone();
        tokio::spawn(async move {
            let request = PurchaseRequest::new(sku, 1, &key, "test").unwrap();
            store.purchase(&request).await
        })
    };
    let first = buy(FREE, "free-1".to_owned());
    let waiting: Vec<_> = (0..3).map(|i| buy(HELD, format!("held-{i}"))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.commit().await.unwrap();

    assert!(matches!(
        first.await.unwrap().unwrap(),
        PurchaseOutcome::Sold { .. }
    ));
    let mut left = Vec::new();
    for sale in waiting {
        match sale.await.unwrap().unwrap() {
            PurchaseOutcome::Sold {
                remaining_stock, ..
            } => left.push(remaining_stock),
            other => panic!("a sale of {HELD} was not sold: {other:?}"),
        }
    }
    left.sort_unstable();
    assert_eq!(
        left,
        vec![87, 88, 89],
        "each sale of {HELD} tells the stock it left after the other transaction's 10"
    );
    assert_eq!(restock_testkit::product_of(&store, HELD).await.stock, 87);
    assert_eq!(restock_testkit::product_of(&store, FREE).await.stock, 99);
}
