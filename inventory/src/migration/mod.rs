//! Schema migrations (sea-orm-migration). Applied migrations are recorded in
//! `seaql_migrations`, so running them again is a no-op on every backend.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_replenishment;
mod m0003_notifications;
mod m0004_audit_log;
mod m0005_factory_deliveries;
mod m0006_replenishment_policy;
mod m0007_outbox_request_id;
mod m0008_sales_by_time;
mod m0009_replenishment_closed;

/// All migrations, oldest first.
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_replenishment::Migration),
            Box::new(m0003_notifications::Migration),
            Box::new(m0004_audit_log::Migration),
            Box::new(m0005_factory_deliveries::Migration),
            Box::new(m0006_replenishment_policy::Migration),
            Box::new(m0007_outbox_request_id::Migration),
            Box::new(m0008_sales_by_time::Migration),
            Box::new(m0009_replenishment_closed::Migration),
        ]
    }
}
