//! sea-orm entities, one module per table. Times are Unix milliseconds (`i64`) so the same
//! columns mean the same thing on SQLite, PostgreSQL and MySQL/MariaDB.

pub mod advertisement;
pub mod audit_log;
pub mod demand_miss;
pub mod factory;
pub mod factory_delivery;
pub mod factory_order;
pub mod notification;
pub mod product;
pub mod replenish_outbox;
pub mod replenishment;
pub mod replenishment_policy;
pub mod sale;
pub mod stock_receipt;
