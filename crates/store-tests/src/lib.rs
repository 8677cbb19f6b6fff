//! The storage conformance suite: the same scenarios run against every backend
//! (`tests/backends.rs` instantiates them for SQLite and PostgreSQL), plus the helpers
//! that give each test a fresh database of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use fhir_model::ResourceType;
use search::{extract, parse_query};
use serde_json::{Value, json};
use store::{HistoryQuery, HistoryScope, Method, NewVersion, Store, StoreError};

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

/// Base URL of the test PostgreSQL server (`MEDKARTA_TEST_PG`, default the local one).
pub fn pg_server() -> String {
    std::env::var("MEDKARTA_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

impl PgDatabase {
    /// Create a uniquely named database on the test server.
    pub fn create() -> PgDatabase {
        let server = pg_server();
        let name = format!("medkarta_test_{}", uuid::Uuid::new_v4().simple());
        let admin = format!("{server}/postgres");
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL must run at {server} for the tests (set MEDKARTA_TEST_PG): {e}"));
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("create database: {e}"));
        PgDatabase { url: format!("{server}/{name}"), admin, name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Write `resource` (a Patient) as its first version inside an open transaction.
fn write_first_version(tx: &mut dyn store::Tx, resource: &Value) {
    let id = resource["id"].as_str().unwrap_or_default();
    let body = serde_json::to_vec(resource).unwrap();
    let index = extract(resource);
    tx.write(&NewVersion {
        resource_type: "Patient",
        id,
        version: 1,
        last_updated: now(),
        method: Method::Create,
        body: Some(&body),
        index: &index,
    })
    .unwrap();
}

fn write(store: &dyn Store, resource: &Value, version: u64, method: Method) -> Result<(), StoreError> {
    let rt = resource["resourceType"].as_str().unwrap_or_default();
    let id = resource["id"].as_str().unwrap_or_default();
    let body = serde_json::to_vec(resource).unwrap_or_default();
    let index = extract(resource);
    let mut tx = store.begin()?;
    tx.write(&NewVersion {
        resource_type: rt,
        id,
        version,
        last_updated: now(),
        method,
        body: (method != Method::Delete).then_some(body.as_slice()),
        index: &index,
    })?;
    tx.commit()
}

fn patient(id: &str, family: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": family}],
        "identifier": [{"system": "urn:test", "value": id}], "birthDate": "1980-05-17"})
}

fn query(rt: &str, q: &str) -> search::Query {
    parse_query(ResourceType::parse(rt).unwrap_or_else(|| panic!("{rt}")), q).unwrap_or_else(|e| panic!("{q}: {e:?}"))
}

/// Versions are kept; the current one is read; history is newest first.
pub fn versions_and_history(store: &dyn Store) {
    write(store, &patient("p1", "Иванов"), 1, Method::Create).unwrap();
    write(store, &patient("p1", "Петров"), 2, Method::Update).unwrap();
    let cur = store.read("Patient", "p1").unwrap().unwrap();
    assert_eq!(cur.version, 2);
    assert!(String::from_utf8_lossy(cur.body.as_deref().unwrap()).contains("Петров"));
    let v1 = store.read_version("Patient", "p1", 1).unwrap().unwrap();
    assert!(String::from_utf8_lossy(v1.body.as_deref().unwrap()).contains("Иванов"));
    assert!(store.read_version("Patient", "p1", 3).unwrap().is_none());
    assert!(store.read("Patient", "nope").unwrap().is_none());

    write(store, &patient("p1", ""), 3, Method::Delete).unwrap();
    let gone = store.read("Patient", "p1").unwrap().unwrap();
    assert!(gone.deleted());
    let (h, total) = store
        .history(&HistoryQuery {
            scope: HistoryScope::Instance("Patient".into(), "p1".into()),
            since: None,
            count: 10,
            offset: 0,
        })
        .unwrap();
    assert_eq!(total, 3);
    assert_eq!(h.iter().map(|s| s.version).collect::<Vec<_>>(), vec![3, 2, 1]);
    assert_eq!(h.iter().map(|s| s.method).collect::<Vec<_>>(), vec![Method::Delete, Method::Update, Method::Create]);
    let (page, _) =
        store.history(&HistoryQuery { scope: HistoryScope::System, since: None, count: 1, offset: 1 }).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].version, 2);
}

