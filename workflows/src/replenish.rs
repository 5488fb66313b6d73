//! The replenish-stock workflow (type `replenish-stock`, id `replenish-<sku>`, task queue
//! `restock`).
//!
//! It checks stock, orders from the factory, waits for the factory's completion, moves to
//! Overdue when the factory SLA passes and keeps waiting, then adds the delivered units to stock
//! exactly once. Every state change is kept in the `status` query, the `RestockState` search
//! attribute and the database read model.
//!
//! A completion (signal `factory-completed`, or update `complete`, `{factory_order_id,
//! quantity?}`) is taken only while the run waits for the factory and only for its current
//! order; a cancel (signal or update `cancel`, `{reason?}`) is refused once Restocking. A
//! refused signal is counted in `ignored_signals`; an update answers with the status or the
//! refusal. Temporal's own cancellation (the Web UI's "Request Cancellation",
//! `temporal workflow cancel`) is an operator cancel: same rules, same clean-up. restock's own
//! callers use the signals and read the status for the answer (see [`crate::client`]).
//!
//! # Versions
//! Runs started before [`PATCH_EXACTLY_ONCE`] replay through [`legacy`]; every new run records
//! the patch marker and takes the steps in [`steps`].

// The workflow macros generate undocumented associated constants for each handler.
#![allow(missing_docs)]

mod legacy;
mod steps;

use std::time::{Duration, UNIX_EPOCH};

use restock_activities::errors::NON_RETRYABLE;
use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, LocalActivityOptions, SyncWorkflowContext,
    WorkflowCancellationToken, WorkflowContext, WorkflowContextView, WorkflowResult,
};

use crate::state::{self, RestockState};

/// The workflow type name.
pub const WORKFLOW_TYPE: &str = "replenish-stock";
/// Search attribute holding the product's sku (Keyword).
pub const SEARCH_ATTRIBUTE_SKU: &str = "RestockSku";
/// Search attribute holding the state name (Keyword).
pub const SEARCH_ATTRIBUTE_STATE: &str = "RestockState";

/// Every custom search attribute the workflows set, with its type: what a Temporal server
/// must have registered (the dev servers of `restock dev` and the tests register these; the
/// compose file's setup job lists the same names).
pub const SEARCH_ATTRIBUTES: [(&str, &str); 2] = [
    (SEARCH_ATTRIBUTE_SKU, "Keyword"),
    (SEARCH_ATTRIBUTE_STATE, "Keyword"),
];

/// The task queue restock's workers poll and its clients start workflows on, unless
/// configured otherwise (`RESTOCK_TASK_QUEUE`).
pub const TASK_QUEUE: &str = "restock";

/// The patch every run since the exactly-once round records (`ctx.patched`): operator actions
/// as updates, completions only for the current order while waiting, cancels checked before
/// the order, Temporal cancellation handled, late requests never dropped, Failed published.
pub const PATCH_EXACTLY_ONCE: &str = "exactly-once-v2";

/// The patch every run since the speed round records on top of [`PATCH_EXACTLY_ONCE`]: the
/// increment and the ad's pause and resume run as local activities (inside the workflow task,
/// no round trip through the server each); only the factory order stays a regular activity.
/// Runs without it replay their regular activities.
pub const PATCH_LOCAL_BOOKKEEPING: &str = "local-bookkeeping-v3";

/// The patch a run records when an operator's cancel (signal or update) ends it: since then
/// such a run ends Canceled in Temporal, as the UI's Cancel button's does, instead of
/// Completed with a `Cancelled` outcome. Runs from before complete as they did.
pub const PATCH_CANCEL_ENDS_CANCELED: &str = "cancel-ends-canceled-v4";

/// The patch a cancelled run records when replenishment requests reached it after the cancel
/// was accepted (a sale while the run was closing): since then it continues as new to check
/// the stock again instead of ending, so that sale's request is not lost with the run. Runs
/// from before end Cancelled as they did.
pub const PATCH_REQUESTS_AFTER_CANCEL: &str = "requests-after-cancel-v5";

