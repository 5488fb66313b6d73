//! Test helpers shared by the workspace's integration tests: a fresh database per test on
//! SQLite, PostgreSQL or MariaDB, and [`spawn_app`], a gateway on port 0 over it.
//!
//! PostgreSQL and MariaDB come from `RESTOCK_TEST_POSTGRES_URL` / `RESTOCK_TEST_MYSQL_URL`
//! (an account that may create databases). Unset, their tests print a skip message, except
//! under CI (`CI` set), where a missing URL fails the test: CI must run them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod browser;
pub mod postgres;
pub mod process;
pub mod smtp;
pub mod stack;
pub mod temporal;

use std::net::SocketAddr;
use std::path::PathBuf;

use restock_inventory::{Store, StoreOptions};
use restock_proto::v1::{
    PurchaseRequest, PurchaseResponse, inventory_service_client::InventoryServiceClient,
    sales_service_client::SalesServiceClient,
};
use sea_orm::{ConnectionTrait, Database};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    fn env_var(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => "RESTOCK_TEST_POSTGRES_URL",
            Backend::MySql => "RESTOCK_TEST_MYSQL_URL",
        }
    }
}

/// A database made for one test and dropped when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    /// URL of the test's own database.
    pub url: String,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

/// `url` with its database name replaced by `name` (query string kept).
pub fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl TestDb {
    /// A fresh database on `backend`, or `None` (with a message) when its URL is not set
    /// outside CI.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let name = format!(
            "restock_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        if backend == Backend::Sqlite {
            let dir = tempfile::tempdir().unwrap();
            let path: PathBuf = dir.path().join("restock.db");
            return Some(TestDb {
                backend,
                url: format!("sqlite://{}?mode=rwc", path.display()),
                admin_url: None,
                name,
                _dir: Some(dir),
            });
        }
        let var = backend.env_var();
        let admin_url = match std::env::var(var) {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var_os("CI").is_some() => {
                panic!("{var} is not set: CI must run the {backend:?} tests (see scripts/test.sh)")
            }
            _ => {
                eprintln!("SKIPPED: {var} is not set, so this {backend:?} test did not run");
                return None;
            }
        };
        let admin = Database::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {var}: {e}"));
        let create = match backend {
            Backend::MySql => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
            _ => format!("CREATE DATABASE {name}"),
        };
        admin.execute_unprepared(&create).await.unwrap();
        admin.close().await.ok();
        Some(TestDb {
            backend,
            url: replace_db_name(&admin_url, &name),
            admin_url: Some(admin_url),
            name,
            _dir: None,
        })
    }

    /// A fresh database on `backend` and a store over it (keep the database: dropping it
    /// removes it), or `None` as [`TestDb::new`].
    pub async fn with_store(backend: Backend) -> Option<(TestDb, Store)> {
        let db = TestDb::new(backend).await?;
        let store = db.store().await;
        Some((db, store))
    }

    /// Connects, migrates and loads the demo catalogue (purchases grouped, the default).
    pub async fn store(&self) -> Store {
        self.store_with(true).await
    }

    /// [`TestDb::store`] with purchase grouping on or off.
    pub async fn store_with(&self, group_purchases: bool) -> Store {
        self.store_with_options(&StoreOptions {
            max_connections: 16,
            group_purchases,
            ..StoreOptions::default()
        })
        .await
    }

    /// Connects with `options`, migrates and loads the demo catalogue.
    pub async fn store_with_options(&self, options: &StoreOptions) -> Store {
        let store = Store::connect(&self.url, options).await.unwrap();
        store.migrate().await.unwrap();
        restock_inventory::demo::load(&store).await.unwrap();
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin_url) = self.admin_url.clone() else {
            return;
        };
        let drop_sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        // Drop runs outside any runtime we may block: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin.execute_unprepared(&drop_sql).await;
                    admin.close().await.ok();
                }
            });
        })
        .join();
    }
}

/// Three tests from one `async fn(Backend)`, named `<name>::sqlite`, `<name>::postgres` and
/// `<name>::mariadb` (the last two print SKIPPED outside CI when their database URL is unset):
///
/// ```text
/// restock_testkit::on_three_databases! {
///     partial_updates => partial_updates_on;
/// }
/// ```
#[macro_export]
macro_rules! on_three_databases {
    ($($name:ident => $body:ident;)*) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body($crate::Backend::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn mariadb() {
                super::$body($crate::Backend::MySql).await
            }
        })*
    };
}

