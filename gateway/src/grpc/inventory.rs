//! `restock.v1.InventoryService`: the catalogue and manual stock changes.

use restock_inventory::planning::settings_of;
use restock_inventory::{
    AdaptiveSettings as StoreSettings, AdjustStock, NewFactory, NewProduct, PolicyChange,
    PolicyKind, ProductUpdate, ProductView, Sku, Store, StoreError,
};
use restock_proto::v1::{
    AdaptiveSettings, AdjustStockRequest, Factory, GetProductRequest, ListFactoriesRequest,
    ListFactoriesResponse, ListProductsRequest, ListProductsResponse, Product, ReplenishmentPlan,
    ReplenishmentPolicy, UpsertFactoryRequest, UpsertProductRequest,
    inventory_service_server::InventoryService,
};
use tonic::{Request, Response, Status};

use super::status::{self, from_store};
use crate::auth::Caller;

/// Products per page when the client asks for 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Most products per page.
const MAX_PAGE_SIZE: u32 = 500;

// UpsertProduct refuses a reorder quantity above the store's limit; that limit must be the
// factory's largest order, or a product could be given a quantity that can never be ordered.
const _: () = assert!(
    restock_inventory::validate::MAX_REORDER_QUANTITY == restock_factory::wire::MAX_QUANTITY as i64,
    "restock_inventory::validate::MAX_REORDER_QUANTITY must equal restock_factory::wire::MAX_QUANTITY"
);

/// InventoryService on top of the store.
#[derive(Debug, Clone)]
pub struct InventoryApi {
    store: Store,
}

impl InventoryApi {
    /// An InventoryService over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// The wire form of adaptive settings (the service level in percent).
pub fn settings_to_pb(s: StoreSettings) -> AdaptiveSettings {
    AdaptiveSettings {
        service_level_percent: s.service_level * 100.0,
        min_reorder_point: s.min_reorder_point,
        max_reorder_point: s.max_reorder_point,
        min_reorder_quantity: s.min_reorder_quantity,
        max_reorder_quantity: s.max_reorder_quantity,
    }
}

/// The wire form of a product.
pub fn to_pb(view: ProductView) -> Product {
    let p = view.product;
    let kind = view
        .policy
        .as_ref()
        .and_then(|row| PolicyKind::parse(&row.policy))
        .unwrap_or(PolicyKind::Fixed);
    let adaptive = view
        .policy
        .as_ref()
        .map(|row| settings_to_pb(settings_of(row)));
    let plan = view
        .policy
        .as_ref()
        .filter(|_| kind == PolicyKind::Adaptive)
        .and_then(|row| {
            let planned_at = row.planned_at?;
            let demand = row.demand_per_second.unwrap_or(0.0);
            Some(ReplenishmentPlan {
                demand_per_second: demand,
                demand_stddev_per_second: row.demand_stddev.unwrap_or(0.0),
                lead_time_seconds: row.lead_time_secs.unwrap_or(0.0),
                lead_time_stddev_seconds: row.lead_time_stddev.unwrap_or(0.0),
                lead_time_observations: u32::try_from(row.lead_time_observations).unwrap_or(0),
                computed_reorder_point: p.reorder_point,
                computed_reorder_quantity: p.reorder_quantity,
                cover_seconds: if demand > 0.0 {
                    p.stock as f64 / demand
                } else {
                    0.0
                },
                planned_at_unix_ms: planned_at,
            })
        });
    Product {
        sku: p.sku,
        name: p.name,
        price: p.price,
        stock: p.stock,
        reorder_point: p.reorder_point,
        reorder_quantity: p.reorder_quantity,
        factory_id: p.factory_id,
        ad_active: view.ad_active,
        policy: match kind {
            PolicyKind::Fixed => ReplenishmentPolicy::Fixed,
            PolicyKind::Adaptive => ReplenishmentPolicy::Adaptive,
        } as i32,
        adaptive,
        plan,
    }
}

/// The store's policy change from an UpsertProduct request: an unspecified policy keeps the
/// product's (a new product is adaptive); absent settings keep the product's.
fn policy_change(p: &Product) -> Result<PolicyChange, Status> {
    let kind = match ReplenishmentPolicy::try_from(p.policy) {
        Ok(ReplenishmentPolicy::Unspecified) => None,
        Ok(ReplenishmentPolicy::Fixed) => Some(PolicyKind::Fixed),
        Ok(ReplenishmentPolicy::Adaptive) => Some(PolicyKind::Adaptive),
        Err(_) => {
            return Err(status::invalid_field(
                "product.policy",
                "policy must be REPLENISHMENT_POLICY_FIXED or REPLENISHMENT_POLICY_ADAPTIVE",
            ));
        }
    };
    let adaptive = p.adaptive.as_ref().map(|a| StoreSettings {
        service_level: if a.service_level_percent == 0.0 {
            restock_inventory::policy::DEFAULT_SERVICE_LEVEL
        } else {
            a.service_level_percent / 100.0
        },
        min_reorder_point: a.min_reorder_point,
        max_reorder_point: a.max_reorder_point,
        min_reorder_quantity: a.min_reorder_quantity,
        max_reorder_quantity: a.max_reorder_quantity,
    });
    Ok(PolicyChange { kind, adaptive })
}

/// The fields UpsertProduct may change on an existing product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProductField {
    Name,
    Price,
    ReorderPoint,
    ReorderQuantity,
    FactoryId,
    Policy,
    Adaptive,
}

