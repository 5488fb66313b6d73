//! Client commands for people (`buy`, `stock`): readable output, or `--json` for scripts.

use anyhow::{Context, anyhow};
use restock_inventory::validate::MAX_PURCHASE_QUANTITY;
use restock_proto::v1::{
    AdjustStockRequest, GetProductRequest, ListProductsRequest, Outcome, Product, PurchaseRequest,
    ReplenishmentPolicy, inventory_service_client::InventoryServiceClient,
    sales_service_client::SalesServiceClient,
};
use serde_json::json;
use tonic::transport::Channel;

use crate::exit;

/// Where the gateway is.
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// The gateway's gRPC address (host:port or http://host:port).
    #[arg(long, env = "RESTOCK_GRPC_ADDR", default_value = restock_gateway::DEFAULT_GRPC_ADDR)]
    server: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// API token sent as `authorization: Bearer ...` (when the gateway requires one).
    #[arg(long, env = "RESTOCK_API_TOKEN", hide_env_values = true)]
    token: Option<crate::config::Secret>,
    /// CA certificate (PEM) to trust for a TLS gateway (use an https:// address).
    #[arg(long, env = "RESTOCK_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
}

/// A gateway connection that sends the API token, if any, with every call.
pub(crate) type Gateway = tonic::service::interceptor::InterceptedService<Channel, BearerToken>;

/// Adds `authorization: Bearer <token>` to each call.
#[derive(Clone)]
pub(crate) struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl ServerArgs {
    /// Whether to print JSON.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// A connection to the gateway that carries the API token.
    pub(crate) async fn connect(&self) -> anyhow::Result<Gateway> {
        let token = match &self.token {
            Some(t) => Some(format!("Bearer {}", t.expose()).parse().map_err(|_| {
                anyhow!("RESTOCK_API_TOKEN contains characters a header cannot carry")
            })?),
            None => None,
        };
        Ok(tonic::service::interceptor::InterceptedService::new(
            self.channel().await?,
            BearerToken(token),
        ))
    }

    /// A channel to the gateway.
    async fn channel(&self) -> anyhow::Result<Channel> {
        let url = if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        };
        let mut endpoint = Channel::from_shared(url.clone())
            .map_err(|_| anyhow!("{:?} is not a valid gateway address", self.server))?;
        if url.starts_with("https://") {
            let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &self.tls_ca {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .context("TLS setup for the gateway")?;
        }
        endpoint
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .map_err(|err| {
                exit::failure(
                    exit::UNAVAILABLE,
                    format!(
                        "cannot reach the gateway at {url}: is `restock gateway` (or `restock dev`) running? (RESTOCK_GRPC_ADDR): {:#}",
                        anyhow::Error::new(err)
                    ),
                )
            })
    }
}

/// Turns a gRPC error status into a message a person can act on, and the exit code for it.
pub(crate) fn explain(status: tonic::Status) -> anyhow::Error {
    let hint = match status.code() {
        // Only for an unknown product: other answers (no replenishment yet, no such order)
        // say themselves what to look at.
        tonic::Code::NotFound if status.message().starts_with("no product") => {
            " (list products with `restock stock`)"
        }
        tonic::Code::Unavailable => " (the gateway or its database is down; try again shortly)",
        tonic::Code::Unauthenticated => " (set RESTOCK_API_TOKEN to a token the gateway knows)",
        tonic::Code::PermissionDenied => " (this needs an admin token)",
        _ => "",
    };
    let fields: Vec<(String, String)> = tonic_types::StatusExt::get_details_bad_request(&status)
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default();
    let named = match fields.as_slice() {
        [] => String::new(),
        list => format!(
            " (field: {})",
            list.iter()
                .map(|(f, _)| f.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    anyhow::Error::new(exit::Failure {
        code: exit::for_grpc(status.code()),
        message: format!("{}{named}{hint} [{:?}]", status.message(), status.code()),
        status: Some(format!("{:?}", status.code())),
        fields,
    })
}

/// `restock buy` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BuyArgs {
    /// The product to buy, e.g. CP-502101.
    sku: String,
    /// Units to buy (at most the gateway's limit for one purchase).
    #[arg(
        short,
        long,
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PURCHASE_QUANTITY))
    )]
    quantity: u32,
    /// Idempotency key: repeating the command with the same key sells nothing more.
    #[arg(long, default_value = "")]
    key: String,
    /// Who buys.
    #[arg(long, default_value = "restock-cli")]
    requester: String,
    /// When the sale requests a replenishment, follow it through its states until it ends.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 300)]
    wait_timeout_secs: u64,
    #[command(flatten)]
    server: ServerArgs,
}