/// Writing a version that is not current + 1 is a conflict, and changes nothing.
pub fn stale_version_conflicts(store: &dyn Store) {
    write(store, &patient("p2", "A"), 1, Method::Create).unwrap();
    let e = write(store, &patient("p2", "B"), 1, Method::Update).unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    let e = write(store, &patient("p2", "B"), 3, Method::Update).unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    assert_eq!(store.read("Patient", "p2").unwrap().unwrap().version, 1);
}

/// A transaction dropped without commit leaves no trace, index rows included.
pub fn rollback_leaves_no_trace(store: &dyn Store) {
    {
        let mut tx = store.begin().unwrap();
        write_first_version(tx.as_mut(), &patient("p3", "Сидоров"));
        assert_eq!(tx.current("Patient", "p3").unwrap().map(|c| c.version), Some(1));
        assert_eq!(tx.search_ids(&query("Patient", "family=сидоров"), 5).unwrap(), vec!["p3"]);
    }
    assert!(store.read("Patient", "p3").unwrap().is_none());
    assert_eq!(store.search(&query("Patient", "family=Сидоров"), 10).unwrap().total, Some(0));
    assert_eq!(store.search(&query("Patient", ""), 0).unwrap().total, Some(0), "the count rolled back too");
}

/// Index rows follow the current version: old values stop matching, deleted resources vanish.
pub fn search_follows_current_version(store: &dyn Store) {
    write(store, &patient("s1", "Ёлкин"), 1, Method::Create).unwrap();
    write(store, &patient("s2", "Elkin"), 1, Method::Create).unwrap();
    write(store, &json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/s1"}, "effectiveDateTime": "2024-03-05T10:00:00+03:00"}), 1, Method::Create)
    .unwrap();
    let ids = |rt: &str, q: &str| -> Vec<String> {
        let mut v: Vec<String> =
            store.search(&query(rt, q), 100).unwrap().resources.into_iter().map(|s| s.id).collect();
        v.sort();
        v
    };
    assert_eq!(ids("Patient", "family=елк"), vec!["s1"]);
    assert_eq!(ids("Patient", "family=ЕЛКИН,elkin"), vec!["s1", "s2"]);
    assert_eq!(ids("Patient", "family:exact=Ёлкин"), vec!["s1"]);
    assert_eq!(ids("Patient", "family:exact=ёлкин"), Vec::<String>::new());
    assert_eq!(ids("Patient", "identifier=urn:test|s2"), vec!["s2"]);
    assert_eq!(ids("Patient", "identifier=|s2"), Vec::<String>::new());
    assert_eq!(ids("Patient", "birthdate=1980-05"), vec!["s1", "s2"]);
    assert_eq!(ids("Patient", "birthdate=gt1980-05-17"), Vec::<String>::new());
    assert_eq!(ids("Patient", "birthdate=ge1980-05-17&family=elkin"), vec!["s2"]);
    assert_eq!(ids("Observation", "subject=Patient/s1&code=http://loinc.org|8867-4"), vec!["o1"]);
    assert_eq!(ids("Observation", "patient=s1"), vec!["o1"]);
    assert_eq!(ids("Observation", "date=2024-03-05"), vec!["o1"]);
    assert_eq!(ids("Observation", "date=lt2024-03-05T07:00:00Z"), Vec::<String>::new());
    assert_eq!(ids("Patient", "gender:missing=true"), vec!["s1", "s2"]);
    assert_eq!(ids("Patient", "_id=s2"), vec!["s2"]);
    assert_eq!(ids("Patient", "_id:not=s2"), vec!["s1"]);

    write(store, &patient("s1", "Волков"), 2, Method::Update).unwrap();
    assert_eq!(ids("Patient", "family=елкин"), Vec::<String>::new());
    assert_eq!(ids("Patient", "family=волков"), vec!["s1"]);
    write(store, &patient("s2", ""), 2, Method::Delete).unwrap();
    assert_eq!(ids("Patient", "family=elkin"), Vec::<String>::new());
    let page = store.search(&query("Patient", "birthdate=1980"), 0).unwrap();
    assert_eq!((page.total, page.resources.len()), (Some(1), 0));
    // unfiltered totals come from the per-type counts: deletes and re-creations count
    let all = |rt: &str| store.search(&query(rt, ""), 0).unwrap().total;
    assert_eq!((all("Patient"), all("Observation")), (Some(1), Some(1)));
    write(store, &patient("s2", "Elkin"), 3, Method::Update).unwrap();
    write(store, &patient("s1", "Волков"), 3, Method::Update).unwrap();
    assert_eq!(all("Patient"), Some(2));
    write(store, &patient("s1", ""), 4, Method::Delete).unwrap();
    assert_eq!(all("Patient"), Some(1));
}

/// Number, quantity and the meta parameters (`_lastUpdated`, `_tag`, `_profile`).
pub fn search_numbers_quantities_and_meta(store: &dyn Store) {
    let obs = |id: &str, value: &str, code: &str| {
        let v: Value = serde_json::from_str(&format!(
            r#"{{"resourceType": "Observation", "id": "{id}", "status": "final", "code": {{"text": "hr"}},
               "meta": {{"tag": [{{"system": "urn:tags", "code": "{code}"}}], "profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"],
                        "lastUpdated": "2024-01-01T00:00:00Z"}},
               "valueQuantity": {{"value": {value}, "unit": "beats/min", "system": "http://unitsofmeasure.org", "code": "/min"}}}}"#
        ))
        .unwrap();
        write(store, &v, 1, Method::Create).unwrap();
    };
    obs("q1", "72", "a");
    obs("q2", "100.4", "b");
    obs("q3", "140", "b");
    write(
        store,
        &json!({"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/x"},
        "prediction": [{"probabilityDecimal": 0.35}]}),
        1,
        Method::Create,
    )
    .unwrap();
    let ids = |rt: &str, q: &str| -> Vec<String> {
        let mut v: Vec<String> =
            store.search(&query(rt, q), 100).unwrap().resources.into_iter().map(|s| s.id).collect();
        v.sort();
        v
    };
    assert_eq!(ids("Observation", "value-quantity=100"), vec!["q2"], "100 means [99.5, 100.5)");
    assert_eq!(ids("Observation", "value-quantity=100.0"), Vec::<String>::new());
    assert_eq!(ids("Observation", "value-quantity=gt100"), vec!["q2", "q3"]);
    assert_eq!(ids("Observation", "value-quantity=le72"), vec!["q1"]);
    assert_eq!(ids("Observation", "value-quantity=ne72"), vec!["q2", "q3"]);
    assert_eq!(ids("Observation", "value-quantity=ap130"), vec!["q3"]);
    assert_eq!(ids("Observation", "value-quantity=72|http://unitsofmeasure.org|/min"), vec!["q1"]);
    assert_eq!(ids("Observation", "value-quantity=72||mg"), Vec::<String>::new());
    assert_eq!(ids("RiskAssessment", "probability=0.35"), vec!["r1"]);
    assert_eq!(ids("RiskAssessment", "probability=lt0.3"), Vec::<String>::new());
    assert_eq!(ids("Observation", "_tag=urn:tags|b"), vec!["q2", "q3"]);
    assert_eq!(ids("Observation", "_profile=http://hl7.org/fhir/StructureDefinition/vitalsigns").len(), 3);
    assert_eq!(ids("Observation", "_profile:below=http://hl7.org/fhir/StructureDefinition/").len(), 3);
    assert_eq!(ids("Observation", "_profile:below=http://hl7.org/fhir/ValueSet/").len(), 0);
    assert_eq!(ids("Observation", "_profile:above=http://hl7.org/fhir/StructureDefinition/vitalsigns/v2").len(), 3);
    assert_eq!(ids("Observation", "_profile:above=http://hl7.org/fhir/StructureDefinition/vital").len(), 0);
    assert_eq!(ids("Observation", "_lastUpdated=2024-01-01"), vec!["q1", "q2", "q3"]);
    assert_eq!(ids("Observation", "_lastUpdated=gt2024-01-02"), Vec::<String>::new());
}

