//! The sale: `Store::purchase` and everything it does, in one vocabulary.
//!
//! A sale is one conditional `UPDATE products SET stock = stock - q WHERE sku = ? AND stock >=
//! q` ([`Store::take_stock`]) plus the sale row (and, at the reorder point, the outbox intent)
//! in one transaction. The row count of the `UPDATE` decides; the new stock comes back with
//! `RETURNING`, or on MySQL (which has none) is read inside the same transaction while the row
//! is still locked. Nothing is read before the write: a repeated idempotency key is caught by
//! the key's unique index inside the sale's own transaction, and answered with the first
//! purchase's result ([`Store::replay`]).
//!
//! # Words
//! - *purchase*: what a client asks for ([`PurchaseRequest`]) and what it hears
//!   ([`PurchaseOutcome`]); [`Store::purchase`] is the one way in.
//! - *sell alone* ([`alone`]): one purchase, one transaction, retried on conflicts and never
//!   sold again on a guess after a commit that may have happened. On PostgreSQL a sale that
//!   sells is one statement (data-modifying CTEs).
//! - *sell grouped* ([`grouped`]): concurrent purchases queue and share one transaction, each
//!   still with its exact outcome.
//! - *replay*: the first answer to an idempotency key, given again.
//! - *after a failure* ([`after_failure`]): whether a failed transaction may be run again,
//!   rolled back for good, or may have committed (then only a key can tell).

mod alone;
pub mod grouped;
pub(crate) mod sqlite_thread;

use sea_orm::{ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter};

use crate::entity::{product, sale};
use crate::error::{DbErrKind, before_commit, classify, may_have_committed};
use crate::store::Store;
use crate::{Sku, StoreError, replenishment_id, validate};

/// A validated purchase, built by [`PurchaseRequest::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRequest {
    sku: Sku,
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
        let sku = Sku::parse(sku)?;
        validate::purchase_quantity(quantity)?;
        validate::token("idempotency_key", idempotency_key)?;
        validate::token("requester", requester)?;
        Ok(Self {
            sku,
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
    pub fn sku(&self) -> &Sku {
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

impl Store {
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
        match self.groups() {
            Some(groups) => groups.sell_queued(self, request.clone()).await,
            None => self.sell_alone(request).await,
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
            .one(self.reader())
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

    /// `UPDATE products SET stock = stock - quantity WHERE sku = ? AND stock >= quantity`;
    /// the row after it, or `None` when nothing changed (too little stock or no product).
    pub(crate) async fn take_stock(
        &self,
        txn: &DatabaseTransaction,
        sku: &str,
        quantity: i64,
    ) -> Result<Option<product::Model>, sea_orm::DbErr> {
        let update =
            product::add_to_stock(sku, -quantity).filter(product::Column::Stock.gte(quantity));
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

/// A new sale id: a time-ordered UUID (v7), so each sale row lands at the end of the primary
/// key's index instead of at a random page of it (fewer pages written per commit).
pub(crate) fn new_sale_id() -> String {
    uuid::Uuid::now_v7().to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, Database};
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
