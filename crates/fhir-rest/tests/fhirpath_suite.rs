//! The official FHIRPath conformance suite for R4 (`shared/fhir/test-cases/r4/fhirpath/
//! tests-fhir-r4.xml`, inputs converted from XML) against our FHIRPath engine. Prints the
//! pass rate and fails if it drops below the level already reached.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support {
    pub mod fhir_xml;
}

use std::collections::HashMap;
use std::path::PathBuf;

use fhirpath::Item;
use serde_json::Value;
use support::fhir_xml;

/// Tests passing so far; raise it when the engine improves.
const FLOOR: usize = 926;

fn dir() -> PathBuf {
    std::env::var("MEDKARTA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("fhir/test-cases/r4")
}

fn load_input(name: &str, cache: &mut HashMap<String, Value>) -> Value {
    if let Some(v) = cache.get(name) {
        return v.clone();
    }
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let v = if name.ends_with(".json") {
        serde_json::from_str(&text).unwrap()
    } else {
        fhir_xml::resource(&fhir_xml::parse(&text))
    };
    cache.insert(name.to_string(), v.clone());
    v
}

/// Does one result item match an expected `<output type=..>text</output>`?
fn matches(item: &Item<'_>, ty: &str, text: &str) -> bool {
    let text = text.trim_start_matches('@');
    // FHIRPath's string form of the item (`4 'mg'`, `2014-01`, JSON for complex nodes)
    let as_text = item.to_string();
    match ty {
        "integer" | "decimal" => as_text.parse::<f64>().ok() == text.parse::<f64>().ok(),
        _ => as_text.trim_start_matches('@') == text,
    }
}

#[test]
fn official_fhirpath_suite() {
    let xml = std::fs::read_to_string(dir().join("fhirpath/tests-fhir-r4.xml"))
        .expect("the FHIRPath suite (set MEDKARTA_SHARED)");
    let suite = fhir_xml::parse(&xml);
    let mut cache = HashMap::new();
    let (mut total, mut passed) = (0, 0);
    let mut failed_groups: HashMap<String, usize> = HashMap::new();
    for group in suite.children.iter().filter(|g| g.name == "group") {
        for test in group.children.iter().filter(|t| t.name == "test") {
            total += 1;
            let Some(expr_node) = test.child("expression") else { continue };
            let invalid = expr_node.attr("invalid").is_some();
            // predicate="true": the result is read as a boolean, `exists()`
            let predicate = test.attr("predicate") == Some("true");
            let input = match test.attr("inputfile") {
                Some(f) => load_input(f, &mut cache),
                None => Value::Null,
            };
            let outputs: Vec<(String, String)> = test
                .children
                .iter()
                .filter(|o| o.name == "output")
                .map(|o| (o.attr("type").unwrap_or("").to_string(), o.text.clone()))
                .collect();
            let result = fhirpath::parse_supported(&expr_node.text)
                .and_then(|e| fhirpath::evaluate(&e, &input).map(|r| r.len()).and(Ok(e)));
            let ok = match result {
                Err(_) => invalid,
                Ok(_) if invalid => false,
                Ok(e) => {
                    let mut items = fhirpath::evaluate(&e, &input).unwrap_or_default();
                    if predicate {
                        items = vec![Item::Bool(!items.is_empty())];
                    }
                    items.len() == outputs.len() && items.iter().zip(&outputs).all(|(i, (t, x))| matches(i, t, x))
                }
            };
            if ok {
                passed += 1;
            } else {
                if std::env::var("FHIRPATH_SUITE_VERBOSE").is_ok() {
                    println!(
                        "FAIL {} [{}]: {}",
                        test.attr("name").unwrap_or(""),
                        group.attr("name").unwrap_or(""),
                        expr_node.text
                    );
                }
                *failed_groups.entry(group.attr("name").unwrap_or("").to_string()).or_default() += 1;
            }
        }
    }
    let mut groups: Vec<_> = failed_groups.into_iter().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    println!("FHIRPath suite: {passed}/{total} pass ({:.1}%)", 100.0 * passed as f64 / total as f64);
    println!("failures by group: {groups:?}");
    assert!(passed >= FLOOR, "pass count fell to {passed} (floor {FLOOR})");
}