/// Buys a product; the exit code is [`exit::OUT_OF_STOCK`] when nothing was sold.
pub(crate) async fn buy(args: BuyArgs) -> anyhow::Result<u8> {
    let mut client = SalesServiceClient::new(args.server.connect().await?);
    let reply = client
        .purchase(PurchaseRequest {
            sku: args.sku.clone(),
            quantity: args.quantity,
            idempotency_key: args.key.clone(),
            requester: args.requester.clone(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    let outcome = reply.outcome();
    let code = match outcome {
        Outcome::OutOfStock => exit::OUT_OF_STOCK,
        Outcome::Sold | Outcome::Unspecified => exit::OK,
    };
    let follow = args.wait && !reply.replenishment_id.is_empty();
    let timeout = std::time::Duration::from_secs(args.wait_timeout_secs);
    if args.server.json() {
        // One JSON document, with the replenishment's end when waiting for it.
        let mut doc = json!({
            "outcome": match outcome {
                Outcome::Sold => "SOLD",
                Outcome::OutOfStock => "OUT_OF_STOCK",
                Outcome::Unspecified => "UNSPECIFIED",
            },
            "sku": args.sku,
            "quantity": args.quantity,
            "remaining_stock": reply.remaining_stock,
            "sale_id": reply.sale_id,
            "replenishment_id": reply.replenishment_id,
            "replayed": reply.replayed,
            "message": reply.message,
        });
        if follow {
            let last = super::replenishments::follow(&args.server, &args.sku, timeout).await?;
            doc["replenishment"] = super::replenishments::to_json(&last);
        }
        outln!("{doc}")?;
        return Ok(code);
    }
    match outcome {
        Outcome::Sold => {
            outln!(
                "SOLD  {} x {}  ({} left)  sale {}",
                args.quantity,
                args.sku,
                reply.remaining_stock,
                reply.sale_id
            )?;
            if !reply.replenishment_id.is_empty() {
                outln!(
                    "      stock is at the reorder point: replenishment {} requested",
                    reply.replenishment_id
                )?;
            }
        }
        Outcome::OutOfStock => {
            outln!(
                "OUT OF STOCK  {}: {} left, {} asked for; nothing sold",
                args.sku,
                reply.remaining_stock,
                args.quantity
            )?;
            outln!(
                "      replenishment {} requested from the factory",
                reply.replenishment_id
            )?;
        }
        Outcome::Unspecified => outln!("{}", reply.message)?,
    }
    if follow {
        super::replenishments::follow(&args.server, &args.sku, timeout).await?;
    }
    Ok(code)
}

/// `restock stock` flags.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct StockArgs {
    #[command(subcommand)]
    command: Option<StockCommand>,
    /// One product's sku; all products when omitted.
    sku: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// `restock stock` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum StockCommand {
    /// Add (positive) or remove (negative) stock by hand, with a reason for the audit trail
    /// (`restock stock adjust CP-502101 -3 --reason damaged`); an admin token when tokens are on.
    Adjust(AdjustArgs),
}

/// `restock stock adjust` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct AdjustArgs {
    /// The product's sku.
    sku: String,
    /// Units to add (e.g. 10) or remove (e.g. -3).
    #[arg(allow_negative_numbers = true)]
    delta: i64,
    /// Why (stock-take, damaged, ...); kept in the audit trail.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    server: ServerArgs,
}

async fn adjust(args: AdjustArgs) -> anyhow::Result<()> {
    let mut client = InventoryServiceClient::new(args.server.connect().await?);
    let product = client
        .adjust_stock(AdjustStockRequest {
            sku: args.sku,
            delta: args.delta,
            reason: args.reason,
        })
        .await
        .map_err(explain)
        .map_err(|e| e.context("stock was not changed"))?
        .into_inner();
    print_product(&product, args.server.json)
}

/// Shows stock (or adjusts it).
pub(crate) async fn stock(args: StockArgs) -> anyhow::Result<()> {
    if let Some(StockCommand::Adjust(adjust_args)) = args.command {
        return adjust(adjust_args).await;
    }
    let mut client = InventoryServiceClient::new(args.server.connect().await?);
    let products = match &args.sku {
        Some(sku) => vec![
            client
                .get_product(GetProductRequest { sku: sku.clone() })
                .await
                .map_err(explain)?
                .into_inner(),
        ],
        None => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_products(ListProductsRequest {
                        page_size: 500,
                        page_token: page_token.clone(),
                    })
                    .await
                    .map_err(explain)?
                    .into_inner();
                all.extend(page.products);
                if page.next_page_token.is_empty() {
                    break all;
                }
                page_token = page.next_page_token;
            }
        }
    };
    if args.server.json {
        let rows: Vec<_> = products.iter().map(product_json).collect();
        return outln!("{}", serde_json::Value::Array(rows));
    }
    outln!("{}", stock_table(&products).trim_end())?;
    if let [one] = products.as_slice() {
        outln!("{}", policy_text(one, crate::output::now_ms()).trim_end())?;
    }
    Ok(())
}

