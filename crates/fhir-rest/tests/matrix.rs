//! The adversarial matrix, generated: every role × every relation to a patient's record
//! × every interaction and bundle entry kind, through the engine (the guard underneath),
//! on SQLite and PostgreSQL. The expectation of each cell comes from a short table of
//! rules — may the role do this kind of thing to Observations at all ([`Role`]), and is
//! the record within its reach ([`Role::reaches`]) — not from a second copy of the policy.
//! Each cell asserts the status class, that the record's marker (a value only its
//! Observations carry) appears nowhere in a refused answer's body or headers, that
//! refused searches count nothing, and that nothing was written where it must not be.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::sync::Arc;

use auth::account::{Role as AccountRole, RoleGrant};
use auth::directory::Caller;
use auth::scope::Scopes;
use fhir_rest::{Body, Config, Engine, Method, Principal, Request, Response, SystemActor};
use serde_json::{Value, json};

/// How a caller stands to the record a cell is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    /// The patient's own record (managed by clinic A, so also in A's care).
    Own,
    /// In the care of clinic A.
    Care,
    /// In the care of clinic B only.
    Out,
    /// Clinic B's, opened to clinic A by the patient's consent.
    Consented,
    /// Clinic B's; the consent to clinic A was revoked.
    Revoked,
    /// Clinic B's, opened by break-the-glass (the first request of each caller asks).
    Btg,
}

const RELS: [Rel; 6] = [Rel::Own, Rel::Care, Rel::Out, Rel::Consented, Rel::Revoked, Rel::Btg];

fn patient_of(rel: Rel) -> &'static str {
    match rel {
        Rel::Own => "p-own",
        Rel::Care => "p-care",
        Rel::Out => "p-out",
        Rel::Consented => "p-consented",
        Rel::Revoked => "p-revoked",
        Rel::Btg => "p-btg",
    }
}

fn marker(patient: &str) -> String {
    format!("marker-{patient}")
}

/// The interactions and bundle entry kinds tried on each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Read,
    Vread,
    History,
    Search,
    Count,
    Elements,
    Include,
    RevInclude,
    Chain,
    Has,
    Compartment,
    Everything,
    BatchRead,
    Create,
    ConditionalCreate,
    Update,
    ConditionalUpdate,
    JsonPatch,
    FhirPathPatch,
    Delete,
    ConditionalDelete,
    TransactionUpdate,
    TransactionCreate,
    Validate,
    SystemSearch,
    TypeHistory,
    IncludeIterate,
    BatchUpdate,
    TransactionDelete,
    TransactionConditionalCreate,
}

const ACTS: [Act; 30] = [
    Act::Read,
    Act::Vread,
    Act::History,
    Act::Search,
    Act::Count,
    Act::Elements,
    Act::Include,
    Act::RevInclude,
    Act::Chain,
    Act::Has,
    Act::Compartment,
    Act::Everything,
    Act::BatchRead,
    Act::Create,
    Act::ConditionalCreate,
    Act::Update,
    Act::ConditionalUpdate,
    Act::JsonPatch,
    Act::FhirPathPatch,
    Act::Delete,
    Act::ConditionalDelete,
    Act::TransactionUpdate,
    Act::TransactionCreate,
    Act::Validate,
    Act::SystemSearch,
    Act::TypeHistory,
    Act::IncludeIterate,
    Act::BatchUpdate,
    Act::TransactionDelete,
    Act::TransactionConditionalCreate,
];

impl Act {
    fn writes(self) -> bool {
        matches!(
            self,
            Act::Create
                | Act::ConditionalCreate
                | Act::Update
                | Act::ConditionalUpdate
                | Act::JsonPatch
                | Act::FhirPathPatch
                | Act::Delete
                | Act::ConditionalDelete
                | Act::TransactionUpdate
                | Act::TransactionCreate
                | Act::BatchUpdate
                | Act::TransactionDelete
                | Act::TransactionConditionalCreate
        )
    }
}

/// A role, and the rules that say what it may do.
struct Role {
    name: &'static str,
    principal: Principal,
    /// May read Observations at all; may write them.
    reads: bool,
    writes: bool,
    /// Which records it reaches.
    reach: &'static [Rel],
    /// Reaches every Observation (chains and `_has` through a type need that).
    full: bool,
    /// A clinician (break-the-glass is theirs).
    clinician: bool,
}

