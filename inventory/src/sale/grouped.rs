//! Selling grouped: concurrent purchases share one transaction.
//!
//! A hot product's sales queue on its row lock and pay one commit (one WAL flush) each, so
//! the database's own rate for that row is the ceiling of the ungrouped sale. Here, the
//! sales of a product that arrive while its transaction is in flight wait in that product's
//! queue; the next transaction takes them all: one guarded `UPDATE` for their total, one
//! multi-row `INSERT` of their sales, the outbox intent, one commit. Each request then gets
//! the outcome it would have had if the group had been sold one by one in arrival order
//! (exact remaining stock, OUT_OF_STOCK for those that no longer fit). Nothing waits for a
//! group to fill: a product with no transaction in flight sells at once, through the
//! ungrouped path.
//!
//! On SQLite, which has one writer, the group is whatever purchases wait, of any products:
//! one transaction, run whole on the sale thread ([`super::sqlite_thread`]). On PostgreSQL and MySQL, purchases wait in one of a few lanes
//! ([`crate::StoreOptions::purchase_lanes`]; a product always in the same one), so spread
//! load groups too: a lane's transaction sells several products, locking their rows in
//! sku order, so two transactions never wait for each other in a cycle (and lanes never share
//! a product). On PostgreSQL a group is first one statement that commits itself
//! (data-modifying CTEs: lock the rows, take every total that fits, insert those sale rows,
//! write their intents): one round trip and one WAL flush; only the products whose total did
//! not fit go on to a transaction of their own. With 0 lanes each product has its own queue.
//!
//! Idempotency keys: nothing is read before the write. A key repeated inside one group is
//! sold once and the repeat replays it; a key committed earlier (a client's retry) makes the
//! group's `INSERT` hit the key's unique index, and a group that fails for that or any other
//! reason than a transient conflict (a vanished product) is rolled back whole and each request
//! is sold alone, so each gets its own exact answer or error (the retry: its first answer).
//!
//! Callers that are gone: a waiting sale whose caller stopped waiting (its deadline passed,
//! its connection dropped: the reply's receiver was dropped) is taken out of the group before
//! the transaction begins, so nothing is sold that nobody will hear of. Each queue is
//! bounded ([`crate::StoreOptions::max_waiting_purchases`]); a purchase beyond it is refused
//! at once with [`StoreError::Busy`], nothing sold.
//!
//! A group whose `COMMIT` failed in a way that may have committed it (the connection broke)
//! is never sold again one by one: that could sell twice. One of its keyed sales asks the
//! database whether the group committed (one transaction: all or nothing); if it did, each
//! request gets its outcome; if not, or nobody can tell, requests with an idempotency key
//! are sold again alone (the key's unique index sells each at most once) and the others get
//! [`StoreError::OutcomeUnknown`]. PostgreSQL's one statement whose answer was lost has no
//! planned outcomes to prove: its keyed sales go straight to being sold again alone (a
//! committed one is found by its key and answered as it was sold).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    IntoActiveModel, QuerySelect, Statement,
};
use tokio::sync::oneshot;

use super::sqlite_thread::ThreadAnswer;
use super::{
    AfterFailure, PurchaseOutcome, PurchaseRequest, SaleFailure, after_failure, mark_own_sale,
    new_sale_id,
};
use crate::entity::replenish_outbox::IntentReason;
use crate::entity::{product, sale};
use crate::store::{Store, TRANSACTION_ATTEMPTS, backoff, insert_outbox_intent, now_ms};
use crate::{StoreError, replenishment_id};

/// Most sales in one transaction: bounds the multi-row INSERT's parameters (8 per sale).
pub const MAX_GROUP: usize = 256;

/// Default for [`crate::StoreOptions::max_waiting_purchases`]: four full groups may wait
/// behind the one in flight; more would wait longer than a caller usually does.
pub const MAX_WAITING: usize = MAX_GROUP * 4;

/// Default for [`crate::StoreOptions::purchase_lanes`]: far fewer than the default pool, so
/// the lanes' transactions leave connections for reads and sales that sell alone. Fewer lanes
/// make bigger groups (one commit each), more lanes more commits at once; on PostgreSQL with
/// 1,000 products 2 beat 4 and 8 at 64 and 256 clients (BENCHMARKS.md, *Method*), and 1 was
/// level with 2 within the noise while serialising every sale on one connection.
pub const DEFAULT_LANES: usize = 2;

/// A sale waiting for its product's next transaction.
struct Waiting {
    request: PurchaseRequest,
    reply: oneshot::Sender<Result<PurchaseOutcome, StoreError>>,
}

