//! `medkarta import` into a running server's database: NDJSON (plain and gzip), a
//! collection bundle, a transaction bundle, a malformed line and an invalid resource
//! reported with their place, nothing duplicated when run again; both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::io::Write as _;
use std::process::Command;

use common::Server;
use serde_json::json;

fn import(s: &Server, paths: &[&std::path::Path]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medkarta"))
        .arg("import")
        .args(s.store_args())
        .args(paths)
        .env("MEDKARTA_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn total(s: &Server, q: &str) -> u64 {
    s.get(q).json()["total"].as_u64().unwrap()
}

fn import_files(s: &mut Server) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let patient = |i: u32| json!({"resourceType": "Patient", "id": format!("imp-{i}"), "name": [{"family": format!("Загрузкина{i}")}]});
    let mut nd = std::fs::File::create(d.join("patients.ndjson")).unwrap();
    for i in 0..30 {
        writeln!(nd, "{}", patient(i)).unwrap();
    }
    writeln!(nd, "{{not json").unwrap();
    writeln!(nd, "{}", json!({"resourceType": "Patient", "id": "imp-bad", "gender": "woman"})).unwrap();
    drop(nd);
    let gz = std::fs::File::create(d.join("observations.ndjson.gz")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
    for i in 0..30 {
        let obs = json!({"resourceType": "Observation", "status": "final", "subject": {"reference": format!("Patient/imp-{i}")},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "valueQuantity": {"value": 60 + i}});
        writeln!(enc, "{obs}").unwrap();
    }
    enc.finish().unwrap();
    let sub = d.join("bundles");
    std::fs::create_dir(&sub).unwrap();
    let collection = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Organization", "id": "imp-org", "name": "Загрузочная больница"}}]});
    std::fs::write(sub.join("collection.json"), collection.to_string()).unwrap();
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0c3a7d1e-4b8f-4d1a-9a53-0b9a1f0e2c11",
         "resource": {"resourceType": "Practitioner", "name": [{"family": "Транзакционный"}]},
         "request": {"method": "POST", "url": "Practitioner"}}]});
    std::fs::write(sub.join("transaction.json"), transaction.to_string()).unwrap();
    std::fs::write(sub.join("notes.txt"), "not FHIR").unwrap();

    let (ok, stdout, stderr) = import(s, &[d]);
    assert!(!ok, "rejections make a failing exit status");
    assert!(stderr.contains("62 written, 0 unchanged, 2 rejected"), "{stderr}\n{stdout}");
    assert!(stdout.contains("patients.ndjson: line 31:") && stdout.contains("not JSON"), "{stdout}");
    assert!(stdout.contains("patients.ndjson: line 32:") && stdout.contains("Patient.gender"), "{stdout}");
    assert_eq!(total(s, "Patient?family=загрузкина"), 30);
    assert_eq!(total(s, "Observation?code=8867-4&subject=imp-7"), 1);
    assert_eq!(total(s, "Organization?_id=imp-org"), 1);
    assert_eq!(total(s, "Practitioner?family=транзакционный"), 1);
    // again: the same resources are found unchanged (the transaction bundle's POST is
    // loaded at the UUID of its fullUrl)
    let (_, _, stderr) = import(s, &[d]);
    assert!(stderr.contains("0 written, 62 unchanged, 2 rejected"), "{stderr}");
    assert_eq!(total(s, "Practitioner?family=транзакционный"), 1, "not created twice");
    assert_eq!(s.get("Practitioner/0c3a7d1e-4b8f-4d1a-9a53-0b9a1f0e2c11").status, 200);
    assert_eq!(total(s, "Observation?code=8867-4"), 30, "ids derived from content: no duplicates");
    assert_eq!(s.get("Patient/imp-3").json()["meta"]["versionId"], "1");
}

