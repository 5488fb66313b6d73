//! [`Store`]: the inventory's only writer: its connections and options, products,
//! factories, stock adjustments, the audit trail, and the helpers every transaction shares
//! (retries, the outbox intent). The sale has a module of its own: [`crate::sale`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::entity::replenish_outbox::IntentReason;
use crate::entity::{
    advertisement, audit_log, factory, product, replenish_outbox, replenishment_policy,
};
use crate::error::{DbErrKind, classify};
use crate::migration::Migrator;
use crate::planning::{PolicyChange, apply_policy_change};
use crate::sale::grouped::PurchaseGroups;
use crate::sale::sqlite_thread::{SaleThread, SaleThreadOptions};
use crate::{Sku, StoreError, validate};

/// How often a transaction that hit a deadlock, serialization failure or busy SQLite file is
/// tried in all before the caller gets UNAVAILABLE.
pub(crate) const TRANSACTION_ATTEMPTS: u32 = 8;

/// Connection settings; [`Default`] suits a gateway or worker.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size for PostgreSQL/MySQL (SQLite uses one writer plus this many readers).
    pub max_connections: u32,
    /// How long a request waits for a connection before it answers UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// How long SQLite waits for another process's write lock.
    pub sqlite_busy_timeout: Duration,
    /// Sell concurrent purchases of one product in one transaction
    /// ([`crate::sale::grouped`]); `false` gives each purchase its own transaction.
    pub group_purchases: bool,
    /// With grouping on: most purchases that may wait in one queue (a product's, a lane's,
    /// or on SQLite the one writer's). Beyond it a purchase is refused at once with
    /// [`StoreError::Busy`], nothing sold, instead of waiting longer than its caller will.
    pub max_waiting_purchases: usize,
    /// With grouping on, on PostgreSQL and MySQL: how many queues purchases wait in, each
    /// product always in the same one, so that purchases of different products share a
    /// transaction too (its rows locked in sku order: no deadlock). 0: one queue per product,
    /// so only purchases of the same product share one. (SQLite always has one queue: one
    /// writer.)
    pub purchase_lanes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(10),
            group_purchases: true,
            max_waiting_purchases: crate::sale::grouped::MAX_WAITING,
            purchase_lanes: crate::sale::grouped::DEFAULT_LANES,
        }
    }
}

/// The inventory store: a handle to the database (cheap to clone).
#[derive(Clone, Debug)]
pub struct Store {
    /// Where writes go. On SQLite a single connection, so writers queue in the pool instead of
    /// failing with SQLITE_BUSY; elsewhere the same pool as `reader`.
    writer: DatabaseConnection,
    reader: DatabaseConnection,
    backend: DbBackend,
    /// Queues of purchases waiting for their product's transaction; `None`: ungrouped.
    groups: Option<Arc<PurchaseGroups>>,
    /// One permit per writer connection: a sale selling alone waits here, not inside the
    /// pool, for its turn (see [`Store::sale_slot`]).
    sale_slots: Arc<tokio::sync::Semaphore>,
    /// How long a sale waits for a slot before it answers UNAVAILABLE, as the pool does.
    acquire_timeout: Duration,
    /// SQLite file: the thread that runs sales' transactions ([`crate::sale::sqlite_thread`]).
    sale_thread: Option<Arc<SaleThread>>,
}

/// A product as clients see it (with its advertisement's state).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductView {
    /// The product row.
    pub product: product::Model,
    /// Whether its advertisement runs.
    pub ad_active: bool,
    /// Its replenishment policy and the planner's figures (`None`: fixed).
    pub policy: Option<replenishment_policy::Model>,
}

/// A product to create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProduct {
    /// Sku.
    pub sku: Sku,
    /// Name.
    pub name: String,
    /// Price in minor units.
    pub price: i64,
    /// Initial stock (used only when the product is created).
    pub stock: i64,
    /// Reorder point.
    pub reorder_point: i64,
    /// Units per factory order.
    pub reorder_quantity: i64,
    /// Factory id; the factory must exist.
    pub factory_id: String,
    /// The replenishment policy to set; `None` leaves an existing product's alone and makes
    /// a new product `fixed`.
    pub policy: Option<PolicyChange>,
}

