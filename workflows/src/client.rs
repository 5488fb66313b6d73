//! The starter's side of the workflow: connecting to Temporal, starting a replenishment,
//! signalling and querying it. Used by the gateway (outbox relay, callback, gRPC) and the CLI;
//! never by workflow code.

use std::time::Duration;

use anyhow::{Context, anyhow};
use temporalio_client::errors::{WorkflowInteractionError, WorkflowQueryError, WorkflowStartError};
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, Url,
    WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::{HasWorkflowDefinition, SignalDefinition};

use crate::{
    CancelRequest, FactoryCompleted, ReplenishInput, ReplenishRequested, ReplenishStatus,
    ReplenishStock,
};

/// This process's identity in Temporal (the UI's worker list, each event's `identity`):
/// `restock-<pid>@<host>`, so two containers that both run as pid 1 stay apart.
pub fn identity() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("restock-{}@{host}", std::process::id())
}

/// The workflow id of a product's replenishment, `replenish-<sku>`: the store names it in
/// each sale's answer, so it is defined there, once.
pub use restock_inventory::replenishment_id as workflow_id;

/// A workflow's page in the Temporal Web UI.
pub use restock_activities::workflow_link;

/// Temporal's frontend port unless configured (the dev server's too).
pub const DEFAULT_PORT: u16 = 7233;

/// The dev server's Web UI port unless configured.
pub const DEFAULT_UI_PORT: u16 = 8233;

/// The namespace unless configured (`TEMPORAL_NAMESPACE`); the dev server has it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where Temporal is unless configured (`TEMPORAL_ADDRESS`): `localhost:7233`.
pub fn default_address() -> String {
    format!("localhost:{DEFAULT_PORT}")
}

/// Where the Temporal Web UI is unless configured (`RESTOCK_TEMPORAL_UI_URL`): the dev
/// server's, `http://localhost:8233`.
pub fn default_ui_url() -> String {
    format!("http://localhost:{DEFAULT_UI_PORT}")
}

/// Where Temporal is and how to reach it: plaintext (dev server), TLS, mTLS client
/// certificates, or an API key (Temporal Cloud).
#[derive(Clone, Default)]
pub struct TemporalEndpoint {
    /// Frontend, `host:port` (or a URL).
    pub address: String,
    /// Namespace.
    pub namespace: String,
    /// TLS settings; `None`: plaintext (unless an API key is set, which implies TLS).
    pub tls: Option<TemporalTls>,
    /// API key (sent as a bearer token; implies TLS).
    pub api_key: Option<String>,
}

impl std::fmt::Debug for TemporalEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalEndpoint")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("tls", &self.tls.is_some())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl TemporalEndpoint {
    /// A plaintext endpoint (the dev server).
    pub fn plain(address: &str, namespace: &str) -> Self {
        Self {
            address: address.to_owned(),
            namespace: namespace.to_owned(),
            ..Self::default()
        }
    }
}