impl ProductField {
    const ALL: [(&'static str, ProductField); 7] = [
        ("name", ProductField::Name),
        ("price", ProductField::Price),
        ("reorder_point", ProductField::ReorderPoint),
        ("reorder_quantity", ProductField::ReorderQuantity),
        ("factory_id", ProductField::FactoryId),
        ("policy", ProductField::Policy),
        ("adaptive", ProductField::Adaptive),
    ];

    /// The fields a request names in its mask, or (no mask) the fields it sets.
    fn of_request(
        p: &Product,
        mask: Option<&prost_types::FieldMask>,
    ) -> Result<Vec<ProductField>, Status> {
        let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
            let set = [
                (!p.name.is_empty(), ProductField::Name),
                (p.price != 0, ProductField::Price),
                (p.reorder_point != 0, ProductField::ReorderPoint),
                (p.reorder_quantity != 0, ProductField::ReorderQuantity),
                (!p.factory_id.is_empty(), ProductField::FactoryId),
                (p.policy != 0, ProductField::Policy),
                (p.adaptive.is_some(), ProductField::Adaptive),
            ];
            return Ok(set
                .into_iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| f)
                .collect());
        };
        let mut fields = Vec::new();
        for path in &mask.paths {
            let name = path.strip_prefix("product.").unwrap_or(path);
            match Self::ALL.iter().find(|(n, _)| *n == name) {
                Some((_, field)) => fields.push(*field),
                None if name == "sku" => {}
                None if name == "stock" => {
                    return Err(status::invalid_field(
                        "update_mask",
                        "stock is not changed by UpsertProduct; use AdjustStock (restock stock adjust)",
                    ));
                }
                None => {
                    return Err(status::invalid_field(
                        "update_mask",
                        format!(
                            "{:?} is not a field UpsertProduct changes; one of: {}",
                            path.chars().take(60).collect::<String>(),
                            Self::ALL.map(|(n, _)| n).join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(fields)
    }
}

/// The change to an existing product: the masked fields of `p`.
fn product_update(p: &Product, fields: &[ProductField], policy: PolicyChange) -> ProductUpdate {
    let has = |f| fields.contains(&f);
    ProductUpdate {
        name: has(ProductField::Name).then(|| p.name.clone()),
        price: has(ProductField::Price).then_some(p.price),
        reorder_point: has(ProductField::ReorderPoint).then_some(p.reorder_point),
        reorder_quantity: has(ProductField::ReorderQuantity).then_some(p.reorder_quantity),
        factory_id: has(ProductField::FactoryId).then(|| p.factory_id.clone()),
        policy: PolicyChange {
            kind: policy.kind.filter(|_| has(ProductField::Policy)),
            adaptive: policy.adaptive.filter(|_| has(ProductField::Adaptive)),
        },
    }
}

#[tonic::async_trait]
impl InventoryService for InventoryApi {
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<Product>, Status> {
        let sku = Sku::parse(&request.into_inner().sku).map_err(from_store)?;
        let view = self.store.product(&sku).await.map_err(from_store)?;
        Ok(Response::new(to_pb(view)))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let r = request.into_inner();
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        // The page token is the last sku of the previous page.
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(Sku::parse(token).map_err(|_| {
                status::invalid_field("page_token", "page_token is not one this server issued")
            })?),
        };
        let mut views = self
            .store
            .list_products(after.as_ref(), u64::from(page_size) + 1)
            .await
            .map_err(from_store)?;
        let more = views.len() > page_size as usize;
        views.truncate(page_size as usize);
        let next_page_token = if more {
            views
                .last()
                .map(|v| v.product.sku.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListProductsResponse {
            products: views.into_iter().map(to_pb).collect(),
            next_page_token,
        }))
    }

    async fn upsert_product(
        &self,
        request: Request<UpsertProductRequest>,
    ) -> Result<Response<Product>, Status> {
        let actor = Caller::of(&request);
        let r = request.into_inner();
        let Some(p) = r.product else {
            return Err(status::invalid_field("product", "product is required"));
        };
        let policy = policy_change(&p)?;
        let fields = ProductField::of_request(&p, r.update_mask.as_ref())?;
        let sku = Sku::parse(&p.sku).map_err(|e| from_store(e.within("product")))?;
        let update = product_update(&p, &fields, policy);
        let (view, detail) = match self.store.update_product(&sku, &update).await {
            Ok(view) => (view, format!("updated {update:?}")),
            // A new product: made from all of its fields.
            Err(StoreError::NotFound(_)) => {
                let view = self
                    .store
                    .upsert_product(&NewProduct {
                        sku: sku.clone(),
                        name: p.name.clone(),
                        price: p.price,
                        stock: p.stock,
                        reorder_point: p.reorder_point,
                        reorder_quantity: p.reorder_quantity,
                        factory_id: p.factory_id.clone(),
                        policy: Some(policy),
                    })
                    .await
                    .map_err(|e| from_store(e.within("product")))?;
                let detail = format!(
                    "created name={:?} price={} stock={} reorder_point={} reorder_quantity={} factory={} policy={:?}",
                    p.name,
                    p.price,
                    p.stock,
                    p.reorder_point,
                    p.reorder_quantity,
                    p.factory_id,
                    ReplenishmentPolicy::try_from(p.policy).unwrap_or_default()
                );
                (view, detail)
            }
            Err(e) => return Err(from_store(e.within("product"))),
        };
        self.store
            .record_audit(&actor, "upsert_product", &sku, &detail, "")
            .await
            .map_err(from_store)?;
        Ok(Response::new(to_pb(view)))
    }

    async fn adjust_stock(
        &self,
        request: Request<AdjustStockRequest>,
    ) -> Result<Response<Product>, Status> {
        let actor = Caller::of(&request);
        let r = request.into_inner();
        let sku = Sku::parse(&r.sku).map_err(from_store)?;
        let view = self
            .store
            .adjust_stock(&AdjustStock {
                sku,
                delta: r.delta,
                reason: r.reason,
                actor,
            })
            .await
            .map_err(from_store)?;
        Ok(Response::new(to_pb(view)))
    }

    async fn upsert_factory(
        &self,
        request: Request<UpsertFactoryRequest>,
    ) -> Result<Response<Factory>, Status> {
        let actor = Caller::of(&request);
        let Some(f) = request.into_inner().factory else {
            return Err(status::invalid_field("factory", "factory is required"));
        };
        let factory = NewFactory {
            id: f.id.clone(),
            name: f.name.clone(),
            manager_email: f.manager_email.clone(),
            api_url: (!f.api_url.is_empty()).then(|| f.api_url.clone()),
        };
        self.store
            .upsert_factory(&factory)
            .await
            .map_err(|e| from_store(e.within("factory")))?;
        let detail = format!(
            "name={:?} manager_email={:?} api_url={:?}",
            f.name, f.manager_email, f.api_url
        );
        self.store
            .record_audit(&actor, "upsert_factory", &f.id, &detail, "")
            .await
            .map_err(from_store)?;
        Ok(Response::new(f))
    }

    async fn list_factories(
        &self,
        _request: Request<ListFactoriesRequest>,
    ) -> Result<Response<ListFactoriesResponse>, Status> {
        let factories = self
            .store
            .list_factories()
            .await
            .map_err(from_store)?
            .into_iter()
            .map(|f| Factory {
                id: f.id,
                name: f.name,
                manager_email: f.manager_email,
                api_url: f.api_url.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(ListFactoriesResponse { factories }))
    }
}
