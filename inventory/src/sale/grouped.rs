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
//! one transaction, one `UPDATE` per product. On PostgreSQL and MySQL, purchases wait in one of
//! a few lanes ([`crate::StoreOptions::purchase_lanes`]; a product always in the same one), so
//! spread load groups too: a lane's transaction sells several products, locking their rows in
//! sku order, so two transactions never wait for each other in a cycle (and lanes never share
//! a product). With 0 lanes each product has its own queue.
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
//! [`StoreError::OutcomeUnknown`].

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QuerySelect,
    Statement,
};
use tokio::sync::oneshot;

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

/// Default for [`crate::StoreOptions::purchase_lanes`]: a quarter of the default pool, so the
/// lanes' transactions leave connections for reads and sales that sell alone. Fewer lanes make
/// bigger groups (one commit each), more lanes more commits at once; on PostgreSQL with 1,000
/// products 4 did best overall (BENCHMARKS.md, *Method*).
pub const DEFAULT_LANES: usize = 4;

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
    let requests: Vec<&PurchaseRequest> = firsts.iter().map(|w| &w.request).collect();
    match store.sell_group(&requests).await {
        Ok(outcomes) => {
            groups.shared_transactions.fetch_add(1, Ordering::Relaxed);
            groups
                .shared_sales
                .fetch_add(outcomes.len() as u64, Ordering::Relaxed);
            for (w, outcome) in firsts.into_iter().zip(outcomes) {
                let answer = store.unless_replayed(&w.request, outcome).await;
                let _ = w.reply.send(answer);
            }
        }
        Err(GroupFailure::RolledBack(err)) => {
            tracing::debug!(error = %err, sales = firsts.len(), "grouped sale rolled back; selling one by one");
            for w in firsts {
                let _ = w.reply.send(store.sell_alone_or_replay(&w.request).await);
            }
        }
        Err(GroupFailure::Unknown { failure, planned }) => {
            resolve_unknown(store, firsts, planned, failure).await;
        }
    }
    for w in repeats {
        let _ = w.reply.send(store.sell_alone_or_replay(&w.request).await);
    }
}