impl Waiting {
    /// Whether the caller stopped waiting for the answer.
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Queues of waiting purchases (see [`queue_key`]). A queue exists exactly while a task is
/// draining it.
pub(crate) struct PurchaseGroups {
    queues: Mutex<HashMap<String, Vec<Waiting>>>,
    /// Most purchases waiting in one queue.
    max_waiting: usize,
    /// Queues of PostgreSQL/MySQL purchases (0: one per product).
    lanes: usize,
    /// Purchases taken from their queue whose transaction has not answered yet.
    selling: AtomicUsize,
    /// Groups of two or more sold in one transaction, and the sales in them.
    shared_transactions: AtomicU64,
    shared_sales: AtomicU64,
    /// Purchases dropped unsold because their caller had gone.
    abandoned: AtomicU64,
    /// Purchases refused because their queue was full.
    refused: AtomicU64,
}

/// How much grouping happened: see [`Store::purchase_grouping`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupingCounts {
    /// Transactions that sold a group of two or more purchases.
    pub shared_transactions: u64,
    /// Purchases answered by those transactions.
    pub shared_sales: u64,
    /// Purchases dropped unsold before their transaction began, because their caller had
    /// stopped waiting (deadline passed, connection closed).
    pub abandoned: u64,
    /// Purchases refused with [`StoreError::Busy`] because their queue was full.
    pub refused: u64,
}

/// Purchases in the queues right now: see [`Store::purchase_queue`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting for their product's next transaction (including any whose caller has gone,
    /// until their turn comes and they are dropped).
    pub waiting: usize,
    /// Taken from their queue, in a transaction not yet answered.
    pub selling: usize,
}

impl std::fmt::Debug for PurchaseGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurchaseGroups").finish_non_exhaustive()
    }
}

impl PurchaseGroups {
    /// Counts a transaction that sold `sales` purchases, if it shared them (two or more).
    fn count_shared(&self, sales: usize) {
        if sales > 1 {
            self.shared_transactions.fetch_add(1, Ordering::Relaxed);
            self.shared_sales.fetch_add(sales as u64, Ordering::Relaxed);
        }
    }

    /// Empty queues of at most `max_waiting` purchases each (at least one).
    pub(crate) fn new(max_waiting: usize, lanes: usize) -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            max_waiting: max_waiting.max(1),
            lanes,
            selling: AtomicUsize::new(0),
            shared_transactions: AtomicU64::new(0),
            shared_sales: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Waiting>>> {
        // A panic while holding this lock cannot leave the map half-changed (push/drain/remove).
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `request` behind its product's transaction in flight, or starts one. The sale
    /// runs on its own task, so a caller that goes away does not strand the others.
    pub(crate) async fn sell_queued(
        &self,
        store: &Store,
        request: PurchaseRequest,
    ) -> Result<PurchaseOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let key = queue_key(store, self.lanes, &request);
        let waiting = Waiting { request, reply };
        let start = {
            let mut queues = self.lock();
            match queues.get_mut(&key) {
                Some(queue) => {
                    if queue.len() >= self.max_waiting {
                        // Make room from callers that are gone before refusing anyone.
                        let before = queue.len();
                        queue.retain(|w| !w.abandoned());
                        self.abandoned
                            .fetch_add((before - queue.len()) as u64, Ordering::Relaxed);
                    }
                    if queue.len() >= self.max_waiting {
                        self.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(StoreError::Busy(format!(
                            "too many purchases of {} are waiting; nothing was sold, try again shortly",
                            waiting.request.sku()
                        )));
                    }
                    queue.push(waiting);
                    false
                }
                None => {
                    queues.insert(key.clone(), vec![waiting]);
                    true
                }
            }
        };
        if start {
            tokio::spawn(drain(store.clone(), key));
        }
        answer.await.unwrap_or_else(|_| {
            // The selling task ended without answering (it panicked): its transaction may
            // have committed.
            Err(StoreError::OutcomeUnknown(sea_orm::DbErr::Custom(
                "the sale's transaction was interrupted".to_owned(),
            )))
        })
    }

    /// Takes up to [`MAX_GROUP`] waiting sales of queue `key` whose callers still wait,
    /// dropping those that are gone; none: forgets the queue (its drain task ends) in the same
    /// critical section, so no sale is left unserved.
    fn next_group(&self, key: &str) -> Vec<Waiting> {
        let mut queues = self.lock();
        let Some(queue) = queues.get_mut(key) else {
            return Vec::new();
        };
        let before = queue.len();
        queue.retain(|w| !w.abandoned());
        self.abandoned
            .fetch_add((before - queue.len()) as u64, Ordering::Relaxed);
        if queue.is_empty() {
            queues.remove(key);
            return Vec::new();
        }
        let take = queue.len().min(MAX_GROUP);
        self.selling.fetch_add(take, Ordering::Relaxed);
        queue.drain(..take).collect()
    }

    /// Drops from `group` the sales whose callers are gone (they were never sold).
    fn without_abandoned(&self, group: Vec<Waiting>) -> Vec<Waiting> {
        let before = group.len();
        let live: Vec<Waiting> = group.into_iter().filter(|w| !w.abandoned()).collect();
        self.abandoned
            .fetch_add((before - live.len()) as u64, Ordering::Relaxed);
        live
    }

    fn depth(&self) -> QueueDepth {
        QueueDepth {
            waiting: self.lock().values().map(Vec::len).sum(),
            selling: self.selling.load(Ordering::Relaxed),
        }
    }
}

/// Which queue a purchase waits in: on SQLite the one queue of all products — SQLite has a
/// single writer, so every transaction waits for every other anyway; elsewhere its product's
/// lane (a stable hash of the sku), or with 0 lanes its product's own queue.
fn queue_key(store: &Store, lanes: usize, request: &PurchaseRequest) -> String {
    match store.backend() {
        sea_orm::DbBackend::Sqlite => String::new(),
        _ if lanes > 0 => {
            // FNV-1a: stable across processes and releases, unlike std's hasher.
            let hash = request
                .sku()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            format!("lane-{}", hash % lanes as u64)
        }
        _ => request.sku().to_string(),
    }
}

