//! The `restock.v1` gRPC contract: messages and tonic clients/servers generated from
//! `proto/restock/v1/*.proto` at build time (protox, no `protoc`).
//!
//! External clients are written against these names: add fields freely, never rename.

/// Package `restock.v1`: SalesService, InventoryService, ReplenishmentService.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("restock.v1");
}

/// Encoded `FileDescriptorSet` of every restock proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/restock_descriptor.bin"));
