//! "If the audit record cannot be written, the access does not happen": with the log's
//! tables broken behind the server's back, a caller's read is answered 503 without the
//! data, and a write is refused and leaves nothing — through the synchronous path and
//! through the journal; requests made inside the process (not audited) still work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::Arc;

use auth::directory::Caller;
use fhir_rest::{Body, Config, Engine, Method, Principal, Request};
use serde_json::json;

fn caller() -> Principal {
    Principal::Token(Box::new(Caller {
        sid: "s1".into(),
        username: None,
        client_id: "backend".into(),
        scopes: auth::scope::Scopes::parse("system/*.cruds").unwrap(),
        grant: None,
        patient: None,
        break_glass: None,
    }))
}

fn as_caller(method: Method, path: &str, body: Option<serde_json::Value>) -> Request {
    let mut r = Request::new(caller(), method, path, "");
    if let Some(b) = body {
        r.body = Body::Json(b);
    }
    r
}

fn scenario(journal: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn store::Store> = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
    let mut log = audit::AuditLog::new(store.clone(), None);
    if journal {
        log = log.with_journal(audit::journal::Journal::open(&dir.path().join("journal")).unwrap());
    }
    let guard = fhir_rest::Guard::new(store.clone(), Arc::new(log), Default::default(), Default::default());
    let engine = Engine::new(guard, Config::default(), fhir_rest::operations::Operations::standard());
    let mut put = Request::new(test_actor(), Method::Put, "Patient/p1", "");
    put.body = Body::Json(json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Secret"}]}));
    assert_eq!(engine.handle(&put).status, 201);
    // audited and answered while the log can be written
    let ok = engine.handle(&as_caller(Method::Get, "Patient/p1", None));
    assert_eq!(ok.status, 200);
    engine.guard().audit().catch_up().unwrap();
    // the log breaks (its chain table gone)
    let raw = rusqlite::Connection::open(dir.path().join("medkarta.sqlite")).unwrap();
    raw.execute_batch("DROP TABLE audit_chain").unwrap();
    let read = engine.handle(&as_caller(Method::Get, "Patient/p1", None));
    if journal {
        // the journal takes the entry (it is the durable record), so the read is answered;
        // the database refuses it, so it stays in the journal until the log is repaired
        assert_eq!(read.status, 200);
        assert!(engine.guard().audit().catch_up().is_err());
    } else {
        assert_eq!(read.status, 503);
        let body = read.body_json().unwrap().to_string();
        assert!(body.contains("could not be recorded") && !body.contains("Secret"), "{body}");
    }
    // a write is refused either way, and nothing of it is stored
    let w = engine.handle(&as_caller(
        Method::Put,
        "Patient/p2",
        Some(json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Never"}]})),
    ));
    assert!(w.status >= 500, "{}", w.status);
    assert_eq!(engine.handle(&Request::new(test_actor(), Method::Get, "Patient/p2", "")).status, 404);
}

#[test]
fn synchronous_log() {
    scenario(false);
}

#[test]
fn journal() {
    scenario(true);
}

fn test_actor() -> fhir_rest::Principal {
    fhir_rest::Principal::System(fhir_rest::SystemActor::new("system:test"))
}