/// The patch a run records when its workflow id is not its product's (`replenish-<sku>`):
/// since then such a run, started by hand beside the product's own, fails before it does
/// anything instead of ordering a second time. Runs with the product's id never record it.
pub const PATCH_ONE_RUN_PER_PRODUCT: &str = "one-run-per-product-v6";

/// Replenishment requests one run takes before it continues as new, carrying its order over,
/// so a run that stays Overdue for days keeps a bounded history.
pub const MAX_REQUESTS_PER_RUN: u32 = 200;

const RESTOCK_SKU: SearchAttributeKey<String> = SearchAttributeKey::keyword(SEARCH_ATTRIBUTE_SKU);
const RESTOCK_STATE: SearchAttributeKey<String> =
    SearchAttributeKey::keyword(SEARCH_ATTRIBUTE_STATE);

/// Durations the workflow uses; they come from configuration so tests can use seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplenishSettings {
    /// How long to wait for the factory before Overdue.
    pub factory_sla_secs: u64,
    /// Start-to-close timeout of one activity attempt.
    pub activity_timeout_secs: u64,
    /// First retry delay of a failed activity (doubles each time).
    pub retry_initial_secs: u64,
    /// Longest delay between activity retries.
    pub retry_max_interval_secs: u64,
}

impl Default for ReplenishSettings {
    fn default() -> Self {
        Self {
            factory_sla_secs: 600,
            activity_timeout_secs: 30,
            retry_initial_secs: 1,
            retry_max_interval_secs: 60,
        }
    }
}

/// The workflow's input, written by the gateway's outbox relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplenishInput {
    /// Product to replenish.
    pub sku: String,
    /// Why: `out_of_stock` or `reorder_point`.
    #[serde(default)]
    pub reason: String,
    /// Durations.
    #[serde(default)]
    pub settings: ReplenishSettings,
    /// An order in flight carried over from the previous run (continue-as-new of a long wait):
    /// this run waits for it instead of checking and ordering again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<CarriedOrder>,
    /// The request id (`x-request-id`) of the call that asked for this replenishment (the
    /// sale that sold out), so one sale can be followed to its factory order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The run this one checks again after (requests came while it ran), as it ended: it
    /// stays answerable (`GetReplenishment` by its order id) once this run has replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_run: Option<Box<ReplenishStatus>>,
}

/// An order a run hands to its continuation (see [`MAX_REQUESTS_PER_RUN`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedOrder {
    /// The status as it was (state AwaitingFactory or Overdue, order id, quantity, history).
    pub status: ReplenishStatus,
    /// Unix ms when the factory SLA passes (already past when Overdue).
    pub sla_deadline: i64,
}

/// Signal `factory-completed` and update `complete`: the factory's delivery of an order.
/// `factory_order_id` names the order (required since [`PATCH_EXACTLY_ONCE`]); `quantity` is
/// the ordered quantity when absent, and never more than it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FactoryCompleted {
    /// Units delivered; the ordered quantity when absent.
    #[serde(default)]
    pub quantity: Option<u32>,
    /// The order this completes; a completion for another order is refused.
    #[serde(default)]
    pub factory_order_id: Option<String>,
}

/// Signal `replenish-requested`, sent with the start by the gateway's outbox relay
/// (signal-with-start): another sale asked for stock. If it arrives after this run began
/// reading the stock, the run checks again before it ends, so no request is lost to a run
/// that was already past its check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplenishRequested {
    /// Why: `out_of_stock` or `reorder_point`.
    #[serde(default)]
    pub reason: String,
}