/// A gateway serving one test on port 0.
pub struct TestApp {
    pub db: TestDb,
    pub store: Store,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts a gateway over a fresh, migrated database with the demo catalogue, or `None` when
/// the backend's URL is not configured outside CI.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_grouping(backend, true).await
}

/// [`spawn_app`] with purchase grouping on or off.
pub async fn spawn_app_grouping(backend: Backend, group_purchases: bool) -> Option<TestApp> {
    let db = TestDb::new(backend).await?;
    let store = db.store_with(group_purchases).await;
    Some(spawn_gateway_on(db, store).await)
}

impl TestApp {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn sales(&self) -> SalesServiceClient<Channel> {
        SalesServiceClient::new(self.channel().await)
    }

    pub async fn inventory(&self) -> InventoryServiceClient<Channel> {
        InventoryServiceClient::new(self.channel().await)
    }

    /// The gateway's `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        process::http_get(&format!("http://{}/metrics", self.http_addr))
            .await
            .expect("the gateway's metrics")
    }

    /// Stops the gateway and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// A TCP proxy in front of a database that a test can take down and bring back, to see how
/// the system behaves while its database is unreachable.
pub struct FlakyProxy {
    pub addr: SocketAddr,
    down: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    /// Listens on a free port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down_tx, _) = tokio::sync::watch::channel(false);
        let down = std::sync::Arc::new(down_tx);
        let state = down.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if *state.borrow() {
                    drop(client); // refuse while down
                    continue;
                }
                let mut watch = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        FlakyProxy { addr, down, task }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn take_down(&self) {
        self.down.send_replace(true);
    }

    /// Accepts connections again.
    pub fn bring_up(&self) {
        self.down.send_replace(false);
    }

    /// `url` with its host:port replaced by this proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let (start, end) = host_span(url);
        format!("{}{}{}", &url[..start], self.addr, &url[end..])
    }
}

