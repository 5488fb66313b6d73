//! `factory_orders`: what happened to each order we sent (or tried to send) to a factory.
//! The factory does not deduplicate, so this row is what keeps a retried activity from
//! ordering twice: a retry that finds the order accepted, or possibly sent, never sends again.

use sea_orm::entity::prelude::*;

/// One factory order (one per replenishment).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "factory_orders")]
pub struct Model {
    /// Our order id (`MessageGroupId` on the wire), e.g. `replenish-CP-502101-1a2b3c4d`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    /// Product ordered.
    pub sku: String,
    /// Units ordered.
    pub quantity: i64,
    /// Factory asked.
    pub factory_id: String,
    /// Where the order stands.
    pub status: OrderStatus,
    /// The factory's own id for the order (`data.id` of its reply), once accepted.
    pub factory_reference: Option<String>,
    /// How many times we tried to send it.
    pub attempts: i32,
    /// The last failure, for operators.
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// Relations of `factory_orders`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where a factory order stands (the `status` column, as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum OrderStatus {
    /// A request is (or was, when a worker died) on its way: the factory may have it.
    #[sea_orm(string_value = "sending")]
    Sending,
    /// The factory answered 2xx.
    #[sea_orm(string_value = "accepted")]
    Accepted,
    /// Certainly not delivered (connection refused) or refused with 5xx: safe to send again.
    #[sea_orm(string_value = "not_placed")]
    NotPlaced,
    /// The factory answered 4xx: our request is wrong; retrying will not help.
    #[sea_orm(string_value = "rejected")]
    Rejected,
    /// We cannot know whether the factory took it (timeout after sending, or a worker died
    /// mid-request): never send again; wait for the callback or an operator.
    #[sea_orm(string_value = "uncertain")]
    Uncertain,
}
