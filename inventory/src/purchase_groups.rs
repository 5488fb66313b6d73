//! Grouped purchases: concurrent sales of one product share one transaction.
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
//! one transaction, one `UPDATE` per product.
//!
//! Idempotency keys: replays are answered before queueing; a key repeated inside one group
//! is sold once and the repeat replays it; a group that fails for any reason other than a
//! transient conflict (a key committed elsewhere meanwhile, a vanished product) is rolled
//! back whole and each request is sold alone, so each gets its own exact answer or error.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait, QuerySelect};
use tokio::sync::oneshot;

use crate::entity::{product, sale};
use crate::error::{DbErrKind, classify};
use crate::store::{
    PurchaseOutcome, PurchaseRequest, Store, TRANSACTION_ATTEMPTS, backoff, insert_outbox_intent,
    now_ms, unreachable_attempts,
};
use crate::{StoreError, replenishment_id};

/// Most sales in one transaction: bounds the multi-row INSERT's parameters (8 per sale).
pub const MAX_GROUP: usize = 256;

/// A sale waiting for its product's next transaction.
struct Waiting {
    request: PurchaseRequest,
    reply: oneshot::Sender<Result<PurchaseOutcome, StoreError>>,
}

/// Queues of waiting purchases (see [`queue_key`]). A queue exists exactly while a task is
/// draining it.
#[derive(Default)]
pub(crate) struct PurchaseGroups {
    queues: Mutex<HashMap<String, Vec<Waiting>>>,
    /// Groups of two or more sold in one transaction, and the sales in them.
    shared_transactions: AtomicU64,
    shared_sales: AtomicU64,
}

/// How much grouping happened: see [`Store::purchase_grouping`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupingCounts {
    /// Transactions that sold a group of two or more purchases.
    pub shared_transactions: u64,
    /// Purchases answered by those transactions.
    pub shared_sales: u64,
}

impl std::fmt::Debug for PurchaseGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurchaseGroups").finish_non_exhaustive()
    }
}

impl PurchaseGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Waiting>>> {
        // A panic while holding this lock cannot leave the map half-changed (push/drain/remove).
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `request` behind its product's transaction in flight, or starts one. The sale
    /// runs on its own task, so a caller that goes away does not strand the others.
    pub(crate) async fn purchase(
        &self,
        store: &Store,
        request: PurchaseRequest,
    ) -> Result<PurchaseOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let key = queue_key(store, &request);
        let waiting = Waiting { request, reply };
        let start = {
            let mut queues = self.lock();
            match queues.get_mut(&key) {
                Some(queue) => {
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
            Err(StoreError::Unavailable(sea_orm::DbErr::Custom(
                "the sale's transaction was interrupted; try again with the same idempotency key"
                    .to_owned(),
            )))
        })
    }

    /// Takes up to [`MAX_GROUP`] waiting sales of queue `key`; none: forgets the queue (its
    /// drain task ends) in the same critical section, so no sale is left unserved.
    fn next_group(&self, key: &str) -> Vec<Waiting> {
        let mut queues = self.lock();
        let Some(queue) = queues.get_mut(key) else {
            return Vec::new();
        };
        if queue.is_empty() {
            queues.remove(key);
            return Vec::new();
        }
        let take = queue.len().min(MAX_GROUP);
        queue.drain(..take).collect()
    }
}

/// Which queue a purchase waits in: its product's, or on SQLite the one queue of all
/// products — SQLite has a single writer, so every transaction waits for every other anyway,
/// and one transaction can as well sell several products. (Elsewhere, transactions that
/// lock several product rows could deadlock each other.)
fn queue_key(store: &Store, request: &PurchaseRequest) -> String {
    match store.backend() {
        sea_orm::DbBackend::Sqlite => String::new(),
        _ => request.sku().to_owned(),
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
        sell_group(&store, group).await;
    }
}

