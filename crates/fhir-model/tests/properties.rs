//! Property tests of the JSON checks every request body goes through: on any bytes they
//! answer without panicking, and they find a repeated property exactly when there is one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use fhir_model::json::duplicate_key;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// JSON values a few levels deep, with object keys from a small set (so that nested
/// objects reuse names, as resources do).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zа-я0-9 \"\\\\]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]{1,2}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_are_answered(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = duplicate_key(&bytes);
    }

    #[test]
    fn objects_without_repeats_have_none(v in value()) {
        let text = serde_json::to_string(&Value::Object(Map::from_iter([("root".to_string(), v)]))).unwrap();
        prop_assert_eq!(duplicate_key(text.as_bytes()), None);
    }

    #[test]
    fn a_repeated_property_is_found(v in value(), key in "[a-e]{1,2}") {
        let member = serde_json::to_string(&v).unwrap();
        let text = format!("{{\"resourceType\":\"Basic\",\"{key}\":{member},\"x\":1,\"{key}\":{member}}}");
        prop_assert!(duplicate_key(text.as_bytes()).is_some(), "{}", text);
    }
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    for depth in [200, 10_000, 100_000] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let _ = duplicate_key(text.as_bytes());
        let obj = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let _ = duplicate_key(obj.as_bytes());
    }
}
