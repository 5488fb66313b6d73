//! Selling one purchase in a transaction of its own: the path of every sale when grouping is
//! off, of a purchase that finds no transaction in flight, and of a group's purchases when
//! the group could not be sold together.

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait};

use super::{
    AfterFailure, PurchaseOutcome, PurchaseRequest, SaleFailure, after_failure, mark_own_sale,
    new_sale_id,
};
use crate::StoreError;
use crate::entity::replenish_outbox::IntentReason;
use crate::entity::{product, sale};
use crate::error::{DbErrKind, before_commit, classify};
use crate::replenishment_id;
use crate::store::{
    Store, TRANSACTION_ATTEMPTS, backoff, insert_outbox_intent, not_found, now_ms,
    unreachable_attempts,
};

impl Store {
    /// The answer an earlier purchase with the same key got, else [`Store::sell_alone`]:
    /// for a grouped purchase sold alone after all (its group rolled back, or repeated a key
    /// of the group).
    pub(crate) async fn sell_alone_or_replay(
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
            let failure = match self.sell_alone_once(request).await {
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

    /// One attempt at selling `request` alone.
    async fn sell_alone_once(
        &self,
        request: &PurchaseRequest,
    ) -> Result<PurchaseOutcome, SaleFailure> {
        if let Some(thread) = self.sale_thread() {
            let sale_id = new_sale_id();
            return match thread
                .sell(
                    vec![request.clone()],
                    vec![sale_id.clone()],
                    self.acquire_timeout(),
                )
                .await
            {
                Ok(outcomes) => outcomes.into_iter().next().ok_or_else(|| {
                    SaleFailure::from(sea_orm::DbErr::Custom("the sale got no outcome".into()))
                }),
                Err((mut failure, planned)) => {
                    if failure.at_commit && planned.is_none() {
                        // No answer came back: it may have sold under this id.
                        failure.sale_id = Some(sale_id);
                    }
                    Err(failure)
                }
            };
        }
        let quantity = i64::from(request.quantity);
        let _slot = self.sale_slot().await?;
        if self.backend() == DbBackend::Postgres
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
                return Err(sea_orm::DbErr::RecordNotFound(request.sku.to_string()).into());
            };
            insert_outbox_intent(
                &txn,
                &request.sku,
                IntentReason::OutOfStock,
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
        let sale_id = new_sale_id();
        sale::Entity::insert(sale::ActiveModel {
            id: Set(sale_id.clone()),
            sku: Set(request.sku.to_string()),
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
                IntentReason::ReorderPoint,
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
        let sale_id = new_sale_id();
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
            .writer()
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
}
