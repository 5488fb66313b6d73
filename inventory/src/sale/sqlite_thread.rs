//! On SQLite, sales' transactions run on a thread of their own, with the C library itself.
//!
//! Through sqlx every statement is a hand-off from a tokio task to sqlx's SQLite thread and
//! back: a sale's `BEGIN`, `UPDATE`, `INSERT` and `COMMIT` were four round trips between
//! threads, each about as long as the whole transaction takes in SQLite, all in the serial
//! path of the one writer (BENCHMARKS.md, *Method*: the machine sat idle while sales
//! waited). Here a [`SaleThread`] owns one `rusqlite` connection to the same file and runs a
//! whole sale transaction — one purchase, or a group of them — per job: one hand-off there
//! and one back, and jobs queued behind it run back to back without a tokio round trip.
//!
//! What a transaction does is what the sqlx path does: per product (in sku order) one
//! guarded `UPDATE … RETURNING` for the total, and when it does not all fit, the row read
//! and exactly what fits taken (the write lock is held since `BEGIN IMMEDIATE`); the sale
//! rows; the outbox intent ([`crate::store::insert_outbox_intent`]'s rules); `COMMIT`. The
//! outcomes are planned by the same function as the sqlx path's ([`super::grouped`]).
//!
//! Errors come back as the sqlx path's would (a database error with SQLite's extended
//! code), so [`super::after_failure`] decides about them the same way: busy is retried, a
//! unique key is a replay, anything else before `COMMIT` rolled back. A failed `COMMIT` was
//! reported by SQLite itself and rolled back (the thread checks that the connection is out
//! of its transaction, and rolls back if it is not); only a job whose answer never came (the
//! thread stopped) may have committed.
//!
//! Checkpoints (copying the WAL back into the database file, with its `fsync`s) are not the
//! sale thread's: SQLite runs one in whichever commit crosses the WAL's size limit, which put
//! a quarter of the thread's time and a disk wait into the serial path (BENCHMARKS.md,
//! *Method*). A second thread with a connection of its own checkpoints instead, nudged by
//! the sale thread's commits and at most once per [`CHECKPOINT_SPACING`]; `PASSIVE`, it never
//! waits for nor holds up the writer. The sale connection keeps SQLite's own automatic
//! checkpoint at [`BACKSTOP_FACTOR`] times the store's interval, should that thread fall
//! behind.
//!
//! The store's other writes still go through sqlx's one writer connection. The thread waits
//! (briefly) while that connection is out of its pool, before each `BEGIN`, so back-to-back
//! sales do not starve the store's own other writers on the file lock (SQLite's busy handler
//! only retries after sleeping). Other processes (the worker) rely on the busy timeout, as
//! before.

use std::borrow::Cow;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use sea_orm::sqlx::error::{DatabaseError, ErrorKind};
use tokio::sync::oneshot;

use super::grouped::{plan_product_sale, what_fits};
use super::{PurchaseOutcome, PurchaseRequest, SaleFailure};
use crate::entity::replenish_outbox::IntentReason;
use crate::store::now_ms;

/// The longest the thread waits for the store's sqlx writer to hand its connection back
/// before it begins anyway (then SQLite's busy timeout decides who goes first).
const MOST_DEFERENCE: Duration = Duration::from_millis(20);

/// The least time between two checkpoints of the checkpoint thread: under load commits come
/// far more often, and what they wrote meanwhile is copied back in one pass.
const CHECKPOINT_SPACING: Duration = Duration::from_millis(250);

/// The sale connection checkpoints by itself only once the WAL holds this many times the
/// store's interval: a backstop, should the checkpoint thread fall behind.
const BACKSTOP_FACTOR: u32 = 4;

/// What one transaction on the thread gave: every request's outcome; or why not, with the
/// outcomes it would have had when the failure came at `COMMIT`.
pub(crate) type ThreadAnswer =
    Result<Vec<PurchaseOutcome>, (SaleFailure, Option<Vec<PurchaseOutcome>>)>;

/// One transaction for the thread.
struct Job {
    requests: Vec<PurchaseRequest>,
    /// One per request, made by the caller so that it knows them even if no answer comes.
    sale_ids: Vec<String>,
    /// Not begun by then: refused, nothing sold (as a pool refuses after its acquire timeout).
    deadline: Instant,
    reply: oneshot::Sender<ThreadAnswer>,
}

/// The thread that sells on SQLite (see the module doc); dropping the last handle ends it.
#[derive(Debug)]
pub(crate) struct SaleThread {
    jobs: mpsc::Sender<Job>,
}