impl Role {
    fn reaches(&self, rel: Rel) -> bool {
        self.reach.contains(&rel)
    }

    fn allowed(&self, act: Act, rel: Rel) -> bool {
        let kind = if act.writes() { self.writes } else { self.reads };
        match act {
            // $validate reads nothing of the record: read access to the type is enough
            Act::Validate => self.reads,
            // `_has:Observation` tests Observations inside the query, and searches and
            // history across the system or a whole type need them all in reach
            Act::Has | Act::SystemSearch | Act::TypeHistory => self.full,
            // the request that asks for break-the-glass (the others follow the reach)
            Act::Read if rel == Rel::Btg => self.clinician && self.reaches(rel),
            _ => kind && self.reaches(rel),
        }
    }
}

const CLINICIAN: &[Rel] = &[Rel::Own, Rel::Care, Rel::Consented, Rel::Btg];

fn caller(sid: &str, role: Option<AccountRole>, scopes: &str, context: Option<&str>, limited: bool) -> Principal {
    let grant = role.map(|role| RoleGrant {
        role,
        organization: (role != AccountRole::Patient).then(|| "Organization/org-a".into()),
        practitioner: matches!(role, AccountRole::Doctor | AccountRole::Nurse)
            .then(|| format!("Practitioner/pr-{sid}")),
        patient: (role == AccountRole::Patient).then(|| "Patient/p-own".into()),
        limited,
    });
    Principal::Token(Box::new(Caller {
        sid: format!("sid-{sid}"),
        username: Some(sid.into()),
        client_id: "matrix".into(),
        scopes: Scopes::parse(scopes).unwrap(),
        grant,
        patient: context.map(str::to_string),
        break_glass: None,
    }))
}

fn roles() -> Vec<Role> {
    use AccountRole::*;
    let all = "user/*.cruds";
    let clinician = |name: &'static str, role, limited| Role {
        name,
        principal: caller(name, Some(role), all, None, limited),
        reads: true,
        writes: true,
        reach: CLINICIAN,
        full: false,
        clinician: true,
    };
    // roles that have no business with clinical records
    let none = |name: &'static str, role| Role {
        name,
        principal: caller(name, Some(role), all, None, false),
        reads: false,
        writes: false,
        reach: &[],
        full: false,
        clinician: false,
    };
    vec![
        Role {
            name: "patient",
            principal: caller("patient", Some(Patient), all, None, false),
            reads: true,
            writes: false,
            reach: &[Rel::Own],
            full: false,
            clinician: false,
        },
        clinician("doctor", Doctor, false),
        clinician("nurse", Nurse, false),
        clinician("limited", Doctor, true),
        none("registrar", Registrar),
        none("administrator", Administrator),
        none("analyst", Analyst),
        none("security", SecurityOfficer),
        // a doctor's app with narrow SMART scopes and a patient in context
        Role {
            name: "smart-app",
            principal: caller("app", Some(Doctor), "patient/Observation.rs patient/Patient.rs", Some("p-care"), false),
            reads: true,
            writes: false,
            reach: &[Rel::Care],
            full: false,
            clinician: false,
        },
        // a backend system that may read Observations (and Patients) only
        Role {
            name: "system-reader",
            principal: caller("reader", None, "system/Observation.rs system/Patient.rs", None, false),
            reads: true,
            writes: false,
            reach: &RELS,
            full: true,
            clinician: false,
        },
    ]
}

struct World {
    engine: Engine,
    sys: Principal,
}

impl World {
    fn call(&self, principal: &Principal, method: Method, path: &str, query: &str, body: Option<Value>) -> Response {
        self.call_with(principal, method, path, query, body, |_| {})
    }

    fn call_with(
        &self,
        principal: &Principal,
        method: Method,
        path: &str,
        query: &str,
        body: Option<Value>,
        more: impl FnOnce(&mut Request),
    ) -> Response {
        let mut r = Request::new(principal.clone(), method, path, query);
        if let Some(b) = body {
            r.body = Body::Json(b);
        }
        more(&mut r);
        self.engine.handle(&r)
    }

    fn put(&self, v: Value) {
        let path = format!("{}/{}", v["resourceType"].as_str().unwrap(), v["id"].as_str().unwrap());
        let r = self.call(&self.sys, Method::Put, &path, "", Some(v));
        assert!(r.status < 300, "{path}: {:?}", r.body_json());
    }