/// Signal and update `cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CancelRequest {
    /// Why (shown in the status and history).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Query `status`: everything an operator needs about one replenishment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReplenishStatus {
    /// Current state.
    pub state: RestockState,
    /// Product.
    pub sku: String,
    /// Our order id (the factory's `MessageGroupId`).
    pub factory_order_id: String,
    /// The factory's own id for the order, when it confirmed it.
    pub factory_reference: Option<String>,
    /// False while we cannot know whether the factory took the order.
    pub factory_confirmed: bool,
    /// Units ordered.
    pub ordered_quantity: u32,
    /// Units delivered (once known).
    pub received_quantity: Option<u32>,
    /// Stock after the delivery was added.
    pub stock_after: Option<i64>,
    /// Factory order send attempts.
    pub order_attempts: u32,
    /// Whether the SLA passed without a delivery.
    pub overdue: bool,
    /// Completion and cancel signals refused (repeats, another order, wrong state).
    pub ignored_signals: u32,
    /// Replenishment requests received after the stock read began (checked again at the end).
    pub late_requests: u32,
    /// Whether this replenishment paused the product's advertisement (it was sold out).
    pub ad_paused: bool,
    /// Why it was cancelled or failed.
    pub reason: Option<String>,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms of the last change.
    pub updated_at: i64,
    /// Every state entered, oldest first.
    pub history: Vec<state::Transition>,
    /// Notifications (ad paused/resumed mails) that could not be sent; they never hold up
    /// the order or the restock.
    #[serde(default)]
    pub notification_failures: u32,
    /// Runs this replenishment continued over (a long wait carries its order to a new run).
    #[serde(default)]
    pub continued_runs: u32,
    /// The request id of the call that asked for it (see [`ReplenishInput::request_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The run before this one, as it ended, when this run checks again after it (see
    /// [`ReplenishInput::previous_run`]); its own `previous_run` is dropped, so one is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_run: Option<Box<ReplenishStatus>>,
}

impl ReplenishStatus {
    /// Notes the factory's answer to the order: its reference, whether it confirmed, and
    /// after how many attempts.
    fn order_placed(&mut self, placed: &restock_activities::types::FactoryOrderPlaced) {
        self.factory_reference = placed.factory_reference.clone();
        self.factory_confirmed = placed.confirmed;
        self.order_attempts = placed.attempts;
    }
}

/// The workflow's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplenishOutcome {
    /// Final state.
    pub state: RestockState,
    /// Units added to stock (0 when none).
    pub received_quantity: u32,
}

/// Why a completion was refused. The code before the colon in its message is stable:
/// the gateway's delivery relay retries `not-waiting` (the callback came before the run
/// reached AwaitingFactory) and settles the rest another way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionRefusal {
    /// No order id given.
    MissingOrder,
    /// The order id is not this run's order.
    OtherOrder,
    /// The run is not waiting for the factory (yet, or any more).
    NotWaiting,
    /// The run already has its completion.
    AlreadyCompleted,
    /// The run is being cancelled.
    Cancelled,
    /// More units than were ordered.
    TooMany,
}

impl CompletionRefusal {
    /// The stable code that starts the refusal's message.
    pub fn code(self) -> &'static str {
        match self {
            CompletionRefusal::MissingOrder => "missing-order",
            CompletionRefusal::OtherOrder => "other-order",
            CompletionRefusal::NotWaiting => "not-waiting",
            CompletionRefusal::AlreadyCompleted => "already-completed",
            CompletionRefusal::Cancelled => "cancelled",
            CompletionRefusal::TooMany => "too-many",
        }
    }

    /// Finds the code at the start of a refusal message (as the client sees it).
    pub fn from_message(message: &str) -> Option<Self> {
        [
            CompletionRefusal::MissingOrder,
            CompletionRefusal::OtherOrder,
            CompletionRefusal::NotWaiting,
            CompletionRefusal::AlreadyCompleted,
            CompletionRefusal::Cancelled,
            CompletionRefusal::TooMany,
        ]
        .into_iter()
        .find(|r| {
            message
                .find(r.code())
                .is_some_and(|at| message[at + r.code().len()..].starts_with(':'))
        })
    }
}

