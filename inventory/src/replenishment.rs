//! The store's side of replenishment: the outbox the relay drains, factory-order records that
//! keep an order from being sent twice, the idempotent stock increment, and the
//! `replenishments` read model.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::factory_order::{self, OrderStatus};
use crate::entity::{factory, product, replenish_outbox, replenishment, stock_receipt};
use crate::error::{DbErrKind, classify};
use crate::store::{now_ms, retry_transient};
use crate::{RestockState, Sku, Store, StoreError, validate};

/// `replenishments.closed_by_temporal` of a row whose run a newer run of its product
/// replaced while the row still read open: Temporal closed it, how is no longer known.
pub const CLOSED_BY_NEWER_RUN: &str = "Closed";

/// What [`Store::receive_stock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// False when this order's delivery had already been applied (nothing added this time).
    pub applied: bool,
    /// Stock after the call.
    pub stock: i64,
}

/// Whether a factory order may be sent ([`Store::begin_factory_order`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendDecision {
    /// Send it now; this is attempt number `attempt` (1 = first).
    Send {
        /// Attempt number.
        attempt: i32,
    },
    /// The factory already accepted it: do not send again.
    AlreadyAccepted {
        /// The factory's id for it.
        factory_reference: Option<String>,
    },
    /// The factory refused it as invalid (4xx): sending again will not help.
    Rejected {
        /// What the factory said.
        error: String,
    },
    /// The factory may or may not have it: never send again.
    Uncertain,
}

/// A replenishment's state, as the workflow reports it to the read model.
pub type ReplenishmentRecord = replenishment::Model;

