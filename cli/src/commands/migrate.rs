//! `restock migrate`: applies the schema; `--demo` also loads the demo catalogue.

use anyhow::Context;

use crate::config::DatabaseArgs;

/// `restock migrate` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    /// Also load the demo catalogue (CP-502101 부산도너츠 and a few more); stock is set only
    /// for products that do not exist yet.
    #[arg(long)]
    demo: bool,
}

/// Runs the migrations.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let store = args.db.connect().await?;
    store.migrate().await.context("applying migrations")?;
    outln!("schema is up to date")?;
    if args.demo {
        restock_inventory::demo::load(&store)
            .await
            .context("loading the demo catalogue")?;
        outln!(
            "demo catalogue loaded ({} products)",
            restock_inventory::demo::products().len()
        )?;
    }
    Ok(())
}