/// TLS towards Temporal, PEM-encoded.
#[derive(Clone, Default)]
pub struct TemporalTls {
    /// CA of the server's certificate; `None`: the system's trusted roots.
    pub server_ca_pem: Option<Vec<u8>>,
    /// Name to verify the server certificate against; `None`: the address's host.
    pub server_name: Option<String>,
    /// Client certificate and key, for mTLS.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// Connects once to Temporal.
pub async fn connect(endpoint: &TemporalEndpoint) -> anyhow::Result<Client> {
    let address = endpoint.address.as_str();
    let tls = endpoint
        .tls
        .clone()
        .or_else(|| endpoint.api_key.as_ref().map(|_| TemporalTls::default()));
    let url = if address.contains("://") {
        address.to_owned()
    } else if tls.is_some() {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    };
    let url = Url::parse(&url).with_context(|| format!("{address:?} is not a Temporal address"))?;
    let tls_options = tls.map(|t| {
        TlsOptions::builder()
            .maybe_server_root_ca_cert(t.server_ca_pem)
            .maybe_domain(t.server_name)
            .maybe_client_tls_options(t.client_cert_pem.map(|(cert, key)| {
                ClientTlsOptions::builder()
                    .client_cert(cert)
                    .client_private_key(key)
                    .build()
            }))
            .build()
    });
    let options = ConnectionOptions::new(url)
        .identity(identity())
        .connect_timeout(Duration::from_secs(5))
        .maybe_tls_options(tls_options)
        .maybe_api_key(endpoint.api_key.clone())
        .build();
    let connection = Connection::connect(options)
        .await
        .map_err(|e| anyhow!("cannot connect to Temporal at {address}: {e}"))?;
    Client::new(
        connection,
        ClientOptions::new(endpoint.namespace.clone()).build(),
    )
    .map_err(|e| anyhow!("cannot create a Temporal client: {e}"))
}

/// Connects to Temporal, retrying (with backoff up to 10 s) until it answers or `stop`
/// resolves (then `None`). A worker or gateway that starts before Temporal keeps trying.
pub async fn connect_with_retry(
    endpoint: &TemporalEndpoint,
    stop: impl std::future::Future<Output = ()>,
) -> Option<Client> {
    tokio::pin!(stop);
    let mut delay = Duration::from_millis(200);
    loop {
        match connect(endpoint).await {
            Ok(client) => {
                tracing::info!(address = %endpoint.address, namespace = %endpoint.namespace, "connected to Temporal");
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
        // Shown in the Web UI's list and on the run's page (a run that is already open keeps
        // its own).
        .static_summary(format!("Replenish {} ({})", input.sku, input.reason))
        .static_details(match &input.request_id {
            Some(id) => format!("Asked for by the call with request id `{id}`."),
            None => "Asked for without a request id (the planner or a stock change).".to_owned(),
        })
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

/// Sends `signal` with `input` to the product's replenishment.
async fn send<S>(client: &Client, sku: &str, signal: S, input: S::Input) -> anyhow::Result<Delivery>
where
    S: SignalDefinition<Workflow = <ReplenishStock as HasWorkflowDefinition>::Run>,
    S::Input: Send,
{
    let handle = client.get_workflow_handle::<ReplenishStock>(workflow_id(sku));
    delivery(
        handle
            .signal(signal, input, WorkflowSignalOptions::default())
            .await,
    )
}

/// Sends `factory-completed` to the product's replenishment.
pub async fn signal_factory_completed(
    client: &Client,
    sku: &str,
    signal: FactoryCompleted,
) -> anyhow::Result<Delivery> {
    send(client, sku, ReplenishStock::factory_completed, signal).await
}

/// Sends `cancel` to the product's replenishment.
pub async fn signal_cancel(
    client: &Client,
    sku: &str,
    request: CancelRequest,
) -> anyhow::Result<Delivery> {
    send(client, sku, ReplenishStock::cancel, request).await
}

/// What an operator's completion or cancel came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Accepted; the status right after it.
    Accepted(Box<ReplenishStatus>),
    /// Refused by the run, with its reason (e.g. `not-waiting: ...`).
    Refused(String),
    /// No replenishment is running for this product.
    NotRunning,
}

/// How long [`complete_and_confirm`] and [`cancel_and_confirm`] watch the run for its answer.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// What a signal-and-confirm came to when the run did not answer in time.
pub const NOT_CONFIRMED: &str = "unconfirmed: the signal is with the replenishment, but no worker took it within 10 s; it is applied under the same rules when a worker runs (check `restock replenishment`)";

/// An operator's completion by the `factory-completed` signal, confirmed: the status is read
/// first (a completion it would refuse is refused here, with the same reason), the signal is
/// sent, and the run is watched until it has taken the delivery (`received_quantity` set) or
/// refused it (`ignored_signals` grew).
///
/// The signal rather than the `complete` update: an update accepted in the same workflow task
/// as another event (an activity result, a timer) was seen to leave a history the SDK (1.1.1)
/// cannot replay (TMPRL1100), which would strand the run on its next replay.
pub async fn complete_and_confirm(
    client: &Client,
    sku: &str,
    completion: FactoryCompleted,
) -> anyhow::Result<UpdateOutcome> {
    let Some(before) = query_status(client, sku).await? else {
        return Ok(UpdateOutcome::NotRunning);
    };
    if before.state.is_terminal()
        && before.factory_order_id != completion.factory_order_id.clone().unwrap_or_default()
    {
        return Ok(UpdateOutcome::NotRunning);
    }
    if let Some((_, reason)) = crate::replenish::completion_refusal(&before, &completion, None) {
        return Ok(UpdateOutcome::Refused(reason));
    }
    if signal_factory_completed(client, sku, completion.clone()).await? == Delivery::NotRunning {
        return Ok(UpdateOutcome::NotRunning);
    }
    confirm(client, sku, &before, |s| {
        s.factory_order_id == before.factory_order_id && s.received_quantity.is_some()
    })
    .await
    .map(|outcome| match outcome {
        UpdateOutcome::Refused(_) => UpdateOutcome::Refused(
            crate::replenish::completion_refusal(
                &before,
                &completion,
                Some(crate::CompletionRefusal::AlreadyCompleted),
            )
            .map(|(_, reason)| reason)
            .unwrap_or_else(|| "the replenishment refused the completion".to_owned()),
        ),
        other => other,
    })
}

/// An operator's cancel by the `cancel` signal, confirmed like [`complete_and_confirm`].
pub async fn cancel_and_confirm(
    client: &Client,
    sku: &str,
    request: CancelRequest,
) -> anyhow::Result<UpdateOutcome> {
    let Some(before) = query_status(client, sku).await? else {
        return Ok(UpdateOutcome::NotRunning);
    };
    if before.state.is_terminal() {
        return Ok(UpdateOutcome::NotRunning);
    }
    if !before.state.accepts_cancel() {
        return Ok(UpdateOutcome::Refused(format!(
            "the replenishment is {}; it can be cancelled only before the delivery is being counted",
            before.state
        )));
    }
    if signal_cancel(client, sku, request).await? == Delivery::NotRunning {
        return Ok(UpdateOutcome::NotRunning);
    }
    confirm(client, sku, &before, |s| {
        s.factory_order_id == before.factory_order_id && s.state == crate::RestockState::Cancelled
    })
    .await
    .map(|outcome| match outcome {
        UpdateOutcome::Refused(_) => UpdateOutcome::Refused(
            "the replenishment refused the cancel: its delivery was reported meanwhile".to_owned(),
        ),
        other => other,
    })
}

/// Watches the run after a signal: accepted when `taken` holds, refused when it counted one
/// more ignored signal, an error after [`CONFIRM_TIMEOUT`].
async fn confirm(
    client: &Client,
    sku: &str,
    before: &ReplenishStatus,
    taken: impl Fn(&ReplenishStatus) -> bool,
) -> anyhow::Result<UpdateOutcome> {
    let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
    loop {
        if let Ok(Ok(Some(now))) =
            tokio::time::timeout(Duration::from_secs(2), query_status(client, sku)).await
        {
            if taken(&now) {
                return Ok(UpdateOutcome::Accepted(Box::new(now)));
            }
            if now.factory_order_id == before.factory_order_id
                && now.ignored_signals > before.ignored_signals
            {
                return Ok(UpdateOutcome::Refused(String::new()));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!(NOT_CONFIRMED));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// How Temporal closed the product's latest run when that run did not end on its own: the
/// UI's Terminate (`temporal workflow terminate`) or a run timeout. Such a run never records its
/// end, so its status query (answered from its history) and the read model keep the last state
/// it entered; this is how callers tell that it is over. `None` while it runs, and for a run
/// that completed, failed, was cancelled or continued as new: those record their own end.
pub async fn closed_by_temporal(
    client: &Client,
    sku: &str,
) -> anyhow::Result<Option<&'static str>> {
    let handle = client.get_workflow_handle::<ReplenishStock>(workflow_id(sku));
    let described = match handle.describe(WorkflowDescribeOptions::default()).await {
        Ok(described) => described,
        Err(WorkflowInteractionError::NotFound(_)) => return Ok(None),
        Err(err) => return Err(anyhow!("describing the workflow failed: {err}")),
    };
    Ok(match described.status() {
        WorkflowExecutionStatus::Terminated => Some("Terminated"),
        WorkflowExecutionStatus::TimedOut => Some("TimedOut"),
        _ => None,
    })
}

/// Creates the Temporal Schedule `restock-planner` (a `plan-replenishments` run on
/// `task_queue` every `every`, overlapping runs skipped) unless it exists. An existing
/// schedule keeps its state (an operator may have paused it); only its interval follows the
/// configuration. Safe to call from every worker at every start.
pub async fn ensure_planner_schedule(
    client: &Client,
    task_queue: &str,
    every: std::time::Duration,
) -> anyhow::Result<()> {
    use temporalio_client::schedules::{
        CreateScheduleOptions, ScheduleAction, ScheduleError, ScheduleOverlapPolicy, ScheduleSpec,
    };
    let spec = ScheduleSpec::from_interval(every);
    let options = CreateScheduleOptions::builder()
        .action(ScheduleAction::start_workflow(
            crate::PlanReplenishments::run,
            (),
            task_queue,
            crate::PLANNER_SCHEDULE_ID,
        ))
        .spec(spec.clone())
        .overlap_policy(ScheduleOverlapPolicy::Skip)
        .note("restock's replenishment planner: recomputes adaptive reorder points and quantities")
        .build();
    match client
        .create_schedule(crate::PLANNER_SCHEDULE_ID, options)
        .await
    {
        Ok(_) => {
            tracing::info!(
                schedule = crate::PLANNER_SCHEDULE_ID,
                every_secs = every.as_secs_f64(),
                "planner schedule created"
            );
            Ok(())
        }
        Err(ScheduleError::Rpc(status)) if status.code() == tonic::Code::AlreadyExists => {
            let handle = client.get_schedule_handle(crate::PLANNER_SCHEDULE_ID);
            let current = handle
                .describe(Default::default())
                .await
                .map_err(|e| anyhow::anyhow!("describing the planner schedule: {e}"))?;
            let interval = current
                .raw()
                .schedule
                .as_ref()
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.interval.first())
                .and_then(|i| i.interval.as_ref())
                .map(|d| std::time::Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32));
            if interval != Some(every) {
                handle
                    .update(
                        move |u| {
                            u.set_spec(spec);
                        },
                        Default::default(),
                    )
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("updating the planner schedule's interval: {e}")
                    })?;
                tracing::info!(
                    schedule = crate::PLANNER_SCHEDULE_ID,
                    every_secs = every.as_secs_f64(),
                    "planner schedule interval updated"
                );
            }
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("creating the planner schedule: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_names_the_pid_and_the_host() {
        let id = super::identity();
        assert!(
            id.starts_with(&format!("restock-{}@", std::process::id())),
            "{id}"
        );
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        if !host.is_empty() {
            assert!(id.ends_with(&format!("@{host}")), "{id}");
        }
    }
}
