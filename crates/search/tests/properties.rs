//! Property tests of the search-parameter parser (every search URL goes through it): on
//! any query it answers without panicking, with an Issue naming what it refuses; a query
//! of real parameters, modifiers and prefixes parses or is refused, never both nor a panic;
//! and the request bounds hold.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use fhir_model::ResourceType;
use proptest::prelude::*;

fn patient() -> ResourceType {
    ResourceType::parse("Patient").unwrap()
}

fn observation() -> ResourceType {
    ResourceType::parse("Observation").unwrap()
}

/// A `name[:modifier]=[prefix]value` pair from Observation's real parameters.
fn pair() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "code",
        "date",
        "value-quantity",
        "subject",
        "patient",
        "status",
        "_id",
        "_lastUpdated",
        "_sort",
        "_count",
        "_include",
        "_revinclude",
        "_has:Observation:subject:code",
        "subject:Patient.name",
        "component-code-value-quantity",
        "_summary",
        "_elements",
        "_total",
        "identifier",
        "category",
    ]);
    let modifiers = prop::sample::select(vec![
        "",
        ":missing",
        ":exact",
        ":contains",
        ":not",
        ":text",
        ":of-type",
        ":below",
        ":in",
        ":identifier",
    ]);
    let prefixes = prop::sample::select(vec!["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]);
    let values = prop_oneof![
        Just("2020-01-01".to_string()),
        Just("2020-01-01T10:00:00Z".to_string()),
        Just("http://loinc.org|8867-4".to_string()),
        Just("5.4|http://unitsofmeasure.org|mg".to_string()),
        Just("Patient/p1".to_string()),
        Just("true".to_string()),
        Just("-date,code".to_string()),
        "[ -~]{0,12}".prop_map(|s| s),
    ];
    (names, modifiers, prefixes, values).prop_map(|(n, m, p, v)| {
        let v: String = form_urlencoded::byte_serialize(format!("{p}{v}").as_bytes()).collect();
        format!("{n}{m}={v}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_query_is_answered(q in "\\PC{0,96}") {
        let _ = search::parse_query(patient(), &q);
        let _ = search::parse_system_query(&q);
    }

    #[test]
    fn real_parameters_parse_or_are_refused(pairs in prop::collection::vec(pair(), 0..8)) {
        let q = pairs.join("&");
        if let Err(issue) = search::parse_query(observation(), &q) {
            prop_assert!(!issue.diagnostics.is_empty(), "{}", q);
        }
    }
}

#[test]
fn the_bounds_hold() {
    let values: Vec<String> = (0..search::MAX_VALUES).map(|i| format!("x{i}")).collect();
    assert!(search::parse_query(patient(), &format!("_id={}", values.join(","))).is_ok());
    let one_more = format!("_id={},y", values.join(","));
    assert!(search::parse_query(patient(), &one_more).unwrap_err().diagnostics.contains("at most"));
    let params: Vec<String> = (0..search::MAX_PARAMETERS).map(|i| format!("_id=x{i}")).collect();
    assert!(search::parse_query(patient(), &params.join("&")).is_ok());
    let over = format!("{}&_id=y", params.join("&"));
    assert!(search::parse_query(patient(), &over).unwrap_err().diagnostics.contains("at most"));
}

#[test]
fn deep_chains_are_refused_not_a_crash() {
    for depth in [10, 1_000, 50_000] {
        let has = format!("{}code=x", "_has:Observation:subject:".repeat(depth));
        let _ = search::parse_query(patient(), &has);
        let chain = format!("{}name=x", "general-practitioner:Patient.".repeat(depth));
        let _ = search::parse_query(patient(), &chain);
        let include = format!("_include={}", "Patient:general-practitioner:".repeat(depth));
        let _ = search::parse_query(patient(), &include);
    }
}

#[test]
fn chains_at_their_bound_and_past_it() {
    let hop = "general-practitioner:Practitioner.";
    let at = format!("{}name=x", "organization.".repeat(search::MAX_HOPS));
    let past = format!("{}name=x", "organization.".repeat(search::MAX_HOPS + 1));
    let err = |q: &str| search::parse_query(patient(), q).err().map(|e| e.diagnostics);
    assert!(err(&past).is_some_and(|d| d.contains("hops; at most 8")), "{:?}", err(&past));
    assert!(err(&at).is_none_or(|d| !d.contains("hops")), "at the bound: not refused for its length");
    assert!(err(&format!("{hop}name=x")).is_none());
    // a system search repeating one type is one type
    let q = search::parse_system_query(&format!("_type={}", vec!["Patient"; 50_000].join(","))).unwrap();
    assert_eq!(q.types.len(), 1);
}
