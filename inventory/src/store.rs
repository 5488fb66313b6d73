//! [`Store`]: the inventory's only writer.
//!
//! The sale is one conditional `UPDATE products SET stock = stock - q WHERE sku = ? AND
//! stock >= q` plus the sale row (and, at the reorder point, the outbox intent) in one
//! transaction. The row count of the `UPDATE` decides; the new stock comes back with
//! `RETURNING`, or on MySQL (which has none) is read inside the same transaction while the row
//! is still locked. On PostgreSQL a sale that sells is one statement (data-modifying CTEs).
//! Concurrent sales of one product can share a transaction: [`crate::purchase_groups`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::entity::{
    advertisement, audit_log, factory, product, replenish_outbox, replenishment_policy, sale,
};
use crate::error::{DbErrKind, before_commit, classify, may_have_committed};
use crate::migration::Migrator;
use crate::planning::{PolicyChange, apply_policy_change};
use crate::purchase_groups::PurchaseGroups;
use crate::{StoreError, replenishment_id, validate};

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
    /// ([`crate::purchase_groups`]); `false` gives each purchase its own transaction.
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
            max_waiting_purchases: crate::purchase_groups::MAX_WAITING,
            purchase_lanes: crate::purchase_groups::DEFAULT_LANES,
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
}

/// A validated purchase, built by [`PurchaseRequest::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRequest {
    sku: String,
    quantity: u32,
    idempotency_key: Option<String>,
    requester: String,
    request_id: Option<String>,
}

impl PurchaseRequest {
    /// Checks a purchase's input against [`crate::validate`]. An empty key means "no
    /// deduplication"; an empty requester becomes `anonymous`.
    pub fn new(
        sku: &str,
        quantity: u32,
        idempotency_key: &str,
        requester: &str,
    ) -> Result<Self, StoreError> {
        validate::sku(sku)?;
        validate::purchase_quantity(quantity)?;
        validate::token("idempotency_key", idempotency_key)?;
        validate::token("requester", requester)?;
        Ok(Self {
            sku: sku.to_owned(),
            quantity,
            idempotency_key: (!idempotency_key.is_empty()).then(|| idempotency_key.to_owned()),
            requester: if requester.is_empty() {
                "anonymous".to_owned()
            } else {
                requester.to_owned()
            },
            request_id: None,
        })
    }

    /// The same purchase, carrying the id of the call that asked for it (the gateway's
    /// `x-request-id`): a replenishment this sale asks for is handed it. An id that is not a
    /// short printable token is left out.
    pub fn with_request_id(mut self, request_id: &str) -> Self {
        let sane = !request_id.is_empty()
            && request_id.len() <= 128
            && request_id.bytes().all(|b| b.is_ascii_graphic());
        self.request_id = sane.then(|| request_id.to_owned());
        self
    }

    /// The id of the call that asked for this purchase, if known.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The product asked for.
    pub fn sku(&self) -> &str {
        &self.sku
    }

    /// Units asked for.
    pub fn quantity(&self) -> u32 {
        self.quantity
    }

    /// The client's deduplication key, if it sent one.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Who is buying (`anonymous` when not said).
    pub fn requester(&self) -> &str {
        &self.requester
    }
}

/// What a purchase did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseOutcome {
    /// The whole quantity was sold.
    Sold {
        /// The sale's id.
        sale_id: String,
        /// Stock left right after this sale.
        remaining_stock: i64,
        /// Set when the sale took stock to the reorder point or below and so requested a
        /// replenishment.
        replenishment_id: Option<String>,
        /// True when this repeats an earlier sale with the same idempotency key.
        replayed: bool,
    },
    /// Too little stock: nothing was sold and a replenishment was requested.
    OutOfStock {
        /// Stock found.
        stock: i64,
        /// The replenishment requested.
        replenishment_id: String,
    },
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
    pub sku: String,
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
    pub sku: String,
    /// Units to add (or remove when negative); not zero.
    pub delta: i64,
    /// Why.
    pub reason: String,
    /// Who (an API token's name), for the audit trail.
    pub actor: String,
}

