//! Property tests of the FHIRPath parser and evaluator (expressions come from stored
//! SearchParameters, FHIRPath Patch and invariants): on any text the parser answers
//! without panicking, deep nesting is refused rather than overflowing the stack, and what
//! parses evaluates on a real resource without panicking.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use proptest::prelude::*;
use serde_json::json;

/// Expression-shaped text: names, literals, operators and functions in any order.
fn expression() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("Patient".to_string()),
        Just("name".to_string()),
        Just("given".to_string()),
        Just("birthDate".to_string()),
        Just(".".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[0]".to_string()),
        Just(" | ".to_string()),
        Just(" and ".to_string()),
        Just(" = ".to_string()),
        Just(" + ".to_string()),
        Just("'x'".to_string()),
        Just("1".to_string()),
        Just("@2020-01-01".to_string()),
        Just("where(".to_string()),
        Just("exists()".to_string()),
        Just("count()".to_string()),
        Just("$this".to_string()),
        Just("%resource".to_string()),
        Just("ofType(HumanName)".to_string()),
        "[ -~]{0,3}".prop_map(|s| s),
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

fn patient() -> serde_json::Value {
    json!({"resourceType": "Patient", "id": "p1", "birthDate": "1980-04-04",
        "name": [{"family": "Иванов", "given": ["Алексей", "Владимирович"]}],
        "telecom": [{"system": "phone", "value": "+7 999"}]})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_text_is_answered(s in "\\PC{0,64}") {
        let _ = fhirpath::parse(&s);
    }

    #[test]
    fn what_parses_evaluates(s in expression()) {
        let resource = patient();
        if let Ok(expr) = fhirpath::parse(&s) {
            let _ = fhirpath::evaluate(&expr, &resource);
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    for depth in [200, 10_000, 200_000] {
        let deep = [
            format!("{}1{}", "(".repeat(depth), ")".repeat(depth)),
            format!("{}1", "-".repeat(depth)),
            "name.".repeat(depth) + "given",
            format!("1{}", " + 1".repeat(depth)),
            format!("{}name{}", "where(".repeat(depth), ")".repeat(depth)),
        ];
        for e in deep {
            assert!(fhirpath::parse(&e).is_err(), "refused: {}", &e[..40]);
        }
    }
    // within the bound, the same shapes parse
    assert!(fhirpath::parse(&format!("{}1{}", "(".repeat(50), ")".repeat(50))).is_ok());
    assert!(fhirpath::parse(&("name.".repeat(50) + "given")).is_ok());
}
