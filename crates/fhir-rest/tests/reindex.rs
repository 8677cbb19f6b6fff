//! The background reindex of a custom search parameter resumes from the position its
//! last committed batch saved (as after a crash), rather than starting over.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::Arc;
use std::time::Duration;

use fhir_rest::{Body, Config, Engine, Method, Request};
use serde_json::{Value, json};

const EXT: &str = "http://example.org/fhir/StructureDefinition/blood-group";

fn put(engine: &Engine, path: &str, body: Value) {
    let mut req = Request::new(test_actor(), Method::Put, path, "");
    req.body = Body::Json(body);
    let r = engine.handle(&req);
    assert!(r.status == 200 || r.status == 201, "{path}: {:?}", r.body_json());
}

fn total(engine: &Engine, query: &str) -> (u16, Value) {
    let r = engine.handle(&Request::new(test_actor(), Method::Get, "Patient", query));
    (r.status, r.body_json().unwrap())
}

#[test]
fn reindex_resumes_from_its_saved_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
    let engine = Engine::new(
        fhir_rest::Guard::open(store.clone()),
        Config::default(),
        fhir_rest::operations::Operations::standard(),
    );
    // 500 patients (surrogate keys 1..=500), written before the parameter exists
    for i in 0..500 {
        put(
            &engine,
            &format!("Patient/p{i}"),
            json!({"resourceType": "Patient", "id": format!("p{i}"), "extension": [{"url": EXT, "valueString": "A+"}]}),
        );
    }
    let sp = json!({"resourceType": "SearchParameter", "id": "blood-group", "status": "active",
        "url": "http://example.org/fhir/SearchParameter/blood-group", "name": "BloodGroup",
        "description": "Blood group", "code": "blood-group", "base": ["Patient"], "type": "string",
        "expression": format!("Patient.extension.where(url = '{EXT}').value")});
    put(&engine, "SearchParameter/blood-group", sp.clone());
    // as if a previous process had committed the batches up to key 300 and then died
    let key = search::registry::definition(&sp, "blood-group").unwrap().unwrap().key;
    let saved = json!({"id": "blood-group", "key": key, "type_index": 0, "after": 300, "done": 300, "total": 500,
        "finished": false});
    {
        let mut tx = store::Store::begin(&*store).unwrap();
        tx.put_record("reindex", "blood-group", &saved.to_string(), store::Expect::Any).unwrap();
        tx.commit().unwrap();
    }
    // not searchable while indexing: the warning says how far it is
    let (_, bundle) = total(&engine, "blood-group=a");
    assert!(bundle.to_string().contains("is being indexed"), "{bundle}");

    fhir_rest::search_parameters::start(&engine).unwrap();
    for _ in 0..300 {
        let status = engine.handle(&Request::new(test_actor(), Method::Get, "$reindex", "")).body_json().unwrap();
        if status.to_string().contains("\"ready\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, bundle) = total(&engine, "blood-group=a&_summary=count");
    assert_eq!(status, 200, "{bundle}");
    // only keys 301..=500 were (re)indexed: the first 300 were taken as done
    assert_eq!(bundle["total"], 200, "{bundle}");
    let job: Value = serde_json::from_str(&store::Store::records(&*store, "reindex").unwrap()[0].1.data).unwrap();
    assert_eq!((job["done"].as_u64(), job["finished"].as_bool()), (Some(500), Some(true)), "{job}");
}

fn test_actor() -> fhir_rest::Principal {
    fhir_rest::Principal::System(fhir_rest::SystemActor::new("system:test"))
}
