//! Client commands for replenishments: `replenishments`, `replenishment SKU`, `complete`,
//! `cancel`, and following one as it runs (`buy --wait`).

use std::time::Duration;

use restock_proto::v1::{
    CancelReplenishmentRequest, CompleteFactoryOrderRequest, GetReplenishmentRequest,
    ListReplenishmentsRequest, Replenishment,
    replenishment_service_client::ReplenishmentServiceClient,
};
use restock_workflows::RestockState;
use serde_json::json;

use super::client::{Gateway, ServerArgs, explain};

async fn client(server: &ServerArgs) -> anyhow::Result<ReplenishmentServiceClient<Gateway>> {
    Ok(ReplenishmentServiceClient::new(server.connect().await?))
}

/// The gateway's answer, or its refusal explained.
fn answer<T>(reply: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    reply.map(tonic::Response::into_inner).map_err(explain)
}

/// Prints a replenishment the gateway answered with: as JSON with `--json`, else with `human`.
fn print_replenishment(
    server: &ServerArgs,
    r: &Replenishment,
    human: impl FnOnce(&Replenishment) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if server.json() {
        outln!("{}", to_json(r))
    } else {
        human(r)
    }
}

/// A replenishment as JSON (the `--json` output of these commands).
pub(crate) fn to_json(r: &Replenishment) -> serde_json::Value {
    json!({
        "id": r.id, "sku": r.sku, "state": r.state, "quantity": r.quantity,
        "factory_order_id": r.factory_order_id, "factory_reference": r.factory_reference,
        "factory_confirmed": r.factory_confirmed, "received_quantity": r.received_quantity,
        "order_attempts": r.order_attempts, "overdue": r.overdue, "reason": r.reason,
        "started_at": r.started_at, "updated_at": r.updated_at, "source": r.source,
        "closed_by_temporal": r.closed_by_temporal,
        "history": r.history.iter().map(|h| json!({"state": h.state, "at": h.at})).collect::<Vec<_>>(),
    })
}

/// "3m 20s" since an RFC 3339 time.
fn age(rfc3339: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return "-".to_owned();
    };
    let secs = (chrono::Utc::now() - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `restock replenishments` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only replenishments in this state (e.g. Overdue, AwaitingFactory, Completed).
    #[arg(long)]
    state: Option<String>,
    /// At most this many (the gateway sends at most 500 at once).
    #[arg(
        long,
        default_value_t = restock_gateway::grpc::replenishment::DEFAULT_PAGE_SIZE,
        value_parser = clap::value_parser!(u32)
            .range(1..=i64::from(restock_gateway::grpc::replenishment::MAX_PAGE_SIZE))
    )]
    limit: u32,
    #[command(flatten)]
    server: ServerArgs,
}

/// Lists replenishments, newest first.
pub(crate) async fn list(args: ListArgs) -> anyhow::Result<()> {
    let request = ListReplenishmentsRequest {
        page_size: args.limit,
        page_token: String::new(),
        state: args.state.clone().unwrap_or_default(),
    };
    let mut api = client(&args.server).await?;
    let reply = answer(api.list_replenishments(request).await)?;
    if args.server.json() {
        let rows: Vec<_> = reply.replenishments.iter().map(to_json).collect();
        return outln!("{}", serde_json::Value::Array(rows));
    }
    if reply.replenishments.is_empty() {
        return outln!(
            "no replenishments{}",
            match &args.state {
                Some(s) => format!(" in state {s}"),
                None => " yet (one starts when a product sells out)".to_owned(),
            }
        );
    }
    outln!(
        "{:<14} {:<20} {:>5}  {:>9}  {:<8} ORDER",
        "SKU",
        "STATE",
        "QTY",
        "AGE",
        "OVERDUE"
    )?;
    for r in &reply.replenishments {
        outln!(
            "{:<14} {:<20} {:>5}  {:>9}  {:<8} {}",
            r.sku,
            // Closed by Temporal (Terminate): its last state is not where it is.
            if r.closed_by_temporal.is_empty() {
                &r.state
            } else {
                &r.closed_by_temporal
            },
            r.quantity,
            age(&r.started_at),
            if r.overdue { "yes" } else { "-" },
            r.factory_order_id
        )?;
    }
    Ok(())
}

