//! `replenishment_policies`: how each product's reorder point and quantity are chosen (a
//! product without a row is `fixed`), with the planner's latest figures; `demand_misses`:
//! units asked for while out of stock, so a sold-out product's demand is not under-counted.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let big = |c: ReplenishmentPolicies| ColumnDef::new(c).big_integer().not_null().to_owned();
        let figure = |c: ReplenishmentPolicies| ColumnDef::new(c).double().null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(ReplenishmentPolicies::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ReplenishmentPolicies::Sku)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ReplenishmentPolicies::Policy)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(big(ReplenishmentPolicies::ServiceLevelBp))
                    .col(big(ReplenishmentPolicies::MinReorderPoint))
                    .col(big(ReplenishmentPolicies::MaxReorderPoint))
                    .col(big(ReplenishmentPolicies::MinReorderQuantity))
                    .col(big(ReplenishmentPolicies::MaxReorderQuantity))
                    .col(figure(ReplenishmentPolicies::DemandPerSecond))
                    .col(figure(ReplenishmentPolicies::DemandStddev))
                    .col(figure(ReplenishmentPolicies::LeadTimeSecs))
                    .col(figure(ReplenishmentPolicies::LeadTimeStddev))
                    .col(
                        ColumnDef::new(ReplenishmentPolicies::LeadTimeObservations)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(ReplenishmentPolicies::PlannedAt)
                            .big_integer()
                            .null(),
                    )
                    .col(big(ReplenishmentPolicies::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DemandMisses::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(DemandMisses::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(DemandMisses::Sku).string_len(64).not_null())
                    .col(ColumnDef::new(DemandMisses::Units).big_integer().not_null())
                    .col(ColumnDef::new(DemandMisses::At).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_demand_misses_sku_at")
                    .table(DemandMisses::Table)
                    .col(DemandMisses::Sku)
                    .col(DemandMisses::At)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Lead time is measured per factory from its latest receipts.
        manager
            .create_index(
                Index::create()
                    .name("idx_stock_receipts_received_at")
                    .table(StockReceipts::Table)
                    .col(StockReceipts::ReceivedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ReplenishmentPolicies {
    Table,
    Sku,
    Policy,
    ServiceLevelBp,
    MinReorderPoint,
    MaxReorderPoint,
    MinReorderQuantity,
    MaxReorderQuantity,
    DemandPerSecond,
    DemandStddev,
    LeadTimeSecs,
    LeadTimeStddev,
    LeadTimeObservations,
    PlannedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DemandMisses {
    Table,
    Id,
    Sku,
    Units,
    At,
}

#[derive(DeriveIden)]
enum StockReceipts {
    Table,
    ReceivedAt,
}
