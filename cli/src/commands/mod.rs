//! One module per subcommand.

pub(crate) mod client;
pub(crate) mod dev;
pub(crate) mod factories;
pub(crate) mod factory;
pub(crate) mod gateway;
pub(crate) mod migrate;
pub(crate) mod product;
pub(crate) mod replenishments;
pub(crate) mod worker;
