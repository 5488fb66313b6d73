//! `factory_deliveries`: the inbox of verified factory callbacks, one row per order, kept until
//! the relay has handed the delivery to its replenishment (the mirror image of the outbox).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FactoryDeliveries::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(FactoryDeliveries::OrderId)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(FactoryDeliveries::Sku)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FactoryDeliveries::Quantity)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FactoryDeliveries::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FactoryDeliveries::Outcome)
                            .string_len(1024)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(FactoryDeliveries::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(FactoryDeliveries::ReceivedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(FactoryDeliveries::SettledAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_factory_deliveries_status")
                    .table(FactoryDeliveries::Table)
                    .col(FactoryDeliveries::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum FactoryDeliveries {
    Table,
    OrderId,
    Sku,
    Quantity,
    Status,
    Outcome,
    Attempts,
    ReceivedAt,
    SettledAt,
}
