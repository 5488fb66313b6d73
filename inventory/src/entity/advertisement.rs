//! `advertisements`: one per product; paused while the product is sold out.

use sea_orm::entity::prelude::*;

/// A product's advertisement.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "advertisements")]
pub struct Model {
    /// The advertised product.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sku: String,
    /// Whether the ad is running.
    pub active: bool,
    /// The ad manager to notify when it stops or resumes.
    pub manager_email: String,
    /// Last change, Unix ms.
    pub updated_at: i64,
}

/// Relations of `advertisements`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