/// Why a run in `status` refuses `completion`, if it does. `pending` is a completion or cancel
/// the run holds but has not acted on yet (it refuses with that). The gateway applies the
/// same function to a status it queried, to answer an operator before it signals.
pub fn completion_refusal(
    status: &ReplenishStatus,
    completion: &FactoryCompleted,
    pending: Option<CompletionRefusal>,
) -> Option<(CompletionRefusal, String)> {
    let current = &status.factory_order_id;
    let refuse = |r: CompletionRefusal, text: String| Some((r, format!("{}: {text}", r.code())));
    let Some(order) = completion
        .factory_order_id
        .as_deref()
        .filter(|o| !o.is_empty())
    else {
        return refuse(
            CompletionRefusal::MissingOrder,
            format!(
                "name the order to complete (factory_order_id); this replenishment's order is {current:?}"
            ),
        );
    };
    if order != current {
        return refuse(
            CompletionRefusal::OtherOrder,
            format!("order {order:?} is not this replenishment's current order {current:?}"),
        );
    }
    if pending == Some(CompletionRefusal::AlreadyCompleted)
        || matches!(
            status.state,
            RestockState::Restocking | RestockState::Completed
        )
    {
        return refuse(
            CompletionRefusal::AlreadyCompleted,
            format!("order {order:?} is already completed"),
        );
    }
    if pending == Some(CompletionRefusal::Cancelled) || status.state == RestockState::Cancelled {
        return refuse(
            CompletionRefusal::Cancelled,
            format!("the replenishment of order {order:?} is cancelled"),
        );
    }
    if !status.state.accepts_completion() {
        return refuse(
            CompletionRefusal::NotWaiting,
            format!(
                "the replenishment is {}; a completion is accepted only while it waits for the factory (AwaitingFactory or Overdue)",
                status.state
            ),
        );
    }
    if let Some(q) = completion.quantity
        && q > status.ordered_quantity
    {
        return refuse(
            CompletionRefusal::TooMany,
            format!(
                "{q} units is more than the {} ordered",
                status.ordered_quantity
            ),
        );
    }
    None
}

/// The replenish-stock workflow.
#[workflow]
#[derive(Default)]
pub struct ReplenishStock {
    status: ReplenishStatus,
    completion: Option<FactoryCompleted>,
    cancel: Option<CancelRequest>,
    /// Runs before [`PATCH_EXACTLY_ONCE`]: set once check-stock has answered.
    stock_checked: bool,
    /// 0: a run from before [`PATCH_EXACTLY_ONCE`] ([`legacy`]); 2: since; 3: since
    /// [`PATCH_LOCAL_BOOKKEEPING`] too.
    version: u8,
    /// Set before the stock is read: every request after this is checked again at the end.
    check_started: bool,
    /// The cancel came from Temporal's own cancellation (the run ends as cancelled there too).
    cancelled_in_temporal: bool,
    /// `late_requests` when the cancel was accepted: the requests after it are new demand,
    /// the ones before it are cancelled with the run.
    requests_at_cancel: u32,
    /// `late_requests` when the first request after Temporal's own cancellation came: the
    /// run acts on that cancellation only at its next step (e.g. once the order's reply is
    /// in), and requests between the two are after the operator's cancel, not before it.
    requests_at_temporal_cancel: Option<u32>,
    /// Set when `run` has chosen its version; signals before that wait in `early`.
    started: bool,
    /// Signals delivered with the start (before `run` knew its version), applied in order
    /// once it does, under that version's rules.
    early: Vec<Signal>,
}

/// A signal the run acts on (kept in `early` until the run has chosen its version).
#[derive(Debug, Clone)]
enum Signal {
    Completed(FactoryCompleted),
    Requested,
    Cancel(CancelRequest),
}

pub(crate) fn millis(time: Option<std::time::SystemTime>) -> i64 {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The store's sku rule (pure and deterministic): a run for an invalid sku fails at once,
/// without retries, saying why.
fn require_valid_sku(sku: &str) -> WorkflowResult<()> {
    if restock_inventory::Sku::parse(sku).is_err() {
        return Err(ApplicationFailure::non_retryable(format!(
            "replenish-stock needs a valid sku, got {sku:?}"
        ))
        .into());
    }
    Ok(())
}

/// Retries for every step: backoff from the settings, at most `attempts` tries (0: until the
/// dependency answers, the DLQ replacement; only the non-retryable failure types end the
/// workflow).
fn retries(settings: &ReplenishSettings, attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(settings.retry_initial_secs.max(1)))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(settings.retry_max_interval_secs.max(1)))
        .maximum_attempts(attempts)
        .non_retryable_error_types(NON_RETRYABLE)
        .build()
}