/// Prints one product as `restock stock SKU` does.
pub(crate) fn print_product(p: &Product, json: bool) -> anyhow::Result<()> {
    if json {
        return outln!("{}", product_json(p));
    }
    outln!("{}", stock_table(std::slice::from_ref(p)).trim_end())?;
    outln!("{}", policy_text(p, crate::output::now_ms()).trim_end())
}

/// The policy's name as people read it.
fn policy_name(p: &Product) -> &'static str {
    match ReplenishmentPolicy::try_from(p.policy) {
        Ok(ReplenishmentPolicy::Adaptive) => "adaptive",
        _ => "fixed",
    }
}

fn product_json(p: &Product) -> serde_json::Value {
    let mut doc = json!({
        "sku": p.sku, "name": p.name, "price": p.price, "stock": p.stock,
        "reorder_point": p.reorder_point, "reorder_quantity": p.reorder_quantity,
        "factory_id": p.factory_id, "ad_active": p.ad_active,
        "policy": policy_name(p),
    });
    if let Some(a) = &p.adaptive {
        doc["adaptive"] = json!({
            "service_level_percent": a.service_level_percent,
            "min_reorder_point": a.min_reorder_point, "max_reorder_point": a.max_reorder_point,
            "min_reorder_quantity": a.min_reorder_quantity,
            "max_reorder_quantity": a.max_reorder_quantity,
        });
    }
    if let Some(plan) = &p.plan {
        doc["plan"] = json!({
            "demand_per_second": plan.demand_per_second,
            "demand_stddev_per_second": plan.demand_stddev_per_second,
            "lead_time_seconds": plan.lead_time_seconds,
            "lead_time_stddev_seconds": plan.lead_time_stddev_seconds,
            "lead_time_observations": plan.lead_time_observations,
            "computed_reorder_point": plan.computed_reorder_point,
            "computed_reorder_quantity": plan.computed_reorder_quantity,
            "cover_seconds": plan.cover_seconds,
            "planned_at_unix_ms": plan.planned_at_unix_ms,
        });
    }
    doc
}