/// One product's flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The product, e.g. CP-502101.
    sku: String,
    /// One run by its order id (as an earlier answer showed it), also after a newer run
    /// replaced it. Default: the product's latest run.
    #[arg(long)]
    order: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

fn print_detail(r: &Replenishment) -> anyhow::Result<()> {
    if r.closed_by_temporal.is_empty() {
        outln!(
            "{}  {}  ({})",
            r.id,
            r.state,
            if r.overdue { "OVERDUE" } else { "on time" }
        )?;
    } else {
        outln!("{}  {}", r.id, r.closed_by_temporal)?;
        outln!("  closed       {}", closed_by_temporal(r))?;
    }
    outln!(
        "  ordered      {} units, order {}",
        r.quantity,
        r.factory_order_id
    )?;
    if !r.factory_reference.is_empty() || r.source == "workflow" {
        outln!(
            "  factory      {}{}",
            if r.factory_reference.is_empty() {
                "-"
            } else {
                &r.factory_reference
            },
            if r.source == "workflow"
                && !r.factory_confirmed
                && !matches!(
                    RestockState::parse(&r.state),
                    Some(RestockState::CheckingStock | RestockState::OrderingFromFactory)
                )
            {
                "  (unconfirmed: the factory may or may not have the order)"
            } else {
                ""
            }
        )?;
    }
    if r.received_quantity > 0 {
        outln!("  received     {} units", r.received_quantity)?;
    }
    if !r.reason.is_empty() {
        outln!("  reason       {}", r.reason)?;
    }
    outln!(
        "  started      {} ({} ago)",
        r.started_at,
        age(&r.started_at)
    )?;
    for h in &r.history {
        outln!("    {:<20} {}", h.state, h.at)?;
    }
    if r.source == "read_model" {
        outln!("  (from the database copy: the workflow did not answer)")?;
    }
    Ok(())
}

/// Shows one product's replenishment (live state and history).
pub(crate) async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let request = GetReplenishmentRequest {
        sku: args.sku,
        factory_order_id: args.order.unwrap_or_default(),
    };
    let mut api = client(&args.server).await?;
    let r = answer(api.get_replenishment(request).await)?;
    print_replenishment(&args.server, &r, print_detail)
}

/// `restock complete` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CompleteArgs {
    /// The product whose factory order arrived.
    sku: String,
    /// Units that arrived (default: the ordered quantity; never more).
    #[arg(
        short,
        long,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(restock_factory::wire::MAX_QUANTITY))
    )]
    quantity: Option<u32>,
    /// The order that arrived (`restock replenishment SKU` shows it). Default: the current
    /// run's order; the run refuses if it is not waiting for the factory.
    #[arg(long)]
    order: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Reports a factory delivery by hand (when the factory's callback was lost).
pub(crate) async fn complete(args: CompleteArgs) -> anyhow::Result<()> {
    let request = CompleteFactoryOrderRequest {
        sku: args.sku,
        quantity: args.quantity.unwrap_or(0),
        factory_order_id: args.order.unwrap_or_default(),
    };
    let mut api = client(&args.server).await?;
    let r = answer(api.complete_factory_order(request).await)?;
    print_replenishment(&args.server, &r, |r| {
        outln!(
            "completion of order {} accepted by {}; it restocks now (follow with `restock replenishment {}`)",
            r.factory_order_id,
            r.id,
            r.sku
        )
    })
}

/// `restock cancel` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CancelArgs {
    /// The product whose replenishment to cancel.
    sku: String,
    /// Why (kept in the workflow's status).
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Cancels a product's running replenishment.
pub(crate) async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let request = CancelReplenishmentRequest {
        sku: args.sku,
        reason: args.reason,
    };
    let mut api = client(&args.server).await?;
    let r = answer(api.cancel_replenishment(request).await)?;
    print_replenishment(&args.server, &r, |r| {
        outln!("cancel sent to {} (state now {})", r.id, r.state)
    })
}