/// A regular activity with [`retries`]. Detached from the workflow's cancellation:
/// Temporal's "Request Cancellation" must never abandon an order or an increment half-way;
/// the run decides at its next step instead.
fn regular(settings: &ReplenishSettings, attempts: u32) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(
        settings.activity_timeout_secs.max(1),
    ))
    .retry_policy(retries(settings, attempts))
    .cancellation_token(WorkflowCancellationToken::new())
    .build()
}

/// A local activity with [`retries`], detached like [`regular`].
fn local(settings: &ReplenishSettings, attempts: u32) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(settings.activity_timeout_secs.max(1)))
        .retry_policy(retries(settings, attempts))
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}

/// Options for the factory order (and, in runs before [`PATCH_LOCAL_BOOKKEEPING`], the
/// increment): retried until the dependency answers.
pub(crate) fn activity_options(settings: &ReplenishSettings) -> ActivityOptions {
    regular(settings, 0)
}

/// Options for the bookkeeping steps run as local activities: short, idempotent database
/// calls done inside the workflow task instead of a round trip through the server each. Same
/// retries as [`activity_options`].
pub(crate) fn local_options(settings: &ReplenishSettings) -> LocalActivityOptions {
    local(settings, 0)
}

/// [`notification_options`] for a local activity (runs since [`PATCH_LOCAL_BOOKKEEPING`]).
pub(crate) fn local_notification_options(settings: &ReplenishSettings) -> LocalActivityOptions {
    local(settings, restock_activities::replenish::MAIL_ATTEMPTS)
}

/// Options for notifications: a few tries, then the run goes on without them.
pub(crate) fn notification_options(settings: &ReplenishSettings) -> ActivityOptions {
    regular(settings, restock_activities::replenish::MAIL_ATTEMPTS)
}

impl ReplenishStock {
    /// A signal: applied now once the run has chosen its version, else kept in `early`
    /// (and applied then, as if Temporal had not cancelled the run).
    fn receive(&mut self, signal: Signal, temporal_cancelled: bool) {
        if self.started {
            self.apply(signal, temporal_cancelled);
        } else {
            self.early.push(signal);
        }
    }

    fn apply(&mut self, signal: Signal, temporal_cancelled: bool) {
        match signal {
            Signal::Completed(c) => self.on_completed(c),
            Signal::Requested => self.on_requested(temporal_cancelled),
            Signal::Cancel(c) => self.on_cancel(c),
        }
    }

    /// A `factory-completed` signal, under this run's version's rules.
    fn on_completed(&mut self, signal: FactoryCompleted) {
        if self.version < 2 {
            let other_order = signal.factory_order_id.as_deref().is_some_and(|id| {
                !self.status.factory_order_id.is_empty() && id != self.status.factory_order_id
            });
            if self.completion.is_some() || other_order || self.status.state.is_terminal() {
                self.status.ignored_signals += 1;
                return;
            }
            self.completion = Some(signal);
            return;
        }
        if self.completion_refusal(&signal).is_some() {
            self.status.ignored_signals += 1;
        } else {
            self.completion = Some(signal);
        }
    }

    /// A `replenish-requested` signal; `temporal_cancelled`: Temporal's cancellation of the run
    /// was already delivered (in an earlier workflow task: a task's signals come before it).
    fn on_requested(&mut self, temporal_cancelled: bool) {
        if self.version < 2 {
            if self.stock_checked && !self.status.state.is_terminal() {
                self.status.late_requests += 1;
            }
            return;
        }
        if temporal_cancelled && self.requests_at_temporal_cancel.is_none() {
            self.requests_at_temporal_cancel = Some(self.status.late_requests);
        }
        // Counted in every state, terminal ones too: Temporal accepted the request, so the
        // run must honour it (it checks again before it ends).
        if self.check_started {
            self.status.late_requests += 1;
        }
    }