/// Sells queue `key`, group after group, until it is empty.
async fn drain(store: Store, key: String) {
    let Some(groups) = store.groups() else {
        return;
    };
    loop {
        let group = groups.next_group(&key);
        if group.is_empty() {
            return;
        }
        let taken = group.len();
        answer_group(&store, group).await;
        groups.selling.fetch_sub(taken, Ordering::Relaxed);
    }
}

/// Sells one group taken from a queue and answers each of its purchases.
async fn answer_group(store: &Store, group: Vec<Waiting>) {
    let Some(groups) = store.groups() else {
        return;
    };
    // Last look before the transaction: a caller gone by now is not sold.
    let group = groups.without_abandoned(group);
    if group.len() <= 1 {
        // Alone: the ungrouped transaction (a repeated key's conflict answers as a replay).
        for w in group {
            let _ = w.reply.send(store.sell_alone(&w.request).await);
        }
        return;
    }
    // A key repeated within the group is sold once; its repeats replay it afterwards.
    let mut keys = HashSet::new();
    let (firsts, repeats): (Vec<Waiting>, Vec<Waiting>) = group.into_iter().partition(|w| match w
        .request
        .idempotency_key()
    {
        Some(key) => keys.insert(key.to_owned()),
        None => true,
    });
    let rest = sell_fitting_products_first(store, groups, firsts).await;
    sell_together(store, groups, rest).await;
    for w in repeats {
        let _ = w.reply.send(store.sell_alone_or_replay(&w.request).await);
    }
}

/// PostgreSQL: sells every product of the group whose total fits with one statement
/// ([`Store::sell_fitting_in_one_statement`]) and answers those purchases; the purchases of
/// the other products are handed back, for [`sell_together`]. Elsewhere, hands everything
/// back.
async fn sell_fitting_products_first(
    store: &Store,
    groups: &PurchaseGroups,
    firsts: Vec<Waiting>,
) -> Vec<Waiting> {
    if store.backend() != DbBackend::Postgres || firsts.len() <= 1 {
        return firsts;
    }
    let requests: Vec<&PurchaseRequest> = firsts.iter().map(|w| &w.request).collect();
    match store.sell_fitting_in_one_statement(&requests).await {
        Ok(outcomes) => {
            let mut rest = Vec::new();
            let mut sold = 0;
            for (w, outcome) in firsts.into_iter().zip(outcomes) {
                match outcome {
                    Some(outcome) => {
                        sold += 1;
                        let _ = w.reply.send(Ok(outcome));
                    }
                    None => rest.push(w),
                }
            }
            groups.count_shared(sold);
            rest
        }
        Err(failure) => {
            answer_failed(store, firsts, failure).await;
            Vec::new()
        }
    }
}

/// Answers each purchase with its outcome, or with its earlier sale where its key had sold.
async fn answer_each(store: &Store, firsts: Vec<Waiting>, outcomes: Vec<PurchaseOutcome>) {
    for (w, outcome) in firsts.into_iter().zip(outcomes) {
        let answer = store.unless_replayed(&w.request, outcome).await;
        let _ = w.reply.send(answer);
    }
}

/// Sells `firsts` (distinct keys) in one transaction and answers each; alone when one.
async fn sell_together(store: &Store, groups: &PurchaseGroups, firsts: Vec<Waiting>) {
    if firsts.len() <= 1 {
        for w in firsts {
            let _ = w.reply.send(store.sell_alone(&w.request).await);
        }
        return;
    }
    let requests: Vec<&PurchaseRequest> = firsts.iter().map(|w| &w.request).collect();
    match store.sell_group(&requests).await {
        Ok(outcomes) => {
            groups.count_shared(outcomes.len());
            answer_each(store, firsts, outcomes).await;
        }
        Err(failure) => answer_failed(store, firsts, failure).await,
    }
}

/// Answers each purchase of a group whose transaction gave no outcomes: rolled back, each
/// is sold alone; perhaps committed, [`resolve_unknown`].
async fn answer_failed(store: &Store, firsts: Vec<Waiting>, failure: GroupFailure) {
    match failure {
        GroupFailure::RolledBack(err) => {
            tracing::debug!(error = %err, sales = firsts.len(), "grouped sale rolled back; selling one by one");
            for w in firsts {
                let _ = w.reply.send(store.sell_alone_or_replay(&w.request).await);
            }
        }
        GroupFailure::Unknown { failure, planned } => {
            let sale_ids = planned.iter().map(own_sale_id).collect();
            resolve_unknown(store, firsts, Some(planned), sale_ids, failure).await;
        }
        GroupFailure::Unanswered { failure, sale_ids } => {
            resolve_unknown(store, firsts, None, sale_ids, failure).await;
        }
    }
}

/// The sale id an outcome would have written, if it sold.
fn own_sale_id(outcome: &PurchaseOutcome) -> Option<String> {
    match outcome {
        PurchaseOutcome::Sold { sale_id, .. } => Some(sale_id.clone()),
        PurchaseOutcome::OutOfStock { .. } => None,
    }
}

