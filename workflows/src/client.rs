//! The starter's side of the workflow: connecting to Temporal, starting a replenishment,
//! signalling and querying it. Used by the gateway (outbox relay, callback, gRPC) and the CLI;
//! never by workflow code.

use std::time::Duration;

use anyhow::{Context, anyhow};
use temporalio_client::errors::{WorkflowInteractionError, WorkflowQueryError, WorkflowStartError};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};

use crate::{
    CancelRequest, FactoryCompleted, ReplenishInput, ReplenishRequested, ReplenishStatus,
    ReplenishStock,
};

/// The workflow id of a product's replenishment: `replenish-<sku>`.
pub fn workflow_id(sku: &str) -> String {
    format!("replenish-{sku}")
}

/// Connects once to Temporal at `address` (`host:port` or a URL).
pub async fn connect(address: &str, namespace: &str) -> anyhow::Result<Client> {
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let url = Url::parse(&url).with_context(|| format!("{address:?} is not a Temporal address"))?;
    let options = ConnectionOptions::new(url)
        .identity(format!("restock@{}", std::process::id()))
        .connect_timeout(Duration::from_secs(5))
        .build();
    let connection = Connection::connect(options)
        .await
        .map_err(|e| anyhow!("cannot connect to Temporal at {address}: {e}"))?;
    Client::new(connection, ClientOptions::new(namespace.to_owned()).build())
        .map_err(|e| anyhow!("cannot create a Temporal client: {e}"))
}

/// Connects to Temporal, retrying (with backoff up to 10 s) until it answers or `stop`
/// resolves (then `None`). A worker or gateway that starts before Temporal keeps trying.
pub async fn connect_with_retry(
    address: &str,
    namespace: &str,
    stop: impl std::future::Future<Output = ()>,
) -> Option<Client> {
    tokio::pin!(stop);
    let mut delay = Duration::from_millis(200);
    loop {
        match connect(address, namespace).await {
            Ok(client) => {
                tracing::info!(address, namespace, "connected to Temporal");
                return Some(client);
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "Temporal is not answering yet");
            }
        }
        tokio::select! {
            () = &mut stop => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Asks for the product's replenishment: starts `replenish-<sku>` with a
/// `replenish-requested` signal, or only signals the run already open (signal-with-start:
/// conflict policy UseExisting, reuse policy AllowDuplicate). Once this returns, Temporal holds
/// the request durably. Returns the run id.
pub async fn request_replenishment(
    client: &Client,
    task_queue: &str,
    input: ReplenishInput,
) -> Result<String, WorkflowStartError> {
    let options = WorkflowStartOptions::new(task_queue.to_owned(), workflow_id(&input.sku))
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
        .build();
    let request = ReplenishRequested {
        reason: input.reason.clone(),
    };
    let handle = client
        .signal_with_start_workflow(
            ReplenishStock::run,
            input,
            ReplenishStock::replenish_requested,
            request,
            options,
        )
        .await?;
    Ok(handle.run_id().unwrap_or_default().to_owned())
}

/// What a signal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The running workflow got it.
    Delivered,
    /// No workflow is running for this product (finished, or never started).
    NotRunning,
}

fn delivery(result: Result<(), WorkflowInteractionError>) -> anyhow::Result<Delivery> {
    match result {
        Ok(()) => Ok(Delivery::Delivered),
        Err(WorkflowInteractionError::NotFound(_)) => Ok(Delivery::NotRunning),
        Err(err) => Err(anyhow!("signalling the workflow failed: {err}")),
    }
}

/// Sends `factory-completed` to the product's replenishment.
pub async fn signal_factory_completed(
    client: &Client,
    sku: &str,
    signal: FactoryCompleted,
) -> anyhow::Result<Delivery> {
    let handle = client.get_workflow_handle::<ReplenishStock>(workflow_id(sku));
    delivery(
        handle
            .signal(
                ReplenishStock::factory_completed,
                signal,
                WorkflowSignalOptions::default(),
            )
            .await,
    )
}

/// Sends `cancel` to the product's replenishment.
pub async fn signal_cancel(
    client: &Client,
    sku: &str,
    request: CancelRequest,
) -> anyhow::Result<Delivery> {
    let handle = client.get_workflow_handle::<ReplenishStock>(workflow_id(sku));
    delivery(
        handle
            .signal(
                ReplenishStock::cancel,
                request,
                WorkflowSignalOptions::default(),
            )
            .await,
    )
}

/// The `status` query of the product's latest replenishment run; `None` when it has none.
pub async fn query_status(client: &Client, sku: &str) -> anyhow::Result<Option<ReplenishStatus>> {
    let handle = client.get_workflow_handle::<ReplenishStock>(workflow_id(sku));
    match handle
        .query(ReplenishStock::status, (), WorkflowQueryOptions::default())
        .await
    {
        Ok(status) => Ok(Some(status)),
        Err(WorkflowQueryError::NotFound(_)) => Ok(None),
        Err(err) => Err(anyhow!("querying the workflow failed: {err}")),
    }
}