    /// A `cancel` signal.
    fn on_cancel(&mut self, request: CancelRequest) {
        if self.version < 2 {
            let restocking = matches!(
                self.status.state,
                RestockState::Restocking | RestockState::Completed
            ) || self.completion.is_some();
            if self.cancel.is_none() && !restocking && !self.status.state.is_terminal() {
                self.cancel = Some(request);
            }
            return;
        }
        if self.cancel_refusal().is_some() {
            self.status.ignored_signals += 1;
        } else {
            self.accept_cancel(request);
        }
    }

    /// Takes a cancel (signal or update): the run stops, and the requests it has counted so
    /// far go with it, or only those from before Temporal's own cancellation when that was
    /// delivered earlier (see [`Self::requests_at_temporal_cancel`]): a cancel is a cancel,
    /// and what came after the first one is new demand.
    fn accept_cancel(&mut self, request: CancelRequest) {
        self.requests_at_cancel = self
            .requests_at_temporal_cancel
            .unwrap_or(self.status.late_requests);
        self.cancel = Some(request);
    }

    /// Takes Temporal's own cancellation, noticed now (see [`Self::accept_cancel`]).
    fn accept_temporal_cancel(&mut self, request: CancelRequest) {
        self.accept_cancel(request);
        self.cancelled_in_temporal = true;
    }

    /// Whether replenishment requests reached the run after its cancel was accepted.
    fn requested_after_cancel(&self) -> bool {
        self.cancel.is_some() && self.status.late_requests > self.requests_at_cancel
    }

    /// Why this run refuses `completion` now, if it does: the status's rules
    /// ([`completion_refusal`]) and what the run already holds but has not acted on yet.
    fn completion_refusal(
        &self,
        completion: &FactoryCompleted,
    ) -> Option<(CompletionRefusal, String)> {
        let pending = if self.completion.is_some() {
            Some(CompletionRefusal::AlreadyCompleted)
        } else if self.cancel.is_some() {
            Some(CompletionRefusal::Cancelled)
        } else {
            None
        };
        completion_refusal(&self.status, completion, pending)
    }

    /// Why this run refuses a cancel now, if it does.
    fn cancel_refusal(&self) -> Option<String> {
        if self.cancel.is_some() {
            return Some("the replenishment is already being cancelled".to_owned());
        }
        if self.completion.is_some() || !self.status.state.accepts_cancel() {
            return Some(format!(
                "the replenishment is {}{}; it can be cancelled only before the delivery is being counted",
                self.status.state,
                if self.completion.is_some() {
                    " with its delivery reported"
                } else {
                    ""
                }
            ));
        }
        None
    }
}