/// Follows the product's replenishment until it ends or `timeout` passes, and returns its
/// end; prints each new state unless the output is JSON (then the caller prints the end).
/// A finished run that started before we asked is an older one: keep waiting for ours. Once
/// one is found it is followed by its order, so a newer run that replaces it (a check again
/// for requests that came while it ran) neither hides its end nor is taken for it. A run
/// that Temporal closed before it recorded its end (Terminate) ends the follow too, said so.
pub(crate) async fn follow(
    server: &ServerArgs,
    sku: &str,
    timeout: Duration,
) -> anyhow::Result<Replenishment> {
    let mut api = client(server).await?;
    let asked_at = chrono::Utc::now() - chrono::Duration::seconds(5);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut followed = String::new();
    let mut printed = 0usize;
    loop {
        let request = GetReplenishmentRequest {
            sku: sku.to_owned(),
            factory_order_id: followed.clone(),
        };
        match api.get_replenishment(request).await {
            Ok(reply) => {
                let r = reply.into_inner();
                let closed = !r.closed_by_temporal.is_empty();
                let terminal = closed
                    || RestockState::parse(&r.state)
                        .is_some_and(restock_workflows::RestockState::is_terminal);
                let started_before =
                    chrono::DateTime::parse_from_rfc3339(&r.started_at).is_ok_and(|t| t < asked_at);
                // Before one is followed, a run that ended before we asked is not ours.
                let older = followed.is_empty() && terminal && started_before;
                if !older {
                    if followed.is_empty() {
                        followed.clone_from(&r.factory_order_id);
                    }
                    if !server.json() {
                        for h in r.history.iter().skip(printed) {
                            outln!("  -> {:<20} {}", h.state, h.at)?;
                        }
                        // The database copy has no history: its end is still a state entered.
                        if terminal && !closed && r.history.is_empty() {
                            outln!("  -> {:<20} {}", r.state, r.updated_at)?;
                        }
                    }
                    printed = printed.max(r.history.len());
                    if terminal {
                        if !server.json() {
                            if closed {
                                outln!("  -> {:<20} (by Temporal)", r.closed_by_temporal)?;
                                outln!("replenishment {} ended: {}", r.id, closed_by_temporal(&r))?;
                            } else {
                                outln!("replenishment {} ended: {}", r.id, r.state)?;
                            }
                            print_newer_run(&mut api, &r).await?;
                        }
                        return Ok(r);
                    }
                }
            }
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(explain(status)),
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "still waiting after {}s; check `restock replenishment {sku}`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a run that Temporal closed before it recorded its end left behind: its last state is
/// not where it ended, and the README's Terminate paragraph says what still happens.
fn closed_by_temporal(r: &Replenishment) -> String {
    let how = match r.closed_by_temporal.as_str() {
        restock_inventory::CLOSED_BY_NEWER_RUN => {
            "closed in Temporal (a newer run replaced it)".to_owned()
        }
        how => format!("{how} in Temporal"),
    };
    format!(
        "{how} while {}, without recording its end: an order it placed is still counted once when it is delivered, and the product's next request (a sale at its reorder point) starts a new run",
        r.state
    )
}

/// Says so when a newer run of the product replaced `ended` (requests came while it ran):
/// otherwise `restock replenishment` would show a run the follower never mentioned.
async fn print_newer_run(
    api: &mut ReplenishmentServiceClient<Gateway>,
    ended: &Replenishment,
) -> anyhow::Result<()> {
    let request = GetReplenishmentRequest {
        sku: ended.sku.clone(),
        factory_order_id: String::new(),
    };
    // Only a remark: a failure here changes nothing about the run that ended.
    if let Ok(latest) = api
        .get_replenishment(request)
        .await
        .map(tonic::Response::into_inner)
        && latest.factory_order_id != ended.factory_order_id
    {
        outln!(
            "a newer run of {} checks the stock again for the sales since that one started: {} (`restock replenishment {}`)",
            ended.sku,
            latest.state,
            ended.sku
        )?;
    }
    Ok(())
}