/// How the thread opens its connection: the store's settings.
#[derive(Debug, Clone)]
pub(crate) struct SaleThreadOptions {
    /// The database file.
    pub(crate) path: std::path::PathBuf,
    /// SQLite's busy timeout.
    pub(crate) busy_timeout: Duration,
    /// `PRAGMA wal_autocheckpoint`, as the store's other connections have it.
    pub(crate) wal_autocheckpoint_pages: u32,
    /// The store's sqlx writer: while its connection is out of the pool, the thread waits
    /// before its next `BEGIN` (at most [`MOST_DEFERENCE`]).
    pub(crate) writer_pool: Option<sea_orm::sqlx::SqlitePool>,
}

/// Why the sale thread did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaleThreadError {
    /// Its connection to the database file did not open.
    #[error("cannot open {} for the SQLite sale thread: {source}", path.display())]
    Open {
        /// The database file.
        path: std::path::PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The thread could not be spawned.
    #[error("cannot start the SQLite sale thread: {0}")]
    Spawn(#[source] std::io::Error),
}

impl SaleThread {
    /// Opens the connection (the file must exist, as the store's sqlx pools made it) and
    /// starts the thread.
    pub(crate) fn start(options: SaleThreadOptions) -> Result<Self, SaleThreadError> {
        let opened = |autocheckpoint_pages| {
            open(&options, autocheckpoint_pages).map_err(|source| SaleThreadError::Open {
                path: options.path.clone(),
                source,
            })
        };
        let backstop = options
            .wal_autocheckpoint_pages
            .saturating_mul(BACKSTOP_FACTOR);
        let connection = opened(backstop)?;
        let checkpoints = opened(options.wal_autocheckpoint_pages)?;
        let (nudge, nudges) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("restock-sqlite-checkpoints".to_owned())
            .spawn(move || checkpoint_when_nudged(&checkpoints, &nudges))
            .map_err(SaleThreadError::Spawn)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("restock-sqlite-sales".to_owned())
            .spawn(move || serve(connection, queue, options.writer_pool, nudge))
            .map_err(SaleThreadError::Spawn)?;
        Ok(Self { jobs })
    }

    /// Sells `requests` in one transaction on the thread, under `sale_ids` (one per
    /// request), unless the thread cannot begin it within `wait`: then nothing is sold and
    /// the failure is the pool's timeout (UNAVAILABLE). When no answer came (the thread
    /// stopped), the failure is at `COMMIT` with no planned outcomes: [`super::after_failure`]
    /// says it may have committed.
    pub(crate) async fn sell(
        &self,
        requests: Vec<PurchaseRequest>,
        sale_ids: Vec<String>,
        wait: Duration,
    ) -> ThreadAnswer {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            requests,
            sale_ids,
            deadline: Instant::now() + wait,
            reply,
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            drop(job);
            // Never sent: nothing was done.
            let err = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::ConnectionClosed);
            return Err((SaleFailure::from(err), None));
        }
        answer.await.unwrap_or_else(|_| {
            // The thread stopped, or the sale panicked on it: what it did is not known.
            let err = sea_orm::DbErr::Custom("the SQLite sale thread gave no answer".to_owned());
            Err((SaleFailure::at_commit(err, None), None))
        })
    }
}

fn open(options: &SaleThreadOptions, autocheckpoint_pages: u32) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        &options.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(options.busy_timeout)?;
    // As the store's sqlx connections: WAL (a property of the file), NORMAL sync, foreign
    // keys; the checkpoint interval is the caller's.
    connection.pragma_update(None, "journal_mode", "wal")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.pragma_update(None, "wal_autocheckpoint", autocheckpoint_pages)?;
    Ok(connection)
}

/// The thread: one job after the other until every handle is gone.
fn serve(
    connection: Connection,
    queue: mpsc::Receiver<Job>,
    writer: Option<sea_orm::sqlx::SqlitePool>,
    checkpoint: mpsc::SyncSender<()>,
) {
    while let Ok(job) = queue.recv() {
        // A caller that stopped waiting (deadline, connection closed) is not sold.
        if job.reply.is_closed() {
            continue;
        }
        if !connection.is_autocommit() {
            // A transaction left open (a COMMIT and its ROLLBACK both failed): end it first.
            let _ = connection.execute_batch("ROLLBACK");
        }
        defer_to(writer.as_ref());
        if Instant::now() >= job.deadline {
            let err = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
            let _ = job.reply.send(Err((SaleFailure::from(err), None)));
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sell_in_transaction(&connection, &job.requests, &job.sale_ids)
        }));
        match outcome {
            Ok(answer) => {
                let _ = job.reply.send(answer);
                // Full: a nudge is already waiting (or the checkpoint thread is gone and
                // the backstop checkpoints).
                let _ = checkpoint.try_send(());
            }
            Err(_) => {
                // A bug: leave no transaction open; the caller hears nothing (outcome
                // unknown) as its reply is dropped.
                if !connection.is_autocommit() {
                    let _ = connection.execute_batch("ROLLBACK");
                }
                tracing::error!("the SQLite sale thread panicked during a sale");
            }
        }
    }
}

