//! `replenish_outbox.request_id`: the request id of the call that asked for the
//! replenishment, so the workflow it starts (and its activities' logs) carry it and one sale
//! can be followed to its factory order.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Re-runnable: the column may be there from an attempt that stopped before
        // `seaql_migrations` recorded it (SQLite and MariaDB do not roll back DDL).
        if manager.has_column("replenish_outbox", "request_id").await? {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(ReplenishOutbox::Table)
                    .add_column(
                        ColumnDef::new(ReplenishOutbox::RequestId)
                            .string_len(128)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ReplenishOutbox::Table)
                    .drop_column(ReplenishOutbox::RequestId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ReplenishOutbox {
    Table,
    RequestId,
}