/// Byte range of the host:port in a `scheme://[user@]host:port[/db][?query]` URL.
fn host_span(url: &str) -> (usize, usize) {
    let scheme_end = url.find("://").unwrap() + 3;
    let rest = &url[scheme_end..];
    let host_start = rest.find('@').map(|i| i + 1).unwrap_or(0);
    let host_end = rest[host_start..]
        .find(['/', '?'])
        .map(|i| i + host_start)
        .unwrap_or(rest.len());
    (scheme_end + host_start, scheme_end + host_end)
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The host:port of a database URL (for pointing a [`FlakyProxy`] at it).
pub fn url_addr(url: &str) -> SocketAddr {
    let (start, end) = host_span(url);
    url[start..end]
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap()
}

/// Waits until every pooled database connection has been idle long enough to be pinged
/// before its next use ([`restock_inventory::store::PING_IF_IDLE_FOR`], plus a margin): a
/// test that has just cut the database then sees its next sale find the dead connection
/// before anything is sent (UNAVAILABLE). Within the window that sale may be sent on the
/// dead connection and be answered "outcome unknown", as README's unreachable-database
/// paragraph says.
pub async fn wait_out_ping_window() {
    tokio::time::sleep(
        restock_inventory::store::PING_IF_IDLE_FOR + std::time::Duration::from_millis(50),
    )
    .await;
}

/// `value` as a [`restock_inventory::Sku`]; panics when it breaks the sku rule (a test's
/// own constant).
pub fn sku(value: &str) -> restock_inventory::Sku {
    restock_inventory::Sku::parse(value).unwrap_or_else(|e| panic!("test sku {value:?}: {e}"))
}

/// Every row of the tables a request could write (factories, products, sales, intents,
/// receipts, ads, the audit trail), each table's rows sorted, as text: the same before and
/// after a request means it wrote nothing.
pub async fn store_snapshot(store: &Store) -> String {
    use restock_inventory::entity::{
        advertisement, audit_log, factory, product, replenish_outbox, sale, stock_receipt,
    };
    async fn rows<E: sea_orm::EntityTrait>(db: &sea_orm::DatabaseConnection) -> String
    where
        E::Model: std::fmt::Debug,
    {
        let all = E::find().all(db).await.unwrap();
        let mut rows: Vec<String> = all.iter().map(|row| format!("{row:?}")).collect();
        rows.sort();
        rows.join("\n")
    }
    let db = store.connection();
    [
        rows::<factory::Entity>(db).await,
        rows::<product::Entity>(db).await,
        rows::<sale::Entity>(db).await,
        rows::<replenish_outbox::Entity>(db).await,
        rows::<stock_receipt::Entity>(db).await,
        rows::<advertisement::Entity>(db).await,
        rows::<audit_log::Entity>(db).await,
    ]
    .join("\n--\n")
}

/// A purchase of one unit of `sku`, without a key.
pub fn one_unit(sku: &str) -> PurchaseRequest {
    PurchaseRequest {
        sku: sku.to_owned(),
        quantity: 1,
        ..Default::default()
    }
}

/// Buys one unit of `sku` and gives the answer; panics when the call fails.
pub async fn buy_one(sales: &mut SalesServiceClient<Channel>, sku: &str) -> PurchaseResponse {
    sales
        .purchase(one_unit(sku))
        .await
        .unwrap_or_else(|status| panic!("buying {sku}: {status}"))
        .into_inner()
}

/// The product `sku` as the store has it now; panics when it cannot be read.
pub async fn product_of(
    store: &restock_inventory::Store,
    sku: &str,
) -> restock_inventory::entity::product::Model {
    store
        .product(&self::sku(sku))
        .await
        .unwrap_or_else(|e| panic!("reading product {sku:?}: {e}"))
        .product
}

/// A test product made by the demo factory: `stock` on hand, replenished with
/// `reorder_quantity` units when stock falls to `reorder_point`.
pub fn product(
    sku: &str,
    stock: i64,
    reorder_point: i64,
    reorder_quantity: i64,
) -> restock_inventory::NewProduct {
    restock_inventory::NewProduct {
        sku: self::sku(sku),
        name: format!("test product {sku}"),
        price: 100,
        stock,
        reorder_point,
        reorder_quantity,
        factory_id: restock_inventory::demo::DEMO_FACTORY.to_owned(),
        policy: None,
    }
}

/// The callback secret every test process uses.
pub const TEST_CALLBACK_SECRET: &str = "test-callback-secret-0123456789abcdef";

/// Gateway settings without Temporal (sales only).
pub fn sales_only_settings() -> restock_gateway::GatewaySettings {
    restock_gateway::GatewaySettings {
        temporal: None,
        signer: restock_factory::callback::CallbackSigner::new(TEST_CALLBACK_SECRET).unwrap(),
        relay: restock_gateway::RelaySettings::default(),
        tokens: restock_gateway::ApiTokens::default(),
        tls: None,
        health_check_interval: restock_gateway::DEFAULT_HEALTH_CHECK_INTERVAL,
    }
}

/// Starts a gateway on `store` (already migrated) on port 0, selling only.
pub async fn spawn_gateway_on(db: TestDb, store: Store) -> TestApp {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_gateway_with(db, store, grpc, http, sales_only_settings())
}

/// Starts a gateway on listeners the caller bound, with `settings`.
pub fn spawn_gateway_with(
    db: TestDb,
    store: Store,
    grpc: TcpListener,
    http: TcpListener,
    settings: restock_gateway::GatewaySettings,
) -> TestApp {
    let grpc_addr = grpc.local_addr().unwrap();
    let http_addr = http.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(restock_gateway::run(
        grpc,
        http,
        store.clone(),
        settings,
        async move {
            let _ = rx.await;
        },
    ));
    TestApp {
        db,
        store,
        grpc_addr,
        http_addr,
        shutdown: Some(tx),
        server: Some(server),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            replace_db_name("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_db_name("mysql://root@127.0.0.1:3306/test?ssl-mode=disabled", "x"),
            "mysql://root@127.0.0.1:3306/x?ssl-mode=disabled"
        );
        assert_eq!(replace_db_name("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            url_addr("mysql://root@127.0.0.1:3306/test").to_string(),
            "127.0.0.1:3306"
        );
    }
}