/// The checkpoint thread: after a nudge, a `PASSIVE` checkpoint (it copies what no reader
/// still needs and never waits), then a pause; ends with the sale thread.
fn checkpoint_when_nudged(connection: &Connection, nudges: &mpsc::Receiver<()>) {
    while nudges.recv().is_ok() {
        if let Err(err) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %err, "SQLite checkpoint failed; the sale connection's own checkpoint is the backstop");
        }
        std::thread::sleep(CHECKPOINT_SPACING);
    }
}

/// Waits (at most [`MOST_DEFERENCE`]) while the store's sqlx writer connection is in use.
fn defer_to(writer: Option<&sea_orm::sqlx::SqlitePool>) {
    let Some(pool) = writer else {
        return;
    };
    let start = Instant::now();
    while pool.size() > 0 && pool.num_idle() == 0 && start.elapsed() < MOST_DEFERENCE {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// `BEGIN IMMEDIATE`, the sale, `COMMIT`; rolled back on any error before the commit.
fn sell_in_transaction(
    connection: &Connection,
    requests: &[PurchaseRequest],
    sale_ids: &[String],
) -> ThreadAnswer {
    connection
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|err| (SaleFailure::from(db_err(err)), None))?;
    let planned = match sell(connection, requests, sale_ids, now_ms()) {
        Ok(planned) => planned,
        Err(err) => {
            let _ = connection.execute_batch("ROLLBACK");
            return Err((SaleFailure::from(err), None));
        }
    };
    match connection.execute_batch("COMMIT") {
        Ok(()) => Ok(planned),
        Err(err) => {
            if !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            let own_sale_id = match planned.as_slice() {
                [PurchaseOutcome::Sold { sale_id, .. }] => Some(sale_id.clone()),
                _ => None,
            };
            let err = if connection.is_autocommit() {
                // SQLite reported it and the transaction is gone: rolled back.
                db_err(err)
            } else {
                sea_orm::DbErr::Custom(format!(
                    "COMMIT failed and the transaction could not be rolled back: {err}"
                ))
            };
            Err((SaleFailure::at_commit(err, own_sale_id), Some(planned)))
        }
    }
}

/// Inside the transaction: every product of `requests` in sku order; each request's outcome.
fn sell(
    connection: &Connection,
    requests: &[PurchaseRequest],
    sale_ids: &[String],
    now: i64,
) -> Result<Vec<PurchaseOutcome>, sea_orm::DbErr> {
    const TAKE: &str = "UPDATE products SET stock = stock - ?1, updated_at = ?2 \
        WHERE sku = ?3 AND stock >= ?1 RETURNING stock, reorder_point";
    const FIND: &str = "SELECT stock, reorder_point FROM products WHERE sku = ?1";
    const INSERT_SALE: &str = "INSERT INTO sales (id, sku, quantity, remaining_stock, \
        idempotency_key, requester, requested_replenishment, created_at) \
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    // `insert_outbox_intent`'s two statements: a sale that changed stock bumps a pending
    // intent's revision; an out-of-stock one only makes sure an intent exists.
    const INTENT_RENEW: &str = "INSERT INTO replenish_outbox (sku, reason, requested_at, \
        revision, attempts, last_error, request_id) VALUES (?1, ?2, ?3, 0, 0, NULL, ?4) \
        ON CONFLICT (sku) DO UPDATE SET revision = replenish_outbox.revision + 1";
    const INTENT_KEEP: &str = "INSERT INTO replenish_outbox (sku, reason, requested_at, \
        revision, attempts, last_error, request_id) VALUES (?1, ?2, ?3, 0, 0, NULL, ?4) \
        ON CONFLICT (sku) DO NOTHING";

    let mut skus: Vec<&str> = requests.iter().map(|r| r.sku().as_str()).collect();
    skus.sort_unstable();
    skus.dedup();
    let mut outcomes: Vec<Option<PurchaseOutcome>> = vec![None; requests.len()];
    for sku in skus {
        let (indexes, of_sku): (Vec<usize>, Vec<&PurchaseRequest>) = requests
            .iter()
            .enumerate()
            .filter(|(_, r)| r.sku().as_str() == sku)
            .unzip();
        let quantities: Vec<i64> = of_sku.iter().map(|r| i64::from(r.quantity())).collect();
        let total: i64 = quantities.iter().sum();
        let taken: Option<(i64, i64)> = connection
            .prepare_cached(TAKE)
            .and_then(|mut take| {
                take.query_row(params![total, now, sku], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
            })
            .map_err(db_err)?;
        let (before, reorder_point, fits) = match taken {
            Some((stock, reorder_point)) => {
                (stock + total, reorder_point, vec![true; of_sku.len()])
            }
            None => {
                // Not all fit (or no such product): sell in arrival order what fits, and
                // take exactly that (the write lock is held since BEGIN IMMEDIATE).
                let found: Option<(i64, i64)> = connection
                    .prepare_cached(FIND)
                    .and_then(|mut find| {
                        find.query_row(params![sku], |row| Ok((row.get(0)?, row.get(1)?)))
                            .optional()
                    })
                    .map_err(db_err)?;
                let Some((stock, reorder_point)) = found else {
                    return Err(sea_orm::DbErr::RecordNotFound(sku.to_owned()));
                };
                let (fits, sold) = what_fits(stock, &quantities);
                if sold > 0 {
                    let changed = connection
                        .prepare_cached(TAKE)
                        .and_then(|mut take| {
                            take.query_row(params![sold, now, sku], |row| row.get::<_, i64>(0))
                                .optional()
                        })
                        .map_err(db_err)?;
                    if changed.is_none() {
                        // Cannot happen under the write lock; never sell on a guess.
                        return Err(sea_orm::DbErr::Custom(format!(
                            "stock of {sku} changed under the write lock"
                        )));
                    }
                }
                (stock, reorder_point, fits)
            }
        };
        let ids: Vec<String> = indexes.iter().map(|&i| sale_ids[i].clone()).collect();
        let planned = plan_product_sale(sku, &of_sku, &ids, before, reorder_point, &fits, now);
        {
            let mut insert = connection.prepare_cached(INSERT_SALE).map_err(db_err)?;
            for row in &planned.rows {
                insert
                    .execute(params![
                        row.id,
                        row.sku,
                        row.quantity,
                        row.remaining_stock,
                        row.idempotency_key,
                        row.requester,
                        row.requested_replenishment,
                        row.created_at,
                    ])
                    .map_err(db_err)?;
            }
        }
        if let Some((reason, trigger)) = planned.intent {
            let statement = if reason == IntentReason::ReorderPoint {
                INTENT_RENEW
            } else {
                INTENT_KEEP
            };
            connection
                .prepare_cached(statement)
                .and_then(|mut intent| {
                    intent.execute(params![sku, reason.to_string(), now_ms(), trigger])
                })
                .map_err(db_err)?;
        }
        for (i, outcome) in indexes.into_iter().zip(planned.outcomes) {
            outcomes[i] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| sea_orm::DbErr::Custom("a sale got no outcome".to_owned())))
        .collect()
}

/// An error of the C library, in the terms the store's error handling reads: a database
/// error carrying SQLite's extended result code, as sqlx reports one.
fn db_err(err: rusqlite::Error) -> sea_orm::DbErr {
    let reported = match err {
        rusqlite::Error::SqliteFailure(code, message) => SqliteReported {
            code: code.extended_code,
            message: message.unwrap_or_else(|| code.to_string()),
        },
        other => return sea_orm::DbErr::Custom(format!("SQLite sale thread: {other}")),
    };
    sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(
        sea_orm::sqlx::Error::Database(Box::new(reported)),
    )))
}

