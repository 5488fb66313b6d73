//! `restock product set`: change a product's catalogue fields and replenishment policy
//! (UpsertProduct; needs an admin token when the gateway has tokens). Fields not given stay
//! as they are.

use anyhow::Context;
use restock_proto::v1::{
    AdaptiveSettings, GetProductRequest, ReplenishmentPolicy, UpsertProductRequest,
    inventory_service_client::InventoryServiceClient,
};

use super::client::{ServerArgs, explain};

/// The policy names the CLI takes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    /// The reorder point and quantity given here, as they are.
    Fixed,
    /// Reorder point and quantity computed by the planner from measured demand and lead time.
    Adaptive,
}

/// `restock product` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ProductCommand {
    /// Change a product's fields or replenishment policy (fields not given are kept).
    Set(SetArgs),
}

/// `restock product set` flags.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The product's sku.
    sku: String,
    /// Name.
    #[arg(long)]
    name: Option<String>,
    /// Price in minor units.
    #[arg(long)]
    price: Option<i64>,
    /// Replenishment policy.
    #[arg(long, value_enum)]
    policy: Option<PolicyArg>,
    /// Reorder point (fixed policy; under adaptive, the figure until the planner runs).
    #[arg(long)]
    reorder_point: Option<i64>,
    /// Units per factory order (fixed policy; under adaptive, until the planner runs).
    #[arg(long)]
    reorder_quantity: Option<i64>,
    /// Adaptive: target service level in percent (50 to 99.99).
    #[arg(long)]
    service_level: Option<f64>,
    /// Adaptive: lowest reorder point the planner may set.
    #[arg(long)]
    min_reorder_point: Option<i64>,
    /// Adaptive: highest reorder point the planner may set.
    #[arg(long)]
    max_reorder_point: Option<i64>,
    /// Adaptive: smallest order the planner may set.
    #[arg(long)]
    min_quantity: Option<i64>,
    /// Adaptive: largest order the planner may set.
    #[arg(long)]
    max_quantity: Option<i64>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs a `restock product` subcommand.
pub async fn run(command: ProductCommand) -> anyhow::Result<()> {
    match command {
        ProductCommand::Set(args) => set(args).await,
    }
}

async fn set(args: SetArgs) -> anyhow::Result<()> {
    let mut client = InventoryServiceClient::new(args.server.connect().await?);
    let mut product = client
        .get_product(GetProductRequest {
            sku: args.sku.clone(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    if let Some(name) = args.name {
        product.name = name;
    }
    if let Some(price) = args.price {
        product.price = price;
    }
    if let Some(point) = args.reorder_point {
        product.reorder_point = point;
    }
    if let Some(quantity) = args.reorder_quantity {
        product.reorder_quantity = quantity;
    }
    if let Some(policy) = args.policy {
        product.policy = match policy {
            PolicyArg::Fixed => ReplenishmentPolicy::Fixed,
            PolicyArg::Adaptive => ReplenishmentPolicy::Adaptive,
        } as i32;
    }
    let bounds_given = args.service_level.is_some()
        || args.min_reorder_point.is_some()
        || args.max_reorder_point.is_some()
        || args.min_quantity.is_some()
        || args.max_quantity.is_some();
    if bounds_given {
        let mut a = product.adaptive.take().unwrap_or(AdaptiveSettings {
            service_level_percent: 99.0,
            min_reorder_point: 0,
            max_reorder_point: restock_inventory::validate::MAX_UNITS,
            min_reorder_quantity: 1,
            max_reorder_quantity: restock_inventory::validate::MAX_REORDER_QUANTITY,
        });
        if let Some(v) = args.service_level {
            a.service_level_percent = v;
        }
        if let Some(v) = args.min_reorder_point {
            a.min_reorder_point = v;
        }
        if let Some(v) = args.max_reorder_point {
            a.max_reorder_point = v;
        }
        if let Some(v) = args.min_quantity {
            a.min_reorder_quantity = v;
        }
        if let Some(v) = args.max_quantity {
            a.max_reorder_quantity = v;
        }
        product.adaptive = Some(a);
    } else {
        // Absent settings keep the stored ones.
        product.adaptive = None;
    }
    product.plan = None;
    let saved = client
        .upsert_product(UpsertProductRequest {
            product: Some(product),
        })
        .await
        .map_err(explain)
        .context("the product was not changed")?
        .into_inner();
    super::client::print_product(&saved, args.server.json())
}