/// Real Synthea bundles (transactions of `POST`s with `urn:uuid` fullUrls): loaded at
/// stable ids with their references resolved, and a second run writes nothing; a bundle
/// with conditional entries keeps the transaction's semantics.
fn synthea_twice(s: &mut Server) {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea-r4-sample");
    let mut files: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let dir = tempfile::tempdir().unwrap();
    for f in &files[..2] {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let entries: u64 = files[..2]
        .iter()
        .map(|f| {
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(f).unwrap()).unwrap()["entry"]
                .as_array()
                .unwrap()
                .len() as u64
        })
        .sum();
    let (ok, out, err) = import(s, &[dir.path()]);
    assert!(ok, "{err}\n{out}");
    assert!(err.contains(&format!("{entries} written, 0 unchanged, 0 rejected")), "{err}");
    assert_eq!(total(s, "Patient"), 2);
    // the references between the entries point at the stored resources
    let first: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(first["entry"][0]["resource"]["resourceType"], "Patient");
    let patient = first["entry"][0]["fullUrl"].as_str().unwrap().trim_start_matches("urn:uuid:");
    assert_eq!(s.get(&format!("Patient/{patient}")).status, 200, "{patient}");
    let encounters = total(s, &format!("Encounter?subject=Patient/{patient}"));
    assert!(encounters > 0);
    let (ok, _, err) = import(s, &[dir.path()]);
    assert!(ok, "{err}");
    assert!(err.contains(&format!("0 written, {entries} unchanged, 0 rejected")), "{err}");
    assert_eq!(total(s, "Patient"), 2, "no patient twice");
    assert_eq!(s.get(&format!("Patient/{patient}")).json()["meta"]["versionId"], "1", "no new version");
    // with the hospital and practitioner bundles, whose Organizations and Practitioners the
    // patients' bundles repeat with other content: the first copy wins, so a second run
    // writes nothing either
    let set = tempfile::tempdir().unwrap();
    for f in files.iter().filter(|f| !f.file_name().unwrap().to_str().unwrap().contains('_')).chain(&files[..4]) {
        std::fs::copy(f, set.path().join(f.file_name().unwrap())).unwrap();
    }
    let (ok, out, err) = import(s, &[set.path()]);
    assert!(ok, "{err}");
    assert!(out.contains("came earlier in this import with other content"), "{out}");
    let (ok, _, err) = import(s, &[set.path()]);
    assert!(ok, "{err}");
    assert!(err.contains(": 0 written,"), "a re-run of the whole set writes nothing: {err}");
    // conditional creates go through the transaction, and ifNoneExist keeps them single
    let conditional = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7d0f1c9a-1b2c-4d3e-8f90-a1b2c3d4e5f6",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "c-1"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:test|c-1"}}]});
    let one = tempfile::tempdir().unwrap();
    std::fs::write(one.path().join("conditional.json"), conditional.to_string()).unwrap();
    for _ in 0..2 {
        let (ok, _, err) = import(s, &[one.path()]);
        assert!(ok, "{err}");
    }
    assert_eq!(total(s, "Patient?identifier=urn:test|c-1"), 1);
    // a transaction is all or nothing: one invalid entry, nothing stored; a reference to
    // an entry that is not there is refused as the transaction would refuse it
    let broken = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5a1e0c4e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": "Целостная"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:5a1e0c4e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "status": "woman", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:5a1e0c4e-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    let dangling = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5a1e0c4e-0000-4000-8000-000000000003",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:5a1e0c4e-0000-4000-8000-00000000ffff"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    for (name, bundle) in [("broken", broken), ("dangling", dangling)] {
        let one = tempfile::tempdir().unwrap();
        std::fs::write(one.path().join(format!("{name}.json")), bundle.to_string()).unwrap();
        let (ok, out, err) = import(s, &[one.path()]);
        assert!(!ok && out.contains(&format!("{name}.json")), "{name}: {err}\n{out}");
    }
    assert_eq!(total(s, "Patient?family=целостная"), 0, "nothing of the broken transaction");
    assert_eq!(s.get("Observation/5a1e0c4e-0000-4000-8000-000000000003").status, 404);
}

/// All twenty Synthea bundles into an empty store at once: the patients' bundles share
/// practitioners and organisations, which PostgreSQL's parallel writers create at the same
/// moment — the loser's transaction runs again (the shared resource then unchanged)
/// instead of the whole bundle being rejected (146 resources were, in one run of three).
fn synthea_all_at_once(s: &mut Server) {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea-r4-sample");
    let patients =
        std::fs::read_dir(&data).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains('_'));
    let patients = patients.count() as u64;
    for _ in 0..2 {
        let (ok, out, err) = import(s, &[data.as_path()]);
        assert!(ok && err.contains(" 0 rejected"), "{err}\n{out}");
    }
    assert_eq!(total(s, "Patient"), patients);
}

on_both_backends!(import_files, synthea_twice, synthea_all_at_once);
