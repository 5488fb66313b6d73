//! One module per subcommand.

pub mod client;
pub mod gateway;
pub mod migrate;