/// Answers a group whose `COMMIT` may or may not have committed ([`AfterFailure::Unknown`]).
/// The group is one transaction, so one keyed sale's row (with the sale id this commit
/// wrote) proves that every outcome in `planned` happened. Without that proof, a keyed sale
/// is sold again alone (its key sells it at most once, whatever the lost commit did) and
/// the others are told the outcome is unknown; none is sold again blindly.
async fn resolve_unknown(
    store: &Store,
    firsts: Vec<Waiting>,
    planned: Vec<PurchaseOutcome>,
    failure: SaleFailure,
) {
    let witness = firsts
        .iter()
        .zip(&planned)
        .find_map(|(w, outcome)| match outcome {
            PurchaseOutcome::Sold { sale_id, .. } if w.request.idempotency_key().is_some() => {
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
    if committed {
        if let Some(groups) = store.groups() {
            groups.shared_transactions.fetch_add(1, Ordering::Relaxed);
            groups
                .shared_sales
                .fetch_add(planned.len() as u64, Ordering::Relaxed);
        }
        for (w, outcome) in firsts.into_iter().zip(planned) {
            let answer = store.unless_replayed(&w.request, outcome).await;
            let _ = w.reply.send(answer);
        }
        return;
    }
    for (w, outcome) in firsts.into_iter().zip(planned) {
        let answer = if w.request.idempotency_key().is_some() {
            let own_sale_id = match &outcome {
                PurchaseOutcome::Sold { sale_id, .. } => Some(sale_id.as_str()),
                PurchaseOutcome::OutOfStock { .. } => None,
            };
            match store.sell_alone_or_replay(&w.request).await {
                Ok(found) => Ok(mark_own_sale(found, own_sale_id)),
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
            let failure = match self.prepare_group(requests).await {
                Ok((txn, planned)) => match txn.commit().await {
                    Ok(()) => return Ok(planned),
                    Err(err) => {
                        let failure = SaleFailure::at_commit(err, None);
                        let sold_any = planned
                            .iter()
                            .any(|o| matches!(o, PurchaseOutcome::Sold { .. }));
                        if after_failure(&failure) == AfterFailure::Unknown {
                            if !sold_any {
                                // All out of stock: only the (idempotent) intent was at
                                // stake, nothing sold either way; selling one by one is safe.
                                return Err(GroupFailure::RolledBack(failure.err));
                            }
                            return Err(GroupFailure::Unknown { failure, planned });
                        }
                        failure
                    }
                },
                Err(err) => SaleFailure::from(err),
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

    /// Everything of the group's transaction but its commit: products in sku order (one lock
    /// order for every transaction, so none waits for another in a cycle); the transaction,
    /// to commit, and each request's outcome once it commits.
    async fn prepare_group(
        &self,
        requests: &[&PurchaseRequest],
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
        // PostgreSQL, several products: every product's total in two statements instead of
        // one `UPDATE` each (a lane's group is many products, each a round trip otherwise).
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
            let sold = match self
                .sell_product_in_group(&txn, sku, &of_sku, now, &mut sales, already)
                .await
            {
                Ok(sold) => sold,
                Err(err) => {
                    txn.rollback().await?;
                    return Err(err);
                }
            };
            for (i, outcome) in indexes.into_iter().zip(sold) {
                outcomes[i] = Some(outcome);
            }
        }
        // The sale rows in chunks of a power of two rows, largest first: at most nine
        // statement shapes (1 to 256 rows), which the writer's statement cache keeps, instead
        // of a statement prepared (and held, up to 2,048 parameters) for every group size.
        let mut rest = sales;
        while !rest.is_empty() {
            let tail = rest.split_off(1 << rest.len().ilog2());
            sale::Entity::insert_many(rest)
                .exec_without_returning(&txn)
                .await?;
            rest = tail;
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| {
                o.ok_or_else(|| sea_orm::DbErr::Custom("a grouped sale got no outcome".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((txn, outcomes))
    }

    /// Within `txn`: sells `requests` (all of `sku`, in arrival order) with one `UPDATE`,
    /// adds their sale rows to `sales`, writes the product's intent; their outcomes.
    /// `already`: the total was already tried ([`take_stock_of_products`]) and, when it fit,
    /// taken, leaving this stock.
    async fn sell_product_in_group(
        &self,
        txn: &DatabaseTransaction,
        sku: &str,
        requests: &[&PurchaseRequest],
        now: i64,
        sales: &mut Vec<sale::ActiveModel>,
        already: Option<Option<Taken>>,
    ) -> Result<Vec<PurchaseOutcome>, sea_orm::DbErr> {
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
                let mut left = found.stock;
                let fits: Vec<bool> = quantities
                    .iter()
                    .map(|&q| {
                        let fit = q <= left;
                        if fit {
                            left -= q;
                        }
                        fit
                    })
                    .collect();
                let sold = found.stock - left;
                if sold > 0 && self.take_stock(txn, sku, sold).await?.is_none() {
                    // Cannot happen under the row lock; never sell on a guess.
                    return Err(sea_orm::DbErr::Custom(format!(
                        "stock of {sku} changed under its row lock"
                    )));
                }
                (found.stock, found.reorder_point, fits)
            }
        };

        let mut left = before;
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut reordered = false;
        // The call that asked for the replenishment: the first sale to reach the reorder
        // point, else the first turned away.
        let mut trigger: Option<&str> = None;
        let mut first_refused: Option<&str> = None;
        for ((request, &quantity), fit) in requests.iter().zip(&quantities).zip(fits) {
            if !fit {
                first_refused = first_refused.or(request.request_id());
                outcomes.push(PurchaseOutcome::OutOfStock {
                    stock: left,
                    replenishment_id: replenishment_id(sku),
                });
                continue;
            }
            left -= quantity;
            let reorder = left <= reorder_point;
            if reorder && !reordered {
                trigger = request.request_id();
            }
            reordered |= reorder;
            let sale_id = new_sale_id();
            sales.push(sale::ActiveModel {
                id: Set(sale_id.clone()),
                sku: Set(sku.to_owned()),
                quantity: Set(quantity),
                remaining_stock: Set(left),
                idempotency_key: Set(request.idempotency_key().map(str::to_owned)),
                requester: Set(request.requester().to_owned()),
                requested_replenishment: Set(reorder),
                created_at: Set(now),
            });
            outcomes.push(PurchaseOutcome::Sold {
                sale_id,
                remaining_stock: left,
                replenishment_id: reorder.then(|| replenishment_id(sku)),
                replayed: false,
            });
        }
        let out_of_stock = outcomes
            .iter()
            .any(|o| matches!(o, PurchaseOutcome::OutOfStock { .. }));
        let trigger = if reordered { trigger } else { first_refused };
        if reordered {
            insert_outbox_intent(txn, sku, IntentReason::ReorderPoint, true, trigger).await?;
        } else if out_of_stock {
            insert_outbox_intent(txn, sku, IntentReason::OutOfStock, false, trigger).await?;
        }
        Ok(outcomes)
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

/// PostgreSQL, within `txn`: locks the rows of `skus` in sku order (byte order, as the
/// single-product path sorts them, so no two transactions wait for each other in a cycle),
/// then takes each product's `totals` entry with one `UPDATE` where it fits. The products
/// whose total was taken, with what they have left; the others are untouched (still
/// locked), for the caller to sell what fits one by one. Skus cannot hold a comma (the sku
/// rule), so the lists travel as two text parameters and the statements never change.
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
    let skus = skus.join(",");
    let totals = totals
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    txn.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        LOCK,
        [skus.clone().into()],
    ))
    .await?;
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            TAKE,
            [skus.into(), totals.into(), now.into()],
        ))
        .await?;
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
