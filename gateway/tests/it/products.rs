//! The catalogue through real gRPC on a port-0 gateway, on SQLite, PostgreSQL and MariaDB: a
//! product may not be given a reorder quantity the legacy factory would refuse to produce
//! (INVALID_ARGUMENT naming the limit, nothing written), and the factory's maximum itself is
//! accepted. Partial updates (a field left out is kept), factories, the adaptive policy, and
//! ListReplenishments' keyset pages, on the same three databases.

use restock_inventory::entity::audit_log;
use restock_proto::v1::{GetProductRequest, Product, UpsertProductRequest};
use restock_testkit::{Backend, spawn_app};
use sea_orm::EntityTrait;
use tonic::Code;

/// The legacy factory's largest order (`MessageAttributeProductCnt`).
const FACTORY_MAX: i64 = restock_factory::wire::MAX_QUANTITY as i64;

async fn reorder_quantity_is_capped_at_the_factory_maximum(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut inventory = app.inventory().await;
    let sku = restock_inventory::demo::DEMO_SKU;
    let get = |sku: &str| GetProductRequest {
        sku: sku.to_owned(),
    };
    let upsert = |product: Product| UpsertProductRequest {
        product: Some(product),
        update_mask: None,
    };
    let snapshot = || restock_testkit::store_snapshot(&app.store);
    let original = inventory.get_product(get(sku)).await.unwrap().into_inner();
    let before = snapshot().await;

    // One unit more than the factory makes in one order: refused, naming the limit.
    for target in [sku, "CP-NEW-1"] {
        let too_many = Product {
            sku: target.to_owned(),
            reorder_quantity: FACTORY_MAX + 1,
            ..original.clone()
        };
        let status = inventory
            .upsert_product(upsert(too_many))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(&FACTORY_MAX.to_string())
                && status.message().contains("factory"),
            "the message does not name the factory's limit: {:?}",
            status.message()
        );
    }
    assert_eq!(
        snapshot().await,
        before,
        "a refused upsert changed something"
    );
    assert_eq!(
        inventory.get_product(get(sku)).await.unwrap().into_inner(),
        original
    );
    assert_eq!(
        inventory
            .get_product(get("CP-NEW-1"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // The factory's maximum itself is a valid reorder quantity.
    let at_limit = Product {
        reorder_quantity: FACTORY_MAX,
        ..original.clone()
    };
    let saved = inventory
        .upsert_product(upsert(at_limit.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.reorder_quantity, FACTORY_MAX);
    assert_eq!(
        inventory.get_product(get(sku)).await.unwrap().into_inner(),
        at_limit
    );
    app.stop().await;
}

restock_testkit::on_three_databases! {
    reorder_quantity_is_capped_at_the_factory_maximum => reorder_quantity_is_capped_at_the_factory_maximum;
}

/// The replenishment policy through gRPC and the planner's pass over real rows: a new product
/// is adaptive, bad settings are refused naming the field and change nothing, an unspecified
/// policy keeps the product's; the planner turns measured demand (sales) and lead time (an
/// order and its receipt) into the figures and requests a replenishment through the outbox
/// for a product already at or below its new point; fixed products are left alone; units
/// refused while out of stock are recorded as demand.
async fn adaptive_policy_on(backend: Backend) {
    use restock_inventory::entity::{
        demand_miss, factory_order, replenish_outbox, sale, stock_receipt,
    };
    use restock_proto::v1::{AdaptiveSettings, ReplenishmentPolicy};
    use sea_orm::{ActiveValue::Set, ColumnTrait, QueryFilter};

    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut inventory = app.inventory().await;
    let sku = "ADAPT-1";
    let new = Product {
        sku: sku.to_owned(),
        name: "adaptive".to_owned(),
        price: 100,
        stock: 15,
        reorder_point: 0,
        reorder_quantity: 10,
        factory_id: restock_inventory::demo::DEMO_FACTORY.to_owned(),
        ..Default::default()
    };
    let upsert = |product: Product| UpsertProductRequest {
        product: Some(product),
        update_mask: None,
    };
    let get = || GetProductRequest {
        sku: sku.to_owned(),
    };
    let created = inventory
        .upsert_product(upsert(new.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.policy(), ReplenishmentPolicy::Adaptive);
    let settings = created.adaptive.unwrap();
    assert_eq!(settings.service_level_percent, 99.0);
    assert_eq!(settings.min_reorder_quantity, 1);
    assert!(created.plan.is_none(), "not planned yet");

    // Bad settings: refused, naming the field; nothing changes.
    for (bad, field) in [
        (
            AdaptiveSettings {
                service_level_percent: 120.0,
                ..settings
            },
            "service level",
        ),
        (
            AdaptiveSettings {
                min_reorder_quantity: 50,
                max_reorder_quantity: 40,
                ..settings
            },
            "max_reorder_quantity",
        ),
    ] {
        let status = inventory
            .upsert_product(upsert(Product {
                adaptive: Some(bad),
                ..new.clone()
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
        assert_eq!(
            inventory.get_product(get()).await.unwrap().into_inner(),
            created
        );
    }

    // Fixed, then an update that does not name a policy keeps it; then adaptive again.
    let fixed = inventory
        .upsert_product(upsert(Product {
            policy: ReplenishmentPolicy::Fixed as i32,
            ..new.clone()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fixed.policy(), ReplenishmentPolicy::Fixed);
    let kept = inventory
        .upsert_product(upsert(new.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.policy(), ReplenishmentPolicy::Fixed);
    inventory
        .upsert_product(upsert(Product {
            policy: ReplenishmentPolicy::Adaptive as i32,
            ..new.clone()
        }))
        .await
        .unwrap();

    // 5 units/s for the last 100 s, and one delivery that took 4 s.
    let db = app.store.connection();
    let now = restock_inventory::store::now_ms();
    for i in 0..500_i64 {
        sale::Entity::insert(sale::ActiveModel {
            id: Set(format!("test-sale-{i}")),
            sku: Set(sku.to_owned()),
            quantity: Set(1),
            remaining_stock: Set(15),
            idempotency_key: Set(None),
            requester: Set("test".to_owned()),
            requested_replenishment: Set(false),
            created_at: Set(now - 100 - i * 200),
        })
        .exec_without_returning(db)
        .await
        .unwrap();
    }
    factory_order::Entity::insert(factory_order::ActiveModel {
        order_id: Set("test-order-1".to_owned()),
        sku: Set(sku.to_owned()),
        quantity: Set(10),
        factory_id: Set(restock_inventory::demo::DEMO_FACTORY.to_owned()),
        status: Set(restock_inventory::entity::factory_order::OrderStatus::Accepted),
        factory_reference: Set(None),
        attempts: Set(1),
        last_error: Set(None),
        created_at: Set(now - 60_000),
        updated_at: Set(now - 60_000),
    })
    .exec_without_returning(db)
    .await
    .unwrap();
    stock_receipt::Entity::insert(stock_receipt::ActiveModel {
        factory_order_id: Set("test-order-1".to_owned()),
        sku: Set(sku.to_owned()),
        quantity: Set(10),
        replenishment_id: Set(restock_inventory::replenishment_id(sku)),
        received_at: Set(now - 56_000),
    })
    .exec_without_returning(db)
    .await
    .unwrap();
    let demo_before = app
        .store
        .product(&restock_testkit::sku(restock_inventory::demo::DEMO_SKU))
        .await
        .unwrap();
    let summary = app
        .store
        .plan_replenishments(&restock_inventory::PlannerSettings::default())
        .await
        .unwrap();
    assert_eq!(summary.planned, 1, "{summary:?}");
    // Lead-time demand 20, plus safety stock for the (small) variability: 20 to 35; the
    // quantity covers 1.5 lead times (30).
    let planned = inventory.get_product(get()).await.unwrap().into_inner();
    let plan = planned.plan.unwrap();
    assert!((plan.demand_per_second - 5.0).abs() < 0.3, "{plan:?}");
    assert_eq!(plan.lead_time_seconds, 4.0);
    assert_eq!(plan.lead_time_observations, 1);
    assert!((20..=35).contains(&planned.reorder_point), "{planned:?}");
    assert!((28..=31).contains(&planned.reorder_quantity), "{planned:?}");
    assert_eq!(plan.computed_reorder_point, planned.reorder_point);
    // Stock 15 is at or below the new point: requested through the outbox.
    assert_eq!(summary.requested, vec![sku.to_owned()]);
    let intent = replenish_outbox::Entity::find()
        .filter(replenish_outbox::Column::Sku.eq(sku))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        intent.reason,
        restock_inventory::entity::replenish_outbox::IntentReason::Planner
    );
    // Fixed products (the demo's) are not touched.
    assert_eq!(
        app.store
            .product(&restock_testkit::sku(restock_inventory::demo::DEMO_SKU))
            .await
            .unwrap(),
        demo_before
    );

    // Units refused while out of stock become demand rows within a couple of seconds.
    let mut sales = app.sales().await;
    let empty = "CP-502101";
    let stock = restock_testkit::product_of(&app.store, empty).await.stock;
    app.store
        .adjust_stock(&restock_inventory::AdjustStock {
            sku: restock_testkit::sku(empty),
            delta: -stock,
            reason: "test".into(),
            actor: "test".into(),
        })
        .await
        .unwrap();
    sales
        .purchase(restock_proto::v1::PurchaseRequest {
            sku: empty.to_owned(),
            quantity: 3,
            idempotency_key: String::new(),
            requester: "test".to_owned(),
        })
        .await
        .unwrap();
    let mut missed = 0;
    for _ in 0..50 {
        missed = demand_miss::Entity::find()
            .filter(demand_miss::Column::Sku.eq(empty))
            .all(db)
            .await
            .unwrap()
            .iter()
            .map(|m| m.units)
            .sum::<i64>();
        if missed > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(missed, 3);
    app.stop().await;
}

restock_testkit::on_three_databases! {
    adaptive_policy => adaptive_policy_on;
}

/// Factories through gRPC: a bad email or URL is refused naming the field and writes
/// nothing; a good one is created, listed and audited.
async fn factories_on(backend: Backend) {
    use restock_proto::v1::{Factory, ListFactoriesRequest, UpsertFactoryRequest};
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut inventory = app.inventory().await;
    let good = Factory {
        id: "FF-T1".into(),
        name: "test works".into(),
        manager_email: "boss@works.example".into(),
        api_url: "https://works.example/api".into(),
    };
    let before = inventory
        .list_factories(ListFactoriesRequest {})
        .await
        .unwrap()
        .into_inner()
        .factories;
    for (bad, field) in [
        (
            Factory {
                manager_email: "boss at works".into(),
                ..good.clone()
            },
            "factory.manager_email",
        ),
        (
            Factory {
                api_url: "works.example".into(),
                ..good.clone()
            },
            "factory.api_url",
        ),
        (
            Factory {
                id: String::new(),
                ..good.clone()
            },
            "factory.id",
        ),
        (
            Factory {
                name: " ".into(),
                ..good.clone()
            },
            "factory.name",
        ),
    ] {
        let status = inventory
            .upsert_factory(UpsertFactoryRequest { factory: Some(bad) })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let details = tonic_types::StatusExt::get_error_details(&status);
        let violations = details.bad_request().unwrap().field_violations.clone();
        assert_eq!(violations[0].field, field, "{violations:?}");
    }
    assert_eq!(
        inventory
            .list_factories(ListFactoriesRequest {})
            .await
            .unwrap()
            .into_inner()
            .factories,
        before
    );
    let saved = inventory
        .upsert_factory(UpsertFactoryRequest {
            factory: Some(good.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved, good);
    let listed = inventory
        .list_factories(ListFactoriesRequest {})
        .await
        .unwrap()
        .into_inner()
        .factories;
    assert!(listed.contains(&good), "{listed:?}");
    let audited = audit_log::Entity::find()
        .all(app.store.connection())
        .await
        .unwrap();
    assert!(
        audited
            .iter()
            .any(|a| a.action == "upsert_factory" && a.sku == "FF-T1")
    );
    app.stop().await;
}

restock_testkit::on_three_databases! {
    factories => factories_on;
}

/// UpsertProduct on an existing product changes only what the client names: without a mask
/// the fields it sets (a field left out keeps its value, it is not zeroed); with a mask
/// exactly those fields (so zero can be set on purpose). A mask naming stock or an unknown
/// field is refused naming `update_mask`, and changes nothing.
async fn partial_updates_on(backend: Backend) {
    use prost_types::FieldMask;
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut inventory = app.inventory().await;
    let sku = restock_inventory::demo::DEMO_SKU;
    let get = || GetProductRequest {
        sku: sku.to_owned(),
    };
    let original = inventory.get_product(get()).await.unwrap().into_inner();
    assert!(!original.name.is_empty() && original.reorder_quantity > 0);

    // A client that knows only the price and reorder point sends only those.
    let priced = inventory
        .upsert_product(UpsertProductRequest {
            product: Some(Product {
                sku: sku.to_owned(),
                price: original.price + 7,
                reorder_point: original.reorder_point + 3,
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        priced,
        Product {
            price: original.price + 7,
            reorder_point: original.reorder_point + 3,
            ..original.clone()
        },
        "only the price and reorder point changed"
    );

    // Named in the mask, zero is written; fields set but not named are not.
    let zeroed = inventory
        .upsert_product(UpsertProductRequest {
            product: Some(Product {
                sku: sku.to_owned(),
                name: "ignored".into(),
                reorder_point: 0,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["product.reorder_point".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(zeroed.reorder_point, 0);
    assert_eq!(zeroed.name, original.name);
    assert_eq!(zeroed.reorder_quantity, original.reorder_quantity);

    for paths in [vec!["stock"], vec!["price", "colour"], vec!["plan"]] {
        let status = inventory
            .upsert_product(UpsertProductRequest {
                product: Some(Product {
                    sku: sku.to_owned(),
                    price: 1,
                    stock: 1,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{paths:?}: {status:?}"
        );
        let details = tonic_types::StatusExt::get_error_details(&status);
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "update_mask"
        );
    }
    assert_eq!(
        inventory.get_product(get()).await.unwrap().into_inner(),
        zeroed,
        "refused updates changed nothing"
    );
    app.stop().await;
}

restock_testkit::on_three_databases! {
    partial_updates => partial_updates_on;
}

/// ListReplenishments pages by keyset: replenishments that start or change between two page
/// reads neither repeat nor push a row out of the pages (an offset would do both), and a
/// made-up token is refused. GetReplenishment finds a run by its order, only for its product.
async fn replenishment_pages_on(backend: Backend) {
    use restock_inventory::ReplenishmentRecord;
    use restock_proto::v1::{
        GetReplenishmentRequest, ListReplenishmentsRequest,
        replenishment_service_client::ReplenishmentServiceClient,
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let record = |n: usize, started_at: i64| ReplenishmentRecord {
        order_id: format!("ord-page-{n}"),
        workflow_id: format!("replenish-PAGE-{n}"),
        sku: format!("PAGE-{n}"),
        state: restock_inventory::RestockState::AwaitingFactory,
        quantity: 5,
        overdue: false,
        started_at,
        updated_at: started_at,
        closed_by_temporal: None,
    };
    // Two rows share a start time: the order id breaks the tie.
    let starts = [1_000, 2_000, 3_000, 3_000, 4_000, 5_000];
    for (n, at) in starts.iter().enumerate() {
        app.store
            .record_replenishment(&record(n, *at))
            .await
            .unwrap();
    }
    let mut api = ReplenishmentServiceClient::new(app.channel().await);
    let page = |token: String| ListReplenishmentsRequest {
        page_size: 2,
        page_token: token,
        state: String::new(),
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    for round in 0.. {
        let reply = api
            .list_replenishments(page(token))
            .await
            .unwrap()
            .into_inner();
        seen.extend(reply.replenishments.iter().map(|r| r.sku.clone()));
        if round == 0 {
            // Meanwhile: a newer run starts and an older one changes state.
            app.store
                .record_replenishment(&record(9, 9_000))
                .await
                .unwrap();
            let mut changed = record(1, 2_000);
            changed.state = restock_inventory::RestockState::Completed;
            changed.updated_at = 9_500;
            app.store.record_replenishment(&changed).await.unwrap();
        }
        if reply.next_page_token.is_empty() {
            break;
        }
        token = reply.next_page_token;
    }
    assert_eq!(
        seen,
        ["PAGE-5", "PAGE-4", "PAGE-3", "PAGE-2", "PAGE-1", "PAGE-0"],
        "every row once, newest first"
    );
    let status = api
        .list_replenishments(page("not-a-token".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // One run by its order (no Temporal here: the read model answers), only for its product.
    let by_order = |sku: &str, order: &str| GetReplenishmentRequest {
        sku: sku.to_owned(),
        factory_order_id: order.to_owned(),
    };
    let one = api
        .get_replenishment(by_order("PAGE-1", "ord-page-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            one.factory_order_id.as_str(),
            one.state.as_str(),
            one.source.as_str()
        ),
        ("ord-page-1", "Completed", "read_model")
    );
    let other = api
        .get_replenishment(by_order("PAGE-2", "ord-page-1"))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound, "{other:?}");
    app.stop().await;
}

restock_testkit::on_three_databases! {
    replenishment_pages => replenishment_pages_on;
}

/// The monitoring files shipped in `monitoring/` (alert rules, Grafana dashboard) name only
/// metrics a gateway serves: a renamed metric breaks this test, not a silent dashboard.
#[tokio::test]
async fn monitoring_files_name_only_metrics_the_gateway_serves() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    // Labelled families show only once they have a sample: a sale, a replenishment in the
    // read model and a (refused) callback give them one.
    app.sales()
        .await
        .purchase(restock_proto::v1::PurchaseRequest {
            sku: restock_inventory::demo::DEMO_SKU.to_owned(),
            quantity: 1,
            idempotency_key: String::new(),
            requester: "test".to_owned(),
        })
        .await
        .unwrap();
    app.store
        .record_replenishment(&restock_inventory::ReplenishmentRecord {
            order_id: "order-m".into(),
            workflow_id: "replenish-M".into(),
            sku: "M".into(),
            state: restock_inventory::RestockState::Overdue,
            quantity: 1,
            overdue: true,
            started_at: 0,
            updated_at: 0,
            closed_by_temporal: None,
        })
        .await
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let refused = reqwest::Client::new()
        .post(format!(
            "http://{}/factory/callbacks/M/order-m?token=00",
            app.http_addr
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let metrics = app.metrics().await;
    let served: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring");
    let mut named = std::collections::BTreeSet::new();
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("restock_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            named.insert((file, name));
        }
    }
    assert!(named.len() >= 8, "{named:?}");
    for (file, name) in &named {
        let base = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            served.contains(base),
            "{file} names {name}, which the gateway does not serve; it serves {served:?}"
        );
    }
    app.stop().await;
}

/// The console's reads on each database: products with their stock, the open replenishments
/// (oldest first, ended ones left out), counts per state with ended ones counted for today,
/// and units sold per minute (the dialects' integer division and SUM differ).
async fn console_reads_on(backend: Backend) {
    use restock_inventory::{ReplenishmentRecord, RestockState};
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let now = restock_inventory::store::now_ms();
    let record = |sku: &str, state: RestockState, overdue: bool, at: i64| ReplenishmentRecord {
        order_id: format!("ord-{sku}"),
        workflow_id: format!("replenish-{sku}"),
        sku: sku.to_owned(),
        state,
        quantity: 5,
        overdue,
        started_at: at,
        updated_at: at,
        closed_by_temporal: None,
    };
    for r in [
        record("OPEN-LATE", RestockState::Overdue, true, now - 60_000),
        record(
            "OPEN-NEW",
            RestockState::AwaitingFactory,
            false,
            now - 1_000,
        ),
        record("DONE-TODAY", RestockState::Completed, false, now - 1_000),
        // Ended two days ago: neither open nor counted today.
        record(
            "DONE-OLD",
            RestockState::Completed,
            false,
            now - 2 * 86_400_000,
        ),
    ] {
        app.store.record_replenishment(&r).await.unwrap();
    }
    // A run Temporal closed before it recorded its end (Terminate), still Overdue in its row,
    // then a newer run of the product: the old row is marked, neither open nor counted.
    let closed = ReplenishmentRecord {
        order_id: "ord-GHOST-1".into(),
        ..record("GHOST", RestockState::Overdue, true, now - 120_000)
    };
    let newer = ReplenishmentRecord {
        order_id: "ord-GHOST-2".into(),
        ..record("GHOST", RestockState::CheckingStock, false, now - 500)
    };
    for r in [&closed, &newer] {
        app.store.record_replenishment(r).await.unwrap();
    }
    let marked = |order: &'static str| {
        let store = app.store.clone();
        async move {
            store
                .replenishment_by_order(&restock_inventory::Sku::parse("GHOST").unwrap(), order)
                .await
                .unwrap()
                .unwrap()
                .closed_by_temporal
        }
    };
    assert_eq!(marked("ord-GHOST-1").await.as_deref(), Some("Closed"));
    assert_eq!(marked("ord-GHOST-2").await, None, "the newer run is open");
    // The gateway saw how it closed: that replaces "Closed", once; an ended row is not marked.
    for (order, changed) in [
        ("ord-GHOST-1", true),
        ("ord-GHOST-1", false),
        ("ord-DONE-TODAY", false),
    ] {
        assert_eq!(
            app.store
                .record_closed_by_temporal(order, Some("Terminated"))
                .await
                .unwrap(),
            changed,
            "{order}"
        );
    }
    assert_eq!(marked("ord-GHOST-1").await.as_deref(), Some("Terminated"));
    let overdue = app
        .store
        .list_replenishments(Some(RestockState::Overdue), None, 10)
        .await
        .unwrap();
    assert_eq!(
        overdue.iter().map(|r| r.sku.as_str()).collect::<Vec<_>>(),
        ["OPEN-LATE"],
        "a closed run is not listed in its last state"
    );
    let by_state = app.store.replenishments_by_state().await.unwrap();
    assert!(
        by_state.contains(&(RestockState::Overdue, 1)),
        "the metric counts the closed run in no state: {by_state:?}"
    );
    let mut sales = app.sales().await;
    for quantity in [2, 3] {
        sales
            .purchase(restock_proto::v1::PurchaseRequest {
                sku: "CP-502103".to_owned(),
                quantity,
                idempotency_key: String::new(),
                requester: "test".to_owned(),
            })
            .await
            .unwrap();
    }

    let _ = rustls::crypto::ring::default_provider().install_default();
    let get = |path: &str| {
        let url = format!("http://{}{path}", app.http_addr);
        async move {
            let response = reqwest::get(&url).await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let snapshot = get("/api/console/snapshot").await;
    let products = snapshot["products"].as_array().unwrap();
    let hotteok = products
        .iter()
        .find(|p| p["sku"] == "CP-502103")
        .expect("the demo catalogue is listed");
    assert_eq!(hotteok["stock"], 5, "10 in the demo, 5 sold");
    assert_eq!(hotteok["reorder_point"], 2);
    assert_eq!(products.len(), restock_inventory::demo::products().len());

    let open: Vec<&str> = snapshot["open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sku"].as_str().unwrap())
        .collect();
    assert_eq!(
        open,
        ["OPEN-LATE", "OPEN-NEW", "GHOST"],
        "open ones, oldest first; not the closed run"
    );
    assert_eq!(snapshot["open"][0]["overdue"], true);
    let count = |state: &str| {
        snapshot["pipeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["state"] == state)
            .unwrap()["count"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(count("Overdue"), 1, "not the closed run");
    assert_eq!(count("AwaitingFactory"), 1);
    assert_eq!(count("CheckingStock"), 1);
    assert_eq!(count("Completed"), 1, "only today's completion counts");

    let history = get("/api/console/history").await;
    let sold: i64 = history["sales_per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let minute = m[0].as_i64().unwrap();
            assert_eq!(minute % 60_000, 0, "a minute's start: {m}");
            assert!(minute > now - 3_600_000 && minute <= now + 60_000, "{m}");
            m[1].as_i64().unwrap()
        })
        .sum();
    assert_eq!(sold, 5, "units sold in the last hour: {history}");

    // Bad input to the console's actions: a clear 400 (404 for an action it does not
    // have), and nothing changes.
    let before = get("/api/console/snapshot").await;
    let client = reqwest::Client::new();
    let complete = "/api/console/replenishments/OPEN-LATE/complete";
    for (path, body, status) in [
        (complete, "{\"quantity\": -1}", 400),
        (complete, "{\"units\": 3}", 400),
        (complete, "not json", 400),
        ("/api/console/replenishments/bad%20sku!/complete", "{}", 400),
        (complete, "{\"quantity\": 1000001}", 400),
        (
            "/api/console/replenishments/bad%20sku!/cancel",
            "{\"reason\": \"x\"}",
            400,
        ),
        ("/api/console/replenishments/OPEN-LATE/reset", "{}", 404),
    ] {
        let response = client
            .post(format!("http://{}{path}", app.http_addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path} {body}");
        let text = response.text().await.unwrap();
        assert!(text.contains("\"error\""), "{path} {body}: {text}");
        if status == 404 {
            assert!(text.contains("complete or cancel"), "{text}");
        }
    }
    assert_eq!(
        get("/api/console/snapshot").await,
        before,
        "bad input changed something"
    );
    // It runs again (the UI's Reset of the terminated run): seen so by the gateway, or when
    // it writes its row, it is open again.
    assert!(
        app.store
            .record_closed_by_temporal("ord-GHOST-1", None)
            .await
            .unwrap()
    );
    assert_eq!(marked("ord-GHOST-1").await, None);
    // The newer run's next write marks it again; the old run's own write clears it.
    app.store.record_replenishment(&newer).await.unwrap();
    assert_eq!(marked("ord-GHOST-1").await.as_deref(), Some("Closed"));
    app.store.record_replenishment(&closed).await.unwrap();
    assert_eq!(marked("ord-GHOST-1").await, None);

    // An ad that a run paused and that Temporal closed before the run resumed it: orphaned
    // only once no run of the product is open (and it is in stock: 5 here), resumed by one
    // claimer only.
    let sku = restock_inventory::Sku::parse("CP-502103").unwrap();
    app.store.set_ad_active(&sku, false).await.unwrap();
    let waiting = ReplenishmentRecord {
        order_id: "ord-HOTTEOK-1".into(),
        ..record("CP-502103", RestockState::AwaitingFactory, false, now)
    };
    app.store.record_replenishment(&waiting).await.unwrap();
    assert_eq!(app.store.orphaned_paused_ads().await.unwrap(), []);
    app.store
        .record_closed_by_temporal("ord-HOTTEOK-1", Some("Terminated"))
        .await
        .unwrap();
    // Sold out, it stays paused; in stock again, it is orphaned.
    for (delta, orphaned) in [(-5, false), (5, true)] {
        app.store
            .adjust_stock(&restock_inventory::AdjustStock {
                sku: sku.clone(),
                delta,
                reason: "test".into(),
                actor: "test".into(),
            })
            .await
            .unwrap();
        let found = app.store.orphaned_paused_ads().await.unwrap();
        assert_eq!(
            !found.is_empty(),
            orphaned,
            "stock moved by {delta}: {found:?}"
        );
    }
    assert_eq!(
        app.store.orphaned_paused_ads().await.unwrap(),
        [(sku.clone(), "ord-HOTTEOK-1".to_owned())]
    );
    assert!(app.store.claim_ad_resume(&sku).await.unwrap());
    assert!(
        !app.store.claim_ad_resume(&sku).await.unwrap(),
        "claimed twice"
    );
    assert_eq!(app.store.orphaned_paused_ads().await.unwrap(), []);
    app.stop().await;
}

restock_testkit::on_three_databases! {
    console_reads => console_reads_on;
}

/// An open console (its event stream) does not hold up the gateway's shutdown: the stream
/// ends when shutdown begins, and the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_console_does_not_hold_up_shutdown() {
    use std::time::Duration;
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut events = reqwest::get(format!("http://{}/api/console/events", app.http_addr))
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: snapshot") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("no snapshot within 10 s")
            .unwrap()
            .expect("the stream ended before its first snapshot");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("CP-502101"), "{seen}");
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the gateway did not stop while a console was open");
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = events.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the event stream did not end");
}
