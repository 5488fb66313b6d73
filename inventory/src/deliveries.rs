//! The delivery inbox: a factory callback that passed its checks is stored here (unique on
//! the order id) before it is answered, so a delivery outlives a Temporal outage; the
//! gateway's relay hands each one to its replenishment and then settles it.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entity::factory_delivery::{self, DeliveryStatus};
use crate::error::{DbErrKind, classify};
use crate::store::now_ms;
use crate::{Sku, Store, StoreError, validate};

/// What [`Store::record_delivery`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryRecorded {
    /// Stored now; the relay will hand it over.
    New,
    /// This order's delivery was stored before (a repeated callback): nothing changed.
    AlreadyReceived,
}

impl Store {
    /// Stores a verified delivery, once per order. A plain INSERT decides: on MySQL an
    /// insert-or-ignore reports a duplicate as a changed row, so only the unique violation
    /// is trusted to say "already there".
    pub async fn record_delivery(
        &self,
        order_id: &str,
        sku: &Sku,
        quantity: i64,
    ) -> Result<DeliveryRecorded, StoreError> {
        validate::units("quantity", quantity, 1)?;
        let row = factory_delivery::ActiveModel {
            order_id: Set(order_id.to_owned()),
            sku: Set(sku.to_string()),
            quantity: Set(quantity),
            status: Set(DeliveryStatus::Pending),
            outcome: Set(None),
            attempts: Set(0),
            received_at: Set(now_ms()),
            settled_at: Set(None),
        };
        match factory_delivery::Entity::insert(row)
            .exec_without_returning(self.writer())
            .await
        {
            Ok(_) => Ok(DeliveryRecorded::New),
            Err(err) if classify(&err) == DbErrKind::UniqueViolation => {
                Ok(DeliveryRecorded::AlreadyReceived)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Deliveries not handed over yet, oldest first.
    pub async fn pending_deliveries(
        &self,
        limit: u64,
    ) -> Result<Vec<factory_delivery::Model>, StoreError> {
        Ok(factory_delivery::Entity::find()
            .filter(factory_delivery::Column::Status.eq(DeliveryStatus::Pending))
            .order_by_asc(factory_delivery::Column::ReceivedAt)
            .limit(limit)
            .all(self.reader())
            .await?)
    }

    /// One order's delivery, if it came.
    pub async fn delivery(
        &self,
        order_id: &str,
    ) -> Result<Option<factory_delivery::Model>, StoreError> {
        Ok(factory_delivery::Entity::find_by_id(order_id)
            .one(self.reader())
            .await?)
    }

    /// Marks a delivery handed over, saying how.
    pub async fn settle_delivery(&self, order_id: &str, outcome: &str) -> Result<(), StoreError> {
        factory_delivery::Entity::update_many()
            .col_expr(
                factory_delivery::Column::Status,
                Expr::value(DeliveryStatus::Settled),
            )
            .col_expr(
                factory_delivery::Column::Outcome,
                Expr::value(Some(outcome.chars().take(1000).collect::<String>())),
            )
            .col_expr(
                factory_delivery::Column::SettledAt,
                Expr::value(Some(now_ms())),
            )
            .col_expr(
                factory_delivery::Column::Attempts,
                Expr::col(factory_delivery::Column::Attempts).add(1),
            )
            .filter(factory_delivery::Column::OrderId.eq(order_id))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Counts a hand-over that did not settle the delivery (it stays pending), with why.
    pub async fn delivery_attempt_failed(
        &self,
        order_id: &str,
        why: &str,
    ) -> Result<(), StoreError> {
        factory_delivery::Entity::update_many()
            .col_expr(
                factory_delivery::Column::Attempts,
                Expr::col(factory_delivery::Column::Attempts).add(1),
            )
            .col_expr(
                factory_delivery::Column::Outcome,
                Expr::value(Some(why.chars().take(1000).collect::<String>())),
            )
            .filter(factory_delivery::Column::OrderId.eq(order_id))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// How many deliveries wait for the relay.
    pub async fn deliveries_pending(&self) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(factory_delivery::Entity::find()
            .filter(factory_delivery::Column::Status.eq(DeliveryStatus::Pending))
            .count(self.reader())
            .await?)
    }
}
