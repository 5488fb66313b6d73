//! The console in a real headless Chromium (Debian's, over WebDriver) against a whole stack:
//! the page shows a sale made over gRPC without a reload, marks an Overdue replenishment, a
//! viewer's Complete is refused and changes nothing, an admin's Complete adds the stock
//! once, audited under the admin token's name, and an admin's Cancel keeps its reason.

use std::time::{Duration, Instant};

use restock_gateway::ApiTokens;
use restock_proto::v1::sales_service_client::SalesServiceClient;
use restock_testkit::browser::Browser;
use restock_testkit::process::wait_for;
use restock_testkit::stack::{StackOptions, spawn_stack};
use restock_workflows::RestockState;

use super::{WAIT, add_product, buy, stock};

const ADMIN_TOKEN: &str = "console-admin-token-0123456789";
const VIEWER_TOKEN: &str = "console-viewer-token-0123456789";
const SALES_TOKEN: &str = "console-sales-token-0123456789";

/// A Purchase with the sales token.
async fn buy_with_token(sales: &mut SalesServiceClient<tonic::transport::Channel>, sku: &str) {
    let mut request = tonic::Request::new(buy(sku));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {SALES_TOKEN}").parse().unwrap(),
    );
    sales.purchase(request).await.unwrap();
}

/// The console's snapshot as the admin sees it.
async fn console_snapshot(http: &reqwest::Client, base: &str) -> serde_json::Value {
    let request = http.get(format!("{base}api/console/snapshot"));
    let response = request.bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    response.json().await.unwrap()
}