/// Changes to an existing product's catalogue fields ([`Store::update_product`]); `None`
/// keeps a field as it is, so a client that leaves a field out never writes zero into it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductUpdate {
    /// Name.
    pub name: Option<String>,
    /// Price in minor units.
    pub price: Option<i64>,
    /// Reorder point.
    pub reorder_point: Option<i64>,
    /// Units per factory order.
    pub reorder_quantity: Option<i64>,
    /// Factory id; the factory must exist.
    pub factory_id: Option<String>,
    /// The policy and its settings (each part `None`: kept).
    pub policy: PolicyChange,
}

/// A factory to create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFactory {
    /// Factory id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Manager's email.
    pub manager_email: String,
    /// Base URL of its legacy API, if it differs from `RESTOCK_FACTORY_URL`.
    pub api_url: Option<String>,
}

/// A manual stock change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustStock {
    /// Sku.
    pub sku: Sku,
    /// Units to add (or remove when negative); not zero.
    pub delta: i64,
    /// Why.
    pub reason: String,
    /// Who (an API token's name), for the audit trail.
    pub actor: String,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The file a `sqlite:` URL names; `None` for an in-memory database (or another scheme).
fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("sqlite:")?;
    let (path, params) = rest
        .trim_start_matches("//")
        .split_once('?')
        .unwrap_or((rest.trim_start_matches("//"), ""));
    let in_memory =
        path.is_empty() || path == ":memory:" || params.split('&').any(|p| p == "mode=memory");
    (!in_memory).then(|| Path::new(path))
}

