//! Consent over HTTP, on both backends: the consent matrix. A doctor of one clinic and
//! the records of a patient outside its care (and one in it): grant, section grant,
//! revocation (with the token already issued), expiry, refusal, a request the patient
//! approves, and break-the-glass — each checked for read, search, include, count,
//! history and export (`$everything` and bulk `$export`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::Server;
use serde_json::{Value, json};

const FHIR: &str = "application/fhir+json";

fn observation(id: &str, patient: &str, label: Option<&str>) -> Value {
    let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
    if let Some(l) = label {
        o["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": l}]});
    }
    o
}

fn consent(patient: &str, kind: &str, actor: &str, extra: Value) -> Value {
    let mut provision = json!({"type": kind, "actor": [{"role": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
        "reference": {"reference": actor}}]});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            provision[k] = v;
        }
    }
    json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision})
}

/// What the doctor reaches of patient `p`'s record, by every path.
#[derive(Debug, PartialEq)]
struct Reach {
    read: u16,
    search: u64,
    count: u64,
    include: bool,
    history: u16,
    everything: usize,
    export: usize,
}

fn reach(s: &Server, token: &str, p: &str) -> Reach {
    let get = |path: &str| s.req_as(Some(token), "GET", path, &[], None);
    let total = |path: &str| {
        let r = get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        r.json()["total"].as_u64().unwrap()
    };
    let included = get(&format!("Observation?subject=Patient/{p}&_include=Observation:subject")).json();
    let include = included["entry"]
        .as_array()
        .is_some_and(|es| es.iter().any(|e| e["search"]["mode"] == "include" && e["resource"]["id"] == p));
    let everything = get(&format!("Patient/{p}/$everything"));
    let everything = if everything.status == 200 {
        everything.json()["entry"]
            .as_array()
            .map_or(0, |e| e.iter().filter(|x| x["resource"]["resourceType"] == "Observation").count())
    } else {
        0
    };
    // bulk export of the patients the doctor may see: this patient's observations
    let exported = |kickoff: &str| -> usize {
        let r = s.req_as(Some(token), "GET", kickoff, &[("Prefer", "respond-async")], None);
        assert_eq!(r.status, 202, "{}", r.text);
        let status = s.path_of(r.header("content-location").unwrap());
        let mut manifest = Value::Null;
        for _ in 0..200 {
            let r = s.req_as(Some(token), "GET", &status, &[], None);
            if r.status == 200 {
                manifest = r.json();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        manifest["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["type"] == "Observation")
            .map(|o| {
                let r = s.req_as(Some(token), "GET", &s.path_of(o["url"].as_str().unwrap()), &[], None);
                r.text.lines().filter(|l| l.contains(&format!("Patient/{p}\""))).count()
            })
            .sum()
    };
    let export = exported("Patient/$export?_type=Observation");
    // naming the patient (Bulk Data `patient`) reaches no further than not naming them
    let named = exported(&format!("Patient/$export?_type=Observation&patient=Patient/{p}"));
    assert_eq!(named, export, "patient=Patient/{p} exports what the caller may read, no more");
    Reach {
        read: get(&format!("Observation/obs-{p}")).status,
        search: total(&format!("Observation?subject=Patient/{p}")),
        count: total(&format!("Observation?subject=Patient/{p}&_summary=count")),
        include,
        history: get(&format!("Observation/obs-{p}/_history")).status,
        everything,
        export,
    }
}

const CLOSED: Reach = Reach { read: 403, search: 0, count: 0, include: false, history: 403, everything: 0, export: 0 };
/// Open, the sensitive section (one of two observations) still closed.
const OPEN: Reach = Reach { read: 200, search: 1, count: 1, include: true, history: 200, everything: 1, export: 1 };
/// Open with the sensitive section.
const WHOLE: Reach = Reach { read: 200, search: 2, count: 2, include: true, history: 200, everything: 2, export: 2 };

fn consent_matrix(s: &mut Server) {
    s.put("Organization/org-1", &json!({"resourceType": "Organization", "id": "org-1", "name": "Поликлиника 1"}));
    s.put("Practitioner/pr-1", &json!({"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Иванова"}]}));
    for p in ["p-out", "p-care", "p-btg"] {
        let mut patient = json!({"resourceType": "Patient", "id": p});
        if p == "p-care" {
            patient["managingOrganization"] = json!({"reference": "Organization/org-1"});
        }
        s.put(&format!("Patient/{p}"), &patient);
        s.put(&format!("Observation/obs-{p}"), &observation(&format!("obs-{p}"), p, None));
        s.put(&format!("Observation/hiv-{p}"), &observation(&format!("hiv-{p}"), p, Some("HIV")));
    }
    let dr = s.user_token(
        "dr-ivanova",
        "doctor",
        &["--organization", "Organization/org-1", "--practitioner", "Practitioner/pr-1"],
    );
    let pat = s.user_token("pat-out", "patient", &["--patient", "Patient/p-out"]);
    let pat_care = s.user_token("pat-care", "patient", &["--patient", "Patient/p-care"]);
    let as_ = |t: &str, m: &str, path: &str, body: Option<&Value>| {
        let body = body.map(Value::to_string);
        s.req_as(Some(t), m, path, &[("Content-Type", FHIR)], body.as_deref())
    };

    // the default: the clinic's own patient (without the sensitive section), nobody else
    assert_eq!(reach(s, &dr, "p-care"), OPEN);
    assert_eq!(reach(s, &dr, "p-out"), CLOSED);
    let refused = as_(&dr, "GET", "Observation/obs-p-out", None);
    assert!(refused.text.contains("Consent required"), "{}", refused.text);
    assert_eq!(as_(&dr, "GET", "Observation/hiv-p-care", None).status, 403, "sensitive section");

    // grant: the patient opens the record to the doctor, with their own token
    let c = as_(&pat, "POST", "Consent", Some(&consent("p-out", "permit", "Practitioner/pr-1", json!({}))));
    assert_eq!(c.status, 201, "{}", c.text);
    let grant = c.json();
    assert_eq!(reach(s, &dr, "p-out"), OPEN);
    // section grant: HIV too
    let section = consent(
        "p-out",
        "permit",
        "Practitioner/pr-1",
        json!({"securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}]}),
    );
    let c = as_(&pat, "POST", "Consent", Some(&section));
    assert_eq!(c.status, 201, "{}", c.text);
    let section = c.json();
    assert_eq!(reach(s, &dr, "p-out"), WHOLE);
    // a patient consents only for themselves
    assert_eq!(
        as_(&pat, "POST", "Consent", Some(&consent("p-care", "permit", "Practitioner/pr-1", json!({})))).status,
        403
    );
    // revocation: inactive, and deleted; the doctor's token is the same one
    let mut g = grant.clone();
    g["status"] = json!("inactive");
    assert_eq!(as_(&pat, "PUT", &format!("Consent/{}", g["id"].as_str().unwrap()), Some(&g)).status, 200);
    assert_eq!(as_(&pat, "DELETE", &format!("Consent/{}", section["id"].as_str().unwrap()), None).status / 100, 2);
    assert_eq!(reach(s, &dr, "p-out"), CLOSED);
    // expiry: a grant that ended yesterday gives nothing; one until next year does
    let ended = consent(
        "p-out",
        "permit",
        "Organization/org-1",
        json!({"period": {"start": "2020-01-01", "end": "2021-01-01"}}),
    );
    assert_eq!(as_(&pat, "POST", "Consent", Some(&ended)).status, 201);
    assert_eq!(reach(s, &dr, "p-out"), CLOSED);
    let until = consent(
        "p-out",
        "permit",
        "Organization/org-1",
        json!({"period": {"start": "2020-01-01", "end": "2999-01-01"}}),
    );
    let c = as_(&pat, "POST", "Consent", Some(&until)).json();
    assert_eq!(reach(s, &dr, "p-out"), OPEN, "a grant to the organisation");
    assert_eq!(as_(&pat, "DELETE", &format!("Consent/{}", c["id"].as_str().unwrap()), None).status / 100, 2);
    // refusal: the clinic's own patient closes the record to it
    let c = as_(&pat_care, "POST", "Consent", Some(&consent("p-care", "deny", "Organization/org-1", json!({}))));
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(reach(s, &dr, "p-care"), CLOSED);
    assert_eq!(
        as_(&pat_care, "DELETE", &format!("Consent/{}", c.json()["id"].as_str().unwrap()), None).status / 100,
        2
    );
    assert_eq!(reach(s, &dr, "p-care"), OPEN);

    // request and approval: the doctor asks, the patient sees the request and approves it
    let mut ask = consent("p-out", "permit", "Practitioner/pr-1", json!({}));
    ask["status"] = json!("proposed");
    let r = as_(&dr, "POST", "Consent", Some(&ask));
    assert_eq!(r.status, 201, "{}", r.text);
    let mut active = ask.clone();
    active["status"] = json!("active");
    assert_eq!(as_(&dr, "POST", "Consent", Some(&active)).status, 403, "a doctor cannot grant themselves access");
    let mut for_others = consent("p-out", "permit", "Practitioner/pr-2", json!({}));
    for_others["status"] = json!("proposed");
    assert_eq!(as_(&dr, "POST", "Consent", Some(&for_others)).status, 403, "a request names the asker only");
    assert_eq!(reach(s, &dr, "p-out"), CLOSED, "asked, not yet answered");
    let pending = as_(&pat, "GET", "Consent?status=proposed", None).json();
    assert_eq!(pending["total"], 1, "{pending}");
    let mut answer = pending["entry"][0]["resource"].clone();
    answer["status"] = json!("active");
    assert_eq!(as_(&pat, "PUT", &format!("Consent/{}", answer["id"].as_str().unwrap()), Some(&answer)).status, 200);
    assert_eq!(reach(s, &dr, "p-out"), OPEN);

    // break-the-glass: a reason is required; then the record opens (sections too) for a
    // few hours, the patient is told at once, and the audit log says why
    assert_eq!(reach(s, &dr, "p-btg"), CLOSED);
    let no_reason = s.req_as(Some(&dr), "GET", "Patient/p-btg", &[("X-Break-Glass-Reason", "")], None);
    assert_eq!(no_reason.status, 400, "{}", no_reason.text);
    let btg = s.req_as(
        Some(&dr),
        "GET",
        "Patient/p-btg",
        &[("X-Break-Glass-Reason", "unconscious in the emergency room")],
        None,
    );
    assert_eq!(btg.status, 200, "{}", btg.text);
    assert_eq!(reach(s, &dr, "p-btg"), WHOLE);
    let pat_btg = s.user_token("pat-btg", "patient", &["--patient", "Patient/p-btg"]);
    // told at once of the break-the-glass (with the reason), and of the clinic's first access
    let told = as_(&pat_btg, "GET", "Communication?category=alert", None).json();
    assert_eq!(told["total"], 1, "{told}");
    assert!(told["entry"][0]["resource"]["payload"][0]["contentString"].as_str().unwrap().contains("unconscious"));
    // and of the export that named them (`patient=`); the clinic's first access once
    let first = as_(&pat_btg, "GET", "Communication?category=notification", None).json();
    let texts: Vec<&str> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["payload"][0]["contentString"].as_str())
        .collect();
    assert_eq!(texts.iter().filter(|t| t.contains("for the first time")).count(), 1, "{first}");
    assert_eq!(texts.iter().filter(|t| t.contains("exported")).count(), 1, "{first}");
    let log = as_(&pat_btg, "GET", "AuditEvent", None).json();
    let btg: Vec<(String, String)> = log["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["purposeOfEvent"][0]["coding"][0]["code"] == "BTG" && r["outcome"] == "0")
        .map(|r| {
            (
                r["subtype"][0]["code"].as_str().unwrap().to_string(),
                r["purposeOfEvent"][0]["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let why = "unconscious in the emergency room".to_string();
    // newest first: the read, the grant and the notification written for it
    assert_eq!(
        btg,
        vec![("read".into(), why.clone()), ("create".into(), why.clone()), ("create".into(), why)],
        "{log}"
    );
    // the emergency grant is a Consent the patient sees (and may end)
    let grants = as_(&pat_btg, "GET", "Consent", None).json();
    assert_eq!(grants["entry"][0]["resource"]["provision"]["purpose"][0]["code"], "BTG", "{grants}");
    // a patient cannot break the glass
    assert_eq!(
        s.req_as(Some(&pat), "GET", "Patient/p-out", &[("X-Break-Glass-Reason", "curious about it")], None).status,
        403
    );
}

/// A PUT that must succeed.
fn put_ok(s: &Server, path: &str, body: &Value) {
    let r = s.put(path, body);
    assert!(r.status < 300, "{path}: {}", r.text);
}

/// The patients of the default policy's relations, and one outside all of them.
fn policy_data(s: &Server) -> String {
    put_ok(s, "Organization/org-c", &json!({"resourceType": "Organization", "id": "org-c", "name": "Clinic C"}));
    put_ok(s, "Practitioner/pr-c", &json!({"resourceType": "Practitioner", "id": "pr-c"}));
    for p in ["c-reg", "c-enc", "c-app", "c-app-x", "c-ref", "c-none"] {
        let mut patient = json!({"resourceType": "Patient", "id": p});
        if p == "c-reg" {
            patient["managingOrganization"] = json!({"reference": "Organization/org-c"});
        }
        put_ok(s, &format!("Patient/{p}"), &patient);
    }
    put_ok(
        s,
        "Encounter/c-e1",
        &json!({"resourceType": "Encounter", "id": "c-e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/c-enc"}, "serviceProvider": {"reference": "Organization/org-c"}}),
    );
    for (id, patient, status) in [("c-a1", "c-app", "booked"), ("c-a2", "c-app-x", "cancelled")] {
        put_ok(
            s,
            &format!("Appointment/{id}"),
            &json!({"resourceType": "Appointment", "id": id, "status": status,
                "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:20:00Z", "participant": [
                {"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/pr-c"}, "status": "accepted"}]}),
        );
    }
    put_ok(
        s,
        "ServiceRequest/c-r1",
        &json!({"resourceType": "ServiceRequest", "id": "c-r1", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/c-ref"}, "performer": [{"reference": "Organization/org-c"}]}),
    );
    s.user_token("dr-c", "doctor", &["--organization", "Organization/org-c", "--practitioner", "Practitioner/pr-c"])
}

fn reads(s: &Server, token: &str) -> Vec<(String, u16)> {
    ["c-reg", "c-enc", "c-app", "c-app-x", "c-ref", "c-none"]
        .iter()
        .map(|p| (p.to_string(), s.req_as(Some(token), "GET", &format!("Patient/{p}"), &[], None).status))
        .collect()
}

fn default_policy(s: &mut Server) {
    let dr = policy_data(s);
    let expect = [("c-reg", 200), ("c-enc", 200), ("c-app", 200), ("c-app-x", 403), ("c-ref", 200), ("c-none", 403)];
    assert_eq!(reads(s, &dr), expect.map(|(p, c)| (p.to_string(), c)).to_vec());
    // a search sees the same patients
    let found = s.req_as(Some(&dr), "GET", "Patient?_count=100", &[], None).json();
    let mut ids: Vec<&str> =
        found["entry"].as_array().unwrap().iter().filter_map(|e| e["resource"]["id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["c-app", "c-enc", "c-ref", "c-reg"]);
    // a token whose purpose of use is break-the-glass (as SMART `purpose_of_use=BTG` gives)
    let (ok, token, err) = s
        .admin(&["token", "--user", "dr-c", "--break-glass", "unconscious, no documents", "--base-url", &s.base], None);
    assert!(ok, "{err}");
    let btg = token.trim();
    // a request naming no patient is an ordinary one
    assert_eq!(s.req_as(Some(btg), "GET", "Practitioner/pr-c", &[], None).status, 200);
    // one naming a patient outside the clinic's care opens that record, and tells them
    assert_eq!(s.req_as(Some(btg), "GET", "Patient/c-none", &[], None).status, 200);
    let told = s.get("Communication?subject=Patient/c-none&category=alert").json();
    assert_eq!(told["total"], 1, "{told}");
    assert!(told.to_string().contains("unconscious, no documents"), "{told}");
    // the ordinary token of the same doctor is not opened to anything else by it
    assert_eq!(s.req_as(Some(&dr), "GET", "Patient/c-app-x", &[], None).status, 403);
}

/// `--care-relations none`: records open only by the patients' consent; a single
/// relation counts alone.
fn configured_policy(backend: fn() -> common::Backend) {
    let s = Server::start(backend(), &["--care-relations", "none"]);
    let dr = policy_data(&s);
    assert!(reads(&s, &dr).iter().all(|(_, c)| *c == 403), "{:?}", reads(&s, &dr));
    let pat = s.user_token("pat-c", "patient", &["--patient", "Patient/c-reg"]);
    let grant = consent("c-reg", "permit", "Organization/org-c", json!({}));
    let r = s.req_as(Some(&pat), "POST", "Consent", &[("Content-Type", FHIR)], Some(&grant.to_string()));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(s.req_as(Some(&dr), "GET", "Patient/c-reg", &[], None).status, 200);
    // a consent naming the doctor's PractitionerRole (active, at their clinic)
    put_ok(
        &s,
        "PractitionerRole/c-role",
        &json!({"resourceType": "PractitionerRole", "id": "c-role", "active": true,
            "practitioner": {"reference": "Practitioner/pr-c"}, "organization": {"reference": "Organization/org-c"}}),
    );
    let pat = s.user_token("pat-c2", "patient", &["--patient", "Patient/c-enc"]);
    let grant = consent("c-enc", "permit", "PractitionerRole/c-role", json!({}));
    let r = s.req_as(Some(&pat), "POST", "Consent", &[("Content-Type", FHIR)], Some(&grant.to_string()));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(s.req_as(Some(&dr), "GET", "Patient/c-enc", &[], None).status, 200);
    assert_eq!(s.req_as(Some(&dr), "GET", "Patient/c-none", &[], None).status, 403);
    let s = Server::start(backend(), &["--care-relations", "referral"]);
    let dr = policy_data(&s);
    let open: Vec<String> = reads(&s, &dr).into_iter().filter(|(_, c)| *c == 200).map(|(p, _)| p).collect();
    assert_eq!(open, ["c-ref"]);
}

#[test]
fn sqlite_configured_policy() {
    configured_policy(|| common::Backend::Sqlite(tempfile::tempdir().unwrap()));
}

#[test]
fn postgres_configured_policy() {
    configured_policy(|| common::Backend::Postgres(store_tests::PgDatabase::create()));
}

on_both_backends!(consent_matrix, default_policy);