/// Answers a group whose `COMMIT` may or may not have committed ([`AfterFailure::Unknown`]).
/// The group is one transaction, so one keyed sale's row (with the sale id this commit
/// wrote) proves that every outcome in `planned` happened. Without that proof (or without a
/// plan: a statement whose answer was lost), a keyed sale is sold again alone (its key sells
/// it at most once, whatever the lost commit did; `sale_ids` tell its own row from another
/// purchase's) and the others are told the outcome is unknown; none is sold again blindly.
async fn resolve_unknown(
    store: &Store,
    firsts: Vec<Waiting>,
    planned: Option<Vec<PurchaseOutcome>>,
    sale_ids: Vec<Option<String>>,
    failure: SaleFailure,
) {
    let witness = firsts
        .iter()
        .zip(&sale_ids)
        .find_map(|(w, sale_id)| match sale_id {
            Some(sale_id) if planned.is_some() && w.request.idempotency_key().is_some() => {
                Some((&w.request, sale_id.as_str()))
            }
            _ => None,
        });
    let committed = match witness {
        Some((request, sale_id)) => matches!(
            store.replay(request).await,
            Ok(Some(PurchaseOutcome::Sold { sale_id: found, .. })) if found == sale_id
        ),
        None => false,
    };
    tracing::warn!(error = %failure.err, sales = firsts.len(), committed, "grouped sale's commit failed; outcome unknown unless proven");
    if let (true, Some(planned)) = (committed, planned) {
        if let Some(groups) = store.groups() {
            groups.count_shared(planned.len());
        }
        answer_each(store, firsts, planned).await;
        return;
    }
    for (w, own_sale_id) in firsts.into_iter().zip(sale_ids) {
        let answer = if w.request.idempotency_key().is_some() {
            match store.sell_alone_or_replay(&w.request).await {
                Ok(found) => Ok(mark_own_sale(found, own_sale_id.as_deref())),
                // Whatever this attempt did not change, the lost commit may have.
                Err(StoreError::Unavailable(_) | StoreError::Database(_)) => {
                    Err(StoreError::OutcomeUnknown(failure.err.clone()))
                }
                Err(other) => Err(other),
            }
        } else {
            Err(StoreError::OutcomeUnknown(failure.err.clone()))
        };
        let _ = w.reply.send(answer);
    }
}

/// Why a group's transaction did not answer.
enum GroupFailure {
    /// Nothing was committed: each request may be sold alone.
    RolledBack(sea_orm::DbErr),
    /// `COMMIT` failed in a way that may have committed: `planned` is what each request got
    /// if it did.
    Unknown {
        failure: SaleFailure,
        planned: Vec<PurchaseOutcome>,
    },
    /// A statement that commits itself failed in a way that may have committed it, before
    /// its outcomes were known: `sale_ids` are the ids its sale rows would have.
    Unanswered {
        failure: SaleFailure,
        sale_ids: Vec<Option<String>>,
    },
}

impl Store {
    /// How many purchases shared a transaction since this store was opened, were dropped
    /// because their caller had gone, or were refused as busy; `None` when grouping is off.
    pub fn purchase_grouping(&self) -> Option<GroupingCounts> {
        self.groups().map(|g| GroupingCounts {
            shared_transactions: g.shared_transactions.load(Ordering::Relaxed),
            shared_sales: g.shared_sales.load(Ordering::Relaxed),
            abandoned: g.abandoned.load(Ordering::Relaxed),
            refused: g.refused.load(Ordering::Relaxed),
        })
    }

    /// How many purchases wait in the grouping queues, and how many are being sold, right
    /// now; `None` when grouping is off.
    pub fn purchase_queue(&self) -> Option<QueueDepth> {
        self.groups().map(PurchaseGroups::depth)
    }

    /// Sells `requests` (distinct keys, arrival order) in one transaction, retrying
    /// transient conflicts.
    async fn sell_group(
        &self,
        requests: &[&PurchaseRequest],
    ) -> Result<Vec<PurchaseOutcome>, GroupFailure> {
        let mut attempt = 1;
        loop {
            let sale_ids: Vec<String> = requests.iter().map(|_| new_sale_id()).collect();
            let answer = match self.sale_thread() {
                Some(thread) => {
                    let owned = requests.iter().map(|r| (*r).clone()).collect();
                    thread
                        .sell(owned, sale_ids.clone(), self.acquire_timeout())
                        .await
                }
                None => self.sell_group_once(requests, &sale_ids).await,
            };
            let failure = match answer {
                Ok(planned) => return Ok(planned),
                Err((failure, None)) if failure.at_commit => {
                    if after_failure(&failure) == AfterFailure::Unknown {
                        // No answer came back: what it sold is not known.
                        return Err(GroupFailure::Unanswered {
                            failure,
                            sale_ids: sale_ids.into_iter().map(Some).collect(),
                        });
                    }
                    failure
                }
                Err((failure, Some(planned))) => {
                    if after_failure(&failure) == AfterFailure::Unknown {
                        let sold_any = planned
                            .iter()
                            .any(|o| matches!(o, PurchaseOutcome::Sold { .. }));
                        if !sold_any {
                            // All out of stock: only the (idempotent) intent was at
                            // stake, nothing sold either way; selling one by one is safe.
                            return Err(GroupFailure::RolledBack(failure.err));
                        }
                        return Err(GroupFailure::Unknown { failure, planned });
                    }
                    failure
                }
                Err((failure, None)) => failure,
            };
            match after_failure(&failure) {
                AfterFailure::Retry if attempt < TRANSACTION_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                _ => return Err(GroupFailure::RolledBack(failure.err)),
            }
        }
    }