impl Store {
    /// Pending replenishment intents, oldest first.
    pub async fn pending_outbox(
        &self,
        limit: u64,
    ) -> Result<Vec<replenish_outbox::Model>, StoreError> {
        Ok(replenish_outbox::Entity::find()
            .order_by_asc(replenish_outbox::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await?)
    }

    /// Pending intents, oldest first, except for the products in `skip`.
    pub async fn pending_outbox_except(
        &self,
        skip: &[String],
        limit: u64,
    ) -> Result<Vec<replenish_outbox::Model>, StoreError> {
        let mut query = replenish_outbox::Entity::find().order_by_asc(replenish_outbox::Column::Id);
        if !skip.is_empty() {
            query = query.filter(replenish_outbox::Column::Sku.is_not_in(skip.iter().cloned()));
        }
        Ok(query.limit(limit).all(self.reader()).await?)
    }

    /// How many intents wait for the relay.
    pub async fn outbox_depth(&self) -> Result<u64, StoreError> {
        Ok(replenish_outbox::Entity::find()
            .count(self.reader())
            .await?)
    }

    /// When the oldest intent still waiting was written (Unix ms), if any waits.
    pub async fn outbox_oldest(&self) -> Result<Option<i64>, StoreError> {
        Ok(replenish_outbox::Entity::find()
            .select_only()
            .column(replenish_outbox::Column::RequestedAt)
            .order_by_asc(replenish_outbox::Column::RequestedAt)
            .into_tuple()
            .one(self.reader())
            .await?)
    }

    /// Removes an intent once Temporal has it, unless another sale asked again since the relay
    /// read it (its revision moved on): then it stays for the next pass. True when removed.
    pub async fn delete_outbox(&self, id: i64, revision: i64) -> Result<bool, StoreError> {
        let deleted = replenish_outbox::Entity::delete_many()
            .filter(replenish_outbox::Column::Id.eq(id))
            .filter(replenish_outbox::Column::Revision.eq(revision))
            .exec(self.writer())
            .await?;
        Ok(deleted.rows_affected == 1)
    }

    /// Records a failed relay attempt on an intent, for operators.
    pub async fn outbox_attempt_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        replenish_outbox::Entity::update_many()
            .col_expr(
                replenish_outbox::Column::Attempts,
                Expr::col(replenish_outbox::Column::Attempts).add(1),
            )
            .col_expr(
                replenish_outbox::Column::LastError,
                Expr::value(truncate(error, 1000)),
            )
            .filter(replenish_outbox::Column::Id.eq(id))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// The factory that makes a product.
    pub async fn factory(&self, id: &str) -> Result<factory::Model, StoreError> {
        validate::id("factory id", id)?;
        factory::Entity::find_by_id(id)
            .one(self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no factory with id {id:?}")))
    }

    /// Decides whether a factory order may be sent now, and if so claims the attempt (status
    /// `sending`) atomically, so two concurrent attempts cannot both send. An order found
    /// `sending` was interrupted mid-request (the worker died or the activity timed out): the
    /// factory may have it, so it becomes `uncertain` and is never sent again.
    pub async fn begin_factory_order(
        &self,
        order_id: &str,
        sku: &str,
        quantity: i64,
        factory_id: &str,
    ) -> Result<SendDecision, StoreError> {
        let now = now_ms();
        factory_order::Entity::insert(factory_order::ActiveModel {
            order_id: Set(order_id.to_owned()),
            sku: Set(sku.to_owned()),
            quantity: Set(quantity),
            factory_id: Set(factory_id.to_owned()),
            status: Set(OrderStatus::NotPlaced),
            factory_reference: Set(None),
            attempts: Set(0),
            last_error: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(factory_order::Column::OrderId)
                .do_nothing_on([factory_order::Column::OrderId])
                .to_owned(),
        )
        .exec_without_returning(self.writer())
        .await?;
        let claimed = factory_order::Entity::update_many()
            .col_expr(
                factory_order::Column::Status,
                Expr::value(OrderStatus::Sending),
            )
            .col_expr(
                factory_order::Column::Attempts,
                Expr::col(factory_order::Column::Attempts).add(1),
            )
            .col_expr(factory_order::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(factory_order::Column::OrderId.eq(order_id))
            .filter(factory_order::Column::Status.eq(OrderStatus::NotPlaced))
            .exec(self.writer())
            .await?;
        let Some(order) = factory_order::Entity::find_by_id(order_id)
            .one(self.writer())
            .await?
        else {
            return Err(StoreError::NotFound(format!(
                "factory order {order_id} vanished"
            )));
        };
        if claimed.rows_affected == 1 {
            return Ok(SendDecision::Send {
                attempt: order.attempts,
            });
        }
        Ok(match order.status {
            OrderStatus::Accepted => SendDecision::AlreadyAccepted {
                factory_reference: order.factory_reference,
            },
            OrderStatus::Rejected => SendDecision::Rejected {
                error: order.last_error.unwrap_or_default(),
            },
            OrderStatus::Sending => {
                self.finish_factory_order(
                    order_id,
                    OrderStatus::Uncertain,
                    None,
                    Some("an earlier attempt was interrupted mid-request; the factory may have the order"),
                )
                .await?;
                SendDecision::Uncertain
            }
            // Not placed: another caller claimed it a moment ago (it is sending).
            OrderStatus::Uncertain | OrderStatus::NotPlaced => SendDecision::Uncertain,
        })
    }

    /// Records how a send attempt ended.
    pub async fn finish_factory_order(
        &self,
        order_id: &str,
        status: OrderStatus,
        factory_reference: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = factory_order::Entity::update_many()
            .col_expr(factory_order::Column::Status, Expr::value(status))
            .col_expr(factory_order::Column::UpdatedAt, Expr::value(now_ms()))
            .col_expr(
                factory_order::Column::LastError,
                Expr::value(error.map(|e| truncate(e, 1000))),
            )
            .filter(factory_order::Column::OrderId.eq(order_id));
        if let Some(reference) = factory_reference {
            update = update.col_expr(
                factory_order::Column::FactoryReference,
                Expr::value(truncate(reference, 128)),
            );
        }
        update.exec(self.writer()).await?;
        Ok(())
    }

    /// The record of a factory order, if any.
    pub async fn factory_order(
        &self,
        order_id: &str,
    ) -> Result<Option<factory_order::Model>, StoreError> {
        Ok(factory_order::Entity::find_by_id(order_id)
            .one(self.reader())
            .await?)
    }

    /// Adds a delivery to stock exactly once: the `stock_receipts` row (unique on the order
    /// id) and the increment commit together, so a repeated call adds nothing.
    pub async fn receive_stock(
        &self,
        order_id: &str,
        sku: &Sku,
        quantity: i64,
        replenishment_id: &str,
    ) -> Result<Received, StoreError> {
        validate::units("quantity", quantity, 1)?;
        match retry_transient(|| self.try_receive(order_id, sku, quantity, replenishment_id)).await
        {
            Ok(Some(stock)) => {
                return Ok(Received {
                    applied: true,
                    stock,
                });
            }
            Ok(None) => {}
            // Another caller's insert of the same receipt won: applied once, by it.
            Err(err) if classify(&err) == DbErrKind::UniqueViolation => {}
            Err(err) => return Err(err.into()),
        }
        // Already applied by an earlier attempt.
        let stock = self.product(sku).await?.product.stock;
        Ok(Received {
            applied: false,
            stock,
        })
    }

    /// One attempt: the receipt row and the increment in one transaction. `Ok(None)` when
    /// the receipt already exists (the delivery was applied before; nothing changed).
    ///
    /// A plain `INSERT` whose unique violation means "already applied": never the insert's
    /// rows-affected, which on MySQL (`ON DUPLICATE KEY UPDATE k = k` under sqlx's
    /// `CLIENT_FOUND_ROWS`) is 1 for a duplicate too.
    async fn try_receive(
        &self,
        order_id: &str,
        sku: &str,
        quantity: i64,
        replenishment_id: &str,
    ) -> Result<Option<i64>, sea_orm::DbErr> {
        let txn = self.begin_write().await?;
        let inserted = stock_receipt::Entity::insert(stock_receipt::ActiveModel {
            factory_order_id: Set(order_id.to_owned()),
            sku: Set(sku.to_owned()),
            quantity: Set(quantity),
            replenishment_id: Set(replenishment_id.to_owned()),
            received_at: Set(now_ms()),
        })
        .exec_without_returning(&txn)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if classify(&err) == DbErrKind::UniqueViolation => {
                txn.rollback().await?;
                return Ok(None);
            }
            // Dropping the transaction rolls it back; the insert's error is the one to report.
            Err(err) => return Err(err),
        }
        let updated = product::add_to_stock(sku, quantity).exec(&txn).await?;
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Err(sea_orm::DbErr::RecordNotFound(sku.to_owned()));
        }
        let stock = product::Entity::find_by_id(sku)
            .one(&txn)
            .await?
            .map(|p| p.stock)
            .unwrap_or_default();
        txn.commit().await?;
        Ok(Some(stock))
    }

    /// The receipt of one order's delivery, if it was applied.
    pub async fn receipt(
        &self,
        order_id: &str,
    ) -> Result<Option<stock_receipt::Model>, StoreError> {
        Ok(stock_receipt::Entity::find_by_id(order_id)
            .one(self.reader())
            .await?)
    }

    /// Stock receipts applied for a product (all of them, oldest first).
    pub async fn stock_receipts(&self, sku: &str) -> Result<Vec<stock_receipt::Model>, StoreError> {
        Ok(stock_receipt::Entity::find()
            .filter(stock_receipt::Column::Sku.eq(sku))
            .order_by_asc(stock_receipt::Column::ReceivedAt)
            .all(self.reader())
            .await?)
    }

    /// Writes a replenishment's current state to the read model (insert or update).
    pub async fn record_replenishment(&self, r: &ReplenishmentRecord) -> Result<(), StoreError> {
        replenishment::Entity::insert(replenishment::ActiveModel::from(r.clone()))
            .on_conflict(
                OnConflict::column(replenishment::Column::OrderId)
                    // A run that writes its row is running (again: the UI's Reset of a
                    // terminated run), so a mark that Temporal closed it goes. (A write that
                    // was in flight at a Terminate would clear it too; the next look at the
                    // run, or the product's next run, marks it again.)
                    .update_columns([
                        replenishment::Column::State,
                        replenishment::Column::Quantity,
                        replenishment::Column::Overdue,
                        replenishment::Column::UpdatedAt,
                        replenishment::Column::ClosedByTemporal,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.writer())
            .await?;
        // Only the latest run of a product is open: when a run records its first state, an
        // older row that still reads open is a run Temporal closed before it recorded its
        // end (Terminate, a reset). Only then: the run's later writes need not ask again.
        if r.state != RestockState::CheckingStock {
            return Ok(());
        }
        replenishment::Entity::update_many()
            .col_expr(
                replenishment::Column::ClosedByTemporal,
                Expr::value(CLOSED_BY_NEWER_RUN),
            )
            .filter(replenishment::Column::Sku.eq(r.sku.as_str()))
            .filter(replenishment::Column::OrderId.ne(r.order_id.as_str()))
            .filter(replenishment::Column::StartedAt.lt(r.started_at))
            .filter(replenishment::Column::State.is_not_in(RestockState::ENDED))
            .filter(replenishment::Column::ClosedByTemporal.is_null())
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Records what Temporal says of `order_id`'s run, seen by the gateway while the run's
    /// last state is not an end: `Some(how)` (`"Terminated"`, `"TimedOut"`) when Temporal
    /// closed it, replacing the unknown `"Closed"`; `None` when it runs (again: the UI's Reset
    /// of a terminated run), clearing a mark. A row that ended on its own is left as it is.
    /// Whether a row changed.
    pub async fn record_closed_by_temporal(
        &self,
        order_id: &str,
        how: Option<&str>,
    ) -> Result<bool, StoreError> {
        let column = replenishment::Column::ClosedByTemporal;
        // Asked at every look at the run: a read, unless there is something to change (a
        // write would queue behind the sales on SQLite's one writer).
        let Some(row) = replenishment::Entity::find_by_id(order_id)
            .one(self.reader())
            .await?
        else {
            return Ok(false);
        };
        let now = row.closed_by_temporal.as_deref();
        let changes = match how {
            Some(_) => now.is_none() || now == Some(CLOSED_BY_NEWER_RUN),
            None => now.is_some(),
        };
        if !changes || row.state.is_terminal() {
            return Ok(false);
        }
        let unless = match how {
            Some(_) => Condition::any()
                .add(column.is_null())
                .add(column.eq(CLOSED_BY_NEWER_RUN)),
            None => Condition::all().add(column.is_not_null()),
        };
        let changed = replenishment::Entity::update_many()
            .col_expr(column, Expr::value(how.map(str::to_owned)))
            .filter(replenishment::Column::OrderId.eq(order_id))
            .filter(replenishment::Column::State.is_not_in(RestockState::ENDED))
            .filter(unless)
            .exec(self.writer())
            .await?;
        Ok(changed.rows_affected > 0)
    }

    /// Replenishments newest first (by start, then order id), optionally in one state (then
    /// not those Temporal closed before they recorded their end); `after` is the previous
    /// page's last `(started_at, order_id)`.
    pub async fn list_replenishments(
        &self,
        state: Option<RestockState>,
        after: Option<(i64, &str)>,
        limit: u64,
    ) -> Result<Vec<ReplenishmentRecord>, StoreError> {
        let mut query = replenishment::Entity::find()
            .order_by_desc(replenishment::Column::StartedAt)
            .order_by_desc(replenishment::Column::OrderId);
        // A run Temporal closed before it recorded its end is not in its last state any more.
        if let Some(state) = state {
            query = query
                .filter(replenishment::Column::State.eq(state))
                .filter(replenishment::Column::ClosedByTemporal.is_null());
        }
        // Keyset: strictly after the previous page's last row in this order, so rows that
        // start or change meanwhile never shift the pages (an offset would skip or repeat).
        if let Some((started_at, order_id)) = after {
            query = query.filter(
                Condition::any()
                    .add(replenishment::Column::StartedAt.lt(started_at))
                    .add(
                        Condition::all()
                            .add(replenishment::Column::StartedAt.eq(started_at))
                            .add(replenishment::Column::OrderId.lt(order_id)),
                    ),
            );
        }
        Ok(query.limit(limit).all(self.reader()).await?)
    }

    /// How many replenishments are in each state (read model); runs Temporal closed before
    /// they recorded their end are left out (their state is not where they are).
    pub async fn replenishments_by_state(&self) -> Result<Vec<(RestockState, i64)>, StoreError> {
        Ok(replenishment::Entity::find()
            .filter(replenishment::Column::ClosedByTemporal.is_null())
            .select_only()
            .column(replenishment::Column::State)
            .column_as(replenishment::Column::OrderId.count(), "n")
            .group_by(replenishment::Column::State)
            .into_tuple::<(RestockState, i64)>()
            .all(self.reader())
            .await?)
    }

    /// The read model's rows of `skus` changed at or after `since` (unix ms): `(sku, state,
    /// updated_at)`. The relay asks this to learn which products' runs ended since it handed
    /// them over.
    pub async fn replenishments_changed_since(
        &self,
        skus: &[String],
        since: i64,
    ) -> Result<Vec<(String, RestockState, i64)>, StoreError> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        Ok(replenishment::Entity::find()
            .select_only()
            .column(replenishment::Column::Sku)
            .column(replenishment::Column::State)
            .column(replenishment::Column::UpdatedAt)
            .filter(replenishment::Column::Sku.is_in(skus.iter().cloned()))
            .filter(replenishment::Column::UpdatedAt.gte(since))
            .into_tuple::<(String, RestockState, i64)>()
            .all(self.reader())
            .await?)
    }

    /// One replenishment run of a product, by its order id.
    pub async fn replenishment_by_order(
        &self,
        sku: &Sku,
        order_id: &str,
    ) -> Result<Option<ReplenishmentRecord>, StoreError> {
        Ok(replenishment::Entity::find_by_id(order_id)
            .filter(replenishment::Column::Sku.eq(sku))
            .one(self.reader())
            .await?)
    }

    /// The newest replenishment of a product, if it ever had one.
    pub async fn latest_replenishment(
        &self,
        sku: &Sku,
    ) -> Result<Option<ReplenishmentRecord>, StoreError> {
        Ok(replenishment::Entity::find()
            .filter(replenishment::Column::Sku.eq(sku))
            .order_by_desc(replenishment::Column::StartedAt)
            .one(self.reader())
            .await?)
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}