/// Sorted ids of the resources matching a query.
fn found(store: &dyn Store, rt: &str, q: &str) -> Vec<String> {
    let mut v: Vec<String> = store.search(&query(rt, q), 100).unwrap().resources.into_iter().map(|s| s.id).collect();
    v.sort();
    v
}

/// Composite parameters (components of the same element), token `:text` and
/// `:of-type`, reference `:identifier`, and full text (`_text`, `_content`) in Russian
/// and English word forms.
pub fn search_composites_and_text(store: &dyn Store) {
    let bp = |id: &str, systolic: u32, diastolic: u32, narrative: &str| {
        let v = json!({"resourceType": "Observation", "id": id, "status": "final",
            "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{narrative}</div>")},
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}],
                     "text": "Артериальное давление"},
            "subject": {"identifier": {"system": "urn:snils", "value": "112-233-445 95"}},
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": systolic, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": diastolic, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]});
        write(store, &v, 1, Method::Create).unwrap();
    };
    bp("bp1", 150, 80, "Жалобы на сухой кашель и головную боль");
    bp("bp2", 120, 95, "Patient reports coughing at night");
    let q = |s: &str| found(store, "Observation", s);
    // the systolic value must be > 140 on the systolic component itself, not on any component
    assert_eq!(q("component-code-value-quantity=http://loinc.org|8480-6$gt140"), vec!["bp1"]);
    assert_eq!(q("component-code-value-quantity=8462-4$gt90"), vec!["bp2"]);
    assert_eq!(q("component-code-value-quantity=8480-6$gt90"), vec!["bp1", "bp2"]);
    assert_eq!(q("component-code-value-quantity=8462-4$gt140"), Vec::<String>::new());
    assert_eq!(q("component-code-value-quantity=8462-4$gt140,8480-6$lt130"), vec!["bp2"]);
    assert_eq!(q("code:text=давлении"), vec!["bp1", "bp2"]);
    assert_eq!(q("code:text=pressure"), vec!["bp1", "bp2"]);
    assert_eq!(q("code:text=сахар"), Vec::<String>::new());
    assert_eq!(q("subject:identifier=urn:snils|112-233-445 95"), vec!["bp1", "bp2"]);
    assert_eq!(q("subject:identifier=urn:oms|112-233-445 95"), Vec::<String>::new());
    assert_eq!(q("_text=кашлем"), vec!["bp1"]);
    assert_eq!(q("_text=cough"), vec!["bp2"]);
    assert_eq!(q("_text=кашель головная"), vec!["bp1"], "every word must occur");
    assert_eq!(q("_text=кашель ночью"), Vec::<String>::new());
    assert_eq!(q("_text=кашель,night"), vec!["bp1", "bp2"]);
    assert_eq!(q("_content=артериального"), vec!["bp1", "bp2"]);

    let p = json!({"resourceType": "Patient", "id": "mr1", "identifier": [{
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": "urn:clinic", "value": "4711"}]});
    write(store, &p, 1, Method::Create).unwrap();
    let mr = "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|4711";
    assert_eq!(found(store, "Patient", mr), vec!["mr1"]);
    assert!(
        found(store, "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|4712").is_empty()
    );
    assert!(
        found(store, "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|SS|4711").is_empty()
    );
}

/// `_sort`: several keys, descending, resources without a value last; the same order on
/// every backend.
pub fn search_sorting(store: &dyn Store) {
    let p = |id: &str, family: &str, birth: Option<&str>| {
        let mut v = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]});
        if let Some(b) = birth {
            v["birthDate"] = json!(b);
        }
        write(store, &v, 1, Method::Create).unwrap();
    };
    p("a", "Яковлева", Some("1990-05-01"));
    p("b", "Абрамова", Some("1971"));
    p("c", "Абрамова", Some("2001-12-31"));
    p("d", "Зимина", None);
    let order = |q: &str| -> Vec<String> {
        store.search(&query("Patient", q), 100).unwrap().resources.into_iter().map(|s| s.id).collect()
    };
    assert_eq!(order("_sort=birthdate"), vec!["b", "a", "c", "d"]);
    assert_eq!(order("_sort=-birthdate"), vec!["c", "a", "b", "d"]);
    assert_eq!(order("_sort=family,-birthdate"), vec!["c", "b", "d", "a"]);
    assert_eq!(order("_sort=-_id"), vec!["d", "c", "b", "a"]);
    let page = store.search(&query("Patient", "_sort=birthdate&_offset=2"), 2).unwrap();
    assert_eq!(page.resources.into_iter().map(|s| s.id).collect::<Vec<_>>(), vec!["c", "d"]);
}

