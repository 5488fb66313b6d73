//! `restock product set`: change a product's catalogue fields and replenishment policy
//! (UpsertProduct; needs an admin token when the gateway has tokens). Fields not given stay
//! as they are.

use anyhow::Context;
use prost_types::FieldMask;
use restock_gateway::grpc::inventory::settings_to_pb;
use restock_proto::v1::{
    GetProductRequest, Product, ReplenishmentPolicy, UpsertProductRequest,
    inventory_service_client::InventoryServiceClient,
};

use super::client::{ServerArgs, explain};

/// The policy names the CLI takes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum PolicyArg {
    /// The reorder point and quantity given here, as they are.
    Fixed,
    /// Reorder point and quantity computed by the planner from measured demand and lead time.
    Adaptive,
}

/// `restock product` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ProductCommand {
    /// Change a product's fields or replenishment policy (fields not given are kept).
    Set(SetArgs),
}

/// `restock product set` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct SetArgs {
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
pub(crate) async fn run(command: ProductCommand) -> anyhow::Result<()> {
    match command {
        ProductCommand::Set(args) => set(args).await,
    }
}

async fn set(args: SetArgs) -> anyhow::Result<()> {
    let mut client = InventoryServiceClient::new(args.server.connect().await?);
    // Only the fields given are sent, named in the mask: a field set to 0 is set, the others
    // are kept even if someone else changes them meanwhile.
    let mut product = Product {
        sku: args.sku.clone(),
        ..Default::default()
    };
    let mut paths: Vec<&str> = Vec::new();
    if let Some(name) = args.name {
        product.name = name;
        paths.push("name");
    }
    if let Some(price) = args.price {
        product.price = price;
        paths.push("price");
    }
    if let Some(point) = args.reorder_point {
        product.reorder_point = point;
        paths.push("reorder_point");
    }
    if let Some(quantity) = args.reorder_quantity {
        product.reorder_quantity = quantity;
        paths.push("reorder_quantity");
    }
    if let Some(policy) = args.policy {
        product.policy = match policy {
            PolicyArg::Fixed => ReplenishmentPolicy::Fixed,
            PolicyArg::Adaptive => ReplenishmentPolicy::Adaptive,
        } as i32;
        paths.push("policy");
    }
    let bounds_given = args.service_level.is_some()
        || args.min_reorder_point.is_some()
        || args.max_reorder_point.is_some()
        || args.min_quantity.is_some()
        || args.max_quantity.is_some();
    if bounds_given {
        // The settings change as a whole: start from the stored ones.
        let current = client
            .get_product(GetProductRequest {
                sku: args.sku.clone(),
            })
            .await
            .map_err(explain)?
            .into_inner();
        let mut a = current.adaptive.unwrap_or_else(|| {
            settings_to_pb(restock_inventory::policy::AdaptiveSettings::default())
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
        paths.push("adaptive");
    }
    if paths.is_empty() {
        anyhow::bail!(
            "nothing to change: give at least one of --name, --price, --policy, --reorder-point, --reorder-quantity, --service-level, --min/max-reorder-point, --min/max-quantity"
        );
    }
    // UpsertProduct creates a missing product; `set` only changes existing ones.
    client
        .get_product(GetProductRequest {
            sku: args.sku.clone(),
        })
        .await
        .map_err(explain)?;
    let saved = client
        .upsert_product(UpsertProductRequest {
            product: Some(product),
            update_mask: Some(FieldMask {
                paths: paths.into_iter().map(str::to_owned).collect(),
            }),
        })
        .await
        .map_err(explain)
        .context("the product was not changed")?
        .into_inner();
    super::client::print_product(&saved, args.server.json())
}