    /// Version of a resource as the system sees it (0: gone).
    fn version(&self, path: &str) -> u64 {
        let r = self.call(&self.sys, Method::Get, path, "", None);
        if r.status != 200 {
            return 0;
        }
        r.body_json().unwrap()["meta"]["versionId"].as_str().unwrap().parse().unwrap()
    }

    fn count(&self, patient: &str) -> u64 {
        let r = self.call(
            &self.sys,
            Method::Get,
            "Observation",
            &format!("subject=Patient/{patient}&_summary=count"),
            None,
        );
        r.body_json().unwrap()["total"].as_u64().unwrap()
    }
}

fn observation(id: Option<&str>, patient: &str, value: &str) -> Value {
    let mut o = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")}, "valueString": value});
    if let Some(id) = id {
        o["id"] = json!(id);
    }
    o
}

fn consent(id: &str, patient: &str, status: &str) -> Value {
    json!({"resourceType": "Consent", "id": id, "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit", "actor": [{"role": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": "Organization/org-a"}}]}})
}

fn world(store: Arc<dyn store::Store>) -> World {
    let engine =
        Engine::new(fhir_rest::Guard::open(store), Config::default(), fhir_rest::operations::Operations::standard());
    let w = World { engine, sys: Principal::System(SystemActor::new("system:matrix")) };
    for org in ["org-a", "org-b"] {
        w.put(json!({"resourceType": "Organization", "id": org, "name": org}));
    }
    for rel in RELS {
        let p = patient_of(rel);
        let org = if matches!(rel, Rel::Own | Rel::Care) { "org-a" } else { "org-b" };
        w.put(json!({"resourceType": "Patient", "id": p,
            "identifier": [{"system": "urn:matrix", "value": format!("id-{p}")}],
            "managingOrganization": {"reference": format!("Organization/{org}")}}));
        w.put(observation(Some(&format!("obs-{p}")), p, &marker(p)));
    }
    w.put(consent("c-consented", "p-consented", "active"));
    w.put(consent("c-revoked", "p-revoked", "inactive"));
    w
}

/// Run one cell; returns what to report if it went wrong.
fn cell(w: &World, role: &Role, act: Act, rel: Rel) -> Result<(), String> {
    let p = patient_of(rel);
    let m = marker(p);
    let who = &role.principal;
    // a fresh resource for each write, so that cells do not see each other's writes
    let fresh = format!("w-{}-{act:?}-{p}", role.name).to_lowercase();
    if act.writes() {
        // its value carries the marker, but a search for the marker does not find it
        w.put(observation(Some(&fresh), p, &format!("w-{m}")));
    }
    let target = if act.writes() { fresh.clone() } else { format!("obs-{p}") };
    let path = format!("Observation/{target}");
    let before = (w.version(&path), w.count(p));
    let btg = |r: &mut Request| {
        if rel == Rel::Btg && act == Act::Read {
            r.break_glass = Some("matrix: unconscious patient in the emergency room".into());
        }
    };
    let json_patch = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    let fhirpath_patch = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Observation.status"},
        {"name": "value", "valueCode": "amended"}]}]});
    let mut updated = observation(Some(&target), p, &format!("w-{m}"));
    updated["status"] = json!("amended");
    let r = match act {
        Act::Read => w.call_with(who, Method::Get, &path, "", None, btg),
        Act::Vread => w.call(who, Method::Get, &format!("{path}/_history/1"), "", None),
        Act::History => w.call(who, Method::Get, &format!("{path}/_history"), "", None),
        Act::Search => w.call(who, Method::Get, "Observation", &format!("subject=Patient/{p}"), None),
        Act::Count => w.call(who, Method::Get, "Observation", &format!("subject=Patient/{p}&_summary=count"), None),
        Act::Elements => w.call(who, Method::Get, "Observation", &format!("value-string={m}&_elements=status"), None),
        Act::Include => w.call(who, Method::Get, "Observation", &format!("_id=obs-{p}&_include=Observation:subject"), None),
        Act::RevInclude => w.call(who, Method::Get, "Patient", &format!("_id={p}&_revinclude=Observation:subject"), None),
        Act::Chain => {
            w.call(who, Method::Get, "Observation", &format!("subject:Patient.identifier=urn:matrix|id-{p}"), None)
        }
        Act::Has => w.call(who, Method::Get, "Patient", &format!("_has:Observation:subject:value-string={m}"), None),
        Act::Compartment => w.call(who, Method::Get, &format!("Patient/{p}/Observation"), "", None),
        Act::Everything => w.call(who, Method::Get, &format!("Patient/{p}/$everything"), "", None),
        Act::BatchRead => w.call(who, Method::Post, "", "", Some(json!({"resourceType": "Bundle", "type": "batch",
            "entry": [{"request": {"method": "GET", "url": path}}]}))),
        Act::Create => w.call(who, Method::Post, "Observation", "", Some(observation(None, p, &format!("w-{m}")))),
        Act::ConditionalCreate => w.call_with(who, Method::Post, "Observation", "", Some(observation(None, p, "new")), |r| {
            r.if_none_exist = Some(format!("value-string={m}&subject=Patient/{p}"));
        }),
        Act::Update => w.call(who, Method::Put, &path, "", Some(updated)),
        Act::ConditionalUpdate => {
            let mut body = updated;
            body.as_object_mut().unwrap().remove("id");
            w.call(who, Method::Put, "Observation", &format!("_id={target}"), Some(body))
        }
        Act::JsonPatch => w.call_with(who, Method::Patch, &path, "", Some(json_patch), |r| r.json_patch = true),
        Act::FhirPathPatch => w.call(who, Method::Patch, &path, "", Some(fhirpath_patch)),
        Act::Delete => w.call(who, Method::Delete, &path, "", None),
        Act::ConditionalDelete => w.call(who, Method::Delete, "Observation", &format!("_id={target}"), None),
        Act::TransactionUpdate => w.call(who, Method::Post, "", "", Some(json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": updated, "request": {"method": "PUT", "url": path}}]}))),
        Act::TransactionCreate => w.call(who, Method::Post, "", "", Some(json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": "urn:uuid:6a9e2b30-0000-4000-8000-000000000001", "resource": observation(None, p, &format!("w-{m}")),
                       "request": {"method": "POST", "url": "Observation"}}]}))),
        Act::Validate => w.call(who, Method::Post, "Observation/$validate", "", Some(observation(None, p, "x"))),
        Act::SystemSearch => w.call(who, Method::Get, "", &format!("_type=Observation&_id=obs-{p}"), None),
        Act::TypeHistory => w.call(who, Method::Get, "Observation/_history", "_count=1", None),
        Act::IncludeIterate => w.call(
            who,
            Method::Get,
            "Patient",
            &format!("_id={p}&_revinclude=Observation:subject&_include:iterate=Observation:subject"),
            None,
        ),
        Act::BatchUpdate => w.call(who, Method::Post, "", "", Some(json!({"resourceType": "Bundle", "type": "batch",
            "entry": [{"resource": updated, "request": {"method": "PUT", "url": path}}]}))),
        Act::TransactionDelete => w.call(who, Method::Post, "", "", Some(json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": path}}]}))),
        Act::TransactionConditionalCreate => w.call(who, Method::Post, "", "", Some(json!({"resourceType": "Bundle",
            "type": "transaction", "entry": [{"fullUrl": "urn:uuid:6a9e2b30-0000-4000-8000-000000000002",
            "resource": observation(None, p, "new"), "request": {"method": "POST", "url": "Observation",
            "ifNoneExist": format!("_id={target}")}}]}))),
    };
    // the answer without its links (they repeat the caller's own query)
    let body = r
        .body_json()
        .map(|mut b| {
            if let Some(o) = b.as_object_mut() {
                o.remove("link");
            }
            b.to_string()
        })
        .unwrap_or_default();
    let headers = format!("{:?} {:?} {:?} {:?}", r.location, r.content_location, r.etag, r.headers);
    let after = (w.version(&path), w.count(p));
    let allowed = role.allowed(act, rel);
    let fail = |why: &str| Err(format!("{} {act:?} {rel:?}: {why} (status {}, body {body})", role.name, r.status));
    // a batch answers 200 around the entry's own status
    let status = match act {
        Act::BatchRead | Act::BatchUpdate => json_status(&r, 0),
        _ => r.status,
    };
    if allowed {
        if status >= 300 {
            return fail("refused, but the rules allow it");
        }
        let effect = match act {
            Act::Create | Act::TransactionCreate => after.1 == before.1 + 1,
            Act::Update
            | Act::ConditionalUpdate
            | Act::JsonPatch
            | Act::FhirPathPatch
            | Act::TransactionUpdate
            | Act::BatchUpdate => after.0 == before.0 + 1,
            Act::Delete | Act::ConditionalDelete | Act::TransactionDelete => after.0 == 0,
            // matched the marked one: nothing created
            Act::ConditionalCreate | Act::TransactionConditionalCreate => after.1 == before.1,
            // the newest version of any Observation
            Act::TypeHistory => total(&r) >= 1,
            Act::Validate => true,
            Act::Elements => body.contains(&format!("obs-{p}")),
            _ => body.contains(&m) || (act == Act::Count && total(&r) >= 1) || (act == Act::Has && total(&r) >= 1),
        };
        if !effect {
            return fail("allowed, but it did not do what it should");
        }
        return Ok(());
    }
    // refused: nothing of the record, nothing counted, nothing written
    if body.contains(&m) || headers.contains(&target) {
        return fail("the record's data is in the answer");
    }
    if status == 200 && total(&r) > 0 && !matches!(act, Act::RevInclude | Act::Include | Act::IncludeIterate) {
        return fail("a refused search counts something");
    }
    if matches!(act, Act::RevInclude | Act::IncludeIterate) && body.contains("\"Observation\"") {
        return fail("an Observation was included");
    }
    if after != before {
        return fail(&format!("something was written: {before:?} -> {after:?}"));
    }
    let ok_status = match act {
        // searches outside reach: empty, or refused for the type; $everything of a
        // Patient the caller may read leaves out what they may not
        Act::Search
        | Act::Count
        | Act::Elements
        | Act::Include
        | Act::RevInclude
        | Act::IncludeIterate
        | Act::SystemSearch
        | Act::Chain
        | Act::Has
        | Act::Compartment
        | Act::Everything => matches!(status, 200 | 403 | 404),
        // a conditional delete whose criteria match nothing in reach deletes nothing
        Act::ConditionalDelete => matches!(status, 204 | 403),
        _ => (400..500).contains(&status),
    };
    if !ok_status {
        return fail("an unexpected status for a refusal");
    }
    Ok(())
}