/// Chained parameters (several levels) and `_has` (nested), as index lookups.
pub fn search_chains(store: &dyn Store) {
    let put = |v: Value| write(store, &v, 1, Method::Create).unwrap();
    put(json!({"resourceType": "Organization", "id": "org1", "name": "Городская поликлиника"}));
    put(
        json!({"resourceType": "Patient", "id": "pa", "name": [{"family": "Орлова"}], "managingOrganization": {"reference": "Organization/org1"}}),
    );
    put(json!({"resourceType": "Patient", "id": "pb", "name": [{"family": "Орлов"}]}));
    let obs = |id: &str, subject: &str, code: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "subject": {"reference": subject}})
    };
    put(obs("oa", "Patient/pa", "8867-4"));
    put(obs("ob", "Patient/pb", "29463-7"));
    put(obs("oc", "Group/g1", "8867-4"));
    let ids = |rt: &str, q: &str| -> Vec<String> {
        let mut v: Vec<String> =
            store.search(&query(rt, q), 100).unwrap().resources.into_iter().map(|s| s.id).collect();
        v.sort();
        v
    };
    assert_eq!(ids("Observation", "subject:Patient.name=орлова"), vec!["oa"]);
    assert_eq!(ids("Observation", "patient.name=орлов"), vec!["oa", "ob"]);
    assert_eq!(ids("Observation", "patient.organization.name=городская"), vec!["oa"]);
    assert_eq!(ids("Observation", "patient.name=орлова&code=8867-4"), vec!["oa"]);
    assert_eq!(ids("Patient", "_has:Observation:patient:code=8867-4"), vec!["pa"]);
    assert_eq!(ids("Patient", "_has:Observation:patient:code=8867-4,29463-7"), vec!["pa", "pb"]);
    assert_eq!(ids("Organization", "_has:Patient:organization:_has:Observation:patient:code=8867-4"), vec!["org1"]);
    assert_eq!(
        ids("Organization", "_has:Patient:organization:_has:Observation:patient:code=29463-7"),
        Vec::<String>::new()
    );
    let ambiguous = parse_query(ResourceType::parse("Observation").unwrap(), "subject.name=x").unwrap_err();
    assert!(ambiguous.diagnostics.contains("subject:Patient.name"), "{}", ambiguous.diagnostics);
    assert!(parse_query(ResourceType::parse("Patient").unwrap(), "_has:Observation:performer:code=x").is_ok());
    assert!(parse_query(ResourceType::parse("Patient").unwrap(), "_has:Observation:code:code=x").is_err());
    // a deleted link breaks the chain
    write(store, &json!({"resourceType": "Patient", "id": "pa"}), 2, Method::Delete).unwrap();
    assert_eq!(ids("Observation", "patient.name=орлов"), vec!["ob"]);
    assert_eq!(ids("Patient", "_has:Observation:patient:code=8867-4"), Vec::<String>::new());
}

