//! The official FHIRPath Patch test cases (`shared/fhir/test-cases/r4/patch/
//! fhir-patch-tests.xml`), converted from XML, applied with our FHIRPath Patch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support {
    pub mod fhir_xml;
}

use std::path::PathBuf;

use serde_json::Value;
use support::fhir_xml;

fn suite() -> PathBuf {
    std::env::var("MEDKARTA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("fhir/test-cases/r4/patch/fhir-patch-tests.xml")
}

/// Remove empty arrays/objects left by deletions of the XML form (not valid JSON FHIR),
/// and compare narrative without its layout whitespace.
fn tidy(v: &mut Value) {
    if let Value::Object(o) = v {
        for (k, c) in o.iter_mut() {
            if let (true, Value::String(div)) = (k == "div", &c) {
                *c = Value::String(
                    div.replace("&quot;", "\"").split_whitespace().collect::<Vec<_>>().join(" ").replace("> <", "><"),
                );
            }
            tidy(c);
        }
        o.retain(|_, c| {
            !matches!(c, Value::Array(a) if a.is_empty()) && !matches!(c, Value::Object(m) if m.is_empty())
        });
    }
    if let Value::Array(a) = v {
        a.iter_mut().for_each(tidy);
    }
}

#[test]
fn official_fhirpath_patch_cases() {
    let xml = std::fs::read_to_string(suite()).expect("the FHIRPath Patch suite (set MEDKARTA_SHARED)");
    let tests = fhir_xml::parse(&xml);
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in &tests.children {
        let name = case.attr("name").unwrap_or_default().to_string();
        let input = fhir_xml::resource(&case.child("input").unwrap().children[0]);
        let diff = fhir_xml::resource(&case.child("diff").unwrap().children[0]);
        let expected_error = case.child("error").is_some();
        let mut doc = input.clone();
        let result = fhir_rest::fhirpath_patch::apply(&mut doc, &diff);
        match (result, case.child("output")) {
            (Err(_), _) if expected_error => passed += 1,
            (Ok(()), Some(out)) => {
                let mut expected = fhir_xml::resource(&out.children[0]);
                tidy(&mut doc);
                tidy(&mut expected);
                if doc == expected {
                    passed += 1;
                } else {
                    failures.push(format!("{name}: got {doc}\n   expected {expected}"));
                }
            }
            (r, _) => failures.push(format!("{name}: {:?}", r.err().map(|e| e.outcome.to_json().to_string()))),
        }
    }
    println!("FHIRPath Patch: {passed}/{} official cases pass", tests.children.len());
    for f in &failures {
        println!("  {f}");
    }
    assert!(failures.is_empty(), "{} cases fail", failures.len());
}