    /// One attempt at the group's transaction through sqlx; a failure at `COMMIT` comes
    /// with what each request would have got.
    async fn sell_group_once(
        &self,
        requests: &[&PurchaseRequest],
        sale_ids: &[String],
    ) -> ThreadAnswer {
        let (txn, planned) = self
            .prepare_group(requests, sale_ids)
            .await
            .map_err(|err| (SaleFailure::from(err), None))?;
        match txn.commit().await {
            Ok(()) => Ok(planned),
            Err(err) => Err((SaleFailure::at_commit(err, None), Some(planned))),
        }
    }

    /// PostgreSQL: every product of the group whose total fits sold by one statement that
    /// commits itself (one round trip and one WAL flush for the lane), retrying
    /// transient conflicts. It locks the group's rows in sku order (as the transaction path
    /// does), takes each product's total where it fits, inserts those products' sale rows and
    /// writes their reorder-point intents (data-modifying CTEs). Each request's outcome, or
    /// `None` when its product's total did not fit or the product is unknown: nothing of that
    /// product was changed, for the transaction path to sell what fits.
    ///
    /// Every list travels as one text parameter split on spaces, which no sku, key, requester,
    /// request id or sale id can contain (the token rule), so the statement never changes.
    /// Rows are found by `sku = ANY(ARRAY(...))`, an index lookup each: with `IN (SELECT ...)`
    /// PostgreSQL's cached plan scanned the whole products table twice per group, joining by
    /// hash (BENCHMARKS.md, Method).
    async fn sell_fitting_in_one_statement(
        &self,
        requests: &[&PurchaseRequest],
    ) -> Result<Vec<Option<PurchaseOutcome>>, GroupFailure> {
        const SALE: &str = "WITH req AS MATERIALIZED ( \
                SELECT r.i, r.sku, r.q::bigint AS q, r.id, r.k, r.who, r.rid \
                FROM unnest(string_to_array($1, ' '), string_to_array($2, ' '), \
                    string_to_array($3, ' '), string_to_array($4, ' ', ''), \
                    string_to_array($5, ' '), string_to_array($6, ' ', '')) \
                    WITH ORDINALITY AS r(sku, q, id, k, who, rid, i)), \
            wanted AS (SELECT sku, sum(q)::bigint AS total FROM req GROUP BY sku), \
            locked AS MATERIALIZED ( \
                SELECT sku FROM products WHERE sku = ANY(ARRAY(SELECT sku FROM wanted)) \
                ORDER BY sku COLLATE \"C\" FOR UPDATE OF products), \
            taken AS ( \
                UPDATE products AS p SET stock = p.stock - w.total, updated_at = $7 \
                FROM wanted AS w \
                WHERE p.sku = w.sku AND p.stock >= w.total \
                    AND p.sku = ANY(ARRAY(SELECT sku FROM locked)) \
                RETURNING p.sku, p.stock, p.reorder_point, w.total), \
            sold AS ( \
                SELECT r.i, r.id, r.sku, r.q, r.k, r.who, r.rid, t.reorder_point, \
                    t.stock + t.total - (sum(r.q) OVER (PARTITION BY r.sku ORDER BY r.i))::bigint \
                        AS remaining \
                FROM req AS r JOIN taken AS t ON t.sku = r.sku), \
            inserted AS ( \
                INSERT INTO sales (id, sku, quantity, remaining_stock, idempotency_key, \
                    requester, requested_replenishment, created_at) \
                SELECT id, sku, q, remaining, k, who, remaining <= reorder_point, $7 FROM sold), \
            intents AS ( \
                INSERT INTO replenish_outbox (sku, reason, requested_at, revision, attempts, \
                    request_id) \
                SELECT DISTINCT ON (sku) sku, 'reorder_point', $7, 0, 0, rid FROM sold \
                WHERE remaining <= reorder_point ORDER BY sku, i \
                ON CONFLICT (sku) DO UPDATE SET revision = replenish_outbox.revision + 1) \
            SELECT sku, stock, reorder_point, total FROM taken";
        let joined = |field: &dyn Fn(&PurchaseRequest) -> String| {
            requests
                .iter()
                .map(|r| field(r))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let sale_ids: Vec<String> = requests.iter().map(|_| new_sale_id()).collect();
        let values = [
            joined(&|r| r.sku().to_string()),
            joined(&|r| r.quantity().to_string()),
            sale_ids.join(" "),
            joined(&|r| r.idempotency_key().unwrap_or_default().to_owned()),
            joined(&|r| r.requester().to_owned()),
            joined(&|r| r.request_id().unwrap_or_default().to_owned()),
        ];
        let mut attempt = 1;
        let (rows, now) = loop {
            let now = now_ms();
            let mut params: Vec<sea_orm::Value> = values.iter().map(|v| v.clone().into()).collect();
            params.push(now.into());
            let statement = Statement::from_sql_and_values(DbBackend::Postgres, SALE, params);
            // The statement commits itself: a failure may have lost the answer to its commit.
            let failure = match self.writer().query_all_raw(statement).await {
                Ok(rows) => break (rows, now),
                Err(err) => SaleFailure::at_commit(err, None),
            };
            match after_failure(&failure) {
                AfterFailure::Retry if attempt < TRANSACTION_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                AfterFailure::Unknown => {
                    return Err(GroupFailure::Unanswered {
                        failure,
                        sale_ids: sale_ids.into_iter().map(Some).collect(),
                    });
                }
                _ => return Err(GroupFailure::RolledBack(failure.err)),
            }
        };
        let unanswered = |err| GroupFailure::Unanswered {
            failure: SaleFailure::at_commit(err, None),
            sale_ids: sale_ids.iter().cloned().map(Some).collect(),
        };
        let mut outcomes: Vec<Option<PurchaseOutcome>> = vec![None; requests.len()];
        for row in rows {
            let sku: String = row.try_get_by_index(0).map_err(unanswered)?;
            let stock: i64 = row.try_get_by_index(1).map_err(unanswered)?;
            let reorder_point: i64 = row.try_get_by_index(2).map_err(unanswered)?;
            let total: i64 = row.try_get_by_index(3).map_err(unanswered)?;
            let (indexes, of_sku): (Vec<usize>, Vec<&PurchaseRequest>) = requests
                .iter()
                .enumerate()
                .filter(|(_, r)| r.sku() == sku.as_str())
                .map(|(i, r)| (i, *r))
                .unzip();
            let ids: Vec<String> = indexes.iter().map(|&i| sale_ids[i].clone()).collect();
            let fits = vec![true; of_sku.len()];
            // The statement wrote these rows and the intent; this only tells each its outcome.
            let planned = plan_product_sale(
                &sku,
                &of_sku,
                &ids,
                stock + total,
                reorder_point,
                &fits,
                now,
            );
            for (i, outcome) in indexes.into_iter().zip(planned.outcomes) {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(outcomes)
    }

    /// Everything of the group's transaction but its commit: products in sku order (one lock
    /// order for every transaction, so none waits for another in a cycle); the transaction,
    /// to commit, and each request's outcome once it commits.
    async fn prepare_group(
        &self,
        requests: &[&PurchaseRequest],
        sale_ids: &[String],
    ) -> Result<(DatabaseTransaction, Vec<PurchaseOutcome>), sea_orm::DbErr> {
        let mut skus: Vec<&str> = Vec::new();
        for r in requests {
            if !skus.contains(&r.sku().as_str()) {
                skus.push(r.sku());
            }
        }
        skus.sort_unstable();
        let txn = self.begin_write().await?;
        let now = now_ms();
        // Several products on PostgreSQL: every product's total at once instead of one
        // `UPDATE` each (a group is many products, each a round trip otherwise).
        let taken = if self.backend() == DbBackend::Postgres && skus.len() > 1 {
            let totals: Vec<i64> = skus
                .iter()
                .map(|sku| {
                    requests
                        .iter()
                        .filter(|r| r.sku() == *sku)
                        .map(|r| i64::from(r.quantity()))
                        .sum()
                })
                .collect();
            match take_stock_of_products(&txn, &skus, &totals, now).await {
                Ok(taken) => Some(taken),
                Err(err) => {
                    txn.rollback().await?;
                    return Err(err);
                }
            }
        } else {
            None
        };
        let mut outcomes: Vec<Option<PurchaseOutcome>> = vec![None; requests.len()];
        let mut sales = Vec::new();
        for sku in skus {
            let (indexes, of_sku): (Vec<usize>, Vec<&PurchaseRequest>) = requests
                .iter()
                .enumerate()
                .filter(|(_, r)| r.sku() == sku)
                .map(|(i, r)| (i, *r))
                .unzip();
            let already = taken.as_ref().map(|taken| taken.get(sku).copied());
            let ids: Vec<String> = indexes.iter().map(|&i| sale_ids[i].clone()).collect();
            let sold = match self
                .sell_product_in_group(&txn, sku, &of_sku, &ids, now, already)
                .await
            {
                Ok((sold, rows)) => {
                    sales.extend(rows);
                    sold
                }
                Err(err) => {
                    txn.rollback().await?;
                    return Err(err);
                }
            };
            for (i, outcome) in indexes.into_iter().zip(sold) {
                outcomes[i] = Some(outcome);
            }
        }
        insert_sales(&txn, sales).await?;
        let outcomes = outcomes
            .into_iter()
            .map(|o| {
                o.ok_or_else(|| sea_orm::DbErr::Custom("a grouped sale got no outcome".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((txn, outcomes))
    }

    /// Within `txn`: sells `requests` (all of `sku`, in arrival order, under `sale_ids`) with
    /// one `UPDATE`, writes the product's intent; their outcomes and the sale rows to insert.
    /// `already`: the total was already tried ([`take_stock_of_products`]) and, when it fit,
    /// taken, leaving this stock.
    async fn sell_product_in_group(
        &self,
        txn: &DatabaseTransaction,
        sku: &str,
        requests: &[&PurchaseRequest],
        sale_ids: &[String],
        now: i64,
        already: Option<Option<Taken>>,
    ) -> Result<(Vec<PurchaseOutcome>, Vec<sale::Model>), sea_orm::DbErr> {
        let quantities: Vec<i64> = requests.iter().map(|r| i64::from(r.quantity())).collect();
        let total: i64 = quantities.iter().sum();
        // Usually everything fits: one UPDATE for the total.
        let taken = match already {
            Some(taken) => taken,
            None => self.take_stock(txn, sku, total).await?.map(|after| Taken {
                stock: after.stock,
                reorder_point: after.reorder_point,
            }),
        };
        let (before, reorder_point, fits) = match taken {
            Some(after) => (
                after.stock + total,
                after.reorder_point,
                vec![true; requests.len()],
            ),
            None => {
                // Not all fit (or no such product): lock the row, sell in arrival order what
                // fits, and take exactly that.
                let Some(found) = product::Entity::find_by_id(sku)
                    .lock_exclusive()
                    .one(txn)
                    .await?
                else {
                    return Err(sea_orm::DbErr::RecordNotFound(sku.to_owned()));
                };
                let (fits, sold) = what_fits(found.stock, &quantities);
                if sold > 0 && self.take_stock(txn, sku, sold).await?.is_none() {
                    // Cannot happen under the row lock; never sell on a guess.
                    return Err(sea_orm::DbErr::Custom(format!(
                        "stock of {sku} changed under its row lock"
                    )));
                }
                (found.stock, found.reorder_point, fits)
            }
        };

        let planned = plan_product_sale(sku, requests, sale_ids, before, reorder_point, &fits, now);
        if let Some((reason, trigger)) = planned.intent {
            let renew = reason == IntentReason::ReorderPoint;
            insert_outbox_intent(txn, sku, reason, renew, trigger).await?;
        }
        Ok((planned.outcomes, planned.rows))
    }
}

/// Which of `quantities` (arrival order) sell from `stock` when not all fit: each that
/// still fits, in turn; and how many units that is.
pub(super) fn what_fits(stock: i64, quantities: &[i64]) -> (Vec<bool>, i64) {
    let mut left = stock;
    let fits = quantities
        .iter()
        .map(|&q| {
            let fit = q <= left;
            if fit {
                left -= q;
            }
            fit
        })
        .collect();
    (fits, stock - left)
}

/// What selling a product's purchases means: see [`plan_product_sale`].
pub(super) struct ProductSale<'a> {
    /// Each purchase's outcome, in arrival order.
    pub(super) outcomes: Vec<PurchaseOutcome>,
    /// The sale rows to insert.
    pub(super) rows: Vec<sale::Model>,
    /// The outbox intent to write, if any, with the request id of the call that asked for
    /// it: the first sale to reach the reorder point, else the first purchase turned away.
    pub(super) intent: Option<(IntentReason, Option<&'a str>)>,
}

/// Sells `requests` (all of `sku`, arrival order) from `before` units on paper: `fits` says
/// which of them sell (under `sale_ids`, one per request), each is told the stock it left.
pub(super) fn plan_product_sale<'a>(
    sku: &str,
    requests: &[&'a PurchaseRequest],
    sale_ids: &[String],
    before: i64,
    reorder_point: i64,
    fits: &[bool],
    now: i64,
) -> ProductSale<'a> {
    let mut left = before;
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut rows = Vec::with_capacity(requests.len());
    let mut reordered = false;
    let mut trigger: Option<&str> = None;
    let mut first_refused: Option<&str> = None;
    for ((request, sale_id), &fit) in requests.iter().zip(sale_ids).zip(fits) {
        if !fit {
            first_refused = first_refused.or(request.request_id());
            outcomes.push(PurchaseOutcome::OutOfStock {
                stock: left,
                replenishment_id: replenishment_id(sku),
            });
            continue;
        }
        let quantity = i64::from(request.quantity());
        left -= quantity;
        let reorder = left <= reorder_point;
        if reorder && !reordered {
            trigger = request.request_id();
        }
        reordered |= reorder;
        rows.push(sale::Model {
            id: sale_id.clone(),
            sku: sku.to_owned(),
            quantity,
            remaining_stock: left,
            idempotency_key: request.idempotency_key().map(str::to_owned),
            requester: request.requester().to_owned(),
            requested_replenishment: reorder,
            created_at: now,
        });
        outcomes.push(PurchaseOutcome::Sold {
            sale_id: sale_id.clone(),
            remaining_stock: left,
            replenishment_id: reorder.then(|| replenishment_id(sku)),
            replayed: false,
        });
    }
    let out_of_stock = outcomes
        .iter()
        .any(|o| matches!(o, PurchaseOutcome::OutOfStock { .. }));
    let intent = if reordered {
        Some((IntentReason::ReorderPoint, trigger))
    } else if out_of_stock {
        Some((IntentReason::OutOfStock, first_refused))
    } else {
        None
    };
    ProductSale {
        outcomes,
        rows,
        intent,
    }
}

/// A product's row after its total was taken.
#[derive(Debug, Clone, Copy)]
struct Taken {
    /// Stock left.
    stock: i64,
    /// Its reorder point.
    reorder_point: i64,
}

/// Within `txn`, several products at once: takes each product's `totals` entry where it
/// fits. The products whose total was taken, with what they have left; the others are
/// untouched, for the caller to sell what fits one by one.
///
/// PostgreSQL: first locks the rows of `skus` in sku order (byte order, as the single-product
/// path sorts them, so no two transactions wait for each other in a cycle; the others stay
/// locked); skus cannot hold a comma (the sku rule), so the lists travel as two text
/// parameters and the statements never change.
async fn take_stock_of_products(
    txn: &DatabaseTransaction,
    skus: &[&str],
    totals: &[i64],
    now: i64,
) -> Result<HashMap<String, Taken>, sea_orm::DbErr> {
    const LOCK: &str = "SELECT sku FROM products WHERE sku = ANY(string_to_array($1, ',')) \
        ORDER BY sku COLLATE \"C\" FOR UPDATE";
    const TAKE: &str = "UPDATE products AS p SET stock = p.stock - v.q, updated_at = $3 \
        FROM unnest(string_to_array($1, ','), string_to_array($2, ',')::bigint[]) AS v(sku, q) \
        WHERE p.sku = v.sku AND p.stock >= v.q \
        RETURNING p.sku, p.stock, p.reorder_point";
    let backend = txn.get_database_backend();
    let skus = skus.join(",");
    let totals = totals
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    txn.query_all_raw(Statement::from_sql_and_values(
        backend,
        LOCK,
        [skus.clone().into()],
    ))
    .await?;
    let statement =
        Statement::from_sql_and_values(backend, TAKE, [skus.into(), totals.into(), now.into()]);
    let rows = txn.query_all_raw(statement).await?;
    let mut taken = HashMap::with_capacity(rows.len());
    for row in rows {
        let sku: String = row.try_get_by_index(0)?;
        taken.insert(
            sku,
            Taken {
                stock: row.try_get_by_index(1)?,
                reorder_point: row.try_get_by_index(2)?,
            },
        );
    }
    Ok(taken)
}

/// Within `txn`: the group's sale rows, in chunks of a power of two rows, largest first: at
/// most nine statement shapes (1 to 256 rows), which the statement cache keeps, instead of a
/// statement prepared (and held, up to 2,048 parameters) for every group size. (On SQLite one
/// `INSERT … SELECT … FROM json_each(?)` for the whole group was tried: slower on a hot
/// product in four quick runs each, BENCHMARKS.md *Method*.)
async fn insert_sales(
    txn: &DatabaseTransaction,
    sales: Vec<sale::Model>,
) -> Result<(), sea_orm::DbErr> {
    let mut rest: Vec<sale::ActiveModel> = sales
        .into_iter()
        .map(|row| row.into_active_model().reset_all())
        .collect();
    while !rest.is_empty() {
        let tail = rest.split_off(1 << rest.len().ilog2());
        sale::Entity::insert_many(rest)
            .exec_without_returning(txn)
            .await?;
        rest = tail;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(quantity: u32, id: &str) -> PurchaseRequest {
        PurchaseRequest::new("CP-1", quantity, "", "")
            .map_or_else(|e| panic!("{e}"), |r| r.with_request_id(id))
    }

    #[test]
    fn when_not_all_fit_each_that_still_fits_sells_in_arrival_order() {
        // 5 units: 3 fits, 4 no longer does, 2 still does.
        assert_eq!(what_fits(5, &[3, 4, 2]), (vec![true, false, true], 5));
        assert_eq!(what_fits(0, &[1, 1]), (vec![false, false], 0));
        assert_eq!(what_fits(2, &[]), (vec![], 0));
    }

    #[test]
    fn a_product_sale_on_paper_tells_each_the_stock_it_left_and_who_asked_to_reorder() {
        let requests = [request(2, "a"), request(2, "b"), request(2, "c")];
        let requests: Vec<&PurchaseRequest> = requests.iter().collect();
        let ids = ["s1", "s2", "s3"].map(str::to_owned);
        let planned = plan_product_sale("CP-1", &requests, &ids, 5, 2, &[true, true, false], 7);
        let sold = |sale_id: &str, remaining_stock, reorder: bool| PurchaseOutcome::Sold {
            sale_id: sale_id.to_owned(),
            remaining_stock,
            replenishment_id: reorder.then(|| replenishment_id("CP-1")),
            replayed: false,
        };
        assert_eq!(
            planned.outcomes,
            [
                sold("s1", 3, false),
                sold("s2", 1, true),
                PurchaseOutcome::OutOfStock {
                    stock: 1,
                    replenishment_id: replenishment_id("CP-1"),
                },
            ]
        );
        assert_eq!(planned.rows.len(), 2);
        // The first sale to reach the reorder point asked, not the one turned away.
        assert_eq!(
            planned.intent,
            Some((IntentReason::ReorderPoint, Some("b")))
        );

        let refused = plan_product_sale("CP-1", &requests, &ids, 1, 0, &[false; 3], 7);
        assert_eq!(refused.intent, Some((IntentReason::OutOfStock, Some("a"))));
        assert!(refused.rows.is_empty());
        let plenty = plan_product_sale("CP-1", &requests, &ids, 100, 2, &[true; 3], 7);
        assert_eq!(plenty.intent, None);
    }
}
