//! `replenishments.closed_by_temporal`: a run that Temporal closed before it recorded its end
//! (Terminate) would otherwise read open in the read model forever: in the console's open
//! list, the state counts and the `restock_replenishments` metric (and so the Overdue alert).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Re-runnable: the column may be there from an attempt that stopped before
        // `seaql_migrations` recorded it (SQLite and MariaDB do not roll back DDL).
        if manager
            .has_column("replenishments", "closed_by_temporal")
            .await?
        {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Replenishments::Table)
                    .add_column(
                        ColumnDef::new(Replenishments::ClosedByTemporal)
                            .string_len(16)
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
                    .table(Replenishments::Table)
                    .drop_column(Replenishments::ClosedByTemporal)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Replenishments {
    Table,
    ClosedByTemporal,
}
