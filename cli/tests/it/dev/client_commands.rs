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
    assert!(stderr.contains("restock stock"), "{stderr}");
    let (rc, stderr) = code(&app, &["replenishment", "CLI-1", "--order", "nope"]).await;
    assert_eq!(rc, 4, "not found: {stderr}");
    assert!(
        stderr.contains("no replenishment with order") && !stderr.contains("list products"),
        "{stderr}"
    );
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

/// What operators did with SQL before: factories, products' policies and hand adjustments,
/// through the CLI, each in the audit trail; bad input exits 2 and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_factories_products_and_stock_without_sql() {
    use restock_inventory::entity::audit_log;
    use sea_orm::EntityTrait;

    let app = spawn_app(Backend::Sqlite).await.unwrap();
    // A new factory, then a change of one field; a bad email is refused.
    let (rc, made) = json(
        &app,
        &[
            "factories",
            "set",
            "FF-NEW",
            "--name",
            "New works",
            "--manager-email",
            "boss@new.example",
            "--json",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{made}");
    assert_eq!(made["manager_email"], "boss@new.example");
    let (rc, stderr) = code(
        &app,
        &[
            "factories",
            "set",
            "FF-NEW",
            "--manager-email",
            "not-an-address",
        ],
    )
    .await;
    assert_eq!(rc, 2, "{stderr}");
    assert!(stderr.contains("not an email address"), "{stderr}");
    let (rc, changed) = json(
        &app,
        &[
            "factories",
            "set",
            "FF-NEW",
            "--api-url",
            "http://127.0.0.1:9",
            "--json",
        ],
    )
    .await;
    assert_eq!(rc, 0);
    assert_eq!(changed["manager_email"], "boss@new.example", "kept");
    let (_, all) = json(&app, &["factories", "--json"]).await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "FF-NEW" && f["api_url"] == "http://127.0.0.1:9")
    );

    // A product's policy and bounds.
    let (rc, product) = json(
        &app,
        &[
            "product",
            "set",
            "CP-502101",
            "--policy",
            "adaptive",
            "--service-level",
            "99.5",
            "--min-reorder-point",
            "2",
            "--json",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{product}");
    assert_eq!(product["policy"], "adaptive");
    assert_eq!(product["adaptive"]["service_level_percent"], 99.5);
    assert_eq!(product["adaptive"]["min_reorder_point"], 2);
    // Zero is a value: `set` names the fields it changes, the rest are kept.
    let (rc, zeroed) = json(
        &app,
        &[
            "product",
            "set",
            "CP-502101",
            "--reorder-point",
            "0",
            "--json",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{zeroed}");
    assert_eq!(zeroed["reorder_point"], 0, "{zeroed}");
    assert_eq!(zeroed["name"], product["name"], "{zeroed}");
    assert_eq!(zeroed["price"], product["price"], "{zeroed}");
    assert_eq!(zeroed["adaptive"], product["adaptive"], "{zeroed}");
    let (rc, stderr) = code(
        &app,
        &["product", "set", "CP-502101", "--service-level", "120"],
    )
    .await;
    assert_eq!(rc, 2, "{stderr}");
    assert!(
        stderr.contains("field: product.adaptive.service_level_percent"),
        "{stderr}"
    );
    // With --json the error is one JSON document on stdout, naming the field.
    let (rc, error) = json(
        &app,
        &[
            "product",
            "set",
            "CP-502101",
            "--service-level",
            "120",
            "--json",
        ],
    )
    .await;
    assert_eq!(rc, 2);
    assert_eq!(error["error"]["exit_code"], 2, "{error}");
    assert_eq!(error["error"]["status"], "InvalidArgument", "{error}");
    assert_eq!(
        error["error"]["fields"][0]["field"], "product.adaptive.service_level_percent",
        "{error}"
    );
    let (rc, missing) = json(&app, &["stock", "NO-SUCH", "--json"]).await;
    assert_eq!(rc, 4);
    assert_eq!(missing["error"]["status"], "NotFound", "{missing}");
    let (rc, stderr) = code(&app, &["stock", "CP-502101"]).await;
    assert_eq!(rc, 0, "{stderr}");

    // Stock by hand, with a reason; below zero is refused (exit 5).
    let before = restock_testkit::product_of(&app.store, "CP-502101")
        .await
        .stock;
    let (rc, adjusted) = json(
        &app,
        &[
            "stock",
            "adjust",
            "CP-502101",
            "-1",
            "--reason",
            "damaged",
            "--json",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{adjusted}");
    assert_eq!(adjusted["stock"], before - 1);
    let (rc, stderr) = code(
        &app,
        &[
            "stock",
            "adjust",
            "CP-502101",
            "-100000",
            "--reason",
            "oops",
        ],
    )
    .await;
    assert_eq!(rc, 5, "{stderr}");
    assert_eq!(
        restock_testkit::product_of(&app.store, "CP-502101")
            .await
            .stock,
        before - 1
    );

    let actions: Vec<String> = audit_log::Entity::find()
        .all(app.store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|a| format!("{} {}", a.action, a.sku))
        .collect();
    for expected in [
        "upsert_factory FF-NEW",
        "upsert_product CP-502101",
        "adjust_stock CP-502101",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} not in {actions:?}"
        );
    }
    app.stop().await;
}
