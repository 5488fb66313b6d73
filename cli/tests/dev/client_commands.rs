//! The client commands as scripts use them, against a gateway on port 0 (SQLite, no Temporal):
//! documented exit codes, `--json` output that parses, limits named by the command line, and
//! a reader that closes stdout early ends the command quietly, not with a panic.

use std::process::{Output, Stdio};

use restock_testkit::{Backend, TestApp, spawn_app};
use serde_json::Value;

/// `restock ARGS --server <app>` with stdout set by `stdout` (captured when `None`).
async fn run(app: &TestApp, args: &[&str], stdout: Option<std::io::PipeWriter>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_restock"));
    command
        .args(args)
        .args(["--server", &app.grpc_addr.to_string()])
        .env_remove("RESTOCK_API_TOKEN")
        .env_remove("RESTOCK_GRPC_ADDR")
        .env_remove("RESTOCK_TLS_CA")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    match stdout {
        Some(pipe) => command.stdout(pipe),
        None => command.stdout(Stdio::piped()),
    };
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The exit code, and stdout parsed as one JSON document.
async fn json(app: &TestApp, args: &[&str]) -> (i32, Value) {
    let out = run(app, args, None).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not one JSON document ({e}): {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), value)
}

/// The exit code and stderr.
async fn code(app: &TestApp, args: &[&str]) -> (i32, String) {
    let out = run(app, args, None).await;
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_json_output() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.store
        .upsert_product(&restock_testkit::product("CLI-1", 1, 0, 10))
        .await
        .unwrap();

    let (rc, sold) = json(&app, &["buy", "CLI-1", "--json"]).await;
    assert_eq!((rc, sold["outcome"].as_str()), (0, Some("SOLD")), "{sold}");
    assert_eq!(sold["remaining_stock"], 0);
    let (rc, out) = json(&app, &["buy", "CLI-1", "--json"]).await;
    assert_eq!(
        (rc, out["outcome"].as_str()),
        (3, Some("OUT_OF_STOCK")),
        "{out}"
    );
    assert!(
        !out["replenishment_id"].as_str().unwrap().is_empty(),
        "{out}"
    );
    let (rc, stderr) = code(&app, &["buy", "CLI-1"]).await;
    assert_eq!(rc, 3, "text output, same code: {stderr}");

    let (rc, stock) = json(&app, &["stock", "--json"]).await;
    assert_eq!(rc, 0);
    let cli_1 = stock
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sku"] == "CLI-1")
        .unwrap_or_else(|| panic!("{stock}"));
    assert_eq!(cli_1["stock"], 0);
    let (rc, list) = json(&app, &["replenishments", "--json"]).await;
    assert_eq!(rc, 0);
    assert!(list.is_array(), "{list}");

    // Failures: each has its documented code.
    let (rc, stderr) = code(&app, &["buy", "NOPE-1"]).await;
    assert_eq!(rc, 4, "not found: {stderr}");
    let (rc, stderr) = code(&app, &["buy", "CP 1"]).await;
    assert_eq!(rc, 2, "refused as invalid by the gateway: {stderr}");
    assert!(stderr.contains("sku"), "{stderr}");
    let (rc, stderr) = code(&app, &["cancel", "CLI-1"]).await;
    assert_eq!(rc, 6, "Temporal is not there: {stderr}");

    // Numbers out of range name the real limit, not the type's.
    let (rc, stderr) = code(&app, &["buy", "CLI-1", "-q", "99999999999"]).await;
    assert_eq!(rc, 2, "{stderr}");
    let limit = restock_inventory::validate::MAX_PURCHASE_QUANTITY;
    assert!(stderr.contains(&format!("1..={limit}")), "{stderr}");
    assert!(!stderr.contains("4294967295"), "{stderr}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    for args in [
        &["stock"][..],
        &["stock", "--json"],
        &["replenishments"],
        &["buy", restock_inventory::demo::DEMO_SKU],
    ] {
        // The reading end is closed before the command starts: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = run(&app, args, Some(writer)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
    app.stop().await;
}