/// For the README's screenshot (`RESTOCK_CONSOLE_SCREENSHOT=<png>`): sales across the demo
/// catalogue for `RESTOCK_CONSOLE_LOAD_SECS` (default 120), an operator completing each
/// overdue order (the factory drops every callback here) after it has waited 20 s.
async fn demo_load(sales: &mut SalesServiceClient<tonic::transport::Channel>, base: &str) {
    let secs: u64 = std::env::var("RESTOCK_CONSOLE_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let skus: Vec<String> = restock_inventory::demo::products()
        .into_iter()
        .map(|p| p.sku.into())
        .collect();
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs(secs) {
        n += 1;
        // A skewed mix: the first product sells most.
        let sku = if n.is_multiple_of(3) {
            &skus[0]
        } else {
            &skus[n % skus.len()]
        };
        buy_with_token(sales, sku).await;
        if n.is_multiple_of(25) {
            let snapshot = console_snapshot(&http, base).await;
            let now = restock_inventory::store::now_ms();
            for open in snapshot["open"].as_array().unwrap() {
                if open["overdue"] == true && now - open["started_at"].as_i64().unwrap() > 20_000 {
                    let _ = http
                        .post(format!(
                            "{base}api/console/replenishments/{}/complete",
                            open["sku"].as_str().unwrap()
                        ))
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&serde_json::json!({"factory_order_id": open["order_id"]}))
                        .send()
                        .await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs in on the page with `token` and waits for the catalogue.
async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(base).await;
    let field = browser.wait_for("#token", Duration::from_secs(10)).await;
    browser.type_into(&field, token).await;
    browser
        .click(&browser.wait_for("#sign-in", Duration::from_secs(5)).await)
        .await;
    browser
        .wait_for(
            "#products tr[data-sku=\"CP-502101\"]",
            Duration::from_secs(10),
        )
        .await;
}

async fn sign_out(browser: &Browser) {
    browser
        .click(&browser.wait_for("#sign-out", Duration::from_secs(5)).await)
        .await;
    browser.wait_for("#token", Duration::from_secs(10)).await;
}

/// Opens the row's `action` (complete, cancel), types `value` into the dialog's `field`
/// (quantity, reason) and confirms.
async fn confirm_from_page(browser: &Browser, sku: &str, action: &str, field: &str, value: &str) {
    let button = browser
        .wait_for(
            &format!("#open button.{action}[data-sku=\"{sku}\"]"),
            Duration::from_secs(10),
        )
        .await;
    browser.click(&button).await;
    let input = browser
        .wait_for(
            &format!("#confirm[open] #confirm-{field}"),
            Duration::from_secs(5),
        )
        .await;
    browser.type_into(&input, value).await;
    browser
        .click(
            &browser
                .wait_for("#confirm-ok", Duration::from_secs(5))
                .await,
        )
        .await;
}

/// Opens the row's Complete, enters `quantity` and confirms; the toast it ends with.
async fn complete_from_page(browser: &Browser, sku: &str, quantity: u32) -> String {
    confirm_from_page(browser, sku, "complete", "quantity", &quantity.to_string()).await;
    browser
        .wait_for("#toast:not([hidden])", Duration::from_secs(30))
        .await;
    browser.text_of("#toast").await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_shows_sales_live_and_an_admin_completes_an_overdue_order() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let tokens = ApiTokens::parse(&format!(
        "ops:admin:{ADMIN_TOKEN},eye:viewer:{VIEWER_TOKEN},till:sales:{SALES_TOKEN}"
    ))
    .unwrap();
    let stack = spawn_stack(StackOptions {
        workflow: restock_workflows::ReplenishSettings {
            factory_sla_secs: 2,
            ..StackOptions::default().workflow
        },
        tokens,
        ..StackOptions::without_callbacks()
    })
    .await
    .unwrap();
    let base = format!("http://{}/", stack.app.http_addr);

    // Must show 3, without a browser: no token 401 on every view, a viewer reads.
    let http = reqwest::Client::new();
    for view in ["whoami", "snapshot", "history", "events"] {
        let url = format!("{base}api/console/{view}");
        assert_eq!(http.get(&url).send().await.unwrap().status(), 401, "{view}");
    }
    let snapshot_url = format!("{base}api/console/snapshot");
    assert_eq!(
        http.get(&snapshot_url)
            .bearer_auth(VIEWER_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Must show 1: the demo catalogue, and a sale over gRPC shown without a reload.
    sign_in(&browser, &base, ADMIN_TOKEN).await;
    assert!(
        browser
            .text_of("#who")
            .await
            .unwrap()
            .contains("ops (admin)")
    );
    let croissant = "#products tr[data-sku=\"CP-700001\"] .units";
    browser.wait_for(croissant, Duration::from_secs(5)).await;
    assert_eq!(browser.text_of(croissant).await.unwrap(), "20");
    let mut sales = SalesServiceClient::new(stack.app.channel().await);
    buy_with_token(&mut sales, "CP-700001").await;
    let sold_at = Instant::now();
    while browser.text_of(croissant).await.unwrap() != "19" {
        assert!(
            sold_at.elapsed() < Duration::from_secs(2),
            "the page did not show the sale within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the sale showed on the page after {:?}", sold_at.elapsed());

    // Must show 2: a dropped callback goes Overdue and the page says so.
    let sku = "LATE-1";
    add_product(&stack, sku, 0, 0).await;
    buy_with_token(&mut sales, sku).await;
    stack.wait_for_state(sku, WAIT, RestockState::Overdue).await;
    let row = format!("#open tr[data-sku=\"{sku}\"]");
    browser
        .wait_for(&format!("{row} .badge.overdue"), Duration::from_secs(10))
        .await;
    assert!(
        browser
            .text_of(&format!("{row} .state"))
            .await
            .unwrap()
            .contains("Overdue")
    );
    let link = browser
        .execute(
            "return document.querySelector(arguments[0] + ' a').href",
            serde_json::json!([row]),
        )
        .await;
    assert!(
        link.as_str()
            .unwrap()
            .ends_with("/namespaces/default/workflows/replenish-LATE-1"),
        "{link}"
    );

    // Must show 3 in the page: a viewer sees it, but its Complete is refused and changes
    // nothing.
    sign_out(&browser).await;
    sign_in(&browser, &base, VIEWER_TOKEN).await;
    browser.wait_for(&row, Duration::from_secs(5)).await;
    let refused = complete_from_page(&browser, sku, 7).await;
    assert!(
        refused.contains("403") && refused.contains("admin"),
        "the viewer's Complete was not refused: {refused:?}"
    );
    assert_eq!(stock(&stack, sku).await, 0);
    assert!(
        stack
            .app
            .store
            .stock_receipts(sku)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        stack.status(sku).await.unwrap().state,
        RestockState::Overdue,
        "the viewer's Complete reached the run"
    );

    // The admin completes it from the page: 7 units, once, audited as "ops".
    sign_out(&browser).await;
    sign_in(&browser, &base, ADMIN_TOKEN).await;
    let done = complete_from_page(&browser, sku, 7).await;
    assert!(!done.contains("refused"), "{done}");
    stack
        .wait_for_state(sku, WAIT, RestockState::Completed)
        .await;
    stack.wait_closed(sku).await;
    assert_eq!(stock(&stack, sku).await, 7);
    assert_eq!(stack.app.store.stock_receipts(sku).await.unwrap().len(), 1);
    let audit = stack.app.store.audit_trail(sku).await.unwrap();
    let completions: Vec<_> = audit
        .iter()
        .filter(|a| a.action == "complete_factory_order")
        .collect();
    assert_eq!(completions.len(), 1, "{audit:?}");
    assert_eq!(completions[0].actor, "ops");
    // The page follows: the row is gone and the stock shows 7.
    let units = format!("#products tr[data-sku=\"{sku}\"] .units");
    wait_for("the page following", Duration::from_secs(10), || async {
        browser.text_of(&units).await.as_deref() == Some("7") && browser.find(&row).await.is_none()
    })
    .await;

    // Cancel from the page, with a reason: the run ends Cancelled, nothing is added, and the
    // audit trail keeps the reason under the admin's name.
    let sku = "LATE-2";
    add_product(&stack, sku, 0, 0).await;
    buy_with_token(&mut sales, sku).await;
    stack
        .wait_for_state(sku, WAIT, RestockState::AwaitingFactory)
        .await;
    confirm_from_page(&browser, sku, "cancel", "reason", "supplier recall").await;
    stack
        .wait_for_state(sku, WAIT, RestockState::Cancelled)
        .await;
    assert_eq!(stock(&stack, sku).await, 0);
    // The page's call records the audit after the run accepted the cancel: wait for it.
    let store = stack.app.store.clone();
    stack
        .wait_until("the cancel's audit record", WAIT, || {
            let store = store.clone();
            async move {
                store.audit_trail(sku).await.unwrap().iter().any(|a| {
                    a.action == "cancel_replenishment"
                        && a.actor == "ops"
                        && a.reason == "supplier recall"
                })
            }
        })
        .await;

    if let Some(path) = std::env::var_os("RESTOCK_CONSOLE_SCREENSHOT") {
        demo_load(&mut sales, &base).await;
        std::fs::write(&path, browser.screenshot().await).unwrap();
        eprintln!("screenshot written to {}", path.to_string_lossy());
    }
    browser.quit().await;
    stack.stop().await;
}