/// Makes sure the directory of a `sqlite://path?...` URL exists, so a fresh checkout works.
fn ensure_sqlite_dir(url: &str) -> Result<(), StoreError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(());
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::InvalidInput(format!(
                "cannot create the SQLite directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// Page size of a SQLite file this store creates, bytes (SQLite's default is 4,096). A sale
/// writes a few rows into several B-trees (the sales table, its primary key, the idempotency
/// key's index, the time index), and clients' keys land all over the key's index; each commit
/// writes every page it touched to the WAL whole. Smaller pages write less for the same rows:
/// with 1 KiB pages a grouped sale's commits wrote a quarter of the WAL bytes and a sales
/// loop ran about 1.5 times as fast (BENCHMARKS.md, *Method*). A file keeps the page size it
/// was created with (an existing 4 KiB file stays so until `VACUUM`ed out of WAL mode).
pub const SQLITE_PAGE_SIZE: u32 = 1024;

/// WAL pages after which a commit checkpoints them into the database file: SQLite's default
/// of 1,000 pages was 4 MiB at its default page size; this keeps 4 MiB at
/// [`SQLITE_PAGE_SIZE`], so checkpoints come no more often per byte written than before.
pub const SQLITE_WAL_AUTOCHECKPOINT_PAGES: u32 = 4 * 1024 * 1024 / SQLITE_PAGE_SIZE;

/// Prepared statements kept per connection by SQLite's readers (sqlx's default).
const SQLX_STATEMENT_CACHE: usize = 100;

/// Page cache of each SQLite reader connection, KiB (SQLite's default is 2,000 KiB). In WAL
/// mode a connection drops its cache whenever another wrote since its last read, and the one
/// writer writes all the time under load, so a reader's cache seldom outlives a transaction;
/// at the default, eight readers could hold 16 MiB of the gateway's memory (a bound: the
/// purchase benchmark's peak did not change, its load is on the writer). The writer keeps
/// the default: its cache stays valid (nobody else writes).
const SQLITE_READER_CACHE_KIB: i64 = 256;

/// Prepared statements kept per connection of a PostgreSQL or MySQL pool: the same reason as
/// [`SQLITE_WRITER_STATEMENT_CACHE`], times the pool's connections (sqlx's 100 each).
const POOL_STATEMENT_CACHE: usize = 32;

/// Prepared statements kept by SQLite's one writer connection. A grouped sale's multi-row
/// `INSERT` is a different statement for every group size, each compiled program tens of
/// kilobytes; sqlx's default of 100 kept a hundred of them, about 9 MiB of the gateway's
/// peak memory under load. The sale's own few statements stay cached (least recently used
/// go first); a group's rows go in in power-of-two chunks (`sale::grouped`), so at most nine
/// insert shapes are ever prepared.
const SQLITE_WRITER_STATEMENT_CACHE: usize = 16;

/// PostgreSQL and MySQL: a pooled connection idle for this long is pinged before a
/// transaction uses it. A server that stopped that long ago is found before a sale is sent
/// (the sale answers UNAVAILABLE, nothing sold); within it, a sale sent on a connection the
/// server already dropped answers that its outcome is unknown, and a retry with the same
/// idempotency key tells which. Shorter gaps skip the ping, one round trip a transaction
/// under load.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_millis(250);

impl Store {
    /// Connects to the database named by `url` (`sqlite://file.db?mode=rwc`,
    /// `postgres://...`, `mysql://...`). SQLite gets WAL, a busy timeout and foreign keys.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            DbBackend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            DbBackend::Postgres
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            DbBackend::MySql
        } else {
            return Err(StoreError::InvalidInput(
                "the database URL must start with sqlite:, postgres: or mysql:".to_owned(),
            ));
        };
        // sqlx speaks MySQL's protocol to MariaDB under the mysql: scheme.
        let url = match url.strip_prefix("mariadb:") {
            Some(rest) => format!("mysql:{rest}"),
            None => url.to_owned(),
        };
        let connect = |max: u32, statement_cache: usize, sqlite_cache_kib: Option<i64>| {
            let mut opts = ConnectOptions::new(url.clone());
            opts.max_connections(max)
                .min_connections(0)
                .acquire_timeout(options.acquire_timeout)
                .connect_timeout(options.connect_timeout)
                .sqlx_logging(false);
            // sqlx pings a connection whenever it leaves the pool. On SQLite that is a
            // hand-off to sqlx's SQLite thread and back before every transaction, and checks
            // nothing: a local file does not hang up. PostgreSQL and MySQL ping a connection
            // that has been idle for `PING_IF_IDLE_FOR`: after a server restart that finds a
            // dead connection before a sale is sent on it (UNAVAILABLE, nothing sold, rather
            // than "outcome unknown"), while under load a connection back within moments
            // does not pay a round trip before every transaction.
            if backend == DbBackend::Sqlite {
                opts.test_before_acquire(false);
            } else {
                opts.test_before_acquire_if_idle_for(PING_IF_IDLE_FOR);
            }
            let busy = options.sqlite_busy_timeout;
            opts.map_sqlx_sqlite_opts(move |o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                let o = o
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(busy)
                    .page_size(SQLITE_PAGE_SIZE)
                    .pragma(
                        "wal_autocheckpoint",
                        SQLITE_WAL_AUTOCHECKPOINT_PAGES.to_string(),
                    )
                    .foreign_keys(true)
                    .create_if_missing(true)
                    .statement_cache_capacity(statement_cache);
                match sqlite_cache_kib {
                    // Negative: KiB rather than pages.
                    Some(kib) => o.pragma("cache_size", (-kib).to_string()),
                    None => o,
                }
            });
            opts.map_sqlx_postgres_opts(move |o| o.statement_cache_capacity(statement_cache));
            opts.map_sqlx_mysql_opts(move |o| o.statement_cache_capacity(statement_cache));
            Database::connect(opts)
        };
        let writer_connections = if backend == DbBackend::Sqlite {
            1
        } else {
            std::cmp::max(options.max_connections, 1)
        };
        let (writer, reader) = if backend == DbBackend::Sqlite {
            ensure_sqlite_dir(&url)?;
            let writer = connect(1, SQLITE_WRITER_STATEMENT_CACHE, None).await?;
            let reader = connect(
                options.max_connections.clamp(1, 8),
                SQLX_STATEMENT_CACHE,
                Some(SQLITE_READER_CACHE_KIB),
            )
            .await?;
            (writer, reader)
        } else {
            let pool = connect(writer_connections, POOL_STATEMENT_CACHE, None).await?;
            (pool.clone(), pool)
        };
        let sale_thread = match sqlite_file(&url) {
            Some(path) if backend == DbBackend::Sqlite => {
                let thread = SaleThread::start(SaleThreadOptions {
                    path: path.to_path_buf(),
                    busy_timeout: options.sqlite_busy_timeout,
                    wal_autocheckpoint_pages: SQLITE_WAL_AUTOCHECKPOINT_PAGES,
                    writer_pool: Some(writer.get_sqlite_connection_pool().clone()),
                })
                .map_err(|err| {
                    // The pools opened this file a moment ago: a connection failure.
                    StoreError::Unavailable(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(
                        err.to_string(),
                    )))
                })?;
                Some(Arc::new(thread))
            }
            _ => None,
        };
        Ok(Self {
            sale_thread,
            writer,
            reader,
            backend,
            groups: options.group_purchases.then(|| {
                Arc::new(PurchaseGroups::new(
                    options.max_waiting_purchases,
                    options.purchase_lanes,
                ))
            }),
            sale_slots: Arc::new(tokio::sync::Semaphore::new(writer_connections as usize)),
            acquire_timeout: options.acquire_timeout,
        })
    }

    /// Waits for a writer connection to be free for one sale's transaction (PostgreSQL,
    /// MySQL; a SQLite file's sales wait for the sale thread instead); the slot is held
    /// until dropped. Why not simply wait in the pool: a transaction's begin future is
    /// boxed by sea-orm and about 15 KiB, so hundreds of sales queued behind a busy pool
    /// held megabytes; waiting here costs a few bytes each. Times out like the pool
    /// (`acquire_timeout`) with the pool's error, so callers answer UNAVAILABLE as before.
    pub(crate) async fn sale_slot(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, sea_orm::DbErr> {
        match tokio::time::timeout(self.acquire_timeout, self.sale_slots.acquire()).await {
            Ok(Ok(slot)) => Ok(slot),
            // Never closed; and a timeout is the pool's own answer.
            Ok(Err(_)) | Err(_) => Err(sea_orm::DbErr::ConnectionAcquire(
                sea_orm::ConnAcquireErr::Timeout,
            )),
        }
    }

    /// How long a write waits for its turn (a pool connection, a sale slot, the sale
    /// thread) before it answers UNAVAILABLE.
    pub(crate) fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// SQLite file: the thread sales' transactions run on.
    pub(crate) fn sale_thread(&self) -> Option<&SaleThread> {
        self.sale_thread.as_deref()
    }

    pub(crate) fn groups(&self) -> Option<&PurchaseGroups> {
        self.groups.as_deref()
    }

    /// Whether concurrent purchases of one product share a transaction.
    pub fn groups_purchases(&self) -> bool {
        self.groups.is_some()
    }

    pub(crate) fn reader(&self) -> &DatabaseConnection {
        &self.reader
    }

    pub(crate) fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// The underlying connection, for tests and tools that inspect tables directly.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// Applies every pending migration (a no-op when there are none).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.writer, None).await?;
        Ok(())
    }

    /// How many migrations have not been applied yet.
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        Ok(Migrator::get_pending_migrations(&self.reader).await?.len())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.reader.ping().await?;
        Ok(())
    }

    /// Begins a write transaction. On SQLite it begins as a writer (`BEGIN IMMEDIATE`): a
    /// deferred transaction that later upgrades fails with SQLITE_BUSY instead of waiting.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, sea_orm::DbErr> {
        self.writer
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: (self.backend == DbBackend::Sqlite)
                    .then_some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
    }

    /// One product with its advertisement state.
    pub async fn product(&self, sku: &Sku) -> Result<ProductView, StoreError> {
        let Some(found) = product::Entity::find_by_id(sku).one(&self.reader).await? else {
            return Err(not_found(sku));
        };
        let ad = advertisement::Entity::find_by_id(sku)
            .one(&self.reader)
            .await?;
        let policy = replenishment_policy::Entity::find_by_id(sku)
            .one(&self.reader)
            .await?;
        Ok(ProductView {
            product: found,
            ad_active: ad.is_some_and(|a| a.active),
            policy,
        })
    }

    /// Up to `limit` products with skus after `after`, in sku order.
    pub async fn list_products(
        &self,
        after: Option<&Sku>,
        limit: u64,
    ) -> Result<Vec<ProductView>, StoreError> {
        let mut query = product::Entity::find().order_by_asc(product::Column::Sku);
        if let Some(after) = after {
            query = query.filter(product::Column::Sku.gt(after.as_str()));
        }
        let products = query.limit(limit).all(&self.reader).await?;
        let skus: Vec<&str> = products.iter().map(|p| p.sku.as_str()).collect();
        let ads = advertisement::Entity::find()
            .filter(advertisement::Column::Sku.is_in(skus.clone()))
            .all(&self.reader)
            .await?;
        let mut policies = replenishment_policy::Entity::find()
            .filter(replenishment_policy::Column::Sku.is_in(skus))
            .all(&self.reader)
            .await?;
        Ok(products
            .into_iter()
            .map(|p| {
                let ad_active = ads.iter().any(|a| a.sku == p.sku && a.active);
                let policy = policies
                    .iter()
                    .position(|row| row.sku == p.sku)
                    .map(|at| policies.swap_remove(at));
                ProductView {
                    product: p,
                    ad_active,
                    policy,
                }
            })
            .collect())
    }

    /// Creates a factory or updates its fields.
    pub async fn upsert_factory(&self, f: &NewFactory) -> Result<(), StoreError> {
        validate::id("id", &f.id)?;
        validate::name("name", &f.name)?;
        validate::email("manager email", &f.manager_email)?;
        if let Some(url) = &f.api_url {
            validate::api_url("api url", url)?;
        }
        factory::Entity::insert(factory::ActiveModel {
            id: Set(f.id.clone()),
            name: Set(f.name.clone()),
            manager_email: Set(f.manager_email.clone()),
            api_url: Set(f.api_url.clone()),
        })
        .on_conflict(
            OnConflict::column(factory::Column::Id)
                .update_columns([
                    factory::Column::Name,
                    factory::Column::ManagerEmail,
                    factory::Column::ApiUrl,
                ])
                .to_owned(),
        )
        .exec_without_returning(&self.writer)
        .await?;
        Ok(())
    }

    /// Every factory, by id.
    pub async fn list_factories(&self) -> Result<Vec<factory::Model>, StoreError> {
        Ok(factory::Entity::find()
            .order_by_asc(factory::Column::Id)
            .all(&self.reader)
            .await?)
    }

    /// Appends an operator action to the audit trail.
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        sku: &str,
        detail: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        audit(self.writer(), actor, action, sku, detail, reason).await?;
        Ok(())
    }

    /// The audit trail of a product, oldest first.
    pub async fn audit_trail(&self, sku: &str) -> Result<Vec<audit_log::Model>, StoreError> {
        Ok(audit_log::Entity::find()
            .filter(audit_log::Column::Sku.eq(sku))
            .order_by_asc(audit_log::Column::Id)
            .all(self.reader())
            .await?)
    }

    /// Creates a product (with a running advertisement) or updates its catalogue fields.
    /// Stock is taken from `p.stock` only on creation.
    pub async fn upsert_product(&self, p: &NewProduct) -> Result<ProductView, StoreError> {
        validate::name("name", &p.name)?;
        validate::units("price", p.price, 0)?;
        validate::units("stock", p.stock, 0)?;
        validate::units("reorder_point", p.reorder_point, 0)?;
        validate::reorder_quantity(p.reorder_quantity)?;
        validate::id("factory_id", &p.factory_id)?;
        let Some(maker) = factory::Entity::find_by_id(p.factory_id.as_str())
            .one(&self.reader)
            .await?
        else {
            return Err(StoreError::FailedPrecondition(format!(
                "factory {:?} does not exist; create it first",
                p.factory_id
            )));
        };
        let txn = self.begin_write().await?;
        let now = now_ms();
        let created = match &p.policy {
            Some(_) => product::Entity::find_by_id(p.sku.as_str())
                .one(&txn)
                .await?
                .is_none(),
            None => false,
        };
        product::Entity::insert(product::ActiveModel {
            sku: Set(p.sku.to_string()),
            name: Set(p.name.clone()),
            price: Set(p.price),
            stock: Set(p.stock),
            reorder_point: Set(p.reorder_point),
            reorder_quantity: Set(p.reorder_quantity),
            factory_id: Set(p.factory_id.clone()),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(product::Column::Sku)
                .update_columns([
                    product::Column::Name,
                    product::Column::Price,
                    product::Column::ReorderPoint,
                    product::Column::ReorderQuantity,
                    product::Column::FactoryId,
                    product::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        advertisement::Entity::insert(advertisement::ActiveModel {
            sku: Set(p.sku.to_string()),
            active: Set(true),
            manager_email: Set(maker.manager_email),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(advertisement::Column::Sku)
                .do_nothing_on([advertisement::Column::Sku])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        if let Some(change) = &p.policy {
            apply_policy_change(&txn, &p.sku, change, created).await?;
        }
        txn.commit().await?;
        self.product(&p.sku).await
    }

    /// Changes the given fields of an existing product, in one transaction (two admins
    /// changing different fields at once both keep their change). `NotFound` when there is no
    /// such product; stock changes only through [`Store::adjust_stock`] and sales.
    pub async fn update_product(
        &self,
        sku: &Sku,
        change: &ProductUpdate,
    ) -> Result<ProductView, StoreError> {
        if let Some(name) = &change.name {
            validate::name("name", name)?;
        }
        if let Some(price) = change.price {
            validate::units("price", price, 0)?;
        }
        if let Some(point) = change.reorder_point {
            validate::units("reorder_point", point, 0)?;
        }
        if let Some(quantity) = change.reorder_quantity {
            validate::reorder_quantity(quantity)?;
        }
        if let Some(factory_id) = &change.factory_id {
            validate::id("factory_id", factory_id)?;
            if factory::Entity::find_by_id(factory_id.as_str())
                .one(&self.reader)
                .await?
                .is_none()
            {
                return Err(StoreError::FailedPrecondition(format!(
                    "factory {factory_id:?} does not exist; create it first"
                )));
            }
        }
        let txn = self.begin_write().await?;
        // Read inside the transaction: MariaDB counts only rows an UPDATE changed, so its
        // row count cannot tell "no such product" from "nothing to change".
        if product::Entity::find_by_id(sku).one(&txn).await?.is_none() {
            return Err(not_found(sku));
        }
        let mut row = product::ActiveModel {
            sku: sea_orm::ActiveValue::Unchanged(sku.to_string()),
            updated_at: Set(now_ms()),
            ..Default::default()
        };
        if let Some(name) = &change.name {
            row.name = Set(name.clone());
        }
        if let Some(price) = change.price {
            row.price = Set(price);
        }
        if let Some(point) = change.reorder_point {
            row.reorder_point = Set(point);
        }
        if let Some(quantity) = change.reorder_quantity {
            row.reorder_quantity = Set(quantity);
        }
        if let Some(factory_id) = &change.factory_id {
            row.factory_id = Set(factory_id.clone());
        }
        product::Entity::update(row)
            .exec_without_returning(&txn)
            .await?;
        if change.policy != PolicyChange::default() {
            apply_policy_change(&txn, sku, &change.policy, false).await?;
        }
        txn.commit().await?;
        self.product(sku).await
    }

    /// Adds or removes stock by hand. Never below zero; falling to the reorder point requests
    /// a replenishment like a sale does.
    pub async fn adjust_stock(&self, change: &AdjustStock) -> Result<ProductView, StoreError> {
        validate::reason(&change.reason)?;
        if change.delta == 0 {
            return Err(StoreError::InvalidInput(
                "delta must not be zero".to_owned(),
            ));
        }
        if change.delta.abs() > validate::MAX_UNITS {
            return Err(StoreError::InvalidInput(format!(
                "delta must be within ±{}",
                validate::MAX_UNITS
            )));
        }
        match retry_transient(|| self.try_adjust(change)).await {
            Ok(Some(())) => {
                tracing::info!(sku = %change.sku, delta = change.delta, reason = %change.reason, "stock adjusted");
                self.product(&change.sku).await
            }
            Ok(None) => {
                let current = self.product(&change.sku).await?;
                Err(StoreError::FailedPrecondition(format!(
                    "{} has {} in stock; removing {} would take it below zero",
                    change.sku, current.product.stock, -change.delta
                )))
            }
            Err(sea_orm::DbErr::RecordNotFound(sku)) => Err(not_found(&sku)),
            Err(err) => Err(err.into()),
        }
    }

    /// `Some(())` when applied, `None` when it would go below zero.
    async fn try_adjust(&self, change: &AdjustStock) -> Result<Option<()>, sea_orm::DbErr> {
        let txn = self.begin_write().await?;
        let updated = product::add_to_stock(change.sku.as_str(), change.delta)
            .filter(Expr::col(product::Column::Stock).add(change.delta).gte(0))
            .filter(
                Expr::col(product::Column::Stock)
                    .add(change.delta)
                    .lte(validate::MAX_UNITS),
            )
            .exec(&txn)
            .await?;
        let Some(after) = product::Entity::find_by_id(change.sku.as_str())
            .one(&txn)
            .await?
        else {
            txn.rollback().await?;
            return Err(sea_orm::DbErr::RecordNotFound(change.sku.to_string()));
        };
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        if change.delta < 0 && after.stock <= after.reorder_point {
            insert_outbox_intent(&txn, &change.sku, IntentReason::ReorderPoint, true, None).await?;
        }
        audit(
            &txn,
            &change.actor,
            "adjust_stock",
            &change.sku,
            &format!("delta={:+} stock={}", change.delta, after.stock),
            &change.reason,
        )
        .await?;
        txn.commit().await?;
        Ok(Some(()))
    }
}

/// Appends to the audit trail (inside the caller's transaction when it has one).
pub(crate) async fn audit(
    db: &impl sea_orm::ConnectionTrait,
    actor: &str,
    action: &str,
    sku: &str,
    detail: &str,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    let cut = |s: &str| s.chars().take(500).collect::<String>();
    audit_log::Entity::insert(audit_log::ActiveModel {
        at: Set(now_ms()),
        actor: Set(actor.chars().take(64).collect()),
        action: Set(action.to_owned()),
        sku: Set(sku.to_owned()),
        detail: Set(cut(detail)),
        reason: Set(cut(reason)),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Records "replenish this product" (unique sku: at most one pending intent per product).
///
/// A sale that changed stock (`renew`: sold down to the reorder point, or a manual removal)
/// bumps the revision of an intent already pending, so a relay that read the older revision
/// keeps the row and hands the request over again: a run that already read the stock must
/// hear about the change. An out-of-stock sale changed nothing, so it only makes sure an
/// intent exists — a flood of them does not become a flood of signals.
pub(crate) async fn insert_outbox_intent(
    txn: &DatabaseTransaction,
    sku: &str,
    reason: IntentReason,
    renew: bool,
    request_id: Option<&str>,
) -> Result<(), sea_orm::DbErr> {
    let on_conflict = if renew {
        OnConflict::column(replenish_outbox::Column::Sku)
            .value(
                replenish_outbox::Column::Revision,
                Expr::col((replenish_outbox::Entity, replenish_outbox::Column::Revision)).add(1),
            )
            .to_owned()
    } else {
        OnConflict::column(replenish_outbox::Column::Sku)
            .do_nothing_on([replenish_outbox::Column::Sku])
            .to_owned()
    };
    replenish_outbox::Entity::insert(replenish_outbox::ActiveModel {
        sku: Set(sku.to_owned()),
        reason: Set(reason),
        requested_at: Set(now_ms()),
        revision: Set(0),
        attempts: Set(0),
        last_error: Set(None),
        request_id: Set(request_id.map(str::to_owned)),
        ..Default::default()
    })
    .on_conflict(on_conflict)
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

pub(crate) fn not_found(sku: &str) -> StoreError {
    StoreError::NotFound(format!("no product with sku {sku:?}"))
}

/// 2, 4, 8 ... ms, capped at 100 ms, for transactions that met a deadlock or a busy file.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(std::cmp::min(1u64 << std::cmp::min(attempt, 6), 100))
}

/// Runs a transaction (`attempt`) again, after a [`backoff`], while it fails with a transient
/// error (deadlock, serialization failure, busy file; see [`classify`]), at most
/// [`TRANSACTION_ATTEMPTS`] times; its last answer otherwise. For transactions that change
/// nothing when they fail: the sale, whose failed commit may have sold, has its own loop.
pub(crate) async fn retry_transient<T, F, Fut>(mut attempt: F) -> Result<T, sea_orm::DbErr>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sea_orm::DbErr>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(err) if classify(&err) == DbErrKind::Transient && n < TRANSACTION_ATTEMPTS => {
                tokio::time::sleep(backoff(n)).await;
                n += 1;
            }
            answer => return answer,
        }
    }
}

pub(crate) fn unreachable_attempts<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable(sea_orm::DbErr::Custom(
        "the database stayed busy; try again".to_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;

    async fn pragma(connection: &DatabaseConnection, name: &str) -> i64 {
        connection
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                format!("PRAGMA {name}"),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
    }

    /// A migrated store on a fresh SQLite file `t.db` in a new directory (returned too).
    async fn file_store(name: &str, options: &StoreOptions) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("restock-{name}-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
        let store = Store::connect(&url, options).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn sqlite_files_get_small_pages_and_readers_a_small_page_cache_and_no_ping() {
        let (store, dir) = file_store("cache", &StoreOptions::default()).await;
        assert_eq!(
            pragma(store.reader(), "cache_size").await,
            -SQLITE_READER_CACHE_KIB
        );
        assert_eq!(
            pragma(store.writer(), "cache_size").await,
            -2000,
            "SQLite's default"
        );
        for connection in [store.writer(), store.reader()] {
            // No ping as a connection leaves the pool: a hand-off to sqlx's SQLite thread
            // before every transaction, checking nothing on a local file.
            assert!(
                !connection
                    .get_sqlite_connection_pool()
                    .options()
                    .get_test_before_acquire()
            );
            assert_eq!(
                pragma(connection, "page_size").await,
                i64::from(SQLITE_PAGE_SIZE)
            );
            assert_eq!(
                pragma(connection, "wal_autocheckpoint").await,
                i64::from(SQLITE_WAL_AUTOCHECKPOINT_PAGES)
            );
        }
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The sale thread's commits reach the database file through the checkpoint thread, long
    /// before the WAL would cross a commit's own checkpoint limit (nothing else writes back
    /// here: the WAL stays far below it).
    #[tokio::test]
    async fn sales_are_checkpointed_into_the_file_off_the_sale_thread() {
        let (store, dir) = file_store("ckpt", &StoreOptions::default()).await;
        crate::demo::load(&store).await.unwrap();
        let file_size = || std::fs::metadata(dir.join("t.db")).unwrap().len();
        let wal_size = || std::fs::metadata(dir.join("t.db-wal")).unwrap().len();
        let before = file_size();
        assert!(
            wal_size() < u64::from(SQLITE_WAL_AUTOCHECKPOINT_PAGES * SQLITE_PAGE_SIZE),
            "the test needs a WAL below the automatic checkpoint"
        );
        for i in 0..20 {
            let request =
                crate::PurchaseRequest::new(crate::demo::DEMO_SKU, 1, &format!("ckpt-{i}"), "test")
                    .unwrap();
            store.purchase(&request).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while file_size() <= before && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            file_size() > before,
            "nothing was checkpointed into the file ({before} bytes)"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// On SQLite a sale waits for its turn on the sale thread at most `acquire_timeout`, then
    /// answers UNAVAILABLE with nothing sold, as a pool would; the one ahead of it, which had
    /// begun, sells once the write lock is free.
    #[tokio::test]
    async fn a_sale_that_waited_too_long_for_the_sale_thread_is_not_sold() {
        let options = StoreOptions {
            acquire_timeout: Duration::from_millis(300),
            group_purchases: false,
            ..StoreOptions::default()
        };
        let (store, dir) = file_store("turn", &options).await;
        crate::demo::load(&store).await.unwrap();
        let sku = crate::demo::DEMO_SKU;
        let stock = || async {
            let found = store.product(&Sku::parse(sku).unwrap()).await.unwrap();
            found.product.stock
        };
        let before = stock().await;

        // Another connection holds the write lock: the first sale's BEGIN waits for it on
        // the thread, and the second waits behind the first.
        let holder = rusqlite::Connection::open(dir.join("t.db")).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let first = {
            let store = store.clone();
            let request = crate::PurchaseRequest::new(sku, 1, "turn-1", "test").unwrap();
            tokio::spawn(async move { store.purchase(&request).await })
        };
        // Long enough for the first to reach the thread first on a busy machine.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = {
            let store = store.clone();
            let request = crate::PurchaseRequest::new(sku, 1, "turn-2", "test").unwrap();
            tokio::spawn(async move { store.purchase(&request).await })
        };
        // Past the second's acquire_timeout (300 ms from when it was sent).
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        holder.execute_batch("ROLLBACK").unwrap();

        let first = first.await.unwrap();
        assert!(
            matches!(first, Ok(crate::PurchaseOutcome::Sold { .. })),
            "{first:?}"
        );
        let second = second.await.unwrap();
        assert!(
            matches!(second, Err(StoreError::Unavailable(_))),
            "{second:?}"
        );
        assert_eq!(stock().await, before - 1, "only the first sold");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
