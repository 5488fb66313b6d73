//! `factories`: who makes the products and where to reach them.

use sea_orm::entity::prelude::*;

/// One factory.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "factories")]
pub struct Model {
    /// Factory id, e.g. `FF-500293`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Who to tell about this factory's products.
    pub manager_email: String,
    /// Base URL of its legacy API; `None`: use `RESTOCK_FACTORY_URL`.
    pub api_url: Option<String>,
}

/// Relations of `factories`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