/// A new sale id: a time-ordered UUID (v7), so each sale row lands at the end of the primary
/// key's index instead of at a random page of it (fewer pages written per commit).
pub(crate) fn new_sale_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Makes sure the directory of a `sqlite://path?...` URL exists, so a fresh checkout works.
fn ensure_sqlite_dir(url: &str) -> Result<(), StoreError> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(());
    };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::InvalidInput(format!(
                "cannot create the SQLite directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// Prepared statements kept per connection by SQLite's readers (sqlx's default).
const SQLX_STATEMENT_CACHE: usize = 100;

/// Prepared statements kept per connection of a PostgreSQL or MySQL pool: the same reason as
/// [`SQLITE_WRITER_STATEMENT_CACHE`], times the pool's connections (sqlx's 100 each).
const POOL_STATEMENT_CACHE: usize = 32;

/// Prepared statements kept by SQLite's one writer connection. A grouped sale's multi-row
/// `INSERT` is a different statement for every group size, each compiled program tens of
/// kilobytes; sqlx's default of 100 kept a hundred of them, about 9 MiB of the gateway's
/// peak memory under load. The sale's own few statements stay cached (least recently used
/// go first), and a group's insert is prepared again when its size changes, which costs
/// less than its commit.
const SQLITE_WRITER_STATEMENT_CACHE: usize = 16;

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
        let connect = |max: u32, statement_cache: usize| {
            let mut opts = ConnectOptions::new(url.clone());
            opts.max_connections(max)
                .min_connections(0)
                .acquire_timeout(options.acquire_timeout)
                .connect_timeout(options.connect_timeout)
                .sqlx_logging(false);
            let busy = options.sqlite_busy_timeout;
            opts.map_sqlx_sqlite_opts(move |o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(busy)
                    .foreign_keys(true)
                    .create_if_missing(true)
                    .statement_cache_capacity(statement_cache)
            });
            opts.map_sqlx_postgres_opts(move |o| o.statement_cache_capacity(statement_cache));
            opts.map_sqlx_mysql_opts(move |o| o.statement_cache_capacity(statement_cache));
            Database::connect(opts)
        };
        let (writer, reader) = if backend == DbBackend::Sqlite {
            ensure_sqlite_dir(&url)?;
            let writer = connect(1, SQLITE_WRITER_STATEMENT_CACHE).await?;
            let reader = connect(options.max_connections.clamp(1, 8), SQLX_STATEMENT_CACHE).await?;
            (writer, reader)
        } else {
            let pool = connect(
                std::cmp::max(options.max_connections, 1),
                POOL_STATEMENT_CACHE,
            )
            .await?;
            (pool.clone(), pool)
        };
        Ok(Self {
            writer,
            reader,
            backend,
            groups: options.group_purchases.then(|| {
                Arc::new(PurchaseGroups::new(
                    options.max_waiting_purchases,
                    options.purchase_lanes,
                ))
            }),
        })
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

    /// Sells `request.quantity` units, or reports OUT_OF_STOCK and requests a replenishment.
    /// With grouping on, it may share its transaction with concurrent sales of the product.
    ///
    /// Dropping the returned future before the sale's transaction began (a caller that gave
    /// up waiting) sells nothing: the sale is taken out of its queue unsold. Errors:
    /// [`StoreError::Busy`] when too many sales of the product wait already (nothing sold);
    /// [`StoreError::Unavailable`] when nothing was sold; [`StoreError::OutcomeUnknown`] when
    /// the connection failed at commit and the sale may or may not have happened (with an
    /// idempotency key the store resolves that itself where it can).
    ///
    /// No read comes before the write: a repeated idempotency key is caught by the key's
    /// unique index inside the sale's own transaction, and that conflict is answered with the
    /// first purchase's result (`replayed`).
    pub async fn purchase(&self, request: &PurchaseRequest) -> Result<PurchaseOutcome, StoreError> {
        match &self.groups {
            Some(groups) => groups.purchase(self, request.clone()).await,
            None => self.sell_alone(request).await,
        }
    }

    /// [`Store::purchase`] in a transaction of its own, whatever the options say.
    pub(crate) async fn purchase_ungrouped(
        &self,
        request: &PurchaseRequest,
    ) -> Result<PurchaseOutcome, StoreError> {
        if let Some(outcome) = self.replay(request).await? {
            return Ok(outcome);
        }
        self.sell_alone(request).await
    }

    /// Sells in a transaction of its own (replays already answered), retrying conflicts.
    ///
    /// A failure where the sale may have committed ([`after_failure`]) is never sold again
    /// blindly: a sale with an idempotency key asks its key (found: that is the answer;
    /// absent: selling again is safe, the key's unique index sells it at most once), one
    /// without gets [`StoreError::OutcomeUnknown`].
    pub(crate) async fn sell_alone(
        &self,
        request: &PurchaseRequest,
    ) -> Result<PurchaseOutcome, StoreError> {
        // Set once an attempt may have committed: from then on no error may say "nothing
        // was changed".
        let mut uncertain: Option<SaleFailure> = None;
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            let failure = match self.try_purchase(request).await {
                Ok(outcome) => return self.unless_replayed(request, outcome).await,
                Err(failure) => failure,
            };
            let answer = match after_failure(&failure) {
                // Out of stock: only the (idempotent) intent was being committed, nothing
                // sold either way, so trying again is safe.
                AfterFailure::Unknown
                    if failure.sale_id.is_none() && attempt < TRANSACTION_ATTEMPTS =>
                {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                AfterFailure::Unknown if failure.sale_id.is_some() => {
                    tracing::warn!(error = %failure.err, sku = %request.sku, "purchase outcome unknown (the connection failed at commit)");
                    if request.idempotency_key.is_none() {
                        return Err(StoreError::OutcomeUnknown(failure.err));
                    }
                    match self.replay(request).await {
                        Ok(Some(outcome)) => {
                            return Ok(mark_own_sale(outcome, failure.sale_id.as_deref()));
                        }
                        Ok(None) => {
                            uncertain = Some(failure);
                            tokio::time::sleep(backoff(attempt)).await;
                            continue;
                        }
                        Err(_) => return Err(StoreError::OutcomeUnknown(failure.err)),
                    }
                }
                AfterFailure::Retry if attempt < TRANSACTION_ATTEMPTS => {
                    tracing::debug!(attempt, error = %failure.err, "purchase transaction retried");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                AfterFailure::Retry | AfterFailure::RolledBack | AfterFailure::Unknown => {
                    match failure.err {
                        sea_orm::DbErr::RecordNotFound(sku) => Err(not_found(&sku)),
                        // Another purchase with the same key committed first: answer as it did.
                        err if classify(&err) == DbErrKind::UniqueViolation
                            && request.idempotency_key.is_some() =>
                        {
                            match self.replay(request).await {
                                Ok(Some(outcome)) => Ok(mark_own_sale(
                                    outcome,
                                    uncertain.as_ref().and_then(|u| u.sale_id.as_deref()),
                                )),
                                Ok(None) => Err(before_commit(err)),
                                Err(replay_err) => Err(replay_err),
                            }
                        }
                        err => Err(before_commit(err)),
                    }
                }
            };
            return match (answer, uncertain) {
                (Err(StoreError::Unavailable(_) | StoreError::Database(_)), Some(first)) => {
                    Err(StoreError::OutcomeUnknown(first.err))
                }
                (answer, _) => answer,
            };
        }
        match uncertain {
            Some(first) => Err(StoreError::OutcomeUnknown(first.err)),
            None => unreachable_attempts(),
        }
    }

    /// `outcome`, unless it is OUT_OF_STOCK for a key that already sold: then the first
    /// purchase's answer (a retry of a sale must not hear "nothing sold"), or the refusal of
    /// a key reused for another purchase. Only an out-of-stock answer reads: nothing else
    /// wrote no sale row, so the key's unique index has decided for everything else.
    pub(crate) async fn unless_replayed(
        &self,
        request: &PurchaseRequest,
        outcome: PurchaseOutcome,
    ) -> Result<PurchaseOutcome, StoreError> {
        match outcome {
            PurchaseOutcome::OutOfStock { .. } if request.idempotency_key.is_some() => {
                Ok(self.replay(request).await?.unwrap_or(outcome))
            }
            outcome => Ok(outcome),
        }
    }

    /// The first result of an earlier purchase with the same idempotency key, if any. A read
    /// that changes nothing: its failures are [`StoreError::Unavailable`].
    pub(crate) async fn replay(
        &self,
        request: &PurchaseRequest,
    ) -> Result<Option<PurchaseOutcome>, StoreError> {
        let Some(key) = &request.idempotency_key else {
            return Ok(None);
        };
        let Some(sale) = sale::Entity::find()
            .filter(sale::Column::IdempotencyKey.eq(key.as_str()))
            .one(&self.reader)
            .await
            .map_err(before_commit)?
        else {
            return Ok(None);
        };
        if sale.sku != request.sku || sale.quantity != i64::from(request.quantity) {
            return Err(StoreError::FailedPrecondition(format!(
                "idempotency key {key:?} was already used for a purchase of {} x {}; use a new key for a different purchase",
                sale.quantity, sale.sku
            )));
        }
        Ok(Some(PurchaseOutcome::Sold {
            replenishment_id: sale
                .requested_replenishment
                .then(|| replenishment_id(&sale.sku)),
            sale_id: sale.id,
            remaining_stock: sale.remaining_stock,
            replayed: true,
        }))
    }

    /// One attempt at selling `request` alone.
    async fn try_purchase(
        &self,
        request: &PurchaseRequest,
    ) -> Result<PurchaseOutcome, SaleFailure> {
        let quantity = i64::from(request.quantity);
        if self.backend == DbBackend::Postgres
            && let Some(sold) = self.sell_in_one_statement(request).await?
        {
            return Ok(sold);
        }
        // (On PostgreSQL, nothing was sold: the transaction below tells NOT_FOUND from
        // OUT_OF_STOCK, and sells after all if stock arrived meanwhile.)
        let txn = self.begin_write().await?;
        let Some(after) = self.take_stock(&txn, &request.sku, quantity).await? else {
            // Nothing sold: either no such product or too little stock. Request a
            // replenishment in the same transaction (still no read-then-write on stock).
            let Some(found) = product::Entity::find_by_id(request.sku.as_str())
                .one(&txn)
                .await?
            else {
                txn.rollback().await?;
                return Err(sea_orm::DbErr::RecordNotFound(request.sku.clone()).into());
            };
            insert_outbox_intent(
                &txn,
                &request.sku,
                "out_of_stock",
                false,
                request.request_id(),
            )
            .await?;
            // Only an intent (idempotent) was at stake: no sale id to look for.
            txn.commit()
                .await
                .map_err(|err| SaleFailure::at_commit(err, None))?;
            return Ok(PurchaseOutcome::OutOfStock {
                stock: found.stock,
                replenishment_id: replenishment_id(&request.sku),
            });
        };
        let reorder = after.stock <= after.reorder_point;
        let sale_id = crate::store::new_sale_id();
        sale::Entity::insert(sale::ActiveModel {
            id: Set(sale_id.clone()),
            sku: Set(request.sku.clone()),
            quantity: Set(quantity),
            remaining_stock: Set(after.stock),
            idempotency_key: Set(request.idempotency_key.clone()),
            requester: Set(request.requester.clone()),
            requested_replenishment: Set(reorder),
            created_at: Set(now_ms()),
        })
        .exec_without_returning(&txn)
        .await?;
        if reorder {
            insert_outbox_intent(
                &txn,
                &request.sku,
                "reorder_point",
                true,
                request.request_id(),
            )
            .await?;
        }
        txn.commit()
            .await
            .map_err(|err| SaleFailure::at_commit(err, Some(sale_id.clone())))?;
        Ok(PurchaseOutcome::Sold {
            sale_id,
            remaining_stock: after.stock,
            replenishment_id: reorder.then(|| replenishment_id(&request.sku)),
            replayed: false,
        })
    }

    /// PostgreSQL: the whole sale — the conditional `UPDATE`, the sale row, the intent at the
    /// reorder point — as one statement (data-modifying CTEs) in its own implicit
    /// transaction. The product's row stays locked for one round trip and the commit, as
    /// long as for the bare `UPDATE`, instead of three round trips. `None`: nothing sold.
    async fn sell_in_one_statement(
        &self,
        request: &PurchaseRequest,
    ) -> Result<Option<PurchaseOutcome>, SaleFailure> {
        const SALE: &str = "WITH taken AS ( \
                UPDATE products SET stock = stock - $1, updated_at = $2 \
                WHERE sku = $3 AND stock >= $1 RETURNING stock, reorder_point), \
            sold AS ( \
                INSERT INTO sales (id, sku, quantity, remaining_stock, idempotency_key, \
                    requester, requested_replenishment, created_at) \
                SELECT $4, $3, $1, stock, $5, $6, stock <= reorder_point, $2 FROM taken \
                RETURNING remaining_stock, requested_replenishment), \
            intent AS ( \
                INSERT INTO replenish_outbox (sku, reason, requested_at, revision, attempts, \
                    request_id) \
                SELECT $3, 'reorder_point', $2, 0, 0, $7 FROM sold WHERE requested_replenishment \
                ON CONFLICT (sku) DO UPDATE SET revision = replenish_outbox.revision + 1) \
            SELECT remaining_stock, requested_replenishment FROM sold";
        let sale_id = crate::store::new_sale_id();
        let now = now_ms();
        let statement = sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            SALE,
            [
                i64::from(request.quantity).into(),
                now.into(),
                request.sku.clone().into(),
                sale_id.clone().into(),
                request.idempotency_key.clone().into(),
                request.requester.clone().into(),
                request.request_id.clone().into(),
            ],
        );
        // The statement commits itself: a failure may have lost the answer to its commit.
        let Some(row) = self
            .writer
            .query_one_raw(statement)
            .await
            .map_err(|err| SaleFailure::at_commit(err, Some(sale_id.clone())))?
        else {
            return Ok(None);
        };
        let decode = |err| SaleFailure::at_commit(err, Some(sale_id.clone()));
        let remaining_stock: i64 = row.try_get_by_index(0).map_err(decode)?;
        let reorder: bool = row.try_get_by_index(1).map_err(decode)?;
        Ok(Some(PurchaseOutcome::Sold {
            sale_id,
            remaining_stock,
            replenishment_id: reorder.then(|| replenishment_id(&request.sku)),
            replayed: false,
        }))
    }

    /// One product with its advertisement state.
    pub async fn product(&self, sku: &str) -> Result<ProductView, StoreError> {
        validate::sku(sku)?;
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
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ProductView>, StoreError> {
        let mut query = product::Entity::find().order_by_asc(product::Column::Sku);
        if let Some(after) = after {
            validate::sku(after)?;
            query = query.filter(product::Column::Sku.gt(after));
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
        validate::sku(&p.sku)?;
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
            sku: Set(p.sku.clone()),
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
            sku: Set(p.sku.clone()),
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
        sku: &str,
        change: &ProductUpdate,
    ) -> Result<ProductView, StoreError> {
        validate::sku(sku)?;
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
            sku: sea_orm::ActiveValue::Unchanged(sku.to_owned()),
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
        validate::sku(&change.sku)?;
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
        let updated = product::Entity::update_many()
            .col_expr(
                product::Column::Stock,
                Expr::col(product::Column::Stock).add(change.delta),
            )
            .col_expr(product::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(product::Column::Sku.eq(change.sku.as_str()))
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
            return Err(sea_orm::DbErr::RecordNotFound(change.sku.clone()));
        };
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        if change.delta < 0 && after.stock <= after.reorder_point {
            insert_outbox_intent(&txn, &change.sku, "reorder_point", true, None).await?;
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
    reason: &str,
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
        reason: Set(reason.to_owned()),
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

/// Why one attempt at a sale's transaction failed, and whether it had reached its commit.
#[derive(Debug)]
pub(crate) struct SaleFailure {
    /// The database's error.
    pub(crate) err: sea_orm::DbErr,
    /// `true` when `COMMIT` (or a statement that commits itself) was sent: the server may
    /// have committed even though the answer is an error.
    pub(crate) at_commit: bool,
    /// The id the sale row would have (at commit, for a sale), to tell it from another
    /// sale's row with the same key.
    pub(crate) sale_id: Option<String>,
}

impl SaleFailure {
    /// A failure once `COMMIT` was sent.
    pub(crate) fn at_commit(err: sea_orm::DbErr, sale_id: Option<String>) -> Self {
        Self {
            err,
            at_commit: true,
            sale_id,
        }
    }
}

impl From<sea_orm::DbErr> for SaleFailure {
    /// A failure before `COMMIT` was sent: nothing was committed.
    fn from(err: sea_orm::DbErr) -> Self {
        Self {
            err,
            at_commit: false,
            sale_id: None,
        }
    }
}

/// What to do after a sale's (or a group's) transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Rolled back by a transient conflict (deadlock, serialization, busy file): run it again.
    Retry,
    /// Rolled back for good (or never begun): nothing was sold. A group's requests may be
    /// sold one by one.
    RolledBack,
    /// It may have committed: do not sell again on a guess. Only an idempotency key can
    /// tell; without one the answer is [`StoreError::OutcomeUnknown`].
    Unknown,
}

/// Decides what a failed sale transaction means ([`SaleFailure`]): before `COMMIT`, nothing
/// was committed; at `COMMIT`, only an error the server reported (it rolled back) or a
/// connection never had says so ([`crate::error::may_have_committed`]).
pub(crate) fn after_failure(failure: &SaleFailure) -> AfterFailure {
    if failure.at_commit && may_have_committed(&failure.err) {
        return AfterFailure::Unknown;
    }
    match classify(&failure.err) {
        DbErrKind::Transient => AfterFailure::Retry,
        _ => AfterFailure::RolledBack,
    }
}

/// A replayed outcome found after an uncertain commit: when its sale id is the one that
/// commit wrote, it is this request's own sale, not a replay of an earlier one.
pub(crate) fn mark_own_sale(
    outcome: PurchaseOutcome,
    own_sale_id: Option<&str>,
) -> PurchaseOutcome {
    match outcome {
        PurchaseOutcome::Sold {
            sale_id,
            remaining_stock,
            replenishment_id,
            replayed,
        } => PurchaseOutcome::Sold {
            replayed: replayed && own_sale_id != Some(sale_id.as_str()),
            sale_id,
            remaining_stock,
            replenishment_id,
        },
        other => other,
    }
}

fn not_found(sku: &str) -> StoreError {
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
    use super::*;
    use std::sync::Arc;

    fn io_reset() -> sea_orm::DbErr {
        sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(Arc::new(
            sea_orm::sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            )),
        )))
    }

    fn before(err: sea_orm::DbErr) -> SaleFailure {
        SaleFailure::from(err)
    }

    fn at_commit(err: sea_orm::DbErr) -> SaleFailure {
        SaleFailure::at_commit(err, Some("sale-1".into()))
    }

    /// An error the server itself reported (here SQLite's "no such table").
    async fn server_reported() -> sea_orm::DbErr {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared("SELECT * FROM no_such_table")
            .await
            .unwrap_err()
    }

    #[test]
    fn a_connection_lost_at_commit_is_never_sold_again_blindly() {
        assert_eq!(after_failure(&at_commit(io_reset())), AfterFailure::Unknown);
        assert_eq!(
            after_failure(&at_commit(sea_orm::DbErr::Custom("?".into()))),
            AfterFailure::Unknown
        );
    }

    #[test]
    fn a_connection_lost_before_commit_rolled_back() {
        assert_eq!(after_failure(&before(io_reset())), AfterFailure::RolledBack);
    }

    #[test]
    fn a_commit_that_never_got_a_connection_rolled_back() {
        let err = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
        assert_eq!(after_failure(&at_commit(err)), AfterFailure::RolledBack);
    }

    #[tokio::test]
    async fn a_commit_the_server_refused_rolled_back() {
        let err = server_reported().await;
        assert_eq!(after_failure(&at_commit(err)), AfterFailure::RolledBack);
    }

    #[test]
    fn a_sale_found_by_its_own_id_is_not_a_replay() {
        let found = PurchaseOutcome::Sold {
            sale_id: "sale-1".into(),
            remaining_stock: 3,
            replenishment_id: None,
            replayed: true,
        };
        let own = mark_own_sale(found.clone(), Some("sale-1"));
        assert!(matches!(
            own,
            PurchaseOutcome::Sold {
                replayed: false,
                ..
            }
        ));
        let other = mark_own_sale(found, Some("sale-2"));
        assert!(matches!(
            other,
            PurchaseOutcome::Sold { replayed: true, .. }
        ));
    }
}
