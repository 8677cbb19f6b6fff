//! The holes the guard closed, each as it was found, over HTTP on both backends: a
//! doctor of clinic A and a patient of A, against the record of a patient of clinic B
//! (an HIV result). Conditional creates (header and transaction entry), conditional
//! references, conditional updates and deletes evaluate their criteria within the
//! caller's reach; PATCH (both syntaxes), PUT and transaction entries are checked on
//! what they would store. Every refusal changes nothing and shows nothing of B's record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{Resp, Server};
use serde_json::{Value, json};

const FHIR: &str = "application/fhir+json";
const SECRET: &str = "HIV-1 antibody positive";

fn observation(id: Option<&str>, patient: &str, value: &str) -> Value {
    let mut o = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "7917-8"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueString": value});
    if let Some(id) = id {
        o["id"] = json!(id);
    }
    o
}

struct World {
    s: Server,
    doctor: String,
    patient: String,
}

fn world(s: Server) -> World {
    for org in ["org-a", "org-b"] {
        s.put(&format!("Organization/{org}"), &json!({"resourceType": "Organization", "id": org, "name": org}));
    }
    s.put("Practitioner/pr-a", &json!({"resourceType": "Practitioner", "id": "pr-a"}));
    for (p, org) in [("pa", "org-a"), ("pb", "org-b")] {
        s.put(
            &format!("Patient/{p}"),
            &json!({"resourceType": "Patient", "id": p,
                "identifier": [{"system": "urn:oid:1.2.643.100.3", "value": format!("snils-{p}")}],
                "managingOrganization": {"reference": format!("Organization/{org}")}}),
        );
    }
    s.put("Observation/obs-a", &observation(Some("obs-a"), "pa", "negative"));
    s.put("Observation/obs-b", &observation(Some("obs-b"), "pb", SECRET));
    let doctor = s.user_token(
        "dr-a",
        "doctor",
        &["--organization", "Organization/org-a", "--practitioner", "Practitioner/pr-a"],
    );
    let patient = s.user_token("pat-a", "patient", &["--patient", "Patient/pa"]);
    World { s, doctor, patient }
}

impl World {
    fn as_(&self, token: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Resp {
        let body = body.map(Value::to_string);
        let mut h = headers.to_vec();
        if !h.iter().any(|(k, _)| *k == "Content-Type") {
            h.push(("Content-Type", FHIR));
        }
        let r = self.s.req_as(Some(token), method, path, &h, body.as_deref());
        // nothing of B's record, whatever the answer (its id only where the caller named it)
        assert!(!r.text.contains(SECRET), "{method} {path} leaked: {}", r.text);
        if !path.contains("obs-b") {
            assert!(!r.text.contains("obs-b"), "{method} {path} leaked: {}", r.text);
            assert!(r.headers.iter().all(|(_, v)| !v.contains("obs-b")), "{method} {path} leaked in headers");
        }
        r
    }

    /// B's record as the harness (system) sees it: untouched.
    fn b_untouched(&self) {
        let r = self.s.get("Observation/obs-b");
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!((v["meta"]["versionId"].as_str(), v["valueString"].as_str()), (Some("1"), Some(SECRET)));
        assert_eq!(v["subject"]["reference"], "Patient/pb");
    }

    fn observations_of(&self, patient: &str) -> u64 {
        self.s.get(&format!("Observation?subject=Patient/{patient}&_summary=count")).json()["total"].as_u64().unwrap()
    }
}

/// 1. Conditional create: `If-None-Exist` (and a transaction entry's `ifNoneExist`)
///    naming B's resource neither matches nor returns it: the create happens.
fn conditional_create_reads_nothing_out_of_reach(w: &World) {
    let before = w.observations_of("pa");
    for criteria in
        ["_id=obs-b", "subject=Patient/pb", &format!("value-string={}", SECRET.replace(' ', "%20")), "_id=obs-b,obs-a"]
    {
        let r = w.as_(
            &w.doctor,
            "POST",
            "Observation",
            &[("If-None-Exist", criteria)],
            Some(&observation(None, "pa", "x")),
        );
        if criteria.contains("obs-a") {
            // A's own resource matches (it is within reach): the match, nothing created
            assert_eq!(r.status, 200, "{criteria}: {}", r.text);
            assert_eq!(r.json()["id"], "obs-a");
        } else {
            assert_eq!(r.status, 201, "{criteria}: {}", r.text);
            assert_eq!(r.json()["subject"]["reference"], "Patient/pa");
        }
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:00000000-0000-0000-0000-000000000001",
        "resource": observation(None, "pa", "y"),
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": "_id=obs-b"}}]});
    let r = w.as_(&w.doctor, "POST", "", &[], Some(&bundle));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["entry"][0]["response"]["status"], "201 Created", "{}", r.text);
    assert_eq!(w.observations_of("pa"), before + 4);
    w.b_untouched();
}

/// 1b. A conditional reference resolves within reach only: B's patient is not found.
fn conditional_reference_sees_nothing_out_of_reach(w: &World) {
    let mut obs = observation(None, "pa", "z");
    obs["subject"] = json!({"reference": "Patient?identifier=urn:oid:1.2.643.100.3|snils-pb"});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": obs, "request": {"method": "POST", "url": "Observation"}}]});
    let before = w.observations_of("pb");
    let r = w.as_(&w.doctor, "POST", "", &[], Some(&bundle));
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(w.observations_of("pb"), before);
}

/// 1c. Conditional update and delete: criteria naming B's resource match nothing.
fn conditional_writes_stay_within_reach(w: &World) {
    let r = w.as_(&w.doctor, "DELETE", "Observation?_id=obs-b", &[], None);
    assert_eq!(r.status, 204, "{}", r.text);
    let r = w.as_(&w.doctor, "PUT", "Observation?_id=obs-b", &[], Some(&observation(None, "pa", "u")));
    assert_eq!(r.status, 201, "nothing in reach matched, so it creates: {}", r.text);
    // and one that would store into B's record is refused
    let r = w.as_(&w.doctor, "PUT", "Observation?_id=obs-a", &[], Some(&observation(None, "pb", "moved")));
    assert_eq!(r.status, 403, "{}", r.text);
    w.b_untouched();
}

/// 2. A patient's Consent moved by PATCH (or PUT) to another patient's record.
fn patient_cannot_open_anothers_record(w: &World) {
    let consent = json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pa"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit", "actor": [{"role": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": "Practitioner/pr-a"}}]}});
    let r = w.as_(&w.patient, "POST", "Consent", &[], Some(&consent));
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("Consent/{id}");
    let json_patch = json!([{"op": "replace", "path": "/patient/reference", "value": "Patient/pb"}]);
    let r = w.as_(&w.patient, "PATCH", &path, &[("Content-Type", "application/json-patch+json")], Some(&json_patch));
    assert_eq!(r.status, 403, "JSON Patch: {}", r.text);
    let fhirpath_patch = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Consent.patient"},
        {"name": "value", "valueReference": {"reference": "Patient/pb"}}]}]});
    let r = w.as_(&w.patient, "PATCH", &path, &[], Some(&fhirpath_patch));
    assert_eq!(r.status, 403, "FHIRPath Patch: {}", r.text);
    let mut moved = consent.clone();
    moved["id"] = json!(id);
    moved["patient"] = json!({"reference": "Patient/pb"});
    let r = w.as_(&w.patient, "PUT", &path, &[], Some(&moved));
    assert_eq!(r.status, 403, "PUT: {}", r.text);
    let stored = w.s.get(&path).json();
    assert_eq!(
        (stored["meta"]["versionId"].as_str(), stored["patient"]["reference"].as_str()),
        (Some("1"), Some("Patient/pa"))
    );
    // the doctor still does not reach B's record
    assert_eq!(w.as_(&w.doctor, "GET", "Observation/obs-b", &[], None).status, 403);
}