/// An error SQLite reported to the sale thread.
#[derive(Debug)]
struct SqliteReported {
    /// The extended result code.
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteReported {}

impl DatabaseError for SqliteReported {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => ErrorKind::UniqueViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{DbErrKind, classify, may_have_committed};

    #[test]
    fn the_c_librarys_errors_are_read_as_sqlxs_would_be() {
        let path = std::env::temp_dir().join(format!(
            "restock-sale-thread-{}-{}.db",
            std::process::id(),
            now_ms()
        ));
        let first = Connection::open(&path).unwrap();
        first
            .execute_batch("PRAGMA journal_mode = wal; CREATE TABLE t (k TEXT UNIQUE); INSERT INTO t VALUES ('a');")
            .unwrap();
        let unique = db_err(first.execute("INSERT INTO t VALUES ('a')", []).unwrap_err());
        assert_eq!(classify(&unique), DbErrKind::UniqueViolation);
        // Reported by SQLite: a COMMIT that failed so did not commit.
        assert!(!may_have_committed(&unique));

        let second = Connection::open(&path).unwrap();
        second.busy_timeout(Duration::ZERO).unwrap();
        first.execute_batch("BEGIN IMMEDIATE").unwrap();
        let busy = db_err(second.execute_batch("BEGIN IMMEDIATE").unwrap_err());
        assert_eq!(classify(&busy), DbErrKind::Transient, "{busy}");
        first.execute_batch("ROLLBACK").unwrap();

        let other = db_err(rusqlite::Error::QueryReturnedNoRows);
        assert_eq!(classify(&other), DbErrKind::Other);
        drop((first, second));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
