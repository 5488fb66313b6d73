//! `restock factories`: list the factories, and create or change one (`set`; an admin token
//! when the gateway has tokens). `restock factory` is the factory simulator, not this.

use restock_proto::v1::{
    Factory, ListFactoriesRequest, UpsertFactoryRequest,
    inventory_service_client::InventoryServiceClient,
};
use serde_json::json;

use super::client::{ServerArgs, explain};

/// `restock factories` flags.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<FactoriesCommand>,
    #[command(flatten)]
    server: ServerArgs,
}

/// `restock factories` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum FactoriesCommand {
    /// Create a factory, or change the fields given (the others are kept).
    Set(SetArgs),
}

/// `restock factories set` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct SetArgs {
    /// The factory's id (e.g. FF-500293).
    id: String,
    /// Its name (required when creating).
    #[arg(long)]
    name: Option<String>,
    /// The manager who gets the advertising emails (required when creating).
    #[arg(long)]
    manager_email: Option<String>,
    /// Base URL of its legacy API; "" to use the worker's RESTOCK_FACTORY_URL.
    #[arg(long)]
    api_url: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

fn to_json(f: &Factory) -> serde_json::Value {
    json!({"id": f.id, "name": f.name, "manager_email": f.manager_email, "api_url": f.api_url})
}

fn table(factories: &[Factory]) -> String {
    let w = |get: fn(&Factory) -> &str, title: &str| {
        factories
            .iter()
            .map(|f| get(f).chars().count())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (id_w, name_w, mail_w) = (
        w(|f| &f.id, "ID"),
        w(|f| &f.name, "NAME"),
        w(|f| &f.manager_email, "MANAGER"),
    );
    let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
    let mut out = format!(
        "{}  {}  {}  API URL\n",
        pad("ID", id_w),
        pad("NAME", name_w),
        pad("MANAGER", mail_w)
    );
    for f in factories {
        let url = if f.api_url.is_empty() {
            "(RESTOCK_FACTORY_URL)"
        } else {
            &f.api_url
        };
        out.push_str(&format!(
            "{}  {}  {}  {url}\n",
            pad(&f.id, id_w),
            pad(&f.name, name_w),
            pad(&f.manager_email, mail_w)
        ));
    }
    out
}

/// Runs `restock factories`.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        None => list(args.server).await,
        Some(FactoriesCommand::Set(set_args)) => set(set_args).await,
    }
}

async fn list(server: ServerArgs) -> anyhow::Result<()> {
    let mut client = InventoryServiceClient::new(server.connect().await?);
    let factories = client
        .list_factories(ListFactoriesRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .factories;
    if server.json() {
        let rows: Vec<_> = factories.iter().map(to_json).collect();
        return outln!("{}", serde_json::Value::Array(rows));
    }
    outln!("{}", table(&factories).trim_end())
}

async fn set(args: SetArgs) -> anyhow::Result<()> {
    let mut client = InventoryServiceClient::new(args.server.connect().await?);
    let existing = client
        .list_factories(ListFactoriesRequest {})
        .await
        .map_err(explain)?
        .into_inner()
        .factories
        .into_iter()
        .find(|f| f.id == args.id);
    let mut factory = existing.unwrap_or(Factory {
        id: args.id.clone(),
        ..Default::default()
    });
    if let Some(name) = args.name {
        factory.name = name;
    }
    if let Some(email) = args.manager_email {
        factory.manager_email = email;
    }
    if let Some(url) = args.api_url {
        factory.api_url = url;
    }
    let saved = client
        .upsert_factory(UpsertFactoryRequest {
            factory: Some(factory),
        })
        .await
        .map_err(explain)
        .map_err(|e| e.context("the factory was not changed"))?
        .into_inner();
    if args.server.json() {
        return outln!("{}", to_json(&saved));
    }
    outln!("{}", table(std::slice::from_ref(&saved)).trim_end())
}