async fn sell_group(store: &Store, group: Vec<Waiting>) {
    if group.len() == 1 {
        // Alone: the ungrouped transaction (its replay was answered before queueing).
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
    match store.purchase_group(&requests).await {
        Ok(outcomes) => {
            if let Some(groups) = store.groups() {
                groups.shared_transactions.fetch_add(1, Ordering::Relaxed);
                groups
                    .shared_sales
                    .fetch_add(outcomes.len() as u64, Ordering::Relaxed);
            }
            for (w, outcome) in firsts.into_iter().zip(outcomes) {
                let _ = w.reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, sales = firsts.len(), "grouped sale rolled back; selling one by one");
            for w in firsts {
                let _ = w.reply.send(store.purchase_ungrouped(&w.request).await);
            }
        }
    }
    for w in repeats {
        let _ = w.reply.send(store.purchase_ungrouped(&w.request).await);
    }
}

impl Store {
    /// How many purchases shared a transaction since this store was opened; `None` when
    /// grouping is off.
    pub fn purchase_grouping(&self) -> Option<GroupingCounts> {
        self.groups().map(|g| GroupingCounts {
            shared_transactions: g.shared_transactions.load(Ordering::Relaxed),
            shared_sales: g.shared_sales.load(Ordering::Relaxed),
        })
    }

    /// Sells `requests` (distinct keys, arrival order) in one transaction, retrying
    /// transient conflicts. Any error means nothing was sold.
    async fn purchase_group(
        &self,
        requests: &[&PurchaseRequest],
    ) -> Result<Vec<PurchaseOutcome>, StoreError> {
        for attempt in 1..=TRANSACTION_ATTEMPTS {
            match self.try_purchase_group(requests).await {
                Ok(outcomes) => return Ok(outcomes),
                Err(err) if classify(&err) == DbErrKind::Transient => {
                    if attempt < TRANSACTION_ATTEMPTS {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
        unreachable_attempts()
    }

    /// One transaction for the whole group; products in order of first appearance.
    async fn try_purchase_group(
        &self,
        requests: &[&PurchaseRequest],
    ) -> Result<Vec<PurchaseOutcome>, sea_orm::DbErr> {
        let mut skus: Vec<&str> = Vec::new();
        for r in requests {
            if !skus.contains(&r.sku()) {
                skus.push(r.sku());
            }
        }
        let txn = self.begin_write().await?;
        let now = now_ms();
        let mut outcomes: Vec<Option<PurchaseOutcome>> = vec![None; requests.len()];
        let mut sales = Vec::new();
        for sku in skus {
            let (indexes, of_sku): (Vec<usize>, Vec<&PurchaseRequest>) = requests
                .iter()
                .enumerate()
                .filter(|(_, r)| r.sku() == sku)
                .map(|(i, r)| (i, *r))
                .unzip();
            let sold = match self.sell_product(&txn, sku, &of_sku, now, &mut sales).await {
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
        if !sales.is_empty() {
            sale::Entity::insert_many(sales)
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        outcomes
            .into_iter()
            .map(|o| {
                o.ok_or_else(|| sea_orm::DbErr::Custom("a grouped sale got no outcome".into()))
            })
            .collect()
    }

    /// Within `txn`: sells `requests` (all of `sku`, in arrival order) with one `UPDATE`,
    /// adds their sale rows to `sales`, writes the product's intent; their outcomes.
    async fn sell_product(
        &self,
        txn: &DatabaseTransaction,
        sku: &str,
        requests: &[&PurchaseRequest],
        now: i64,
        sales: &mut Vec<sale::ActiveModel>,
    ) -> Result<Vec<PurchaseOutcome>, sea_orm::DbErr> {
        let quantities: Vec<i64> = requests.iter().map(|r| i64::from(r.quantity())).collect();
        let total: i64 = quantities.iter().sum();
        // Usually everything fits: one UPDATE for the total.
        let (before, reorder_point, fits) = match self.take_stock(txn, sku, total).await? {
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
        for ((request, &quantity), fit) in requests.iter().zip(&quantities).zip(fits) {
            if !fit {
                outcomes.push(PurchaseOutcome::OutOfStock {
                    stock: left,
                    replenishment_id: replenishment_id(sku),
                });
                continue;
            }
            left -= quantity;
            let reorder = left <= reorder_point;
            reordered |= reorder;
            let sale_id = uuid::Uuid::new_v4().to_string();
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
        if reordered {
            insert_outbox_intent(txn, sku, "reorder_point", true).await?;
        } else if out_of_stock {
            insert_outbox_intent(txn, sku, "out_of_stock", false).await?;
        }
        Ok(outcomes)
    }

    /// `UPDATE products SET stock = stock - quantity WHERE sku = ? AND stock >= quantity`;
    /// the row after it, or `None` when nothing changed (too little stock or no product).
    pub(crate) async fn take_stock(
        &self,
        txn: &DatabaseTransaction,
        sku: &str,
        quantity: i64,
    ) -> Result<Option<product::Model>, sea_orm::DbErr> {
        use sea_orm::sea_query::{Expr, ExprTrait};
        use sea_orm::{ColumnTrait, DbBackend, QueryFilter};
        let update = product::Entity::update_many()
            .col_expr(
                product::Column::Stock,
                Expr::col(product::Column::Stock).sub(quantity),
            )
            .col_expr(product::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(product::Column::Sku.eq(sku))
            .filter(product::Column::Stock.gte(quantity));
        if self.backend() == DbBackend::MySql {
            // No UPDATE ... RETURNING: read the row back while it is still locked.
            if update.exec(txn).await?.rows_affected == 0 {
                return Ok(None);
            }
            return product::Entity::find_by_id(sku).one(txn).await;
        }
        Ok(update.exec_with_returning(txn).await?.into_iter().next())
    }
}