/// 3. A doctor moves an Observation of a patient in care into a record outside it.
fn doctor_cannot_write_into_a_record_out_of_care(w: &World) {
    let json_patch = json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/pb"}]);
    let h = [("Content-Type", "application/json-patch+json")];
    let r = w.as_(&w.doctor, "PATCH", "Observation/obs-a", &h, Some(&json_patch));
    assert_eq!(r.status, 403, "{}", r.text);
    // the same as a transaction entry (Binary JSON Patch) and as a PUT
    let patch_b64 = base64_of(&json_patch.to_string());
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch_b64},
        "request": {"method": "PATCH", "url": "Observation/obs-a"}}]});
    let r = w.as_(&w.doctor, "POST", "", &[], Some(&bundle));
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_(&w.doctor, "PUT", "Observation/obs-a", &[], Some(&observation(Some("obs-a"), "pb", "moved")));
    assert_eq!(r.status, 403, "{}", r.text);
    // writing B's resource directly, or creating one in B's record
    let r = w.as_(&w.doctor, "PUT", "Observation/obs-b", &[], Some(&observation(Some("obs-b"), "pa", "mine now")));
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_(&w.doctor, "POST", "Observation", &[], Some(&observation(None, "pb", "planted")));
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.as_(&w.doctor, "DELETE", "Observation/obs-b", &[], None);
    assert_eq!(r.status, 403, "{}", r.text);
    let a = w.s.get("Observation/obs-a").json();
    assert_eq!((a["meta"]["versionId"].as_str(), a["subject"]["reference"].as_str()), (Some("1"), Some("Patient/pa")));
    w.b_untouched();
}

fn base64_of(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn all(s: Server) {
    let w = world(s);
    conditional_create_reads_nothing_out_of_reach(&w);
    conditional_reference_sees_nothing_out_of_reach(&w);
    conditional_writes_stay_within_reach(&w);
    patient_cannot_open_anothers_record(&w);
    doctor_cannot_write_into_a_record_out_of_care(&w);
}

#[test]
fn sqlite() {
    all(Server::sqlite());
}

#[test]
fn postgres() {
    all(Server::postgres());
}
