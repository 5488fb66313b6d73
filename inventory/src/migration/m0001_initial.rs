//! The first schema: products, factories, advertisements, sales, stock_receipts and
//! replenish_outbox.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Longest sku/id we store; the gateway rejects longer ones before they reach the database.
const ID_LEN: u32 = 64;
/// Longest idempotency key.
const KEY_LEN: u32 = 128;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Factories::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Factories::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Factories::Name).string_len(200).not_null())
                    .col(
                        ColumnDef::new(Factories::ManagerEmail)
                            .string_len(320)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Factories::ApiUrl).string_len(2048).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Products::Sku)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Products::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Products::Price).big_integer().not_null())
                    .col(ColumnDef::new(Products::Stock).big_integer().not_null())
                    .col(
                        ColumnDef::new(Products::ReorderPoint)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Products::ReorderQuantity)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Products::FactoryId)
                            .string_len(ID_LEN)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Products::UpdatedAt).big_integer().not_null())
                    .check(Expr::col(Products::Stock).gte(0))
                    .check(Expr::col(Products::Price).gte(0))
                    .check(Expr::col(Products::ReorderPoint).gte(0))
                    .check(Expr::col(Products::ReorderQuantity).gt(0))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_products_factory")
                            .from(Products::Table, Products::FactoryId)
                            .to(Factories::Table, Factories::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Advertisements::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Advertisements::Sku)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Advertisements::Active).boolean().not_null())
                    .col(
                        ColumnDef::new(Advertisements::ManagerEmail)
                            .string_len(320)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Advertisements::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_advertisements_product")
                            .from(Advertisements::Table, Advertisements::Sku)
                            .to(Products::Table, Products::Sku),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Sales::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Sales::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Sales::Sku).string_len(ID_LEN).not_null())
                    .col(ColumnDef::new(Sales::Quantity).big_integer().not_null())
                    .col(
                        ColumnDef::new(Sales::RemainingStock)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Sales::IdempotencyKey)
                            .string_len(KEY_LEN)
                            .null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Sales::Requester)
                            .string_len(KEY_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Sales::RequestedReplenishment)
                            .boolean()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Sales::CreatedAt).big_integer().not_null())
                    .check(Expr::col(Sales::Quantity).gt(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sales_sku_created")
                    .table(Sales::Table)
                    .col(Sales::Sku)
                    .col(Sales::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StockReceipts::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(StockReceipts::FactoryOrderId)
                            .string_len(KEY_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(StockReceipts::Sku)
                            .string_len(ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StockReceipts::Quantity)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StockReceipts::ReplenishmentId)
                            .string_len(KEY_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StockReceipts::ReceivedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .check(Expr::col(StockReceipts::Quantity).gt(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReplenishOutbox::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ReplenishOutbox::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ReplenishOutbox::Sku)
                            .string_len(ID_LEN)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(ReplenishOutbox::Reason)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplenishOutbox::RequestedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplenishOutbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(ReplenishOutbox::LastError)
                            .string_len(1024)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Factories {
    Table,
    Id,
    Name,
    ManagerEmail,
    ApiUrl,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Sku,
    Name,
    Price,
    Stock,
    ReorderPoint,
    ReorderQuantity,
    FactoryId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Advertisements {
    Table,
    Sku,
    Active,
    ManagerEmail,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sales {
    Table,
    Id,
    Sku,
    Quantity,
    RemainingStock,
    IdempotencyKey,
    Requester,
    RequestedReplenishment,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StockReceipts {
    Table,
    FactoryOrderId,
    Sku,
    Quantity,
    ReplenishmentId,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum ReplenishOutbox {
    Table,
    Id,
    Sku,
    Reason,
    RequestedAt,
    Attempts,
    LastError,
}