/// Concurrent writers never lose an update: exactly one writer wins each version.
/// Records: create-only, compare-and-set updates, rollback, removal.
pub fn records_compare_and_set(store: &dyn Store) {
    use store::Expect;
    let mut tx = store.begin().unwrap();
    assert!(tx.put_record("account", "anna", r#"{"v":1}"#, Expect::Absent).unwrap());
    assert!(!tx.put_record("account", "anna", r#"{"v":"again"}"#, Expect::Absent).unwrap(), "create-only");
    tx.put_record("account", "boris", "{}", Expect::Any).unwrap();
    tx.put_record("client", "anna", "{}", Expect::Any).unwrap();
    tx.commit().unwrap();
    let anna = store.record("account", "anna").unwrap().unwrap();
    assert_eq!((anna.version, anna.data.as_str()), (1, r#"{"v":1}"#));
    let mut tx = store.begin().unwrap();
    assert!(tx.put_record("account", "anna", r#"{"v":2}"#, Expect::Version(1)).unwrap());
    assert!(!tx.put_record("account", "anna", r#"{"v":"lost"}"#, Expect::Version(1)).unwrap(), "stale version");
    tx.commit().unwrap();
    assert_eq!(store.record("account", "anna").unwrap().unwrap().version, 2);
    let mut tx = store.begin().unwrap();
    assert!(tx.delete_record("account", "anna").unwrap());
    drop(tx); // rolled back
    let ids: Vec<String> = store.records("account").unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["anna", "boris"]);
    let mut tx = store.begin().unwrap();
    assert!(tx.delete_record("account", "anna").unwrap());
    assert!(!tx.delete_record("account", "nobody").unwrap());
    tx.commit().unwrap();
    assert_eq!(store.record("account", "anna").unwrap(), None);
    assert!(store.record("client", "anna").unwrap().is_some(), "kinds are separate");
}

/// The job queue: a job is enqueued with its transaction (or not at all), once per key;
/// claimed by one worker at a time for its lease; put back with a later time when it
/// failed; gone when done; claimed again once a dead worker's lease runs out.
pub fn job_queue(store: &dyn Store) {
    use store::jobs::{JobOutcome, NewJob};
    let job = |key: &'static str, run_at| NewJob { queue: "deliver", key, payload: r#"{"to":"x"}"#, run_at };
    let mut tx = store.begin().unwrap();
    assert!(tx.enqueue(&job("rolled-back", 0), 0).unwrap());
    drop(tx);
    assert!(store.claim_jobs(&["deliver"], 10, 100, 10).unwrap().is_empty(), "a rolled-back job is not there");
    let mut tx = store.begin().unwrap();
    assert!(tx.enqueue(&job("a", 5), 0).unwrap());
    assert!(!tx.enqueue(&job("a", 6), 0).unwrap(), "one job per key");
    assert!(tx.enqueue(&job("later", 1_000), 0).unwrap());
    assert!(tx.enqueue(&NewJob { queue: "other", key: "o", payload: "{}", run_at: 0 }, 0).unwrap());
    tx.commit().unwrap();
    assert!(store.claim_jobs(&["deliver"], 4, 100, 10).unwrap().is_empty(), "not due yet");
    let claimed = store.claim_jobs(&["deliver"], 10, 100, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    let a = &claimed[0];
    assert_eq!(
        (a.key.as_str(), a.queue.as_str(), a.payload.as_str(), a.attempts),
        ("a", "deliver", r#"{"to":"x"}"#, 1)
    );
    assert!(store.claim_jobs(&["deliver"], 50, 100, 10).unwrap().is_empty(), "leased to its worker");
    store.finish_job(a.id, &JobOutcome::Retry { at: 200, error: "refused: 451".into() }).unwrap();
    assert!(store.claim_jobs(&["deliver"], 150, 100, 10).unwrap().is_empty(), "retried later");
    let counts = store.job_counts().unwrap();
    let deliver = counts.iter().find(|c| c.queue == "deliver").unwrap();
    assert_eq!((deliver.waiting, deliver.failing, deliver.next_at), (2, 1, Some(200)));
    let again = store.claim_jobs(&["deliver"], 250, 100, 10).unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 2));
    assert_eq!(again[0].last_error.as_deref(), Some("refused: 451"));
    // its worker died: the lease runs out and another worker takes it
    let taken_over = store.claim_jobs(&["deliver"], 351, 100, 10).unwrap();
    assert_eq!((taken_over.len(), taken_over[0].attempts), (1, 3));
    store.finish_job(taken_over[0].id, &JobOutcome::Done).unwrap();
    let rest = store.claim_jobs(&["deliver", "other"], 2_000, 100, 10).unwrap();
    let keys: Vec<&str> = rest.iter().map(|j| j.key.as_str()).collect();
    assert_eq!(keys, ["later", "o"]);
    for j in &rest {
        store.finish_job(j.id, &JobOutcome::Done).unwrap();
    }
    assert!(store.job_counts().unwrap().is_empty());
    let mut tx = store.begin().unwrap();
    assert!(tx.enqueue(&job("a", 0), 0).unwrap(), "a key is free again once its job is done");
    tx.commit().unwrap();
}

/// Workers claiming at once never get the same job.
pub fn job_queue_concurrent_claims(store: &(dyn Store + Sync)) {
    use store::jobs::{JobOutcome, NewJob};
    let keys: Vec<String> = (0..200).map(|i| format!("job-{i}")).collect();
    let mut tx = store.begin().unwrap();
    for k in &keys {
        tx.enqueue(&NewJob { queue: "q", key: k, payload: "{}", run_at: 0 }, 0).unwrap();
    }
    tx.commit().unwrap();
    let taken = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let jobs = match store.claim_jobs(&["q"], 10, 1_000_000, 7) {
                        Ok(j) => j,
                        Err(StoreError::Conflict(_)) => continue,
                        Err(e) => panic!("{e}"),
                    };
                    if jobs.is_empty() {
                        break;
                    }
                    for j in jobs {
                        store.finish_job(j.id, &JobOutcome::Done).unwrap();
                        taken.lock().unwrap().push(j.key);
                    }
                }
            });
        }
    });
    let mut taken = taken.into_inner().unwrap();
    taken.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(taken, expected, "every job once, none twice");
}

pub fn concurrent_writers(store: &(dyn Store + Sync)) {
    write(store, &patient("c1", "A"), 1, Method::Create).unwrap();
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let wins = &wins;
            s.spawn(move || {
                for _ in 0..10 {
                    let attempt = (|| -> Result<(), StoreError> {
                        let mut tx = store.begin()?;
                        let cur = tx.current("Patient", "c1")?.map_or(0, |c| c.version);
                        let r = patient("c1", &format!("T{t}"));
                        let body = serde_json::to_vec(&r).unwrap_or_default();
                        tx.write(&NewVersion {
                            resource_type: "Patient",
                            id: "c1",
                            version: cur + 1,
                            last_updated: now(),
                            method: Method::Update,
                            body: Some(&body),
                            index: &[],
                        })?;
                        tx.commit()
                    })();
                    if attempt.is_ok() {
                        wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let n = wins.load(std::sync::atomic::Ordering::SeqCst) as u64;
    assert_eq!(store.read("Patient", "c1").unwrap().unwrap().version, 1 + n);
    let (_, total) = store
        .history(&HistoryQuery {
            scope: HistoryScope::Instance("Patient".into(), "c1".into()),
            since: None,
            count: 1,
            offset: 0,
        })
        .unwrap();
    assert_eq!(total, 1 + n);
}

/// Many writers at once, some abandoning their transaction: every committed write is
/// visible to readers as soon as `commit` returns; no abandoned write ever appears.
pub fn concurrent_commits_and_rollbacks(store: &(dyn Store + Sync)) {
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..25 {
                    let id = format!("g{t}-{i}");
                    let mut tx = store.begin().unwrap();
                    write_first_version(tx.as_mut(), &patient(&id, "Группова"));
                    if i % 3 == 0 {
                        drop(tx); // abandoned
                    } else {
                        tx.commit().unwrap();
                        assert!(store.read("Patient", &id).unwrap().is_some(), "{id} acknowledged but not visible");
                    }
                }
            });
        }
    });
    for t in 0..8 {
        for i in 0..25 {
            let found = store.read("Patient", &format!("g{t}-{i}")).unwrap().is_some();
            assert_eq!(found, i % 3 != 0, "g{t}-{i}");
        }
    }
    let page = store.search(&query("Patient", "family=группова"), 0).unwrap();
    assert_eq!(page.total, Some(8 * 16));
    let all = store.search(&query("Patient", ""), 0).unwrap();
    assert_eq!(all.total, Some(8 * 16), "the per-type count holds under concurrent writers");
}

/// The audit log under concurrent appenders, some abandoning their transaction: every
/// committed entry is chained exactly once, in one unbroken chain whose hashes follow
/// from the entries; abandoned ones leave nothing; each patient's entries are listed.
pub fn audit_log_chains_concurrent_appends(store: &(dyn Store + Sync)) {
    use store::audit::{AuditQuery, NewAudit, chain_hash};
    let entry = |t: usize, i: usize| NewAudit {
        at: (t * 1000 + i) as i64,
        patients: vec![format!("p{t}"), format!("p{t}"), "shared".into()],
        entry: format!("{{\"t\":{t},\"i\":{i}}}"),
    };
    std::thread::scope(|s| {
        for t in 0..6 {
            s.spawn(move || {
                for i in 0..20 {
                    let mut tx = store.begin().unwrap();
                    tx.audit(&[entry(t, i)]).unwrap();
                    if i % 4 == 0 {
                        drop(tx); // abandoned
                    } else {
                        tx.commit().unwrap();
                    }
                    if i % 5 == 0 {
                        store.audit_seal().unwrap(); // concurrently with the appenders
                    }
                }
                store.audit_append(&[entry(t, 100), entry(t, 101)]).unwrap();
            });
        }
    });
    store.audit_seal().unwrap();
    let expected = 6 * (15 + 2);
    let chain = store.audit(&AuditQuery::Chain { after: 0, limit: 10_000 }).unwrap();
    assert_eq!(chain.len(), expected);
    let mut prev = String::new();
    let mut seen = std::collections::HashSet::new();
    for (n, r) in chain.iter().enumerate() {
        let (pos, hash) = r.link.clone().unwrap();
        assert_eq!(pos, n as i64 + 1, "positions follow each other");
        assert_eq!(hash, chain_hash(&prev, pos, r.seq, r.at, &r.patients, &r.entry));
        assert!(seen.insert(r.entry.clone()), "chained once: {}", r.entry);
        let i = serde_json::from_str::<serde_json::Value>(&r.entry).unwrap()["i"].as_u64().unwrap();
        assert!(i >= 100 || !i.is_multiple_of(4), "abandoned but chained: {}", r.entry);
        prev = hash;
    }
    let counts = store.audit_counts(expected as i64).unwrap();
    assert_eq!((counts.entries, counts.links, counts.pending), (expected as i64, expected as i64, 0));
    assert_eq!(counts.patient_rows, 2 * expected as i64, "duplicates stored once");
    let mine = store.audit(&AuditQuery::Patient { patient: "p3".into(), before: None, limit: 100 }).unwrap();
    assert_eq!(mine.len(), 17);
    assert!(mine.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let page =
        store.audit(&AuditQuery::Patient { patient: "shared".into(), before: Some(mine[5].seq), limit: 3 }).unwrap();
    assert!(page.len() == 3 && page.iter().all(|r| r.seq < mine[5].seq));
    assert!(store.audit(&AuditQuery::Unchained { limit: 1 }).unwrap().is_empty());
    let head = store.audit(&AuditQuery::Head).unwrap();
    assert_eq!(head[0].link.as_ref().map(|l| l.0), Some(expected as i64));
}

/// A blob store: what is put is read back byte for byte (every byte value, empty and
/// large blobs), a put under the same id replaces it, an unknown id is `None`, ids that
/// could name anything else are refused, and concurrent puts of distinct ids all land.
pub fn blob_store(blobs: &(dyn store::blob::BlobStore + Sync)) {
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(3 * 1024 * 1024 + 7).collect();
    blobs.put("0190f2a4-aaaa-7000-8000-000000000001", &every_byte).unwrap();
    blobs.put("0190f2a4-aaaa-7000-8000-000000000002", b"").unwrap();
    assert_eq!(blobs.get("0190f2a4-aaaa-7000-8000-000000000001").unwrap().as_deref(), Some(&every_byte[..]));
    assert_eq!(blobs.get("0190f2a4-aaaa-7000-8000-000000000002").unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(blobs.get("0190f2a4-aaaa-7000-8000-000000000003").unwrap(), None);
    blobs.put("0190f2a4-aaaa-7000-8000-000000000002", b"second").unwrap();
    assert_eq!(blobs.get("0190f2a4-aaaa-7000-8000-000000000002").unwrap().as_deref(), Some(&b"second"[..]));
    for bad in ["../escape", "a/b", ".x", ""] {
        assert!(blobs.put(bad, b"x").is_err(), "{bad}");
        assert!(blobs.get(bad).is_err(), "{bad}");
    }
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..10 {
                    blobs.put(&format!("t{t}-{i}"), format!("{t}/{i}").as_bytes()).unwrap();
                }
            });
        }
    });
    for t in 0..8 {
        for i in 0..10 {
            assert_eq!(blobs.get(&format!("t{t}-{i}")).unwrap(), Some(format!("{t}/{i}").into_bytes()));
        }
    }
}
