//! Any bytes as a factory callback body: the parser never panics, and anything it accepts is a
//! valid order with a strictly parsed count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use restock_factory::wire::parse_callback_body;

fuzz_target!(|data: &[u8]| {
    if let Ok(order) = parse_callback_body(data) {
        assert!(order.validate().is_ok());
        let count = order.quantity().expect("accepted bodies have a valid count");
        assert!(count >= 1);
    }
});