fn total(r: &Response) -> u64 {
    r.body_json().and_then(|b| b["total"].as_u64()).unwrap_or(0)
}

fn json_status(r: &Response, entry: usize) -> u16 {
    r.body_json()
        .and_then(|b| b["entry"][entry]["response"]["status"].as_str().map(str::to_string))
        .and_then(|s| s.split(' ').next().and_then(|n| n.parse().ok()))
        .unwrap_or(r.status)
}

fn run(store: Arc<dyn store::Store>) {
    let w = world(store);
    let mut failures = Vec::new();
    let mut cells = 0;
    for role in roles() {
        for rel in RELS {
            for act in ACTS {
                cells += 1;
                if let Err(e) = cell(&w, &role, act, rel) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(cells, 10 * 6 * ACTS.len());
}

#[test]
fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    run(Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap()));
}

#[test]
fn postgres() {
    let db = store_tests::PgDatabase::create();
    run(Arc::new(store_postgres::PostgresStore::open(&db.url).unwrap()));
}

/// No default caller: a request nobody signed (only the capability statement is public)
/// reaches nothing, whatever it asks.
#[test]
fn an_anonymous_request_reaches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap()));
    let anon = Principal::Anonymous;
    for (method, path, query) in [
        (Method::Get, "Observation/obs-p-own", ""),
        (Method::Get, "Observation", "_summary=count"),
        (Method::Get, "Organization/org-a", ""),
        (Method::Get, "", "_type=Observation"),
        (Method::Get, "Patient/p-own/$everything", ""),
        (Method::Get, "Observation/_history", ""),
    ] {
        let r = w.call(&anon, method, path, query, None);
        assert_eq!(r.status, 403, "{path}?{query}: {:?}", r.body_json());
        assert!(!r.body_json().unwrap().to_string().contains("marker-"));
    }
    let r = w.call(&anon, Method::Post, "Observation", "", Some(observation(None, "p-own", "x")));
    assert_eq!(r.status, 403);
    assert_eq!(w.count("p-own"), 1);
    assert_eq!(w.call(&anon, Method::Get, "metadata", "", None).status, 200);
}
