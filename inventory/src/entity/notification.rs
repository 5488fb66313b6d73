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
    /// Whether it was delivered, and how.
    pub status: NotificationStatus,
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

/// Whether a notification was delivered, and how (the `status` column, as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum NotificationStatus {
    /// Not delivered yet (a failed attempt keeps it pending, with its error).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The SMTP server accepted it.
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Written to the log (no SMTP configured).
    #[sea_orm(string_value = "logged")]
    Logged,
}
