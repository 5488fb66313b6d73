//! The `restock.v1` gRPC services. Each handler validates its input through
//! `restock_inventory::validate` (via the store) and maps failures with [`status`].

pub mod inventory;
pub mod replenishment;
pub mod sales;
pub mod status;

pub use inventory::InventoryApi;
pub use replenishment::ReplenishmentApi;
pub use sales::SalesApi;
