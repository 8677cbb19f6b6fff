//! Encryption at rest over the real binary, on both backends: what the database holds of a
//! resource is ciphertext (its index is searchable), every read path returns the resource,
//! `medkarta keys rotate` with the server running rewraps the data keys under a new
//! master key, and after a restart everything still reads (that a wrong master key reads
//! nothing, and a body moved to another row does not decrypt: the `vault` unit tests).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::Server;
use serde_json::json;

fn at_rest(s: &mut Server) {
    let name = "Золотарёва-Zolotareva";
    s.put("Patient/enc-1", &json!({"resourceType": "Patient", "id": "enc-1", "name": [{"family": name}]}));
    s.put(
        "Observation/enc-o1",
        &json!({"resourceType": "Observation", "id": "enc-o1", "status": "final",
            "code": {"text": "pulse Zolotareva"}, "subject": {"reference": "Patient/enc-1"}}),
    );
    // in the database: no plaintext in any version's body
    let plain = match s.is_postgres() {
        true => "SELECT CAST(count(*) AS TEXT) FROM history WHERE position(CAST('Zolotareva' AS BYTEA) IN body) > 0",
        false => "SELECT CAST(count(*) AS TEXT) FROM history WHERE instr(body, CAST('Zolotareva' AS BLOB)) > 0",
    };
    assert_eq!(s.sql_text(plain), "0");
    assert_eq!(s.sql_text("SELECT CAST(count(*) AS TEXT) FROM records WHERE kind = 'data-key'"), "1");
    // every read path
    assert_eq!(s.get("Patient/enc-1").json()["name"][0]["family"], name);
    assert_eq!(s.get("Patient/enc-1/_history/1").json()["name"][0]["family"], name);
    let found = s.get("Patient?family=Золотар").json();
    assert_eq!(found["entry"][0]["resource"]["id"], "enc-1", "{found}");
    let everything = s.get("Patient/enc-1/$everything").json();
    assert_eq!(everything["entry"].as_array().map(Vec::len), Some(2), "{everything}");
    assert_eq!(s.get("Observation/_history").json()["entry"][0]["resource"]["subject"]["reference"], "Patient/enc-1");
    // rotation while the server runs
    let (ok, out, err) = s.command("keys", &["rotate"]);
    assert!(ok && out.contains("1 data keys now wrapped by master key 2"), "{out}{err}");
    s.put("Patient/enc-2", &json!({"resourceType": "Patient", "id": "enc-2", "name": [{"family": "Second"}]}));
    let (ok, out, _) = s.command("keys", &["status"]);
    assert!(ok && out.contains("master key 1: 0 data keys") && out.contains("master key 2: 2 data keys"), "{out}");
    s.crash_and_restart();
    assert_eq!(s.get("Patient/enc-1").json()["name"][0]["family"], name);
    assert_eq!(s.get("Patient/enc-2").json()["name"][0]["family"], "Second");
    assert_eq!(s.get("Observation/enc-o1").status, 200);
}

/// A database written without encryption (`--no-encryption`), encrypted in place by
/// `medkarta keys encrypt` with the server running.
fn switched_on_later(s: &mut Server) {
    s.put("Patient/late-1", &json!({"resourceType": "Patient", "id": "late-1", "name": [{"family": "Zolotareva"}]}));
    s.put(
        "Patient/late-1",
        &json!({"resourceType": "Patient", "id": "late-1", "name": [{"family": "Zolotareva"}], "gender": "female"}),
    );
    let plain = match s.is_postgres() {
        true => "SELECT CAST(count(*) AS TEXT) FROM history WHERE position(CAST('Zolotareva' AS BYTEA) IN body) > 0",
        false => "SELECT CAST(count(*) AS TEXT) FROM history WHERE instr(body, CAST('Zolotareva' AS BLOB)) > 0",
    };
    assert_eq!(s.sql_text(plain), "2", "both versions in plaintext");
    let (ok, out, err) = s.command("keys", &["encrypt"]);
    assert!(ok && out.contains("2 resource versions encrypted"), "{out}{err}");
    assert_eq!(s.sql_text(plain), "0");
    assert_eq!(s.get("Patient/late-1/_history/1").json()["name"][0]["family"], "Zolotareva");
    assert_eq!(s.get("Patient/late-1").json()["gender"], "female");
}

#[test]
fn sqlite_switched_on_later() {
    switched_on_later(&mut Server::start(common::Backend::Sqlite(tempfile::tempdir().unwrap()), &["--no-encryption"]));
}

#[test]
fn postgres_switched_on_later() {
    let db = store_tests::PgDatabase::create();
    switched_on_later(&mut Server::start(common::Backend::Postgres(db), &["--no-encryption"]));
}

on_both_backends!(at_rest);
