//! The planning workflow (type `plan-replenishments`), started by the Temporal Schedule
//! `restock-planner` ([`crate::client::ensure_planner_schedule`]): one pass of the
//! replenishment policy, run as one activity, so the workflow itself only decides nothing and
//! replays from its history. The schedule is what an operator sees, pauses or triggers in the
//! Temporal UI (Schedules); each pass is one short workflow run with the summary as its result.

// The workflow macros generate undocumented associated constants for each handler.
#![allow(missing_docs)]

use std::time::Duration;

use restock_activities::PlanningActivities;
use restock_activities::plan::PlanSummary;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

/// The workflow type name.
pub const PLAN_WORKFLOW_TYPE: &str = "plan-replenishments";
/// The schedule's id, and the prefix of its runs' workflow ids.
pub const PLANNER_SCHEDULE_ID: &str = "restock-planner";
/// The default interval between planner passes.
pub const DEFAULT_PLANNER_INTERVAL: Duration = Duration::from_secs(60);

/// One planner pass.
#[workflow]
#[derive(Default)]
pub struct PlanReplenishments;

#[workflow_methods]
impl PlanReplenishments {
    /// Runs the pass (retried for a few minutes while the database is away; the next
    /// scheduled run tries again anyway) and returns what it did.
    #[run(name = "plan-replenishments")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, _input: ()) -> WorkflowResult<PlanSummary> {
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
            .retry_policy(
                RetryPolicy::builder()
                    .initial_interval(Duration::from_secs(1))
                    .backoff_coefficient(2.0)
                    .maximum_interval(Duration::from_secs(30))
                    .maximum_attempts(5)
                    .build(),
            )
            .build();
        let summary = ctx
            .execute_activity(PlanningActivities::plan_replenishments, (), options)
            .await?;
        Ok(summary)
    }
}
