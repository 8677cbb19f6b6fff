//! Watching accesses, over the real binary: a patient is told the first time an
//! organisation opens their record (once) and when their record is exported; a clinician
//! who opens more records than the configured limit, or opens one in the night hours
//! from an address they never came from, is blocked at their next request, the security
//! officer alerted and the patients told — at the thresholds given on the command line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::{Backend, Server};
use serde_json::json;

/// The Communications to a patient (texts).
fn told(s: &Server, patient: &str) -> Vec<String> {
    let b = s.get(&format!("Communication?subject=Patient/{patient}&_count=100")).json();
    b["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| e["resource"]["payload"][0]["contentString"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A clinic, a doctor of it and its patients `w-1`..`w-n`; the doctor's token.
fn clinic(s: &Server, n: usize) -> String {
    s.put("Organization/org-w", &json!({"resourceType": "Organization", "id": "org-w", "name": "Поликлиника 7"}));
    s.put("Practitioner/pr-w", &json!({"resourceType": "Practitioner", "id": "pr-w"}));
    for i in 1..=n {
        s.put(
            &format!("Patient/w-{i}"),
            &json!({"resourceType": "Patient", "id": format!("w-{i}"),
                "managingOrganization": {"reference": "Organization/org-w"}}),
        );
    }
    s.user_token("dr-w", "doctor", &["--organization", "Organization/org-w", "--practitioner", "Practitioner/pr-w"])
}

fn alerts(s: &Server) -> String {
    let (ok, out, err) = s.command("audit", &["alerts"]);
    assert!(ok, "{err}");
    out
}

fn many_records(s: &mut Server) {
    let doctor = clinic(s, 5);
    let read = |p: &str| s.req_as(Some(&doctor), "GET", &format!("Patient/{p}"), &[], None).status;
    // the first access by the clinic is told, once
    assert_eq!(read("w-1"), 200);
    assert_eq!(read("w-1"), 200);
    let notes = told(s, "w-1");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("Поликлиника 7 opened your record for the first time (dr-w"), "{notes:?}");
    // at the limit (3 patients in the window): nothing happens
    assert_eq!(read("w-2"), 200);
    assert_eq!(read("w-3"), 200);
    assert_eq!(read("w-3"), 200);
    assert!(!alerts(s).contains("suspicious-activity"));
    // past it: answered, then the session is blocked
    assert_eq!(read("w-4"), 200);
    let refused = s.req_as(Some(&doctor), "GET", "Patient/w-1", &[], None);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("blocked after unusual activity"), "{}", refused.text);
    // not even by break-the-glass: nothing is opened
    let btg = s.req_as(Some(&doctor), "GET", "Patient/w-5", &[("X-Break-Glass-Reason", "emergency, really")], None);
    assert_eq!(btg.status, 403, "{}", btg.text);
    assert_eq!(s.get("Consent?patient=Patient/w-5").json()["total"], 0);
    let out = alerts(s);
    assert!(out.contains("suspicious-activity") && out.contains("opened the records of 4 patients"), "{out}");
    for p in ["w-1", "w-2", "w-3", "w-4"] {
        assert!(told(s, p).iter().any(|t| t.contains("Unusual activity was detected")), "{p}");
    }
    assert!(told(s, "w-5").is_empty(), "w-5 was not opened");
    // the session is revoked in the store too (no refresh, no other server process)
    let session = s.sql_text("SELECT data FROM records WHERE kind = 'session' AND data LIKE '%\"dr-w\"%'");
    assert!(session.contains("\"revoked\":true"), "{session}");
}

/// A request from another loopback address (Python's client can bind one).
fn get_from(s: &Server, source: &str, token: &str, path: &str) -> u16 {
    let url = s.url(path);
    let script = r#"
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, source_address=(sys.argv[2], 0))
c.request("GET", u.path + ("?" + u.query if u.query else ""), headers={"Authorization": "Bearer " + sys.argv[3]})
print(c.getresponse().status)
"#;
    let out = std::process::Command::new("python3").args(["-c", script, &url, source, token]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn night_from_a_new_address(s: &mut Server) {
    let doctor = clinic(s, 2);
    // the doctor's usual address (their first is not "new"), even at night
    assert_eq!(s.req_as(Some(&doctor), "GET", "Patient/w-1", &[], None).status, 200);
    assert_eq!(s.req_as(Some(&doctor), "GET", "Patient/w-1", &[], None).status, 200);
    assert!(!alerts(s).contains("suspicious-activity"));
    // another address, at night (the night is all day here)
    assert_eq!(get_from(s, "127.0.0.2", &doctor, "Patient/w-2"), 200);
    assert_eq!(s.req_as(Some(&doctor), "GET", "Patient/w-1", &[], None).status, 403);
    let out = alerts(s);
    assert!(out.contains("(night hours) from an address not seen before: 127.0.0.2"), "{out}");
    assert!(told(s, "w-2").iter().any(|t| t.contains("Unusual activity was detected")));
}

fn export_is_told(s: &mut Server) {
    clinic(s, 3);
    s.put(
        "Group/g-w",
        &json!({"resourceType": "Group", "id": "g-w", "type": "person", "actual": true,
            "member": [{"entity": {"reference": "Patient/w-2"}}, {"entity": {"reference": "Patient/w-3"}}]}),
    );
    let r = s.req("GET", "Group/g-w/$export", &[("Prefer", "respond-async")], None);
    assert_eq!(r.status, 202, "{}", r.text);
    let status = s.path_of(r.header("content-location").unwrap());
    let mut done = false;
    for _ in 0..200 {
        if s.get(&status).status == 200 {
            done = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(done);
    for p in ["w-2", "w-3"] {
        let notes = told(s, p);
        assert!(notes.iter().any(|t| t.contains("Your health record was exported by")), "{p}: {notes:?}");
    }
    assert!(!told(s, "w-1").iter().any(|t| t.contains("exported")));
}

const LIMITS: &[&str] = &["--suspicious-patients", "3", "--suspicious-window", "600", "--night-hours", "off"];
const NIGHT: &[&str] = &["--suspicious-patients", "0", "--night-hours", "0-24"];

fn on(backend: &str, extra: &[&str], scenario: fn(&mut Server)) {
    let b = match backend {
        "sqlite" => Backend::Sqlite(tempfile::tempdir().unwrap()),
        _ => Backend::Postgres(store_tests::PgDatabase::create()),
    };
    scenario(&mut Server::start(b, extra));
}

#[test]
fn sqlite_many_records() {
    on("sqlite", LIMITS, many_records);
}

#[test]
fn postgres_many_records() {
    on("postgres", LIMITS, many_records);
}

#[test]
fn sqlite_night_from_a_new_address() {
    on("sqlite", NIGHT, night_from_a_new_address);
}

#[test]
fn postgres_export_is_told() {
    on("postgres", &[], export_is_told);
}

#[test]
fn sqlite_export_is_told() {
    on("sqlite", &[], export_is_told);
}
