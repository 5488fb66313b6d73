//! `idx_sales_created`: sales by time alone, so the console's "sales per minute over the last
//! hour" reads one hour of rows instead of every sale ever made (the older index leads with
//! the sku).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Re-runnable: the index may be there from an attempt that stopped before
        // `seaql_migrations` recorded it (SQLite and MariaDB do not roll back DDL).
        if manager.has_index("sales", "idx_sales_created").await? {
            return Ok(());
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_sales_created")
                    .table(Sales::Table)
                    .col(Sales::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_sales_created")
                    .table(Sales::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Sales {
    Table,
    CreatedAt,
}
