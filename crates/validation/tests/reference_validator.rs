//! Agreement with the HL7 Java reference validator on the 188 base R4 cases of the
//! official test suite (`shared/fhir/test-cases/validator/manifest-r4-base.json`): our
//! verdict (errors or none) is compared with the recorded outcome of the Java validator.
//! The test prints the rate and every disagreement, and fails if the rate drops below
//! the level already reached, so it can only go up.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::PathBuf;

use serde_json::Value;

/// Agreement reached so far; raise it when the validator improves.
const FLOOR: usize = 140;

fn suite_dir() -> PathBuf {
    let dir = std::env::var("MEDKARTA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("fhir/test-cases/validator");
    assert!(
        dir.join("manifest-r4-base.json").exists(),
        "the validator test suite is missing at {} (set MEDKARTA_SHARED)",
        dir.display()
    );
    dir
}

fn read(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn agrees_with_the_reference_validator() {
    let dir = suite_dir();
    let manifest = read(dir.join("manifest-r4-base.json"));
    let cases = manifest["test-cases"].as_array().expect("test-cases");
    let mut agree = 0;
    let mut disagreements = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or_default();
        let expected = read(dir.join(case["java"].as_str().unwrap_or_default()));
        let java_errors: Vec<String> = expected["issue"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| matches!(i["severity"].as_str(), Some("error" | "fatal")))
            .map(|i| {
                i["details"]["text"].as_str().or(i["diagnostics"].as_str()).unwrap_or("").chars().take(120).collect()
            })
            .collect();
        let text = std::fs::read_to_string(dir.join(case["file"].as_str().unwrap_or_default())).unwrap_or_default();
        let ours: Vec<String> = match serde_json::from_str::<Value>(&text) {
            Ok(v) => validation::validate_resource(&v)
                .into_iter()
                .filter(fhir_model::Issue::is_error)
                .map(|i| format!("{}: {}", i.expression.join(","), i.diagnostics).chars().take(120).collect())
                .collect(),
            Err(e) => vec![format!("not JSON: {e}")],
        };
        if java_errors.is_empty() == ours.is_empty() {
            agree += 1;
        } else {
            disagreements.push(format!("{name}: java {java_errors:?} / ours {ours:?}"));
        }
    }
    println!(
        "agreement with the Java reference validator: {agree}/{} ({:.1}%)",
        cases.len(),
        100.0 * agree as f64 / cases.len() as f64
    );
    for d in &disagreements {
        println!("  {d}");
    }
    assert_eq!(cases.len(), 188);
    assert!(agree >= FLOOR, "agreement fell to {agree} (floor {FLOOR})");
}