/// A duration in the unit people think in: seconds, minutes, hours or days.
fn human_secs(secs: f64) -> String {
    match secs {
        s if s < 120.0 => format!("{s:.1} s"),
        s if s < 7_200.0 => format!("{:.1} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3_600.0),
        s => format!("{:.1} days", s / 86_400.0),
    }
}

/// One product's replenishment policy and the planner's figures, under its table row.
fn policy_text(p: &Product, now_ms: i64) -> String {
    let mut out = String::new();
    let Some(a) = p.adaptive.as_ref().filter(|_| policy_name(p) == "adaptive") else {
        out.push_str(&format!(
            "\npolicy     fixed: reorder at {}, order {} (set by hand)\n",
            p.reorder_point, p.reorder_quantity
        ));
        return out;
    };
    out.push_str(&format!(
        "\npolicy     adaptive: {}% service level; reorder point {}..{}, quantity {}..{}\n",
        a.service_level_percent,
        a.min_reorder_point,
        a.max_reorder_point,
        a.min_reorder_quantity,
        a.max_reorder_quantity
    ));
    let Some(plan) = &p.plan else {
        out.push_str("plan       not planned yet (the planner runs every minute by default)\n");
        return out;
    };
    out.push_str(&format!(
        "demand     {:.2} units/s (σ {:.2} per second)\n",
        plan.demand_per_second, plan.demand_stddev_per_second
    ));
    if plan.lead_time_observations == 0 {
        out.push_str(&format!(
            "lead time  {} (the default: no delivery measured yet)\n",
            human_secs(plan.lead_time_seconds)
        ));
    } else {
        out.push_str(&format!(
            "lead time  {} (σ {}, from {} deliveries)\n",
            human_secs(plan.lead_time_seconds),
            human_secs(plan.lead_time_stddev_seconds),
            plan.lead_time_observations
        ));
    }
    out.push_str(&format!(
        "computed   reorder at {}, order {}\n",
        plan.computed_reorder_point, plan.computed_reorder_quantity
    ));
    if plan.demand_per_second > 0.0 {
        out.push_str(&format!(
            "cover      {} at this demand\n",
            human_secs(p.stock as f64 / plan.demand_per_second)
        ));
    } else {
        out.push_str("cover      no demand measured\n");
    }
    let age = (now_ms - plan.planned_at_unix_ms).max(0) as f64 / 1_000.0;
    out.push_str(&format!("planned    {} ago\n", human_secs(age)));
    out
}

/// Display width of a string: East Asian wide characters take two columns.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFF00..=0xFF60 => 2,
            _ => 1,
        })
        .sum()
}

fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

/// The products as an aligned table.
fn stock_table(products: &[Product]) -> String {
    if products.is_empty() {
        return "no products (load the demo catalogue with `restock migrate --demo`)\n".to_owned();
    }
    let name_w = products
        .iter()
        .map(|p| width(&p.name))
        .max()
        .unwrap_or(4)
        .max(4);
    let sku_w = products
        .iter()
        .map(|p| p.sku.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut out = format!(
        "{}  {}  {:>10}  {:>6}  {:>10}  {:>9}  {:<8}  {:<10}  AD\n",
        pad("SKU", sku_w),
        pad("NAME", name_w),
        "PRICE",
        "STOCK",
        "REORDER AT",
        "REORDER Q",
        "POLICY",
        "FACTORY"
    );
    for p in products {
        out.push_str(&format!(
            "{}  {}  {:>10}  {:>6}  {:>10}  {:>9}  {:<8}  {:<10}  {}\n",
            pad(&p.sku, sku_w),
            pad(&p.name, name_w),
            p.price,
            p.stock,
            p.reorder_point,
            p.reorder_quantity,
            policy_name(p),
            p.factory_id,
            if p.ad_active { "on" } else { "paused" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_names_line_up() {
        let p = |sku: &str, name: &str| Product {
            sku: sku.into(),
            name: name.into(),
            ..Default::default()
        };
        let table = stock_table(&[
            p("CP-502101", "부산도너츠"),
            p("CP-700001", "Seoul Croissant"),
        ]);
        // Same columns in every data row, so the same display width, wide characters or not.
        let widths: Vec<usize> = table.lines().skip(1).map(width).collect();
        assert_eq!(widths.len(), 2);
        assert_eq!(widths[0], widths[1], "{table}");
    }
}
