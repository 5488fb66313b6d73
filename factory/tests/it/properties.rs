//! Property tests over what arrives from outside: callback bodies and callback tokens never
//! panic the parsers, and whatever they accept is well-formed.

use proptest::prelude::*;
use restock_factory::callback::CallbackSigner;
use restock_factory::wire::{ManufactureReply, parse_callback_body};

fn signer() -> CallbackSigner {
    CallbackSigner::new("property-test-secret-0123456789").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_callback_parser(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(order) = parse_callback_body(&body) {
            // Whatever is accepted validates and has a strictly parsed count.
            prop_assert!(order.validate().is_ok());
            prop_assert!(order.quantity().is_ok());
        }
    }

    #[test]
    fn json_shaped_bodies_with_any_count_are_parsed_strictly(
        count in ".{0,12}",
        group in "[A-Za-z0-9._-]{0,80}",
    ) {
        let body = serde_json::json!({
            "MessageGroupId": group,
            "MessageAttributeProductId": "CP-502101",
            "MessageAttributeProductCnt": count,
            "MessageAttributeFactoryId": "FF-500293",
            "MessageAttributeRequester": "restock",
            "CallbackUrl": "http://127.0.0.1:8080/factory/callbacks/CP-502101/x?token=00",
        });
        if let Ok(order) = parse_callback_body(body.to_string().as_bytes()) {
            let n = order.quantity().unwrap();
            prop_assert!(n >= 1);
            prop_assert_eq!(count.trim_start_matches('0').to_owned(), n.to_string());
        }
    }

    #[test]
    fn arbitrary_reply_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = ManufactureReply::parse(&body);
    }

    #[test]
    fn only_the_real_token_verifies(sku in "[A-Za-z0-9-]{1,20}", order in "[A-Za-z0-9-]{1,40}", token in ".{0,80}") {
        let s = signer();
        let real = s.token(&sku, &order);
        prop_assert_eq!(s.verify(&sku, &order, &token), token == real);
        prop_assert!(s.verify(&sku, &order, &real));
    }
}
