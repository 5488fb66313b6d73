//! Replays histories of real runs (saved with the SDK's `fetch_history` JSON by the end-to-end
//! tests: `RESTOCK_SAVE_HISTORIES=$PWD/workflows/tests/histories cargo test -p
//! restock-gateway --test it -- replenishment::`, and `-p restock --test it --
//! worker_crashes::` for `v5-completion_with_the_order_result.json`) against today's workflow
//! code. A nondeterministic change to the workflow makes this fail in CI; version such
//! changes with `ctx.patched(..)`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use restock_workflows::{PlanReplenishments, ReplenishStock};
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

fn histories() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn replayer() -> WorkflowReplayer {
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<ReplenishStock>()
        .unwrap()
        .register_workflow::<PlanReplenishments>()
        .unwrap()
        .build();
    WorkflowReplayer::new(options).unwrap()
}

#[tokio::test]
async fn saved_histories_replay_against_current_code() {
    let histories = histories();
    assert!(histories.len() >= 3, "saved histories are missing");
    let replayer = replayer();
    for (name, json) in histories {
        let history = WorkflowHistory::from_json(&json).unwrap();
        if let Err(err) = replayer.replay_workflow(history).await {
            panic!("{name} no longer replays (a nondeterministic workflow change?): {err}");
        }
    }
}

/// The check above can fail: a history whose recorded commands differ from what the code
/// does (here, a different activity type) is caught.
#[tokio::test]
async fn a_diverging_history_is_caught() {
    let (_, json) = histories().into_iter().next().unwrap();
    let tampered = String::from_utf8(json)
        .unwrap()
        .replace("\"check-stock\"", "\"check-stock-v0\"");
    let history = WorkflowHistory::from_json(tampered.as_bytes()).unwrap();
    let err = replayer().replay_workflow(history).await.unwrap_err();
    assert!(err.to_string().contains("TMPRL1100"), "{err}");
}
