//! `notifications`: every email the system owes someone, keyed by replenishment and transition
//! (e.g. `replenish-CP-502101-1a2b3c4d:ad_paused`), so a retried activity never mails twice.

use sea_orm::entity::prelude::*;

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    /// `<order id>:<kind>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Product.
    pub sku: String,
    /// `ad_paused`, `ad_resumed` (to the ad's manager) or `overdue` (to the factory's).
    pub kind: String,
    /// Who it is for.
    pub recipient: String,
    /// `pending` (not delivered yet), `sent` (SMTP accepted it) or `logged` (no SMTP configured).
    pub status: String,
    /// Delivery attempts.
    pub attempts: i32,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms when delivered.
    pub sent_at: Option<i64>,
}

/// Relations of `notifications`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
