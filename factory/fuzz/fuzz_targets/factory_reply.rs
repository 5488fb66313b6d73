//! Any bytes as the factory's reply to an order: the parser never panics, and an accepted
//! reply always names the factory's order id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use restock_factory::wire::ManufactureReply;

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = ManufactureReply::parse(data) {
        assert!(!reply.data.id.is_empty());
    }
});