#[workflow_methods]
impl ReplenishStock {
    /// Runs one replenishment.
    #[run(name = "replenish-stock")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ReplenishInput,
    ) -> WorkflowResult<ReplenishOutcome> {
        let version = if !ctx.patched(PATCH_EXACTLY_ONCE) {
            0
        } else if ctx.patched(PATCH_LOCAL_BOOKKEEPING) {
            3
        } else {
            2
        };
        ctx.state_mut(|s| {
            s.version = version;
            s.started = true;
            for early in std::mem::take(&mut s.early) {
                s.apply(early, false);
            }
        });
        if version >= 2 {
            Self::run_v2(ctx, input).await
        } else {
            Self::run_v1(ctx, input).await
        }
    }

    /// The factory (through the gateway) or an operator reports the delivery. Accepted only
    /// while the run waits for the factory and only for its current order; anything else is
    /// ignored and counted.
    #[signal(name = "factory-completed")]
    pub fn factory_completed(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        signal: FactoryCompleted,
    ) {
        self.receive(Signal::Completed(signal), false);
    }

    #[update_validator(complete)]
    fn validate_complete(
        &self,
        _ctx: &WorkflowContextView,
        completion: &FactoryCompleted,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if !self.started {
            return Err(format!(
                "{}: the replenishment has not started yet",
                CompletionRefusal::NotWaiting.code()
            )
            .into());
        }
        if self.version < 2 {
            return Err("this replenishment run started before updates existed: send the factory-completed signal instead".into());
        }
        match self.completion_refusal(completion) {
            Some((_, message)) => Err(message.into()),
            None => Ok(()),
        }
    }

    /// Update `complete`: an operator reports the delivery
    /// of the current order; answers with the status once accepted.
    #[update(name = "complete")]
    pub fn complete(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        completion: FactoryCompleted,
    ) -> ReplenishStatus {
        self.completion = Some(completion);
        self.status.clone()
    }

    /// Another sale asked for stock (the outbox relay's signal-with-start).
    #[signal(name = "replenish-requested")]
    pub fn replenish_requested(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        _request: ReplenishRequested,
    ) {
        self.receive(Signal::Requested, ctx.cancellation_token().is_cancelled());
    }

    /// An operator cancels the replenishment (refused once Restocking).
    #[signal(name = "cancel")]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, request: CancelRequest) {
        self.receive(Signal::Cancel(request), false);
    }

    #[update_validator(cancel_update)]
    fn validate_cancel(
        &self,
        _ctx: &WorkflowContextView,
        _request: &CancelRequest,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if !self.started {
            return Ok(());
        }
        if self.version < 2 {
            return Err("this replenishment run started before updates existed: send the cancel signal instead".into());
        }
        match self.cancel_refusal() {
            Some(message) => Err(message.into()),
            None => Ok(()),
        }
    }

    /// Update `cancel`: an operator cancels; answers with the status once accepted.
    #[update(name = "cancel")]
    pub fn cancel_update(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        request: CancelRequest,
    ) -> ReplenishStatus {
        if self.started {
            self.accept_cancel(request);
        } else {
            self.early.push(Signal::Cancel(request));
        }
        self.status.clone()
    }

    /// The replenishment's state, history and order details.
    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> ReplenishStatus {
        self.status.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compose file's setup job is shell, not Rust: this keeps its list of search
    /// attributes the same as [`SEARCH_ATTRIBUTES`].
    #[test]
    fn the_compose_file_registers_the_same_search_attributes() {
        let compose = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docker-compose.temporal.yml"
        ))
        .unwrap();
        let names: Vec<&str> = SEARCH_ATTRIBUTES.iter().map(|(name, _)| *name).collect();
        let line = format!("for name in {}; do", names.join(" "));
        assert!(
            compose.contains(&line),
            "docker-compose.temporal.yml lacks {line:?}"
        );
        assert!(SEARCH_ATTRIBUTES.iter().all(|(_, kind)| *kind == "Keyword"));
    }

    fn waiting() -> ReplenishStock {
        ReplenishStock {
            version: 2,
            started: true,
            status: ReplenishStatus {
                state: RestockState::AwaitingFactory,
                factory_order_id: "replenish-A-1".to_owned(),
                ordered_quantity: 7,
                ..ReplenishStatus::default()
            },
            ..ReplenishStock::default()
        }
    }

    fn completion(order: Option<&str>, quantity: Option<u32>) -> FactoryCompleted {
        FactoryCompleted {
            quantity,
            factory_order_id: order.map(str::to_owned),
        }
    }

    fn refusal(w: &ReplenishStock, c: &FactoryCompleted) -> Option<CompletionRefusal> {
        w.completion_refusal(c).map(|(r, message)| {
            assert_eq!(
                CompletionRefusal::from_message(&message),
                Some(r),
                "{message}"
            );
            r
        })
    }

    #[test]
    fn completion_only_for_the_current_order_while_waiting() {
        let w = waiting();
        assert_eq!(refusal(&w, &completion(Some("replenish-A-1"), None)), None);
        assert_eq!(
            refusal(&w, &completion(Some("replenish-A-1"), Some(7))),
            None
        );
        assert_eq!(
            refusal(&w, &completion(None, None)),
            Some(CompletionRefusal::MissingOrder)
        );
        assert_eq!(
            refusal(&w, &completion(Some("replenish-A-0"), None)),
            Some(CompletionRefusal::OtherOrder)
        );
        assert_eq!(
            refusal(&w, &completion(Some("replenish-A-1"), Some(8))),
            Some(CompletionRefusal::TooMany)
        );
        for state in [
            RestockState::CheckingStock,
            RestockState::OrderingFromFactory,
        ] {
            let mut early = waiting();
            early.status.state = state;
            assert_eq!(
                refusal(&early, &completion(Some("replenish-A-1"), None)),
                Some(CompletionRefusal::NotWaiting)
            );
        }
        let mut done = waiting();
        done.completion = Some(completion(Some("replenish-A-1"), None));
        assert_eq!(
            refusal(&done, &completion(Some("replenish-A-1"), None)),
            Some(CompletionRefusal::AlreadyCompleted)
        );
        let mut cancelled = waiting();
        cancelled.cancel = Some(CancelRequest::default());
        assert_eq!(
            refusal(&cancelled, &completion(Some("replenish-A-1"), None)),
            Some(CompletionRefusal::Cancelled)
        );
    }

    #[test]
    fn only_requests_after_the_cancel_outlive_it() {
        let mut w = waiting();
        w.check_started = true;
        w.on_requested(false);
        w.on_requested(false);
        assert!(!w.requested_after_cancel(), "no cancel yet");
        w.on_cancel(CancelRequest::default());
        assert!(
            !w.requested_after_cancel(),
            "requests before the cancel go with it"
        );
        w.on_requested(false);
        assert!(w.requested_after_cancel());

        let mut updated = waiting();
        updated.check_started = true;
        updated.on_requested(false);
        updated.accept_cancel(CancelRequest::default());
        assert!(!updated.requested_after_cancel());
        updated.on_requested(false);
        assert!(updated.requested_after_cancel());
    }

    #[test]
    fn requests_after_temporal_cancellation_outlive_it_though_noticed_later() {
        let mut w = waiting();
        w.check_started = true;
        w.on_requested(false);
        // Temporal's cancellation is delivered; the run is busy and acts on it later.
        w.on_requested(true);
        w.on_requested(true);
        w.accept_temporal_cancel(CancelRequest::default());
        assert!(w.cancelled_in_temporal);
        assert_eq!(
            w.requests_at_cancel, 1,
            "the request before the cancellation"
        );
        assert!(w.requested_after_cancel());

        // Temporal's cancellation delivered, not yet acted on, then an operator's cancel
        // signal: the requests since the first cancellation outlive the run too.
        let mut signalled = waiting();
        signalled.check_started = true;
        signalled.on_requested(false);
        signalled.on_requested(true);
        signalled.on_cancel(CancelRequest::default());
        assert_eq!(signalled.requests_at_cancel, 1);
        assert!(signalled.requested_after_cancel());

        // No request after it: nothing outlives the run.
        let mut quiet = waiting();
        quiet.check_started = true;
        quiet.on_requested(false);
        quiet.accept_temporal_cancel(CancelRequest::default());
        assert!(!quiet.requested_after_cancel());
    }

    #[test]
    fn cancel_refused_once_the_delivery_is_reported() {
        let mut w = waiting();
        assert!(w.cancel_refusal().is_none());
        w.completion = Some(completion(Some("replenish-A-1"), None));
        assert!(w.cancel_refusal().is_some());
        let mut restocking = waiting();
        restocking.status.state = RestockState::Restocking;
        assert!(restocking.cancel_refusal().is_some());
    }

    #[test]
    fn refusal_codes_are_found_inside_a_wrapped_message() {
        assert_eq!(
            CompletionRefusal::from_message(
                "Update failed: not-waiting: the replenishment is OrderingFromFactory"
            ),
            Some(CompletionRefusal::NotWaiting)
        );
        assert_eq!(CompletionRefusal::from_message("not waiting"), None);
    }
}
