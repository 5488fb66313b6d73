//! Advertising: a product's ad is paused while it is sold out and resumed when stock is back,
//! and its manager is told each time — once per replenishment and transition, recorded in
//! `notifications` so a retried activity never mails twice.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use crate::entity::advertisement;
use crate::entity::notification::{self, NotificationStatus};
use crate::store::now_ms;
use crate::{Sku, Store, StoreError};

/// Whether a notification still has to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationDue {
    /// Deliver it now (then call [`Store::notification_delivered`]).
    Deliver,
    /// Already delivered (or logged): do nothing.
    AlreadyDone,
}

impl Store {
    /// Sets a product's ad running or paused; returns the ad (with its manager), or `None`
    /// when the product has none.
    pub async fn set_ad_active(
        &self,
        sku: &Sku,
        active: bool,
    ) -> Result<Option<advertisement::Model>, StoreError> {
        advertisement::Entity::update_many()
            .col_expr(advertisement::Column::Active, Expr::value(active))
            .col_expr(advertisement::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(advertisement::Column::Sku.eq(sku))
            .exec(self.writer())
            .await?;
        Ok(advertisement::Entity::find_by_id(sku)
            .one(self.writer())
            .await?)
    }

    /// Records that `key` is owed to `recipient` (if not already) and says whether it still
    /// has to be delivered; counts the attempt.
    pub async fn notification_due(
        &self,
        key: &str,
        sku: &str,
        kind: &str,
        recipient: &str,
    ) -> Result<NotificationDue, StoreError> {
        self.owe_notification(key, sku, kind, recipient).await?;
        let pending = notification::Entity::update_many()
            .col_expr(
                notification::Column::Attempts,
                Expr::col(notification::Column::Attempts).add(1),
            )
            .filter(notification::Column::Key.eq(key))
            .filter(notification::Column::Status.eq(NotificationStatus::Pending))
            .exec(self.writer())
            .await?;
        Ok(if pending.rows_affected == 1 {
            NotificationDue::Deliver
        } else {
            NotificationDue::AlreadyDone
        })
    }

    /// Marks a notification delivered (`Sent`, or `Logged` without SMTP).
    pub async fn notification_delivered(
        &self,
        key: &str,
        how: NotificationStatus,
    ) -> Result<(), StoreError> {
        notification::Entity::update_many()
            .col_expr(notification::Column::Status, Expr::value(how))
            .col_expr(notification::Column::SentAt, Expr::value(Some(now_ms())))
            .col_expr(
                notification::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .filter(notification::Column::Key.eq(key))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Records a failed delivery attempt (it stays pending and is retried).
    pub async fn notification_failed(&self, key: &str, error: &str) -> Result<(), StoreError> {
        notification::Entity::update_many()
            .col_expr(
                notification::Column::LastError,
                Expr::value(Some(error.chars().take(1000).collect::<String>())),
            )
            .filter(notification::Column::Key.eq(key))
            .exec(self.writer())
            .await?;
        Ok(())
    }

    /// Records that `key` is owed to `recipient`, to be delivered later by whoever polls
    /// [`Store::pending_notifications`]; a second call with the same key changes nothing.
    pub async fn owe_notification(
        &self,
        key: &str,
        sku: &str,
        kind: &str,
        recipient: &str,
    ) -> Result<(), StoreError> {
        notification::Entity::insert(notification::ActiveModel {
            key: Set(key.to_owned()),
            sku: Set(sku.to_owned()),
            kind: Set(kind.to_owned()),
            recipient: Set(recipient.to_owned()),
            status: Set(NotificationStatus::Pending),
            attempts: Set(0),
            last_error: Set(None),
            created_at: Set(now_ms()),
            sent_at: Set(None),
        })
        .on_conflict(
            OnConflict::column(notification::Column::Key)
                .do_nothing_on([notification::Column::Key])
                .to_owned(),
        )
        .exec_without_returning(self.writer())
        .await?;
        Ok(())
    }

    /// Pending notifications of one kind with fewer than `max_attempts` attempts, oldest
    /// first.
    pub async fn pending_notifications(
        &self,
        kind: &str,
        max_attempts: i32,
        limit: u64,
    ) -> Result<Vec<notification::Model>, StoreError> {
        use sea_orm::{QueryOrder, QuerySelect};
        Ok(notification::Entity::find()
            .filter(notification::Column::Kind.eq(kind))
            .filter(notification::Column::Status.eq(NotificationStatus::Pending))
            .filter(notification::Column::Attempts.lt(max_attempts))
            .order_by_asc(notification::Column::CreatedAt)
            .limit(limit)
            .all(self.writer())
            .await?)
    }

    /// Claims one delivery attempt of a pending notification last seen with `attempts`
    /// attempts: true for exactly one claimer, so two workers never mail it at once.
    pub async fn claim_notification(&self, key: &str, attempts: i32) -> Result<bool, StoreError> {
        let claimed = notification::Entity::update_many()
            .col_expr(notification::Column::Attempts, Expr::value(attempts + 1))
            .filter(notification::Column::Key.eq(key))
            .filter(notification::Column::Status.eq(NotificationStatus::Pending))
            .filter(notification::Column::Attempts.eq(attempts))
            .exec(self.writer())
            .await?;
        Ok(claimed.rows_affected == 1)
    }

    /// All notifications about a product, oldest first.
    pub async fn notifications(&self, sku: &str) -> Result<Vec<notification::Model>, StoreError> {
        use sea_orm::QueryOrder;
        Ok(notification::Entity::find()
            .filter(notification::Column::Sku.eq(sku))
            .order_by_asc(notification::Column::CreatedAt)
            .all(self.reader())
            .await?)
    }
}
