//! The sale through real gRPC on a port-0 gateway, on SQLite, PostgreSQL and MariaDB:
//! no oversell under concurrency, idempotent retries, bad input rejected with nothing changed,
//! and UNAVAILABLE (then recovery) while the database is unreachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use restock_inventory::entity::{product, replenish_outbox, sale};
use restock_inventory::{QueueDepth, Store};
use restock_proto::v1::{Outcome, PurchaseRequest};
use restock_testkit::{
    Backend, FlakyProxy, TestApp, TestDb, spawn_app_grouping, spawn_gateway_on, url_addr,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tonic::Code;

const CLIENTS: usize = 64;

fn buy(sku: &str, quantity: u32, key: &str) -> PurchaseRequest {
    PurchaseRequest {
        sku: sku.to_owned(),
        quantity,
        idempotency_key: key.to_owned(),
        requester: "test".to_owned(),
    }
}

async fn add_product(store: &Store, sku: &str, stock: i64) {
    store
        .upsert_product(&restock_testkit::product(sku, stock, 0, 10))
        .await
        .unwrap();
}

async fn stock_of(store: &Store, sku: &str) -> i64 {
    restock_testkit::product_of(store, sku).await.stock
}

async fn outbox_rows(store: &Store, sku: &str) -> u64 {
    replenish_outbox::Entity::find()
        .filter(replenish_outbox::Column::Sku.eq(sku))
        .count(store.connection())
        .await
        .unwrap()
}

async fn concurrent_clients_never_oversell(app: TestApp) {
    const STOCK: i64 = 300;
    let sku = "HOT-1";
    add_product(&app.store, sku, STOCK).await;
    let sold = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = app.sales().await;
        let sold = sold.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let reply = client.purchase(buy(sku, 1, "")).await.unwrap().into_inner();
                match reply.outcome() {
                    Outcome::Sold => {
                        assert!(reply.remaining_stock >= 0);
                        sold.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::OutOfStock => return,
                    Outcome::Unspecified => panic!("no outcome: {reply:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sold.load(Ordering::Relaxed), STOCK as u64, "SOLD replies");
    if let Some(counts) = app.store.purchase_grouping() {
        // 64 clients on one row: sales did share transactions.
        assert!(
            counts.shared_sales > counts.shared_transactions && counts.shared_transactions > 0,
            "{counts:?}"
        );
    }
    assert_eq!(stock_of(&app.store, sku).await, 0, "final stock");
    let sales: i64 = sales_of(&app.store, sku)
        .await
        .iter()
        .map(|s| s.quantity)
        .sum();
    assert_eq!(sales, STOCK, "units in sales rows");
    assert_eq!(
        outbox_rows(&app.store, sku).await,
        1,
        "pending outbox intents"
    );
    app.stop().await;
}

/// Many clients buying 1..=4 units of two products at once: every answer is exact. Per
/// product, the SOLD replies ordered by remaining stock form one chain from the initial stock
/// down (each sale's remaining stock is the previous one's minus its quantity) and match the
/// sale rows; each OUT_OF_STOCK reply saw less stock than it asked for; nothing is oversold.
/// (On SQLite a group can hold both products: one transaction, one UPDATE each.)
async fn mixed_quantities_get_exact_outcomes(app: TestApp) {
    const STOCK: i64 = 250;
    const ROUNDS: u32 = 12;
    const SKUS: [&str; 2] = ["MIXED-0", "MIXED-1"];
    for sku in SKUS {
        add_product(&app.store, sku, STOCK).await;
    }
    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS as u32 {
        let mut client = app.sales().await;
        tasks.push(tokio::spawn(async move {
            let mut sold = Vec::new();
            for round in 0..ROUNDS {
                let sku = SKUS[((client_no + round) % 2) as usize];
                let quantity = (client_no + round) % 4 + 1;
                let key = format!("mixed-{client_no}-{round}");
                let reply = client
                    .purchase(buy(sku, quantity, &key))
                    .await
                    .unwrap()
                    .into_inner();
                match reply.outcome() {
                    Outcome::Sold => sold.push((sku, reply.remaining_stock, i64::from(quantity))),
                    Outcome::OutOfStock => assert!(
                        reply.remaining_stock < i64::from(quantity),
                        "OUT_OF_STOCK with enough stock: {reply:?}"
                    ),
                    Outcome::Unspecified => panic!("no outcome: {reply:?}"),
                }
            }
            sold
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    for sku in SKUS {
        let mut sold: Vec<(i64, i64)> = all
            .iter()
            .filter(|s| s.0 == sku)
            .map(|s| (s.1, s.2))
            .collect();
        sold.sort_by_key(|s| std::cmp::Reverse(s.0));
        let mut stock = STOCK;
        for &(remaining, quantity) in &sold {
            assert_eq!(
                remaining,
                stock - quantity,
                "{sku}: sales do not chain: {sold:?}"
            );
            stock = remaining;
        }
        assert!(stock >= 0);
        assert_eq!(stock_of(&app.store, sku).await, stock, "{sku}: final stock");
        let mut rows: Vec<(i64, i64)> = sale::Entity::find()
            .filter(sale::Column::Sku.eq(sku))
            .all(app.store.connection())
            .await
            .unwrap()
            .iter()
            .map(|s| (s.remaining_stock, s.quantity))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        assert_eq!(rows, sold, "{sku}: sale rows match the SOLD replies");
        // 32 x 12 requests of 2.5 units on average ask for far more than 250: it sold out.
        assert!(stock < 4, "{sku}: stock left: {stock}");
    }
    app.stop().await;
}

async fn same_key_sells_once(app: TestApp) {
    let sku = restock_inventory::demo::DEMO_SKU;
    let before = stock_of(&app.store, sku).await;
    let mut client = app.sales().await;

    let first = client
        .purchase(buy(sku, 1, "order-42"))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .purchase(buy(sku, 1, "order-42"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.outcome(), Outcome::Sold);
    assert_eq!(again.outcome(), Outcome::Sold);
    assert_eq!(first.sale_id, again.sale_id);
    assert_eq!(first.remaining_stock, again.remaining_stock);
    assert!(!first.replayed && again.replayed);
    assert_eq!(stock_of(&app.store, sku).await, before - 1);

    // The same new key from 16 clients at once: still one sale.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut c = app.sales().await;
        tasks.push(tokio::spawn(async move {
            c.purchase(buy(sku, 1, "order-43"))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let reply = t.await.unwrap();
        assert_eq!(reply.outcome(), Outcome::Sold, "{reply:?}");
        ids.push(reply.sale_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one sale id for one key: {ids:?}");
    assert_eq!(stock_of(&app.store, sku).await, before - 2);
    let rows = sale::Entity::find()
        .filter(sale::Column::IdempotencyKey.eq("order-43"))
        .count(app.store.connection())
        .await
        .unwrap();
    assert_eq!(rows, 1);

    // Retries of a committed key among new sales (with grouping on, in the same
    // transactions): nothing is read first, so the key's unique index catches each retry; it
    // replays the first answer and the new sales beside it still sell, once each.
    let mixed = "retry-mix";
    add_product(&app.store, mixed, 100).await;
    let original = client
        .purchase(buy(mixed, 1, "mix-first"))
        .await
        .unwrap()
        .into_inner();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let mut c = app.sales().await;
        let key = if i % 3 == 0 {
            "mix-first".to_owned()
        } else {
            format!("mix-{i}")
        };
        tasks.push(tokio::spawn(async move {
            let reply = c.purchase(buy(mixed, 1, &key)).await.unwrap().into_inner();
            (key, reply)
        }));
    }
    for t in tasks {
        let (key, reply) = t.await.unwrap();
        assert_eq!(reply.outcome(), Outcome::Sold, "{key}: {reply:?}");
        if key == "mix-first" {
            assert!(reply.replayed, "a retry sold again: {reply:?}");
            assert_eq!(reply.sale_id, original.sale_id);
            assert_eq!(reply.remaining_stock, original.remaining_stock);
        } else {
            assert!(!reply.replayed, "{key}: {reply:?}");
        }
    }
    assert_eq!(stock_of(&app.store, mixed).await, 100 - 1 - 16);
    // Sold out, a retry of a sale that sold still hears its first answer, not OUT_OF_STOCK.
    let rest = client
        .purchase(buy(mixed, 83, "mix-rest"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.outcome(), Outcome::Sold, "{rest:?}");
    let retry = client
        .purchase(buy(mixed, 1, "mix-first"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry.outcome(), Outcome::Sold, "{retry:?}");
    assert!(retry.replayed);
    assert_eq!(retry.sale_id, original.sale_id);
    assert_eq!(stock_of(&app.store, mixed).await, 0);

    // The key reused for a different purchase is refused, and sells nothing.
    let err = client.purchase(buy(sku, 2, "order-42")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(stock_of(&app.store, sku).await, before - 2);
    app.stop().await;
}

async fn bad_input_changes_nothing(app: TestApp) {
    let sku = restock_inventory::demo::DEMO_SKU;
    let before = restock_testkit::store_snapshot(&app.store).await;
    let huge = "X".repeat(10 * 1024);
    let cases: Vec<(&str, PurchaseRequest, Code)> = vec![
        ("empty sku", buy("", 1, ""), Code::InvalidArgument),
        ("10 KB sku", buy(&huge, 1, ""), Code::InvalidArgument),
        (
            "replacement characters",
            buy("\u{FFFD}\u{FFFD}", 1, ""),
            Code::InvalidArgument,
        ),
        (
            "NUL in sku",
            buy("CP-502101\u{0}", 1, ""),
            Code::InvalidArgument,
        ),
        (
            "non-ASCII sku",
            buy("부산도너츠", 1, ""),
            Code::InvalidArgument,
        ),
        (
            "SQL in sku",
            buy("x' OR '1'='1", 1, ""),
            Code::InvalidArgument,
        ),
        ("quantity 0", buy(sku, 0, ""), Code::InvalidArgument),
        (
            "quantity 2^32-1",
            buy(sku, u32::MAX, ""),
            Code::InvalidArgument,
        ),
        ("unknown sku", buy("NOPE-1", 1, ""), Code::NotFound),
        (
            "unknown sku with key",
            buy("NOPE-1", 1, "k-1"),
            Code::NotFound,
        ),
        (
            "oversized key",
            buy(sku, 1, &"k".repeat(129)),
            Code::InvalidArgument,
        ),
        (
            "key with spaces",
            buy(sku, 1, "my key"),
            Code::InvalidArgument,
        ),
        (
            "oversized requester",
            PurchaseRequest {
                requester: "r".repeat(200),
                ..buy(sku, 1, "")
            },
            Code::InvalidArgument,
        ),
    ];
    let mut client = app.sales().await;
    for (what, request, code) in cases {
        let err = client
            .purchase(request)
            .await
            .expect_err(&format!("{what}: accepted"));
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(!err.message().is_empty(), "{what}: no message");
        assert!(
            err.message().len() < 300,
            "{what}: message echoes the input: {}",
            err.message().len()
        );
    }
    assert_eq!(
        restock_testkit::store_snapshot(&app.store).await,
        before,
        "a rejected purchase changed something"
    );
    app.stop().await;
}

async fn database_unreachable_gives_unavailable(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    db.store().await; // migrate + demo catalogue directly
    let proxy = FlakyProxy::start(url_addr(&db.url)).await;
    let options = restock_inventory::StoreOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        connect_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let store = Store::connect(&proxy.url_through(&db.url), &options)
        .await
        .unwrap();
    let direct = db.store().await;
    let app = spawn_gateway_on(db, store).await;
    let sku = restock_inventory::demo::DEMO_SKU;
    let mut client = app.sales().await;
    assert_eq!(
        client
            .purchase(buy(sku, 1, ""))
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        Outcome::Sold
    );
    let health = format!("http://{}/healthz", app.http_addr);
    assert_eq!(http_status(&health).await, 200);

    proxy.take_down();
    restock_testkit::wait_out_ping_window().await;
    let before = restock_testkit::store_snapshot(&direct).await;
    for _ in 0..3 {
        let err = client.purchase(buy(sku, 1, "")).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(err.message().contains("unavailable"), "{}", err.message());
    }
    assert_eq!(http_status(&health).await, 503);
    assert_eq!(
        restock_testkit::store_snapshot(&direct).await,
        before,
        "a failed sale changed something"
    );

    proxy.bring_up();
    let mut recovered = false;
    for _ in 0..50 {
        if let Ok(reply) = client.purchase(buy(sku, 1, "")).await {
            assert_eq!(reply.into_inner().outcome(), Outcome::Sold);
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "sales did not recover after the database came back"
    );
    assert_eq!(stock_of(&direct, sku).await, 1);
    assert_eq!(http_status(&health).await, 200);
    app.stop().await;
}

/// A bare HTTP/1.1 GET, returning the status code.
async fn http_status(url: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Each test on each database, with purchase grouping on (the default) and off.
macro_rules! on_every_database {
    ($($name:ident => $body:ident;)*) => {
        on_every_database!(@mod sqlite, Backend::Sqlite, true; $($name => $body;)*);
        on_every_database!(@mod postgres, Backend::Postgres, true; $($name => $body;)*);
        on_every_database!(@mod mariadb, Backend::MySql, true; $($name => $body;)*);
        on_every_database!(@mod sqlite_ungrouped, Backend::Sqlite, false; $($name => $body;)*);
        on_every_database!(@mod postgres_ungrouped, Backend::Postgres, false; $($name => $body;)*);
        on_every_database!(@mod mariadb_ungrouped, Backend::MySql, false; $($name => $body;)*);
    };
    (@mod $module:ident, $backend:expr, $grouped:expr; $($name:ident => $body:ident;)*) => {
        mod $module {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(app) = spawn_app_grouping($backend, $grouped).await {
                    assert_eq!(app.store.groups_purchases(), $grouped);
                    super::$body(app).await
                }
            })*
        }
    };
}

on_every_database! {
    concurrent_clients_never_oversell => concurrent_clients_never_oversell;
    mixed_quantities_get_exact_outcomes => mixed_quantities_get_exact_outcomes;
    same_key_sells_once => same_key_sells_once;
    bad_input_changes_nothing => bad_input_changes_nothing;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_unreachable_gives_unavailable_then_recovers() {
    database_unreachable_gives_unavailable(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_unreachable_gives_unavailable_then_recovers() {
    database_unreachable_gives_unavailable(Backend::MySql).await;
}

// ---- Callers that are gone, a full queue, a lost COMMIT (grouped sales) ----

/// A grouped store over a fresh database, with at most `max_waiting` purchases waiting per
/// queue, behind a gateway; `None` when the backend is not configured.
async fn spawn_grouped(backend: Backend, max_waiting: usize) -> Option<TestApp> {
    spawn_grouped_in_lanes(
        backend,
        max_waiting,
        restock_inventory::sale::grouped::DEFAULT_LANES,
    )
    .await
}

/// [`spawn_grouped`] with `lanes` queues on PostgreSQL and MariaDB.
async fn spawn_grouped_in_lanes(
    backend: Backend,
    max_waiting: usize,
    lanes: usize,
) -> Option<TestApp> {
    let db = TestDb::new(backend).await?;
    let options = restock_inventory::StoreOptions {
        max_connections: 16,
        group_purchases: true,
        max_waiting_purchases: max_waiting,
        purchase_lanes: lanes,
        ..Default::default()
    };
    let store = Store::connect(&db.url, &options).await.unwrap();
    store.migrate().await.unwrap();
    restock_inventory::demo::load(&store).await.unwrap();
    Some(spawn_gateway_on(db, store).await)
}

/// A transaction on a connection of its own that keeps every sale of `sku` from writing
/// until it ends: on SQLite the write lock (`BEGIN IMMEDIATE`), elsewhere the product's row
/// lock. A sale started meanwhile waits inside its transaction, so the purchases after it
/// queue behind it: their group cannot begin until this is dropped.
async fn hold_writes(url: &str, backend: Backend, sku: &str) -> sea_orm::DatabaseTransaction {
    use sea_orm::{QuerySelect, TransactionTrait};
    let db = sea_orm::Database::connect(url).await.unwrap();
    let txn = db
        .begin_with_options(sea_orm::TransactionOptions {
            sqlite_transaction_mode: (backend == Backend::Sqlite)
                .then_some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .unwrap();
    if backend != Backend::Sqlite {
        product::Entity::find_by_id(sku)
            .lock_exclusive()
            .one(&txn)
            .await
            .unwrap()
            .unwrap();
    }
    txn
}

/// Waits (up to 10 s) until the store's grouping queues are as `want` says.
async fn wait_for_queue(store: &Store, what: &str, want: impl Fn(QueueDepth) -> bool) {
    for _ in 0..1000 {
        if want(store.purchase_queue().unwrap()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{what}: queue is {:?}", store.purchase_queue());
}

async fn sales_of(store: &Store, sku: &str) -> Vec<sale::Model> {
    sale::Entity::find()
        .filter(sale::Column::Sku.eq(sku))
        .all(store.connection())
        .await
        .unwrap()
}

type PurchaseTask = tokio::task::JoinHandle<
    Result<tonic::Response<restock_proto::v1::PurchaseResponse>, tonic::Status>,
>;

/// Holds `sku`'s row (see [`hold_writes`]) and starts a purchase (key `first`) whose group's
/// transaction stays open while the hold lasts; returns once it is being sold.
async fn start_blocked_sale(
    app: &TestApp,
    backend: Backend,
    sku: &'static str,
) -> (sea_orm::DatabaseTransaction, PurchaseTask) {
    let hold = hold_writes(&app.db.url, backend, sku).await;
    let task = spawn_purchases(app, [buy(sku, 1, "first")]).await.remove(0);
    wait_for_queue(&app.store, "the first sale is being sold", |q| {
        q.selling == 1 && q.waiting == 0
    })
    .await;
    (hold, task)
}

/// Sends each purchase on its own connection, without waiting for the answers.
async fn spawn_purchases<R>(
    app: &TestApp,
    requests: impl IntoIterator<Item = R>,
) -> Vec<PurchaseTask>
where
    R: tonic::IntoRequest<PurchaseRequest> + Send + 'static,
{
    let mut tasks = Vec::new();
    for request in requests {
        let mut client = app.sales().await;
        tasks.push(tokio::spawn(async move { client.purchase(request).await }));
    }
    tasks
}

/// Purchases whose callers gave up (their gRPC deadline passed) before their group's
/// transaction began sell nothing: stock plus units in sale rows stays the initial stock, no
/// sale row has their keys, and the store counts them as abandoned.
async fn abandoned_purchases_sell_nothing(backend: Backend) {
    const STOCK: i64 = 100;
    const GONE: usize = 12;
    let Some(app) = spawn_grouped(backend, restock_inventory::sale::grouped::MAX_WAITING).await
    else {
        return;
    };
    let sku = "GONE-1";
    add_product(&app.store, sku, STOCK).await;
    let (hold, first) = start_blocked_sale(&app, backend, sku).await;

    let gone = spawn_purchases(
        &app,
        (0..GONE).map(|i| {
            let mut request = tonic::Request::new(buy(sku, 1, &format!("gone-{i}")));
            request.set_timeout(std::time::Duration::from_millis(500));
            request
        }),
    )
    .await;
    for task in gone {
        let err = task.await.unwrap().expect_err("the deadline passed");
        assert!(
            matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{err:?}"
        );
    }
    // Their callers are gone, but they are still queued: the group has not begun. (All of
    // them, unless a slow machine let a deadline pass before its purchase was queued.)
    let queued = app.store.purchase_queue().unwrap().waiting;
    assert!(queued > 0 && queued <= GONE, "{queued} queued");

    hold.rollback().await.unwrap();
    let first = first.await.unwrap().unwrap().into_inner();
    assert_eq!(first.outcome(), Outcome::Sold);
    wait_for_queue(&app.store, "everything settled", |q| {
        q.waiting == 0 && q.selling == 0
    })
    .await;

    let sales = sales_of(&app.store, sku).await;
    let sold: i64 = sales.iter().map(|s| s.quantity).sum();
    assert_eq!(
        stock_of(&app.store, sku).await + sold,
        STOCK,
        "stock + sold"
    );
    let keys: Vec<_> = sales.iter().map(|s| s.idempotency_key.clone()).collect();
    assert_eq!(keys, [Some("first".to_owned())], "sales of gone callers");
    assert_eq!(
        app.store.purchase_grouping().unwrap().abandoned,
        queued as u64
    );
    app.stop().await;
}

/// With its queue full, a purchase is refused at once with RESOURCE_EXHAUSTED ("nothing was
/// sold"), writes nothing, and the waiting ones still sell.
async fn full_queue_refuses_at_once(backend: Backend) {
    const STOCK: i64 = 100;
    const MAX_WAITING: usize = 3;
    let Some(app) = spawn_grouped(backend, MAX_WAITING).await else {
        return;
    };
    let sku = "FULL-1";
    add_product(&app.store, sku, STOCK).await;
    let (hold, first) = start_blocked_sale(&app, backend, sku).await;
    let waiting = spawn_purchases(
        &app,
        (0..MAX_WAITING).map(|i| buy(sku, 1, &format!("wait-{i}"))),
    )
    .await;
    wait_for_queue(&app.store, "the queue is full", |q| {
        q.waiting == MAX_WAITING
    })
    .await;

    let mut client = app.sales().await;
    // Refused at once; the deadline only keeps a queue that would wait from hanging the test.
    let mut overflow = tonic::Request::new(buy(sku, 1, "overflow"));
    overflow.set_timeout(std::time::Duration::from_secs(3));
    let err = client
        .purchase(overflow)
        .await
        .expect_err("the queue is full");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("nothing was sold"),
        "{}",
        err.message()
    );
    assert_eq!(app.store.purchase_grouping().unwrap().refused, 1);

    hold.rollback().await.unwrap();
    assert_eq!(
        first.await.unwrap().unwrap().into_inner().outcome(),
        Outcome::Sold
    );
    for task in waiting {
        let reply = task.await.unwrap().unwrap().into_inner();
        assert_eq!(reply.outcome(), Outcome::Sold, "{reply:?}");
    }
    let sales = sales_of(&app.store, sku).await;
    assert_eq!(sales.len(), 1 + MAX_WAITING);
    assert!(
        sales
            .iter()
            .all(|s| s.idempotency_key.as_deref() != Some("overflow")),
        "the refused purchase was sold"
    );
    assert_eq!(
        stock_of(&app.store, sku).await,
        STOCK - 1 - MAX_WAITING as i64
    );
    app.stop().await;
}

/// Spread load in two lanes: purchases of many products share transactions (rows locked in
/// sku order), while the two lanes' transactions run at once. No deadlock surfaces, every
/// answer is SOLD or OUT_OF_STOCK, and per product the units in sale rows plus the stock left
/// are the initial stock, with one sale row per SOLD reply. Each reply's remaining stock is
/// its row's, a product's rows chain down from the initial stock one sale at a time, and a
/// sale that reached the reorder point says so and left the product's intent.
async fn spread_purchases_share_transactions_across_products(backend: Backend) {
    const PRODUCTS: usize = 12;
    const STOCK: i64 = 60;
    const PER_CLIENT: usize = 25;
    let Some(app) =
        spawn_grouped_in_lanes(backend, restock_inventory::sale::grouped::MAX_WAITING, 2).await
    else {
        return;
    };
    let skus: Vec<String> = (0..PRODUCTS).map(|i| format!("SPREAD-{i:02}")).collect();
    for sku in &skus {
        add_product(&app.store, sku, STOCK).await;
    }
    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        let mut client = app.sales().await;
        let skus = skus.clone();
        tasks.push(tokio::spawn(async move {
            let mut sold: Vec<(String, u32, String, i64)> = Vec::new();
            let mut x = client_no as u64 * 2_654_435_761 + 1;
            for n in 0..PER_CLIENT {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let sku = &skus[(x % PRODUCTS as u64) as usize];
                let quantity = 1 + (x / 7 % 3) as u32;
                let reply = client
                    .purchase(buy(sku, quantity, &format!("spread-{client_no}-{n}")))
                    .await
                    .unwrap_or_else(|e| panic!("{sku}: {e:?}"))
                    .into_inner();
                match reply.outcome() {
                    Outcome::Sold => {
                        sold.push((sku.clone(), quantity, reply.sale_id, reply.remaining_stock))
                    }
                    Outcome::OutOfStock => {}
                    Outcome::Unspecified => panic!("no outcome: {reply:?}"),
                }
            }
            sold
        }));
    }
    let mut sold: Vec<(String, u32, String, i64)> = Vec::new();
    for t in tasks {
        sold.extend(t.await.unwrap());
    }
    let intents: Vec<String> = replenish_outbox::Entity::find()
        .all(app.store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.sku)
        .collect();
    let mut reordered = 0;
    for sku in &skus {
        let replies: Vec<&(String, u32, String, i64)> =
            sold.iter().filter(|(s, ..)| s == sku).collect();
        let mut rows = sales_of(&app.store, sku).await;
        assert_eq!(
            rows.len(),
            replies.len(),
            "{sku}: sale rows vs SOLD replies"
        );
        let units: i64 = rows.iter().map(|r| r.quantity).sum();
        let replied: i64 = replies.iter().map(|(_, q, ..)| i64::from(*q)).sum();
        assert_eq!(units, replied, "{sku}: units sold");
        assert_eq!(
            stock_of(&app.store, sku).await + units,
            STOCK,
            "{sku}: stock + units sold"
        );
        for (_, quantity, sale_id, remaining) in &replies {
            let row = rows.iter().find(|r| &r.id == sale_id).unwrap();
            assert_eq!(
                (row.quantity, row.remaining_stock),
                (i64::from(*quantity), *remaining),
                "{sku}: reply vs row {row:?}"
            );
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.remaining_stock));
        let mut left = STOCK;
        for row in &rows {
            left -= row.quantity;
            assert_eq!(row.remaining_stock, left, "{sku}: one sale after another");
            // Reorder point 0.
            assert_eq!(row.requested_replenishment, left <= 0, "{row:?}");
        }
        if rows.iter().any(|r| r.requested_replenishment) {
            reordered += 1;
            assert!(intents.contains(sku), "{sku}: sold out without an intent");
        }
    }
    // Demand is several times the stock: the reorder checks above were not vacuous.
    assert!(reordered > 0, "no product reached its reorder point");
    let counts = app.store.purchase_grouping().unwrap();
    assert!(counts.shared_transactions > 0, "{counts:?}");
    app.stop().await;
}

restock_testkit::on_three_databases! {
    spread_purchases_share_transactions_across_products => spread_purchases_share_transactions_across_products;
    abandoned_purchases_sell_nothing => abandoned_purchases_sell_nothing;
    full_queue_refuses_at_once => full_queue_refuses_at_once;
}

/// PostgreSQL: makes the first `kills` commits that write a sale row of requester `doomed`
/// fail as a lost connection does: a deferred constraint trigger terminates its own backend
/// during `COMMIT` (the transaction is rolled back; the client cannot know that). A sequence
/// counts them, since it is not rolled back.
async fn doom_commits(store: &Store, kills: i64) {
    use sea_orm::ConnectionTrait;
    for sql in [
        "CREATE SEQUENCE doom_seq".to_owned(),
        format!(
            "CREATE FUNCTION doom() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF NEW.requester = 'doomed' THEN \
                 IF nextval('doom_seq') <= {kills} THEN \
                   PERFORM pg_terminate_backend(pg_backend_pid()); \
                 END IF; \
               END IF; \
               RETURN NULL; \
             END $$"
        ),
        "CREATE CONSTRAINT TRIGGER doom AFTER INSERT ON sales \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION doom()"
            .to_owned(),
    ] {
        store.connection().execute_unprepared(&sql).await.unwrap();
    }
}

/// PostgreSQL, ungrouped: a sale whose one-statement commit is lost is not reported as
/// "nothing was changed". Without a key: UNKNOWN, and (here) really not sold. With a key:
/// the store asks its key, finds it absent, sells again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_sale_whose_commit_is_lost_is_unknown_or_resolved_by_its_key() {
    const STOCK: i64 = 100;
    let Some(app) = spawn_app_grouping(Backend::Postgres, false).await else {
        return;
    };
    let sku = "LOST-2";
    add_product(&app.store, sku, STOCK).await;
    doom_commits(&app.store, 2).await;
    let doomed = |key: &str| PurchaseRequest {
        requester: "doomed".to_owned(),
        ..buy(sku, 1, key)
    };
    let mut client = app.sales().await;
    let err = client.purchase(doomed("")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(
        err.message().contains("may or may not"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("no idempotency key"),
        "{}",
        err.message()
    );
    assert!(sales_of(&app.store, sku).await.is_empty());

    let reply = client
        .purchase(doomed("lost-key"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.outcome(), Outcome::Sold, "{reply:?}");
    assert!(!reply.replayed);
    let sales = sales_of(&app.store, sku).await;
    assert_eq!(sales.len(), 1);
    assert_eq!(sales[0].id, reply.sale_id);
    assert_eq!(stock_of(&app.store, sku).await, STOCK - 1);
    app.stop().await;
}

/// PostgreSQL: a group whose `COMMIT` is lost — a deferred constraint trigger terminates the
/// backend during `COMMIT`, once — is not sold again one by one. Its sales without a key are
/// answered UNKNOWN ("may or may not"), and were in fact not sold; its keyed sale asks its key,
/// finds it absent and is sold alone, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_group_whose_commit_is_lost_is_not_sold_again() {
    const STOCK: i64 = 100;
    let Some(app) = spawn_grouped(
        Backend::Postgres,
        restock_inventory::sale::grouped::MAX_WAITING,
    )
    .await
    else {
        return;
    };
    let sku = "LOST-1";
    add_product(&app.store, sku, STOCK).await;
    doom_commits(&app.store, 1).await;
    let (hold, first) = start_blocked_sale(&app, Backend::Postgres, sku).await;
    let doomed = |key: &str| PurchaseRequest {
        requester: "doomed".to_owned(),
        ..buy(sku, 1, key)
    };
    let group = spawn_purchases(&app, ["", "", "doomed-key"].map(doomed)).await;
    wait_for_queue(&app.store, "the group waits", |q| q.waiting == 3).await;
    hold.rollback().await.unwrap();
    assert_eq!(
        first.await.unwrap().unwrap().into_inner().outcome(),
        Outcome::Sold
    );
    let mut replies = Vec::new();
    for task in group {
        replies.push(task.await.unwrap());
    }
    for unkeyed in &replies[..2] {
        let err = unkeyed.as_ref().expect_err("outcome unknown");
        assert_eq!(err.code(), Code::Unknown, "{err:?}");
        assert!(
            err.message().contains("may or may not"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("nothing was changed"));
    }
    let keyed = replies[2].as_ref().unwrap().get_ref();
    assert_eq!(keyed.outcome(), Outcome::Sold, "{keyed:?}");

    let sales = sales_of(&app.store, sku).await;
    let mut keys: Vec<_> = sales.iter().map(|s| s.idempotency_key.clone()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [Some("doomed-key".to_owned()), Some("first".to_owned())],
        "the lost group's sales without a key were sold again"
    );
    assert_eq!(stock_of(&app.store, sku).await, STOCK - 2);
    app.stop().await;
}
