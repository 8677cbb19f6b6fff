//! Every example of the R4 specification (npm package `hl7.fhir.r4.examples`) is accepted
//! by `update` (create with its own id), stored, and read back equal to what was sent
//! apart from `meta.versionId`/`meta.lastUpdated`. The examples that the specification
//! itself gets wrong are listed, with the reason, in `known-invalid-examples.txt`; the test
//! also fails if one of those starts passing, so the list stays true.
//!
//! The package is fetched by `scripts/test.sh` into `$MEDKARTA_R4_EXAMPLES`
//! (default `~/.cache/medkarta/r4-examples/package`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use fhir_rest::{Body, Config, Engine, Method, Request};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    let dir = std::env::var("MEDKARTA_R4_EXAMPLES").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/medkarta/r4-examples/package")
    });
    assert!(
        dir.join("Patient-example.json").exists(),
        "the R4 examples are missing at {}: run scripts/test.sh (it fetches npm hl7.fhir.r4.examples) or set MEDKARTA_R4_EXAMPLES",
        dir.display()
    );
    dir
}

fn strip_version_meta(v: &mut Value) {
    if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            v.as_object_mut().map(|o| o.remove("meta"));
        }
    }
}

#[test]
fn every_r4_example_round_trips_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    round_trip_all(Arc::new(store_sqlite::SqliteStore::open(data.path()).unwrap()));
}

#[test]
fn every_r4_example_round_trips_on_postgres() {
    let db = store_tests::PgDatabase::create();
    round_trip_all(Arc::new(store_postgres::PostgresStore::open(&db.url).unwrap()));
}

fn round_trip_all(store: Arc<dyn store::Store>) {
    let dir = examples_dir();
    let engine = Engine::new(
        fhir_rest::Guard::open(store),
        Config { max_bundle_entries: 100_000, ..Config::default() },
        fhir_rest::operations::Operations::standard(),
    );

    let known: BTreeMap<String, String> = include_str!("known-invalid-examples.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':').map(|(f, why)| (f.trim().to_string(), why.trim().to_string())))
        .collect();

    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut checked = 0;
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") || name == "package.json" || name.starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let sent: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (Some(rt), Some(id)) = (sent["resourceType"].as_str(), sent["id"].as_str()) else {
            continue; // not a resource with an id (e.g. the IG definition)
        };
        checked += 1;
        let mut req = Request::new(test_actor(), Method::Put, format!("{rt}/{id}"), "");
        req.body = Body::Json(sent.clone());
        let r = engine.handle(&req);
        if r.status != 201 {
            let why = r.body_json().map(|b| {
                b["issue"].as_array().map(|is| {
                    is.iter()
                        .filter(|i| i["severity"] == "error")
                        .map(|i| {
                            format!(
                                "{} {}",
                                i["expression"][0].as_str().unwrap_or(""),
                                i["diagnostics"].as_str().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            });
            failures.insert(name, format!("{} {}", r.status, why.flatten().unwrap_or_default()));
            continue;
        }
        let mut back =
            engine.handle(&Request::new(test_actor(), Method::Get, format!("{rt}/{id}"), "")).body_json().unwrap();
        let mut expected = sent;
        strip_version_meta(&mut back);
        strip_version_meta(&mut expected);
        if back != expected {
            failures.insert(name, "read back differs from what was sent".into());
        }
    }
    assert!(checked > 2900, "only {checked} examples found in {}", dir.display());
    let unexpected: Vec<String> =
        failures.iter().filter(|(f, _)| !known.contains_key(*f)).map(|(f, w)| format!("{f}: {w}")).collect();
    let now_pass: Vec<&String> = known.keys().filter(|f| !failures.contains_key(*f)).collect();
    println!("{checked} examples, {} rejected as known-invalid", failures.len() - unexpected.len());
    assert!(unexpected.is_empty(), "{} examples rejected unexpectedly:\n{}", unexpected.len(), unexpected.join("\n"));
    assert!(now_pass.is_empty(), "listed as invalid but now accepted (remove them from the list): {now_pass:?}");
}

fn test_actor() -> fhir_rest::Principal {
    fhir_rest::Principal::System(fhir_rest::SystemActor::new("system:test"))
}
