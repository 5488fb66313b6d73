//! The exactly-once writes of replenishment on SQLite, PostgreSQL and MariaDB: a factory
//! delivery is added to stock once however often (and however concurrently) it is repeated,
//! a factory order is claimed for sending by one caller only, and a notification is owed once.
//!
//! MariaDB is the one that matters: sqlx-mysql connects with `CLIENT_FOUND_ROWS`, so an
//! `INSERT ... ON DUPLICATE KEY UPDATE k = k` reports one affected row for a duplicate.

use restock_inventory::advertising::NotificationDue;
use restock_inventory::entity::factory_order::OrderStatus;
use restock_inventory::entity::notification::NotificationStatus;
use restock_inventory::{Received, SendDecision, Store, StoreError};
use restock_testkit::{Backend, TestDb};

const SKU: &str = "CP-502101";

restock_testkit::on_three_databases! {
    a_delivery_is_added_once => a_delivery_is_added_once;
    a_factory_order_is_sent_by_one_caller => a_factory_order_is_sent_by_one_caller;
    a_notification_is_owed_once => a_notification_is_owed_once;
}

async fn stock(store: &Store) -> i64 {
    restock_testkit::product_of(store, SKU).await.stock
}

/// Receives 7 units of [`SKU`] for `order`, as the replenishment's increment does.
async fn receive(store: &Store, order: &str) -> Result<Received, StoreError> {
    store
        .receive_stock(order, &restock_testkit::sku(SKU), 7, "replenish-CP-502101")
        .await
}

async fn a_delivery_is_added_once(backend: Backend) {
    let Some((_db, store)) = TestDb::with_store(backend).await else {
        return;
    };
    let before = stock(&store).await;

    let first = receive(&store, "order-1").await.unwrap();
    assert!(first.applied, "the first delivery was not applied");
    assert_eq!(first.stock, before + 7);

    let again = receive(&store, "order-1").await.unwrap();
    assert!(!again.applied, "a repeated delivery was applied again");
    assert_eq!(again.stock, before + 7, "a repeated delivery added stock");
    assert_eq!(stock(&store).await, before + 7);
    assert_eq!(store.stock_receipts(SKU).await.unwrap().len(), 1);

    // Eight retries of another delivery at once: one applies it, seven find it applied.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { receive(&store, "order-2").await })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        let received = task.await.unwrap().unwrap();
        if received.applied {
            applied += 1;
        }
        assert!(received.stock >= before + 14, "{received:?}");
    }
    assert_eq!(
        applied, 1,
        "{applied} concurrent calls applied one delivery"
    );
    assert_eq!(stock(&store).await, before + 14);
    let receipts = store.stock_receipts(SKU).await.unwrap();
    assert_eq!(receipts.len(), 2);
    assert!(receipts.iter().all(|r| r.quantity == 7));
}

async fn a_factory_order_is_sent_by_one_caller(backend: Backend) {
    let Some((_db, store)) = TestDb::with_store(backend).await else {
        return;
    };
    let factory = restock_inventory::demo::DEMO_FACTORY;
    let begin = |store: Store| async move {
        store
            .begin_factory_order("order-1", SKU, 10, factory)
            .await
            .unwrap()
    };
    let finish =
        |status: OrderStatus, reference: Option<&'static str>, error: Option<&'static str>| {
            let store = store.clone();
            async move {
                store
                    .finish_factory_order("order-1", status, reference, error)
                    .await
                    .unwrap()
            }
        };

    // Concurrent first attempts: exactly one may send.
    let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(begin(store.clone()))).collect();
    let mut sends = 0;
    for task in tasks {
        if let SendDecision::Send { attempt } = task.await.unwrap() {
            assert_eq!(attempt, 1);
            sends += 1;
        }
    }
    assert_eq!(sends, 1, "{sends} callers were told to send one order");

    // Certainly not placed: it may be sent again, as attempt 2.
    finish(OrderStatus::NotPlaced, None, Some("refused")).await;
    assert_eq!(
        begin(store.clone()).await,
        SendDecision::Send { attempt: 2 }
    );
    // Accepted (the status is set to what it already was first: matched, not changed).
    finish(OrderStatus::Accepted, Some("F-1"), None).await;
    finish(OrderStatus::Accepted, Some("F-1"), None).await;
    assert_eq!(
        begin(store.clone()).await,
        SendDecision::AlreadyAccepted {
            factory_reference: Some("F-1".to_owned())
        }
    );
    let order = store.factory_order("order-1").await.unwrap().unwrap();
    assert_eq!(order.attempts, 2);
}

async fn a_notification_is_owed_once(backend: Backend) {
    let Some((_db, store)) = TestDb::with_store(backend).await else {
        return;
    };
    let key = "replenish-CP-502101/order-1/paused";
    let due = || store.notification_due(key, SKU, "paused", "manager@example.com");

    assert_eq!(due().await.unwrap(), NotificationDue::Deliver);
    // Delivery failed: still owed on the retry.
    store.notification_failed(key, "smtp down").await.unwrap();
    assert_eq!(due().await.unwrap(), NotificationDue::Deliver);
    store
        .notification_delivered(key, NotificationStatus::Sent)
        .await
        .unwrap();
    assert_eq!(due().await.unwrap(), NotificationDue::AlreadyDone);
    assert_eq!(due().await.unwrap(), NotificationDue::AlreadyDone);

    let rows = store.notifications(SKU).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, NotificationStatus::Sent);
    assert_eq!(rows[0].attempts, 2);
}
