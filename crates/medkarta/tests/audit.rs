//! The audit trail over HTTP, on both backends: a scripted session of mixed requests by a
//! doctor and a patient produces exactly the expected AuditEvents, which the patient sees
//! in their own view (and nobody else's); a flagged entry raises an alert; `medkarta
//! audit verify` passes on the untouched log and names the entry when the database is
//! tampered with directly — an edited entry, a removed one, an entry inserted outside
//! the chain, and a cut-off tail caught by a signed checkpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::Server;
use serde_json::{Value, json};

const FHIR: &str = "application/fhir+json";

fn observation(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
}

/// (interaction, user, outcome) of each entry of a Bundle of AuditEvents, oldest first.
fn summary(bundle: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    let r = &e["resource"];
                    let what = r["subtype"][0]["code"].as_str().or(r["type"]["display"].as_str()).unwrap_or("?");
                    let who = r["agent"][0]["altId"].as_str().unwrap_or("-");
                    (what.to_string(), who.to_string(), r["outcome"].as_str().unwrap_or("?").to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    out.reverse();
    out
}

fn audit_trail(s: &mut Server) {
    s.put("Organization/org-1", &json!({"resourceType": "Organization", "id": "org-1", "name": "Поликлиника 1"}));
    s.put(
        "Practitioner/pr-1",
        &json!({"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Иванова", "given": ["Анна"]}]}),
    );
    s.put(
        "Patient/p-own",
        &json!({"resourceType": "Patient", "id": "p-own", "managingOrganization": {"reference": "Organization/org-1"}}),
    );
    s.put("Patient/p-other", &json!({"resourceType": "Patient", "id": "p-other"}));
    s.put("Observation/obs-1", &observation("obs-1", "p-own"));
    let doctor = s.user_token(
        "dr-ivanova",
        "doctor",
        &["--organization", "Organization/org-1", "--practitioner", "Practitioner/pr-1"],
    );
    let patient = s.user_token("pat-own", "patient", &["--patient", "Patient/p-own"]);
    let other = s.user_token("pat-other", "patient", &["--patient", "Patient/p-other"]);
    let as_ = |t: &str, m: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        s.req_as(Some(t), m, path, &[("Content-Type", FHIR)], body.as_deref())
    };
    // the scripted session
    assert_eq!(as_(&doctor, "GET", "Patient/p-own", None).status, 200);
    assert_eq!(as_(&doctor, "GET", "Observation?subject=Patient/p-own", None).status, 200);
    assert_eq!(as_(&doctor, "PUT", "Observation/obs-2", Some(observation("obs-2", "p-own"))).status, 201);
    assert!(matches!(as_(&doctor, "DELETE", "Observation/obs-2", None).status, 200 | 204));
    assert_eq!(as_(&doctor, "GET", "Observation/obs-1/_history", None).status, 200);
    assert_eq!(as_(&doctor, "GET", "Patient/p-other", None).status, 403);
    assert_eq!(as_(&patient, "GET", "Observation", None).status, 200);
    assert_eq!(as_(&patient, "POST", "Observation", Some(observation("x", "p-own"))).status, 403);
    assert_eq!(as_(&doctor, "GET", "Patient/p-own/$everything", None).status, 200);

    // the patient's view: exactly these, newest first, about p-own only
    let view = as_(&patient, "GET", "AuditEvent?_count=100", None);
    assert_eq!(view.status, 200, "{}", view.text);
    let v = view.json();
    let got = summary(&v);
    let e = |w: &str, u: &str, o: &str| (w.to_string(), u.to_string(), o.to_string());
    let mine: Vec<_> = got.iter().filter(|(_, u, _)| u != "-").cloned().collect();
    assert_eq!(
        mine,
        vec![
            e("read", "dr-ivanova", "0"),
            // the patient told of the organisation's first access: a write to their record
            e("create", "system:watch", "0"),
            e("search-type", "dr-ivanova", "0"),
            e("create", "dr-ivanova", "0"),
            e("delete", "dr-ivanova", "0"),
            e("history-instance", "dr-ivanova", "0"),
            e("search-type", "pat-own", "0"),
            e("create", "pat-own", "4"),
            e("operation", "dr-ivanova", "0"),
        ],
        "{got:#?}"
    );
    // valid R4 AuditEvents
    for x in v["entry"].as_array().unwrap() {
        let issues = validation::validate_resource(&x["resource"]);
        assert!(!validation::has_errors(&issues), "{issues:?}\n{}", x["resource"]);
    }
    // readable: the doctor's name, role and organisation
    let read = v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|x| x["resource"]["agent"][0]["altId"] == "dr-ivanova")
        .unwrap();
    let div = read["resource"]["text"]["div"].as_str().unwrap();
    assert!(div.contains("Анна Иванова (dr-ivanova), doctor, Поликлиника 1 — read"), "{div}");
    assert!(read["resource"]["agent"][0]["network"]["address"].as_str().unwrap().starts_with("127.0.0.1"));
    // refused attempts name the reason
    let refused = v["entry"].as_array().unwrap().iter().find(|x| x["resource"]["outcome"] == "4").unwrap();
    assert!(refused["resource"]["outcomeDesc"].as_str().unwrap().contains("HTTP 403"), "{refused}");
    // bad parameters are refused, clearly
    let bad = as_(&patient, "GET", "AuditEvent?_count=many", None);
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("_count 'many' is not a number"), "{}", bad.text);
    // nobody else's view: another patient's record, a doctor
    assert_eq!(as_(&patient, "GET", "AuditEvent?patient=p-other", None).status, 403);
    assert_eq!(as_(&doctor, "GET", "AuditEvent?patient=p-own", None).status, 403);
    // the other patient sees the refused attempts on their record (the doctor's read, the
    // first patient's look at their log), and nothing of p-own's
    let others = summary(&as_(&other, "GET", "AuditEvent", None).json());
    let theirs: Vec<_> = others.iter().filter(|(_, u, _)| u != "-").cloned().collect();
    assert_eq!(theirs, vec![e("read", "dr-ivanova", "4"), e("search-type", "pat-own", "4")], "{others:#?}");
    // an entry of p-own is not another patient's to read or flag
    let id = read["resource"]["id"].as_str().unwrap().to_string();
    assert_eq!(as_(&other, "GET", &format!("AuditEvent/{id}"), None).status, 404);
    // the patient flags the read as unexpected: an alert for the security officers
    let flag = as_(
        &patient,
        "POST",
        &format!("AuditEvent/{id}/$flag"),
        Some(
            json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "I was not at the clinic"}]}),
        ),
    );
    assert_eq!(flag.status, 200, "{}", flag.text);
    assert_eq!(as_(&doctor, "POST", &format!("AuditEvent/{id}/$flag"), None).status, 403, "only the patient flags");
    let (ok, alerts, err) = s.command("audit", &["alerts"]);
    assert!(ok, "{err}");
    assert!(alerts.contains("I was not at the clinic") && alerts.contains(&format!("entry {id}")), "{alerts}");
    // the log is not writable through the API
    assert_eq!(as_(&doctor, "POST", "AuditEvent", Some(json!({"resourceType": "AuditEvent"}))).status, 405);
    // failed sign-ins with a bad token are recorded too
    assert_eq!(s.req_as(Some("not-a-token"), "GET", "Patient/p-own", &[], None).status, 401);

    // verification: intact, then tampered with in every way
    std::thread::sleep(std::time::Duration::from_millis(300)); // PostgreSQL: chained in the background
    let verify = |s: &Server| {
        let (ok, out, err) = s.command("audit", &["verify"]);
        (ok, format!("{out}{err}"))
    };
    let (ok, out) = verify(s);
    assert!(ok && out.contains("intact"), "{out}");
    let (ok, out, err) = s.command("audit", &["checkpoint"]);
    assert!(ok, "{out} {err}");
    let seq: i64 = id.parse().unwrap();
    let original = s.sql_text(&format!("SELECT entry FROM audit WHERE seq = {seq}"));
    // 1. an edited entry
    s.sql(&format!("UPDATE audit SET entry = replace(entry, 'dr-ivanova', 'dr-someone') WHERE seq = {seq}"));
    let (ok, out) = verify(s);
    assert!(!ok && out.contains(&format!("entry {seq} at position")) && out.contains("changed"), "{out}");
    s.sql(&format!("UPDATE audit SET entry = replace(entry, 'dr-someone', 'dr-ivanova') WHERE seq = {seq}"));
    assert!(verify(s).0);
    // 2. a removed entry (and its patient index rows)
    let row = s.sql_text(&format!("SELECT at || '|' || patients FROM audit WHERE seq = {seq}"));
    s.sql(&format!("DELETE FROM audit WHERE seq = {seq}"));
    let (ok, out) = verify(s);
    assert!(!ok && out.contains(&format!("entry {seq} at position")) && out.contains("removed"), "{out}");
    let (at, patients) = row.split_once('|').unwrap();
    s.sql(&format!(
        "INSERT INTO audit (seq, at, patients, entry) VALUES ({seq}, {at}, '{patients}', '{}')",
        original.replace('\'', "''")
    ));
    assert!(verify(s).0, "restored");
    // 3. a hidden entry: the patient's index row deleted
    s.sql(&format!("DELETE FROM audit_patient WHERE seq = {seq} AND patient = 'p-own'"));
    let (ok, out) = verify(s);
    assert!(!ok && out.contains("patients' index"), "{out}");
    s.sql(&format!("INSERT INTO audit_patient (patient, seq) VALUES ('p-own', {seq})"));
    // 4. an entry inserted behind the server's back
    s.sql("INSERT INTO audit (seq, at, patients, entry) VALUES (999999, 0, 'p-own', '{}')");
    let (ok, out) = verify(s);
    assert!(!ok && out.contains("entry 999999 was inserted outside the chain"), "{out}");
    s.sql("DELETE FROM audit WHERE seq = 999999");
    s.sql("DELETE FROM audit_patient WHERE seq = 999999");
    // 5. the tail cut off (entries and their links): the signed checkpoint remembers
    // in one transaction that holds the chain's lock on PostgreSQL, so the server's sealer
    // cannot link a waiting entry to the old head in the middle of the cut
    let lock = match s.is_postgres() {
        true => format!("SELECT pg_advisory_xact_lock({});", store::audit::CHAIN_LOCK),
        false => String::new(),
    };
    s.sql(&format!(
        "{lock} DELETE FROM audit WHERE seq IN (SELECT seq FROM audit_chain WHERE pos > 3); \
         DELETE FROM audit_patient WHERE seq NOT IN (SELECT seq FROM audit); \
         DELETE FROM audit_chain WHERE pos > 3;"
    ));
    let (ok, out) = verify(s);
    // (on PostgreSQL an entry still waiting may have been chained after the cut)
    assert!(!ok && out.contains("the log was cut: a signed checkpoint covers position"), "{out}");
}

/// Entries of reads wait in the audit journal for moments before they reach the database:
/// a `kill -9` right after the answers loses none of them (replayed at the next start), and
/// the chain stays intact.
fn audited_reads_survive_a_crash(s: &mut Server) {
    s.put("Patient/p-crash", &json!({"resourceType": "Patient", "id": "p-crash"}));
    for _ in 0..20 {
        assert_eq!(s.get("Patient/p-crash").status, 200);
    }
    s.crash_and_restart();
    let patient = s.user_token("pat-crash", "patient", &["--patient", "Patient/p-crash"]);
    let view = s.req_as(Some(&patient), "GET", "AuditEvent?_count=100", &[], None);
    assert_eq!(view.status, 200, "{}", view.text);
    let reads = summary(&view.json()).iter().filter(|(what, _, _)| what == "read").count();
    assert_eq!(reads, 20, "{}", view.text);
    let (ok, out, err) = s.command("audit", &["verify"]);
    assert!(ok, "{out}{err}");
}

on_both_backends!(audit_trail, audited_reads_survive_a_crash);
