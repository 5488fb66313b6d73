//! The demo catalogue: the legacy system's seed product `CP-502101` 부산도너츠 (19,900 won,
//! stock 3, factory `FF-500293`) and a few more, loaded by `restock migrate --demo`,
//! `restock dev` and the tests. Loading it again updates the catalogue but keeps stock.

use crate::{NewFactory, NewProduct, Sku, Store, StoreError};

/// The seed's product.
pub const DEMO_SKU: &str = "CP-502101";
/// The seed's factory.
pub const DEMO_FACTORY: &str = "FF-500293";

/// The demo factories.
pub fn factories() -> Vec<NewFactory> {
    vec![
        NewFactory {
            id: DEMO_FACTORY.to_owned(),
            name: "Busan Food Factory".to_owned(),
            manager_email: "factory-manager@example.com".to_owned(),
            api_url: None,
        },
        NewFactory {
            id: "FF-500777".to_owned(),
            name: "Seoul Bakery Works".to_owned(),
            manager_email: "seoul-manager@example.com".to_owned(),
            api_url: None,
        },
    ]
}

/// The demo products.
pub fn products() -> Vec<NewProduct> {
    let product = |sku: &'static str,
                   name: &str,
                   price,
                   stock,
                   reorder_point,
                   reorder_quantity,
                   factory: &str| {
        NewProduct {
            sku: Sku::known(sku),
            name: name.to_owned(),
            price,
            stock,
            reorder_point,
            reorder_quantity,
            factory_id: factory.to_owned(),
            policy: None,
        }
    };
    vec![
        product(DEMO_SKU, "부산도너츠", 19_900, 3, 0, 10, DEMO_FACTORY),
        product("CP-502102", "부산어묵", 12_000, 5, 0, 20, DEMO_FACTORY),
        product("CP-502103", "씨앗호떡", 8_500, 10, 2, 15, DEMO_FACTORY),
        product(
            "CP-700001",
            "Seoul Croissant",
            4_500,
            20,
            5,
            40,
            "FF-500777",
        ),
    ]
}

/// Loads the demo factories and products (idempotent: stock is set only on creation).
pub async fn load(store: &Store) -> Result<(), StoreError> {
    for f in factories() {
        store.upsert_factory(&f).await?;
    }
    for p in products() {
        store.upsert_product(&p).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_skus_pass_the_sku_rule() {
        for product in super::products() {
            assert!(
                crate::Sku::parse(&product.sku).is_ok(),
                "{} breaks the sku rule",
                product.sku
            );
        }
    }
}
