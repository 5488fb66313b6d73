//! One module per subcommand.

pub mod client;
pub mod dev;
pub mod factories;
pub mod factory;
pub mod gateway;
pub mod migrate;
pub mod product;
pub mod replenishments;
pub mod worker;
