//! Advertising: a product's ad is paused while it is sold out and resumed when stock is back,
//! and its manager is told each time — once per replenishment and transition, recorded in
//! `notifications` so a retried activity never mails twice.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    QueryTrait,
};

use crate::entity::notification::{self, NotificationStatus};
use crate::entity::{advertisement, product, replenishment};
use crate::store::now_ms;
use crate::{RestockState, Sku, Store, StoreError};

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

    /// Products whose ad is paused although none of their replenishments is open and they are
    /// in stock again, each with its latest run's order id. Only runs pause ads, and a run
    /// that ends on its own resumes the ad it paused: these were left by a run that Temporal
    /// closed first (Terminate), whose delivery the gateway then counted itself.
    pub async fn orphaned_paused_ads(&self) -> Result<Vec<(Sku, String)>, StoreError> {
        // Asked every few seconds: one query finds the few candidates (paused while sold out
        // is the normal case, and those are not in stock).
        let in_stock = product::Entity::find()
            .select_only()
            .column(product::Column::Sku)
            .filter(product::Column::Stock.gt(0))
            .into_query();
        let paused = advertisement::Entity::find()
            .filter(advertisement::Column::Active.eq(false))
            .filter(advertisement::Column::Sku.in_subquery(in_stock))
            .all(self.reader())
            .await?;
        let mut orphaned = Vec::new();
        for ad in paused {
            let Ok(sku) = Sku::parse(&ad.sku) else {
                continue;
            };
            let open = replenishment::Entity::find()
                .filter(replenishment::Column::Sku.eq(sku.as_str()))
                .filter(replenishment::Column::State.is_not_in(RestockState::ENDED))
                .filter(replenishment::Column::ClosedByTemporal.is_null())
                .count(self.reader())
                .await?;
            if open > 0 {
                continue;
            }
            if let Some(latest) = self.latest_replenishment(&sku).await? {
                orphaned.push((sku, latest.order_id));
            }
        }
        Ok(orphaned)
    }

    /// Sets a paused ad running; true for the one caller that changed it (two workers that
    /// both found it orphaned send one email).
    pub async fn claim_ad_resume(&self, sku: &Sku) -> Result<bool, StoreError> {
        let changed = advertisement::Entity::update_many()
            .col_expr(advertisement::Column::Active, Expr::value(true))
            .col_expr(advertisement::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(advertisement::Column::Sku.eq(sku.as_str()))
            .filter(advertisement::Column::Active.eq(false))
            .exec(self.writer())
            .await?;
        Ok(changed.rows_affected == 1)
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
