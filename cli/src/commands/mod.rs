//! One module per subcommand.

pub mod client;
pub mod factory;
pub mod gateway;
pub mod migrate;
pub mod worker;
