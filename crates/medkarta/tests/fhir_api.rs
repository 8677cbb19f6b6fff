//! Black-box tests of the FHIR REST API: the real binary, real HTTP, both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::Server;
use serde_json::{Value, json};

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Анна", "Петровна"]}], "gender": "female",
        "identifier": [{"system": "http://medkarta.ru/identifier/snils", "value": format!("snils-{family}")}]})
}

fn crud_lifecycle(s: &mut Server) {
    // create: 201, server id, Location, ETag, Last-Modified, meta
    let r = s.post("Patient", &patient("Кузнецова"));
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(r.header("location"), Some(s.url(&format!("Patient/{id}/_history/1")).as_str()));
    assert!(r.header("last-modified").unwrap().ends_with("GMT"));

    // read
    let r = s.get(&format!("Patient/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"][0]["family"], "Кузнецова");
    assert_eq!(r.header("content-type"), Some("application/fhir+json; charset=utf-8"));
    // conditional read
    let r = s.req("GET", &format!("Patient/{id}"), &[("If-None-Match", "W/\"1\"")], None);
    assert_eq!(r.status, 304);
    let lm = s.get(&format!("Patient/{id}")).header("last-modified").unwrap().to_string();
    assert_eq!(s.req("GET", &format!("Patient/{id}"), &[("If-Modified-Since", &lm)], None).status, 304);
    assert_eq!(
        s.req("GET", &format!("Patient/{id}"), &[("If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")], None).status,
        200
    );

    // update with If-Match, then a stale If-Match is refused and changes nothing
    let mut p = created.clone();
    p["name"][0]["family"] = json!("Кузнецова-Смирнова");
    let r = s.req(
        "PUT",
        &format!("Patient/{id}"),
        &[("Content-Type", "application/fhir+json"), ("If-Match", "W/\"1\"")],
        Some(&p.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["meta"]["versionId"], "2");
    p["name"][0]["family"] = json!("Lost update");
    let r = s.req(
        "PUT",
        &format!("Patient/{id}"),
        &[("Content-Type", "application/fhir+json"), ("If-Match", "W/\"1\"")],
        Some(&p.to_string()),
    );
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(s.get(&format!("Patient/{id}")).json()["name"][0]["family"], "Кузнецова-Смирнова");

    // vread of both versions
    assert_eq!(s.get(&format!("Patient/{id}/_history/1")).json()["name"][0]["family"], "Кузнецова");
    assert_eq!(s.get(&format!("Patient/{id}/_history/2")).json()["meta"]["versionId"], "2");
    assert_eq!(s.get(&format!("Patient/{id}/_history/9")).status, 404);

    // create-on-update with a client id; Prefer return=minimal and OperationOutcome
    let mut q = patient("Орлова");
    q["id"] = json!("client-chosen-1");
    let r = s.req(
        "PUT",
        "Patient/client-chosen-1",
        &[("Content-Type", "application/fhir+json"), ("Prefer", "return=minimal")],
        Some(&q.to_string()),
    );
    assert_eq!(r.status, 201);
    assert!(r.text.is_empty());
    let r = s.req(
        "PUT",
        "Patient/client-chosen-1",
        &[("Content-Type", "application/fhir+json"), ("Prefer", "return=OperationOutcome")],
        Some(&q.to_string()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");

    // delete: 410 afterwards, history keeps every version, vread of old versions works
    assert_eq!(s.delete(&format!("Patient/{id}")).status, 204);
    let r = s.get(&format!("Patient/{id}"));
    assert_eq!(r.status, 410);
    assert_eq!(r.issue().1, "deleted");
    assert_eq!(s.delete(&format!("Patient/{id}")).status, 204, "deleting twice is harmless");
    let h = s.get(&format!("Patient/{id}/_history")).json();
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 3);
    let methods: Vec<&str> =
        h["entry"].as_array().unwrap().iter().map(|e| e["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, vec!["DELETE", "PUT", "POST"]);
    assert_eq!(s.get(&format!("Patient/{id}/_history/1")).status, 200);
    // an update brings it back
    let mut back = created.clone();
    back.as_object_mut().unwrap().remove("meta");
    let r = s.put(&format!("Patient/{id}"), &back);
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["meta"]["versionId"], "4");
    assert_eq!(s.get("Patient/does-not-exist").status, 404);
}

fn conditional_operations(s: &mut Server) {
    let crit = "identifier=http://medkarta.ru/identifier/snils|snils-Белова";
    let create = |s: &Server| {
        s.req(
            "POST",
            "Patient",
            &[("Content-Type", "application/fhir+json"), ("If-None-Exist", crit)],
            Some(&patient("Белова").to_string()),
        )
    };
    let first = create(s);
    assert_eq!(first.status, 201);
    let again = create(s);
    assert_eq!(again.status, 200, "a matching conditional create creates nothing");
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(s.history_total("Patient"), 1);

    // conditional update: one match -> update it
    let mut p = patient("Белова");
    p["gender"] = json!("other");
    let r =
        s.req("PUT", &format!("Patient?{crit}"), &[("Content-Type", "application/fhir+json")], Some(&p.to_string()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["id"], first.json()["id"]);
    // no match -> create
    let r = s.req(
        "PUT",
        "Patient?identifier=http://medkarta.ru/identifier/snils|nobody",
        &[("Content-Type", "application/fhir+json")],
        Some(&patient("Новая").to_string()),
    );
    assert_eq!(r.status, 201);
    // several matches -> 412
    s.post("Patient", &patient("Белова"));
    let r = create(s);
    assert_eq!(r.status, 412);
    assert_eq!(r.issue().1, "multiple-matches");
    // unsupported criteria are refused, not guessed
    let r = s.req(
        "POST",
        "Patient",
        &[("Content-Type", "application/fhir+json"), ("If-None-Exist", "name:text=x")],
        Some(&patient("X").to_string()),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.issue(), ("name".into(), "not-supported".into()));
    let r = s.req(
        "POST",
        "Patient",
        &[("Content-Type", "application/fhir+json"), ("If-None-Exist", "nonsense=1")],
        Some(&patient("X").to_string()),
    );
    assert_eq!(r.status, 400);
    // conditional delete
    let before = s.history_total("Patient");
    assert_eq!(s.delete("Patient?identifier=http://medkarta.ru/identifier/snils|nobody").status, 204);
    assert_eq!(s.delete("Patient?identifier=http://medkarta.ru/identifier/snils|snils-Белова").status, 412);
    assert_eq!(s.history_total("Patient"), before, "no match and several matches delete nothing");
    assert_eq!(s.delete("Patient?identifier=http://medkarta.ru/identifier/snils|snils-Новая").status, 204);
    assert_eq!(s.history_total("Patient"), before + 1);
    assert_eq!(s.get("Patient?identifier=http://medkarta.ru/identifier/snils|snils-Новая").json()["total"], 0);
}

fn transaction_is_atomic_and_links_entries(s: &mut Server) {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0c2b4b8e-6d3f-4d6e-9a3d-0f8f5b0d1a01", "resource": patient("Транзакционная"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://medkarta.ru/identifier/snils|snils-Транзакционная"}},
        {"fullUrl": "urn:uuid:0c2b4b8e-6d3f-4d6e-9a3d-0f8f5b0d1a02", "resource": {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "urn:uuid:0c2b4b8e-6d3f-4d6e-9a3d-0f8f5b0d1a01"},
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Practitioner", "id": "tx-doc", "name": [{"family": "Врачёв"}]}, "request": {"method": "PUT", "url": "Practitioner/tx-doc"}},
        {"request": {"method": "GET", "url": "Practitioner/tx-doc"}}
    ]});
    let r = s.post("", &bundle);
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(b["type"], "transaction-response");
    let e = b["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert_eq!(e[3]["response"]["status"], "200 OK", "GET is processed after the writes");
    let pid = e[0]["resource"]["id"].as_str().unwrap();
    let obs = &e[1]["resource"];
    assert_eq!(obs["subject"]["reference"], format!("Patient/{pid}"), "urn:uuid rewritten");
    assert_eq!(s.get(&format!("Observation?subject=Patient/{pid}")).json()["total"], 1);

    // a conditional reference resolves inside the transaction
    let b2 = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Encounter", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient?identifier=http://medkarta.ru/identifier/snils|snils-Транзакционная"}},
         "request": {"method": "POST", "url": "Encounter"}}]});
    let r = s.post("", &b2);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["entry"][0]["resource"]["subject"]["reference"], format!("Patient/{pid}"));

    // one bad entry: nothing of the transaction is stored, and the error names the entry
    let before: Vec<u64> = ["Patient", "Observation", "Practitioner"].iter().map(|t| s.history_total(t)).collect();
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("Должна-исчезнуть"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Practitioner", "id": "tx-doc", "name": [{"family": "Изменён"}]}, "request": {"method": "PUT", "url": "Practitioner/tx-doc"}},
        {"resource": {"resourceType": "Observation", "status": "nonsense", "code": {"text": "x"}}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    let r = s.post("", &bad);
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.issue().0, "Bundle.entry[2].resource.status");
    let after: Vec<u64> = ["Patient", "Observation", "Practitioner"].iter().map(|t| s.history_total(t)).collect();
    assert_eq!(before, after, "a failed transaction leaves no trace");
    assert_eq!(s.get("Practitioner/tx-doc").json()["name"][0]["family"], "Врачёв");
    // dangling urn:uuid and a stale If-Match also roll everything back
    let dangling = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    assert_eq!(s.post("", &dangling).status, 400);
    let stale = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("Тоже-исчезнет"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Practitioner", "id": "tx-doc"}, "request": {"method": "PUT", "url": "Practitioner/tx-doc", "ifMatch": "W/\"7\""}}]});
    assert_eq!(s.post("", &stale).status, 412);
    assert_eq!(s.history_total("Patient"), before[0]);
}

fn batch_entries_stand_alone(s: &mut Server) {
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("Пакетная"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "invalid"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "DELETE", "url": "Patient/missing"}}
    ]});
    let r = s.post("", &batch);
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(b["type"], "batch-response");
    let statuses: Vec<&str> =
        b["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["201 Created", "422 Unprocessable Entity", "404 Not Found", "204 No Content"]);
    assert_eq!(b["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0], "Bundle.entry[1].resource.gender");
    assert_eq!(s.history_total("Patient"), 1);
}

/// method, path, headers, body, expected status
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Option<String>, u16);

fn bad_requests_change_nothing(s: &mut Server) {
    let fj = ("Content-Type", "application/fhir+json");
    let cases: Vec<Case> = vec![
        ("POST", "Patient", vec![fj], Some("{\"resourceType\": \"Patient\", ".into()), 400),
        ("POST", "Patient", vec![fj], Some("[1,2]".into()), 400),
        ("POST", "Patient", vec![fj], Some(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}).to_string()), 400),
        ("POST", "Patient", vec![fj], Some(json!({"name": [{"family": "X"}]}).to_string()), 400),
        ("PUT", "Patient/a1", vec![fj], Some(json!({"resourceType": "Patient", "id": "b2"}).to_string()), 400),
        ("PUT", "Patient/a1", vec![fj], Some(json!({"resourceType": "Patient"}).to_string()), 400),
        ("POST", "Patiant", vec![fj], Some(json!({"resourceType": "Patiant"}).to_string()), 404),
        ("GET", "Patiant/1", vec![], None, 404),
        ("POST", "Patient", vec![("Content-Type", "text/plain")], Some(json!({"resourceType": "Patient"}).to_string()), 415),
        ("POST", "Patient", vec![("Content-Type", "application/fhir+xml")], Some("<Patient xmlns=\"http://hl7.org/fhir\"/>".into()), 415),
        ("GET", "Patient", vec![("Accept", "application/fhir+xml")], None, 406),
        ("GET", "Patient?_format=xml", vec![], None, 406),
        ("POST", "Patient", vec![fj], Some(json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div>x</div>"}, "name": [{"family": "x".repeat(17 * 1024 * 1024)}]}).to_string()), 413),
        ("GET", "Patient/bad$id", vec![], None, 400),
        ("GET", "Patient?birthdate=yesterday", vec![], None, 400),
        ("PATCH", "Patient/a1", vec![fj], Some(json!({"resourceType": "Patient", "id": "a1"}).to_string()), 415),
    ];
    let r =
        s.req("POST", "Patient", &[fj], Some(r#"{"resourceType": "Patient", "gender": "male", "gender": "female"}"#));
    assert_eq!(
        (r.status, r.issue()),
        (400, ("Patient.gender".to_string(), "structure".to_string())),
        "repeated property"
    );
    for (method, path, headers, body, want) in cases {
        let r = s.req(method, path, &headers, body.as_deref());
        assert_eq!(r.status, want, "{method} {path}: {}", r.text);
        assert_eq!(r.json()["resourceType"], "OperationOutcome", "{method} {path}");
        assert!(!r.json()["issue"][0]["diagnostics"].as_str().unwrap_or("").is_empty());
    }
    assert_eq!(s.get("_history?_count=0").json()["total"], 0, "nothing was stored");
}

fn validation_points_at_the_element(s: &mut Server) {
    let r = s.post("Patient", &json!({"resourceType": "Patient", "name": [{"family": "Ок", "given": ["Ок", 5]}], "birthDate": "1980-02-30", "colour": "blue"}));
    assert_eq!(r.status, 422);
    let b = r.json();
    let paths: Vec<&str> =
        b["issue"].as_array().unwrap().iter().map(|i| i["expression"][0].as_str().unwrap()).collect();
    assert!(paths.contains(&"Patient.name[0].given[1]"), "{paths:?}");
    assert!(paths.contains(&"Patient.birthDate"), "{paths:?}");
    assert!(paths.contains(&"Patient.colour"), "{paths:?}");
    assert_eq!(s.history_total("Patient"), 0);
    // $validate gives the same verdict without storing
    let r = s.post("Patient/$validate", &json!({"resourceType": "Patient", "gender": "woman"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.issue(), ("Patient.gender".into(), "code-invalid".into()));
    let r = s.post("Patient/$validate", &json!({"resourceType": "Patient", "gender": "female"}));
    assert_eq!(r.json()["issue"][0]["severity"], "information");
    assert_eq!(s.history_total("Patient"), 0);
}

fn json_patch(s: &mut Server) {
    let id = s.post("Patient", &patient("Патчева")).json()["id"].as_str().unwrap().to_string();
    let patch = json!([{"op": "replace", "path": "/gender", "value": "male"}, {"op": "add", "path": "/birthDate", "value": "1990-01-02"}]);
    let hdr = [("Content-Type", "application/json-patch+json"), ("If-Match", "W/\"1\"")];
    let r = s.req("PATCH", &format!("Patient/{id}"), &hdr, Some(&patch.to_string()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["gender"], "male");
    assert_eq!(r.json()["meta"]["versionId"], "2");
    // stale version, failing test op, and a patch producing an invalid resource: all refused
    assert_eq!(s.req("PATCH", &format!("Patient/{id}"), &hdr, Some(&patch.to_string())).status, 412);
    let failing = json!([{"op": "test", "path": "/gender", "value": "female"}, {"op": "remove", "path": "/name"}]);
    assert_eq!(s.req("PATCH", &format!("Patient/{id}"), &[hdr[0]], Some(&failing.to_string())).status, 422);
    let invalid = json!([{"op": "replace", "path": "/gender", "value": "nonsense"}]);
    let r = s.req("PATCH", &format!("Patient/{id}"), &[hdr[0]], Some(&invalid.to_string()));
    assert_eq!(r.status, 422);
    assert_eq!(r.issue().0, "Patient.gender");
    assert_eq!(s.get(&format!("Patient/{id}")).json()["meta"]["versionId"], "2");
}

fn fhirpath_patch(s: &mut Server) {
    let id = s.post("Patient", &patient("Путева")).json()["id"].as_str().unwrap().to_string();
    let op = |kind: &str, path: &str, extra: Vec<Value>| {
        let mut parts = vec![json!({"name": "type", "valueCode": kind}), json!({"name": "path", "valueString": path})];
        parts.extend(extra);
        json!({"name": "operation", "part": parts})
    };
    let params = json!({"resourceType": "Parameters", "parameter": [
        op("replace", "Patient.gender", vec![json!({"name": "value", "valueCode": "male"})]),
        op("add", "Patient", vec![json!({"name": "name", "valueString": "birthDate"}), json!({"name": "value", "valueDate": "1961-06-01"})]),
        op("insert", "Patient.name[0].given", vec![json!({"name": "index", "valueInteger": 0}), json!({"name": "value", "valueString": "Мария"})]),
        op("delete", "Patient.identifier", vec![]),
    ]});
    let hdr = [("Content-Type", "application/fhir+json"), ("If-Match", "W/\"1\"")];
    let r = s.req("PATCH", &format!("Patient/{id}"), &hdr, Some(&params.to_string()));
    assert_eq!(r.status, 200, "{}", r.text);
    let p = r.json();
    assert_eq!((p["gender"].as_str(), p["birthDate"].as_str()), (Some("male"), Some("1961-06-01")));
    assert_eq!(p["name"][0]["given"], json!(["Мария", "Анна", "Петровна"]));
    assert!(p.get("identifier").is_none());
    // a path that matches several elements is refused, and nothing changes
    let params = json!({"resourceType": "Parameters", "parameter": [op("replace", "Patient.name.given", vec![json!({"name": "value", "valueString": "X"})])]});
    let r = s.req("PATCH", &format!("Patient/{id}"), &[hdr[0]], Some(&params.to_string()));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(s.get(&format!("Patient/{id}")).json()["meta"]["versionId"], "2");
    // in a transaction, a Parameters entry is a FHIRPath Patch
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Parameters", "parameter": [
        op("replace", "Patient.gender", vec![json!({"name": "value", "valueCode": "female"})])]},
        "request": {"method": "PATCH", "url": format!("Patient/{id}")}}]});
    let r = s.post("", &tx);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.get(&format!("Patient/{id}")).json()["gender"], "female");
}

fn history_and_search_paging(s: &mut Server) {
    for i in 0..7 {
        assert_eq!(s.post("Patient", &patient(&format!("Листова{i}"))).status, 201);
    }
    let h = s.get("Patient/_history?_count=3").json();
    assert_eq!(h["total"], 7);
    assert_eq!(h["entry"].as_array().unwrap().len(), 3);
    let next = h["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let page2 = s.get(next.strip_prefix(&s.base).unwrap()).json();
    assert_eq!(page2["entry"].as_array().unwrap().len(), 3);
    assert_ne!(page2["entry"][0]["fullUrl"], h["entry"][0]["fullUrl"]);
    let since = h["entry"][0]["response"]["lastModified"].as_str().unwrap();
    let newer = s.get(&format!("_history?_since={}", since.replace('+', "%2B"))).json();
    assert_eq!(newer["total"], 0);

    let r = s.get("Patient?family=листова&_count=5").json();
    assert_eq!(r["type"], "searchset");
    assert_eq!(r["total"], 7);
    assert_eq!(r["entry"].as_array().unwrap().len(), 5);
    assert_eq!(r["entry"][0]["search"]["mode"], "match");
    let r = s.get("Patient?family=листова3").json();
    assert_eq!(r["total"], 1);
    // unknown parameters are reported, or refused under handling=strict
    let r = s.get("Patient?family=листова3&shoe-size=42").json();
    assert_eq!(r["total"], 1);
    assert_eq!(r["entry"][1]["search"]["mode"], "outcome");
    assert_eq!(s.req("GET", "Patient?shoe-size=42", &[("Prefer", "handling=strict")], None).status, 400);
    // sorting, counting and partial resources
    let r = s.get("Patient?family=листова&_sort=-family&_count=2").json();
    assert_eq!(r["entry"][0]["resource"]["name"][0]["family"], "Листова6");
    assert!(
        r["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next" && l["url"].as_str().unwrap().contains("_sort=-family"))
    );
    let r = s.get("Patient?family=листова&_summary=count").json();
    assert_eq!((r["total"].as_u64(), r.get("entry").is_none()), (Some(7), true));
    let r = s.get("Patient?family=листова3&_elements=gender").json();
    let res = &r["entry"][0]["resource"];
    assert_eq!((res["gender"].as_str(), res.get("name").is_none()), (Some("female"), true));
    assert_eq!(res["meta"]["tag"].as_array().unwrap().last().unwrap()["code"], "SUBSETTED");
    let r = s.get("Patient?family=листова&_total=none").json();
    assert!(r.get("total").is_none());
    assert_eq!(s.get("Patient?_sort=shoe-size").status, 400);
    assert_eq!(s.get("Patient?_summary=maybe").status, 400);
    // POST _search with a form body
    let r = s.req(
        "POST",
        "Patient/_search",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("family=%D0%BB%D0%B8%D1%81%D1%82%D0%BE%D0%B2%D0%B03"),
    );
    assert_eq!(r.json()["total"], 1, "{}", r.text);
}

fn includes_and_revincludes(s: &mut Server) {
    s.put(
        "Practitioner/inc-d",
        &json!({"resourceType": "Practitioner", "id": "inc-d", "name": [{"family": "Врачова"}]}),
    );
    s.put("Patient/inc-p", &json!({"resourceType": "Patient", "id": "inc-p", "generalPractitioner": [{"reference": "Practitioner/inc-d"}]}));
    s.put("Observation/inc-o", &json!({"resourceType": "Observation", "id": "inc-o", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/inc-p"}}));
    let found = |q: &str| -> Vec<(String, String)> {
        let b = s.get(q).json();
        b["entry"]
            .as_array()
            .map(|es| {
                es.iter()
                    .map(|e| {
                        (
                            e["search"]["mode"].as_str().unwrap().to_string(),
                            e["fullUrl"].as_str().unwrap().rsplit_once("/fhir/").unwrap().1.to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let m = |mode: &str, url: &str| (mode.to_string(), url.to_string());
    assert_eq!(
        found("Observation?_id=inc-o&_include=Observation:subject"),
        vec![m("match", "Observation/inc-o"), m("include", "Patient/inc-p")]
    );
    assert_eq!(
        found("Observation?_id=inc-o&_include=Observation:subject&_include:iterate=Patient:general-practitioner"),
        vec![m("match", "Observation/inc-o"), m("include", "Patient/inc-p"), m("include", "Practitioner/inc-d")]
    );
    assert_eq!(
        found("Observation?_id=inc-o&_include=Observation:subject:Group"),
        vec![m("match", "Observation/inc-o")]
    );
    assert_eq!(
        found("Patient?_id=inc-p&_revinclude=Observation:subject"),
        vec![m("match", "Patient/inc-p"), m("include", "Observation/inc-o")]
    );
    assert_eq!(found("Observation?_id=inc-o&_include=*").len(), 2);
    assert_eq!(s.get("Observation?_include=Observation:code").status, 400);
    // compartment search
    s.put(
        "Observation/inc-o2",
        &json!({"resourceType": "Observation", "id": "inc-o2", "status": "final", "code": {"text": "y"},
        "subject": {"reference": "Patient/other"}, "performer": [{"reference": "Patient/inc-p"}]}),
    );
    let r = s.get("Patient/inc-p/Observation?_sort=_id").json();
    assert_eq!(r["total"], 2, "subject and performer both place an Observation in the compartment");
    assert!(r["link"][0]["url"].as_str().unwrap().contains("/fhir/Patient/inc-p/Observation?"));
    assert_eq!(s.get("Patient/inc-p/Observation?_id=inc-o2").json()["total"], 1);
    assert_eq!(s.get("Patient/other/Observation").json()["total"], 1);
    assert_eq!(s.get("Patient/inc-p/Organization").status, 400);
    assert_eq!(s.get("Group/g1/Observation").status, 400);
    // a deleted target is not included
    s.delete("Patient/inc-p");
    assert_eq!(found("Observation?_id=inc-o&_include=Observation:subject"), vec![m("match", "Observation/inc-o")]);
}

fn system_level_search(s: &mut Server) {
    s.put("Patient/sys-p", &json!({"resourceType": "Patient", "id": "sys-p", "name": [{"family": "Сидорова"}]}));
    s.put(
        "Practitioner/sys-d",
        &json!({"resourceType": "Practitioner", "id": "sys-d", "name": [{"family": "Сидоров"}]}),
    );
    s.put(
        "Organization/sys-o",
        &json!({"resourceType": "Organization", "id": "sys-o", "name": "Сидоровская больница"}),
    );
    let urls = |q: &str| -> Vec<String> {
        let r = s.get(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        let mut v: Vec<String> = r.json()["entry"]
            .as_array()
            .map(|es| {
                es.iter().map(|e| e["fullUrl"].as_str().unwrap().rsplit_once("/fhir/").unwrap().1.to_string()).collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // `name` is a string parameter of both types, so it means the same for both
    assert_eq!(urls("?_type=Patient,Practitioner&name=сидоров"), vec!["Patient/sys-p", "Practitioner/sys-d"]);
    assert_eq!(urls("?_type=Practitioner&name=сидоров"), vec!["Practitioner/sys-d"]);
    // common parameters search every type
    assert_eq!(urls("?_id=sys-o"), vec!["Organization/sys-o"]);
    assert_eq!(urls("?_content=сидоровская"), vec!["Organization/sys-o"]);
    // `gender` is not a parameter of Organization: the request is refused, naming it
    let r = s.get("?_type=Patient,Organization&gender=female");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("gender"), "{}", r.text);
    assert_eq!(s.get("?_type=Nonsense").status, 400);
    assert_eq!(s.get("Patient?_type=Patient").status, 400);
    let r = s.req("POST", "_search", &[("Content-Type", "application/x-www-form-urlencoded")], Some("_id=sys-p"));
    assert_eq!(r.json()["total"], 1, "{}", r.text);
}

const MAIDEN: &str = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";

fn with_maiden_name(id: &str, maiden: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "name": [{"family": "Кузнецова"}],
        "extension": [{"url": MAIDEN, "valueString": maiden}]})
}

fn maiden_name_parameter(status: &str) -> Value {
    json!({"resourceType": "SearchParameter", "id": "mothers-maiden-name", "status": status,
        "url": "http://medkarta.ru/fhir/SearchParameter/mothers-maiden-name", "name": "MothersMaidenName",
        "description": "Девичья фамилия матери", "code": "mothers-maiden-name", "base": ["Patient"], "type": "string",
        "expression": format!("Patient.extension.where(url = '{MAIDEN}').value")})
}

/// Wait until `GET $reindex` says every custom parameter is ready.
fn wait_for_reindex(s: &Server) -> Value {
    for _ in 0..300 {
        let status = s.get("$reindex").json();
        let all_ready = status["parameter"].as_array().is_none_or(|ps| {
            ps.iter().all(|p| p["part"].as_array().unwrap().iter().any(|x| x["valueCode"] == "ready"))
        });
        if all_ready {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("reindex did not finish: {}", s.get("$reindex").text);
}

fn custom_search_parameters(s: &mut Server) {
    for (i, maiden) in ["Смирнова", "Соколова", "Смирнова"].iter().enumerate() {
        assert_eq!(s.put(&format!("Patient/mmn-{i}"), &with_maiden_name(&format!("mmn-{i}"), maiden)).status, 201);
    }
    let ids = |s: &Server, q: &str| -> Vec<String> {
        let r = s.get(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        let mut v: Vec<String> =
            entry_refs(&r.json(), Some("match")).iter().map(|r| r.split_once('/').unwrap().1.to_string()).collect();
        v.sort();
        v
    };
    // unknown before it is defined; a draft definition changes nothing
    let r = s.get("Patient?mothers-maiden-name=смирн");
    assert!(r.text.contains("Unknown search parameter 'mothers-maiden-name'"), "{}", r.text);
    assert_eq!(s.put("SearchParameter/mothers-maiden-name", &maiden_name_parameter("draft")).status, 201);
    assert!(s.get("Patient?mothers-maiden-name=смирн").text.contains("Unknown search parameter"));

    // definitions we cannot use are refused, naming the element, and nothing is stored
    let mut bad = maiden_name_parameter("active");
    bad["expression"] = json!("Patient.extension.where(url = 'x'");
    let r = s.put("SearchParameter/mothers-maiden-name", &bad);
    assert_eq!((r.status, r.issue().0.as_str()), (422, "SearchParameter.expression"), "{}", r.text);
    // nesting that would exhaust the stack is refused, not a crash of the server
    for deep in
        [format!("{}Patient.name{}", "(".repeat(100_000), ")".repeat(100_000)), "name.".repeat(50_000) + "given"]
    {
        bad = maiden_name_parameter("active");
        bad["expression"] = json!(deep);
        let r = s.put("SearchParameter/mothers-maiden-name", &bad);
        assert_eq!(
            (r.status, r.issue().0.as_str()),
            (422, "SearchParameter.expression"),
            "{}",
            &r.text[..200.min(r.text.len())]
        );
    }
    assert_eq!(s.get("metadata").status, 200, "still serving");
    bad = maiden_name_parameter("active");
    bad["code"] = json!("name");
    let r = s.put("SearchParameter/mothers-maiden-name", &bad);
    assert_eq!((r.status, r.issue().0.as_str()), (422, "SearchParameter.code"), "{}", r.text);
    assert!(r.text.contains("already a search parameter of Patient"), "{}", r.text);
    assert_eq!(s.get("SearchParameter/mothers-maiden-name").json()["meta"]["versionId"], "1");

    // activated: existing resources are reindexed in the background, then it is searchable
    assert_eq!(s.put("SearchParameter/mothers-maiden-name", &maiden_name_parameter("active")).status, 200);
    let status = wait_for_reindex(s);
    assert!(status.to_string().contains("SearchParameter/mothers-maiden-name"), "{status}");
    assert_eq!(ids(s, "Patient?mothers-maiden-name=смирн"), vec!["mmn-0", "mmn-2"]);
    assert_eq!(ids(s, "Patient?mothers-maiden-name:exact=Соколова"), vec!["mmn-1"]);
    // new writes are indexed as they happen
    s.put("Patient/mmn-3", &with_maiden_name("mmn-3", "Смирнова-Белова"));
    s.put("Patient/mmn-0", &with_maiden_name("mmn-0", "Орлова"));
    assert_eq!(ids(s, "Patient?mothers-maiden-name=смирн"), vec!["mmn-2", "mmn-3"]);
    let sorted = s.get("Patient?_sort=-mothers-maiden-name&family=кузнецова").json();
    let order: Vec<&str> =
        sorted["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, vec!["mmn-1", "mmn-3", "mmn-2", "mmn-0"]);
    let cs = s.get("metadata").text;
    assert!(cs.contains("mothers-maiden-name"), "the CapabilityStatement lists it");

    // after a restart it is still there, without reindexing
    s.crash_and_restart();
    assert_eq!(ids(s, "Patient?mothers-maiden-name=смирн"), vec!["mmn-2", "mmn-3"]);

    // retired: unknown again
    assert_eq!(s.put("SearchParameter/mothers-maiden-name", &maiden_name_parameter("retired")).status, 200);
    assert!(s.get("Patient?mothers-maiden-name=смирн").text.contains("Unknown search parameter"));
    let r = s.req("GET", "Patient?mothers-maiden-name=смирн", &[("Prefer", "handling=strict")], None);
    assert_eq!(r.status, 400, "{}", r.text);
}

/// The data of the clinician query set: a handful of records in which every expected
/// answer below was worked out by hand.
fn clinic_records() -> Vec<Value> {
    const SNILS: &str = "http://medkarta.ru/identifier/snils";
    const LOINC: &str = "http://loinc.org";
    const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
    let patient = |id: &str, family: &str, given: &[&str], gender: &str, birth: &str, snils: &str| {
        json!({"resourceType": "Patient", "id": id, "gender": gender, "birthDate": birth,
            "name": [{"use": "official", "family": family, "given": given}],
            "identifier": [{"system": SNILS, "value": snils}]})
    };
    let glucose = |id: &str, patient: &str, date: &str, value: f64| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}], "text": "Глюкоза"},
            "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": date,
            "valueQuantity": {"value": value, "unit": "ммоль/л", "system": "http://unitsofmeasure.org", "code": "mmol/L"}})
    };
    let condition = |id: &str, patient: &str, code: &str, text: &str| {
        json!({"resourceType": "Condition", "id": id, "subject": {"reference": format!("Patient/{patient}")},
            "code": {"coding": [{"system": ICD10, "code": code}], "text": text}})
    };
    let encounter = |id: &str, patient: &str, start: &str, org: &str| {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{patient}")},
            "period": {"start": format!("{start}T09:00:00+03:00"), "end": format!("{start}T09:30:00+03:00")},
            "serviceProvider": {"reference": format!("Organization/{org}")}})
    };
    vec![
        json!({"resourceType": "Organization", "id": "org-gp", "name": "Городская поликлиника №1"}),
        json!({"resourceType": "Organization", "id": "org-hosp", "name": "Областная больница"}),
        patient("p-ivanov", "Иванов", &["Иван", "Иванович"], "male", "1956-03-14", "11223344595"),
        patient("p-ivanova", "Иванова", &["Мария", "Петровна"], "female", "1961-07-02", "12345678964"),
        patient("p-petrov", "Петров", &["Пётр", "Сергеевич"], "male", "1956-11-30", "98765432100"),
        patient("p-semenova", "Семёнова", &["Алёна"], "female", "1990-01-15", "55566677788"),
        glucose("glu-1", "p-ivanov", "2023-12-01T08:00:00+03:00", 5.5),
        glucose("glu-2", "p-ivanov", "2024-01-10T08:00:00+03:00", 6.1),
        glucose("glu-3", "p-ivanov", "2024-03-05T08:00:00+03:00", 7.2),
        glucose("glu-4", "p-petrov", "2024-02-01T08:00:00+03:00", 5.0),
        json!({"resourceType": "Observation", "id": "bp-1", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": {"reference": "Patient/p-ivanov"}, "effectiveDateTime": "2024-02-20T10:00:00+03:00",
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                 "valueQuantity": {"value": 150, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                 "valueQuantity": {"value": 95, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}),
        condition("c-e11", "p-ivanov", "E11.9", "Сахарный диабет 2 типа"),
        condition("c-i10-ivanov", "p-ivanov", "I10", "Эссенциальная гипертензия"),
        condition("c-i10-petrov", "p-petrov", "I10", "Эссенциальная гипертензия"),
        condition("c-j06", "p-semenova", "J06.9", "ОРВИ"),
        encounter("enc-1", "p-ivanov", "2024-01-10", "org-gp"),
        encounter("enc-2", "p-ivanov", "2024-03-05", "org-gp"),
        encounter("enc-3", "p-petrov", "2024-03-15", "org-hosp"),
        encounter("enc-4", "p-semenova", "2024-02-29", "org-gp"),
        encounter("enc-5", "p-ivanova", "2023-03-10", "org-gp"),
    ]
}

/// Load [`clinic_records`] in one transaction.
fn load_clinic(s: &Server) {
    let entries: Vec<Value> = clinic_records()
        .into_iter()
        .map(|r| {
            let url = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
            json!({"resource": r, "request": {"method": "PUT", "url": url}})
        })
        .collect();
    let r = s.post("", &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}));
    assert_eq!(r.status, 200, "{}", r.text);
}

/// `Type/id` of a bundle's entries, in order (of one search mode, or all).
fn entry_refs(b: &Value, mode: Option<&str>) -> Vec<String> {
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| mode.is_none_or(|m| e["search"]["mode"] == m))
        .map(|e| {
            format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap())
        })
        .collect()
}

/// A link of a bundle (`next`, `previous`), relative to the base.
fn link_of(s: &Server, b: &Value, rel: &str) -> Option<String> {
    b["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["relation"] == rel)
        .map(|l| s.path_of(l["url"].as_str().unwrap()))
}

/// Matches (in the server's order) and included resources of a search.
fn found(s: &Server, q: &str) -> (Vec<String>, Vec<String>, u64) {
    let r = s.get(q);
    assert_eq!(r.status, 200, "{q}: {}", r.text);
    let b = r.json();
    let mut included = entry_refs(&b, Some("include"));
    included.sort();
    (entry_refs(&b, Some("match")), included, b["total"].as_u64().unwrap_or(u64::MAX))
}

fn clinician_query_set(s: &mut Server) {
    load_clinic(s);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // (query, expected matches; in this order if the query sorts, else as a set)
    let cases: &[(&str, &[&str])] = &[
        // patients by name (any part, starts-with, case and ё-insensitive), SNILS, birth date
        ("Patient?name=иван", &["Patient/p-ivanov", "Patient/p-ivanova"]),
        ("Patient?name=ИВАНОВА", &["Patient/p-ivanova"]),
        ("Patient?family:exact=Иванов", &["Patient/p-ivanov"]),
        ("Patient?name=семенова", &["Patient/p-semenova"]),
        ("Patient?given=алена", &["Patient/p-semenova"]),
        ("Patient?name=петр", &["Patient/p-ivanova", "Patient/p-petrov"]),
        ("Patient?identifier=http://medkarta.ru/identifier/snils|11223344595", &["Patient/p-ivanov"]),
        ("Patient?identifier=98765432100", &["Patient/p-petrov"]),
        ("Patient?identifier=http://medkarta.ru/identifier/oms|11223344595", &[]),
        ("Patient?birthdate=1956", &["Patient/p-ivanov", "Patient/p-petrov"]),
        ("Patient?birthdate=1956-03", &["Patient/p-ivanov"]),
        ("Patient?birthdate=ge1960", &["Patient/p-ivanova", "Patient/p-semenova"]),
        ("Patient?family=иванов&birthdate=lt1960", &["Patient/p-ivanov"]),
        ("Patient?gender=female&_sort=-birthdate", &["Patient/p-semenova", "Patient/p-ivanova"]),
        // a patient's observations by code and date range, newest first
        (
            "Observation?subject=Patient/p-ivanov&code=http://loinc.org|2345-7&date=ge2024-01-01&date=lt2024-04-01&_sort=-date",
            &["Observation/glu-3", "Observation/glu-2"],
        ),
        (
            "Observation?patient=p-ivanov&code=2345-7&_sort=date",
            &["Observation/glu-1", "Observation/glu-2", "Observation/glu-3"],
        ),
        ("Observation?code=2345-7&value-quantity=gt6", &["Observation/glu-2", "Observation/glu-3"]),
        ("Observation?code=2345-7&date=2024-02", &["Observation/glu-4"]),
        ("Observation?component-code-value-quantity=http://loinc.org|8480-6$gt140", &["Observation/bp-1"]),
        ("Observation?component-code-value-quantity=http://loinc.org|8462-4$gt140", &[]),
        // conditions by ICD-10 code, with chains and reverse chains
        ("Condition?code=http://hl7.org/fhir/sid/icd-10|I10", &["Condition/c-i10-ivanov", "Condition/c-i10-petrov"]),
        ("Condition?code=E11.9&subject:Patient.birthdate=lt1960", &["Condition/c-e11"]),
        ("Condition?code=I10&patient.name=петров", &["Condition/c-i10-petrov"]),
        ("Condition?code:text=гипертензия&subject=p-petrov", &["Condition/c-i10-petrov"]),
        ("Condition?code=Z99.9", &[]),
        ("Patient?_has:Condition:subject:code=I10", &["Patient/p-ivanov", "Patient/p-petrov"]),
        ("Patient?_has:Condition:subject:code=I10&_has:Condition:subject:code=E11.9", &["Patient/p-ivanov"]),
        // encounters by date and organisation
        ("Encounter?date=2024-03&service-provider=Organization/org-gp", &["Encounter/enc-2"]),
        ("Encounter?date=2024-03", &["Encounter/enc-2", "Encounter/enc-3"]),
        ("Encounter?date=2024-02-29", &["Encounter/enc-4"]),
        (
            "Encounter?date=ge2024-01-01&service-provider=org-gp&_sort=-date",
            &["Encounter/enc-2", "Encounter/enc-4", "Encounter/enc-1"],
        ),
        ("Encounter?service-provider.name=областная", &["Encounter/enc-3"]),
    ];
    for (q, expected) in cases {
        let (matches, _, total) = found(s, q);
        let expected = strs(expected);
        if q.contains("_sort") {
            assert_eq!(matches, expected, "{q}");
        } else {
            assert_eq!(sorted(matches), sorted(expected.clone()), "{q}");
        }
        assert_eq!(total, expected.len() as u64, "{q}: total");
    }
    // includes: the patients of the hypertension diagnoses; a patient with their encounters
    let (matches, included, _) = found(s, "Condition?code=I10&_include=Condition:subject");
    assert_eq!(matches.len(), 2);
    assert_eq!(included, strs(&["Patient/p-ivanov", "Patient/p-petrov"]));
    let (matches, included, total) =
        found(s, "Patient?_id=p-ivanov&_revinclude=Encounter:subject&_revinclude=Condition:subject");
    assert_eq!((matches, total), (strs(&["Patient/p-ivanov"]), 1), "included resources are not counted");
    assert_eq!(included, strs(&["Condition/c-e11", "Condition/c-i10-ivanov", "Encounter/enc-1", "Encounter/enc-2"]));
    let (_, included, _) =
        found(s, "Encounter?date=2024-03&_include=Encounter:subject&_include=Encounter:service-provider");
    assert_eq!(
        included,
        strs(&["Organization/org-gp", "Organization/org-hosp", "Patient/p-ivanov", "Patient/p-petrov"])
    );
    // sorting by several keys: birth year groups, then family name descending
    let (matches, _, _) = found(s, "Patient?_sort=birthdate,-family");
    assert_eq!(matches, strs(&["Patient/p-ivanov", "Patient/p-petrov", "Patient/p-ivanova", "Patient/p-semenova"]));
}

/// Ids of the matches of a page and its `next`/`previous` link (relative to the base).
fn page_of(s: &Server, path: &str) -> (Vec<String>, Option<String>, Option<String>) {
    let r = s.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    let b = r.json();
    let ids = entry_refs(&b, None).iter().map(|r| r.split_once('/').unwrap().1.to_string()).collect();
    (ids, link_of(s, &b, "next"), link_of(s, &b, "previous"))
}

fn stable_paging(s: &mut Server) {
    for i in 0..10 {
        let mut p = json!({"resourceType": "Patient", "id": format!("pg{i}"), "name": [{"family": "Страничная"}]});
        if i != 3 && i != 7 {
            p["birthDate"] = json!(format!("{}-05-01", 1950 + i));
        }
        assert_eq!(s.put(&format!("Patient/pg{i}"), &p).status, 201);
    }
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // by birth date (patients without one last), three at a time
    let (first, next, previous) = page_of(s, "Patient?family=страничная&_sort=birthdate&_count=3");
    assert_eq!((first, previous), (strs(&["pg0", "pg1", "pg2"]), None));
    // meanwhile a patient is added before the position reached and one ahead is deleted
    s.put(
        "Patient/pg-new",
        &json!({"resourceType": "Patient", "id": "pg-new", "name": [{"family": "Страничная"}], "birthDate": "1940-01-01"}),
    );
    assert_eq!(s.delete("Patient/pg5").status, 204);
    let (second, next, _) = page_of(s, &next.unwrap());
    assert_eq!(second, strs(&["pg4", "pg6", "pg8"]), "nothing repeated, nothing skipped");
    let (third, next, previous) = page_of(s, &next.unwrap());
    assert_eq!((third, next), (strs(&["pg9", "pg3", "pg7"]), None));
    // and back again
    let (back, _, previous) = page_of(s, &previous.unwrap());
    assert_eq!(back, strs(&["pg4", "pg6", "pg8"]));
    let (back, _, previous) = page_of(s, &previous.unwrap());
    assert_eq!(back, strs(&["pg0", "pg1", "pg2"]));
    let (back, next, previous) = page_of(s, &previous.unwrap());
    assert_eq!((back, previous), (strs(&["pg-new"]), None));
    assert_eq!(page_of(s, &next.unwrap()).0, strs(&["pg0", "pg1", "pg2"]));

    // descending, without counting, across all pages
    let mut seen = Vec::new();
    let mut next = Some("Patient?family=страничная&_sort=-birthdate&_count=4&_total=none".to_string());
    while let Some(path) = next {
        let (ids, n, _) = page_of(s, &path);
        seen.extend(ids);
        next = n;
    }
    assert_eq!(seen, strs(&["pg9", "pg8", "pg6", "pg4", "pg2", "pg1", "pg0", "pg-new", "pg3", "pg7"]));
    // in creation order, a resource created while paging comes at the end
    let (ids, next, _) = page_of(s, "Patient?family=страничная&_count=5");
    assert_eq!(ids, strs(&["pg0", "pg1", "pg2", "pg3", "pg4"]));
    s.put("Patient/pg-last", &json!({"resourceType": "Patient", "id": "pg-last", "name": [{"family": "Страничная"}]}));
    let (ids, next, _) = page_of(s, &next.unwrap());
    assert_eq!(ids, strs(&["pg6", "pg7", "pg8", "pg9", "pg-new"]));
    assert_eq!(page_of(s, &next.unwrap()).0, strs(&["pg-last"]));
    // a page token that does not belong to the search is refused, naming it
    let r = s.get("Patient?family=страничная&_page=bm90LWEtdG9rZW4");
    assert_eq!((r.status, r.issue().0.as_str()), (400, "_page"), "{}", r.text);
}

fn patient_everything(s: &mut Server) {
    load_clinic(s);
    let ids = |path: &str| -> (Vec<String>, Option<String>) {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let b = r.json();
        (entry_refs(&b, None), link_of(s, &b, "next"))
    };
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // the patient first, then their resources type by type; nobody else's
    let (all, next) = ids("Patient/p-ivanov/$everything");
    assert_eq!(next, None);
    assert_eq!(
        all,
        strs(&[
            "Patient/p-ivanov",
            "Condition/c-e11",
            "Condition/c-i10-ivanov",
            "Encounter/enc-1",
            "Encounter/enc-2",
            "Observation/glu-1",
            "Observation/glu-2",
            "Observation/glu-3",
            "Observation/bp-1"
        ])
    );
    // pages of three, following the links, give the same
    let mut paged = Vec::new();
    let mut path = Some("Patient/p-ivanov/$everything?_count=3".to_string());
    while let Some(p) = path {
        let (page, next) = ids(&p);
        assert!(page.len() <= 3);
        paged.extend(page);
        path = next;
    }
    assert_eq!(paged, all);
    // _type and _since
    assert_eq!(
        ids("Patient/p-ivanov/$everything?_type=Condition").0,
        strs(&["Condition/c-e11", "Condition/c-i10-ivanov"])
    );
    let later = "2999-01-01T00:00:00Z";
    assert!(ids(&format!("Patient/p-ivanov/$everything?_since={later}")).0.is_empty());
    assert_eq!(s.get("Patient/nobody/$everything").status, 404);
    assert_eq!(s.get("Patient/p-ivanov/$everything?_type=Nonsense").status, 400);
    let r = s.get("Patient/p-ivanov/$everything?_page=zz");
    assert_eq!((r.status, r.issue().0.as_str()), (400, "_page"), "{}", r.text);
    let r = s.get("Patient/p-ivanov/$everything?_since=soon");
    assert_eq!((r.status, r.issue().0.as_str()), (400, "_since"), "{}", r.text);
}

/// Run an export to the end: the manifest.
fn export_manifest(s: &Server, kickoff: &str) -> Value {
    let r = s.req("GET", kickoff, &[("Prefer", "respond-async"), ("Accept", "application/fhir+json")], None);
    assert_eq!(r.status, 202, "{kickoff}: {}", r.text);
    let status = s.path_of(r.header("content-location").unwrap());
    for _ in 0..200 {
        let r = s.get(&status);
        match r.status {
            202 => std::thread::sleep(std::time::Duration::from_millis(50)),
            200 => return r.json(),
            other => panic!("{status}: {other} {}", r.text),
        }
    }
    panic!("{status} did not finish");
}

/// The ids in an exported NDJSON file (downloaded with the token, as the manifest says).
fn exported_ids(s: &Server, manifest: &Value, ty: &str) -> Vec<String> {
    let Some(out) = manifest["output"].as_array().unwrap().iter().find(|o| o["type"] == ty) else { return Vec::new() };
    let url = s.path_of(out["url"].as_str().unwrap());
    assert_eq!(s.req_as(None, "GET", &url, &[], None).status, 401, "requiresAccessToken");
    let r = s.get(&url);
    assert_eq!((r.status, r.header("content-type")), (200, Some("application/fhir+ndjson")));
    // as Bulk Data clients ask for it (the IG's default), and the other NDJSON name
    for accept in ["application/fhir+ndjson", "application/ndjson"] {
        let again = s.req("GET", &url, &[("Accept", accept)], None);
        assert_eq!((again.status, again.header("content-type")), (200, Some("application/fhir+ndjson")), "{accept}");
        assert_eq!(again.text, r.text);
    }
    assert_eq!(s.req("GET", "Patient", &[("Accept", "application/fhir+ndjson")], None).status, 406, "files only");
    let mut ids: Vec<String> =
        r.text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len() as u64, out["count"].as_u64().unwrap());
    ids.sort();
    ids
}

fn bulk_export(s: &mut Server) {
    load_clinic(s);
    s.put(
        "Group/g1",
        &json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p-petrov"}}]}),
    );
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(s.get("$export").status, 400, "asynchronous only");
    // bad parameters are refused, naming them, and start nothing
    for (q, param) in [
        ("_type=Nonsense", "_type"),
        ("_outputFormat=text/csv", "_outputFormat"),
        ("_since=yesterday", "_since"),
        ("_typeFilter=Observation", "_typeFilter"),
        ("_elements=Patient.name.given", "_elements"),
        ("includeAssociatedData=LatestProvenanceResources", "includeAssociatedData"),
        ("patient=Patient/p-petrov", "patient"),
    ] {
        let r = s.req("GET", &format!("$export?{q}"), &[("Prefer", "respond-async")], None);
        assert_eq!((r.status, r.issue().0), (400, param.to_string()), "{q}: {}", r.text);
    }
    assert_eq!(s.req("GET", "Group/nobody/$export", &[("Prefer", "respond-async")], None).status, 404);

    let m = export_manifest(s, "$export?_type=Patient,Organization");
    assert_eq!(m["requiresAccessToken"], true);
    assert_eq!(exported_ids(s, &m, "Patient"), strs(&["p-ivanov", "p-ivanova", "p-petrov", "p-semenova"]));
    assert_eq!(exported_ids(s, &m, "Organization"), strs(&["org-gp", "org-hosp"]));
    assert!(exported_ids(s, &m, "Observation").is_empty(), "only the types asked for");

    // Bulk Data 2.0: the parameters in a POSTed Parameters resource, `patient`, `_elements`
    let kick = |path: &str, params: Value| {
        let body = json!({"resourceType": "Parameters", "parameter": params}).to_string();
        let h = [("Prefer", "respond-async"), ("Content-Type", "application/fhir+json")];
        let r = s.req("POST", path, &h, Some(&body));
        assert_eq!(r.status, 202, "{path}: {}", r.text);
        let status = s.path_of(r.header("content-location").unwrap());
        for _ in 0..200 {
            let r = s.get(&status);
            if r.status == 200 {
                return r.json();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{status} did not finish");
    };
    let m = kick("$export", json!([{"name": "_type", "valueString": "Organization"}]));
    assert_eq!(exported_ids(s, &m, "Organization"), strs(&["org-gp", "org-hosp"]));
    assert!(exported_ids(s, &m, "Patient").is_empty(), "the body's _type holds");
    let m = kick(
        "Patient/$export",
        json!([{"name": "patient", "valueReference": {"reference": "Patient/p-petrov"}},
               {"name": "_type", "valueString": "Patient,Observation"},
               {"name": "_elements", "valueString": "Patient.gender,Observation.status"}]),
    );
    assert_eq!(exported_ids(s, &m, "Patient"), strs(&["p-petrov"]), "only the patient asked for");
    let url = s.path_of(
        m["output"].as_array().unwrap().iter().find(|o| o["type"] == "Patient").unwrap()["url"].as_str().unwrap(),
    );
    let petrov: Value = serde_json::from_str(s.get(&url).text.lines().next().unwrap()).unwrap();
    assert!(petrov["gender"].is_string() && petrov["name"].is_null(), "{petrov}");
    assert_eq!(petrov["meta"]["tag"][0]["code"], "SUBSETTED");
    let bad = s.req(
        "POST",
        "$export",
        &[("Prefer", "respond-async"), ("Content-Type", "application/fhir+json")],
        Some(r#"{"resourceType":"Patient"}"#),
    );
    assert_eq!(bad.status, 400, "{}", bad.text);

    let m = export_manifest(s, "Patient/$export?_type=Observation&_typeFilter=Observation%3Fcode%3D2345-7");
    assert_eq!(exported_ids(s, &m, "Observation"), strs(&["glu-1", "glu-2", "glu-3", "glu-4"]));

    let m = export_manifest(s, "Group/g1/$export");
    assert_eq!(exported_ids(s, &m, "Patient"), strs(&["p-petrov"]));
    assert_eq!(exported_ids(s, &m, "Condition"), strs(&["c-i10-petrov"]));
    assert_eq!(exported_ids(s, &m, "Encounter"), strs(&["enc-3"]));
    assert!(exported_ids(s, &m, "Organization").is_empty(), "not in a patient's compartment");

    let later = export_manifest(s, "$export?_type=Patient&_since=2999-01-01T00:00:00Z");
    assert!(later["output"].as_array().unwrap().is_empty());

    // another client sees nothing of it; the owner cancels it
    let r = s.req("GET", "$export?_type=Patient", &[("Prefer", "respond-async")], None);
    let status = s.path_of(r.header("content-location").unwrap());
    let (ok, out, _) = s.admin(&["client", "add", "other", "--scope", "system/*.rs"], None);
    assert!(ok);
    let other: Value = serde_json::from_str(out.trim()).unwrap();
    let t = s
        .form(
            "oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", other["client_id"].as_str().unwrap()),
                ("client_secret", other["client_secret"].as_str().unwrap()),
            ],
            &[],
        )
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.req_as(Some(&t), "GET", &status, &[], None).status, 404);
    assert_eq!(s.delete(&status).status, 202);
    assert_eq!(s.get(&status).status, 404);

    // the command-line export writes the same files
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let mut args = vec!["export".to_string()];
    args.extend(s.store_args());
    args.extend(["--out".into(), out_dir.display().to_string(), "--type".into(), "Patient".into()]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medkarta"))
        .args(&args)
        .env("MEDKARTA_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = std::fs::read_to_string(out_dir.join("Patient.ndjson")).unwrap();
    assert_eq!(lines.lines().count(), 4);
}

fn concurrent_writers_never_overwrite_each_other(s: &mut Server) {
    let created = s.post("Patient", &patient("Гонкина")).json();
    let id = created["id"].as_str().unwrap().to_string();
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..6 {
            let (s, id, created, wins) = (&*s, &id, &created, &wins);
            scope.spawn(move || {
                for _ in 0..5 {
                    let cur = s.get(&format!("Patient/{id}"));
                    let etag = cur.header("etag").unwrap().to_string();
                    let mut p = created.clone();
                    p["name"][0]["given"] = json!([format!("Писатель{t}")]);
                    let r = s.req(
                        "PUT",
                        &format!("Patient/{id}"),
                        &[("Content-Type", "application/fhir+json"), ("If-Match", &etag)],
                        Some(&p.to_string()),
                    );
                    match r.status {
                        200 => {
                            wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        409 | 412 => {}
                        other => panic!("unexpected {other}: {}", r.text),
                    }
                }
            });
        }
    });
    let wins = wins.load(std::sync::atomic::Ordering::SeqCst) as u64;
    assert!(wins >= 1);
    let h = s.get(&format!("Patient/{id}/_history")).json();
    assert_eq!(h["total"].as_u64().unwrap(), 1 + wins, "every acknowledged update is a distinct version");
    assert_eq!(s.get(&format!("Patient/{id}")).json()["meta"]["versionId"], (1 + wins).to_string());
}

fn acknowledged_writes_survive_kill_9(s: &mut Server) {
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = s.post("Patient", &patient(&format!("Стойкая{i}")));
        assert_eq!(r.status, 201);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let last = s.put(&format!("Patient/{}", ids[0]), &{
        let mut p = patient("Последняя");
        p["id"] = json!(ids[0]);
        p
    });
    assert_eq!(last.status, 200);
    s.crash_and_restart(); // SIGKILL right after the last acknowledgement
    for id in &ids {
        assert_eq!(s.get(&format!("Patient/{id}")).status, 200, "{id} lost");
    }
    assert_eq!(s.get(&format!("Patient/{}", ids[0])).json()["name"][0]["family"], "Последняя");
    assert_eq!(s.history_total("Patient"), 21);
}

/// Searches at the bounds work; past them, a 400 that says which bound (never a 500 from
/// the database's expression limits).
fn large_searches_are_bounded(s: &Server) {
    s.put("Patient/big-1", &json!({"resourceType": "Patient", "id": "big-1", "gender": "female"}));
    let ids: Vec<String> = (0..100).map(|i| format!("big-{i}")).collect();
    let r = s.get(&format!("Patient?_id={}", ids.join(",")));
    assert_eq!((r.status, r.json()["total"].as_u64()), (200, Some(1)), "{}", r.text);
    // the worst the bounds allow: 100 parameters of 100 values each, of the costly kinds
    let values = |f: &dyn Fn(usize) -> String| (0..100).map(f).collect::<Vec<_>>().join(",");
    let kinds = [
        format!("code={}", values(&|i| format!("http://loinc.org|x{i}"))),
        format!("date={}", values(&|i| format!("ge20{:02}-01-01", i % 100))),
        format!("subject:Patient.name={}", values(&|i| format!("n{i}"))),
        format!("value-quantity={}", values(&|i| format!("gt{i}"))),
    ];
    let worst: Vec<String> = (0..100).map(|i| kinds[i % kinds.len()].clone()).collect();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = s.req("POST", "Observation/_search", &form, Some(&worst.join("&")));
    assert_eq!((r.status, r.json()["total"].as_u64()), (200, Some(0)), "{}", &r.text[..300.min(r.text.len())]);
    let many: Vec<String> =
        (0..100).map(|i| if i % 2 == 0 { "gender=female".into() } else { format!("_id=big-1,big-{i}") }).collect();
    let r = s.get(&format!("Patient?{}", many.join("&")));
    assert_eq!((r.status, r.json()["total"].as_u64()), (200, Some(1)), "{}", r.text);
    for q in [
        format!("Patient?_id={}", (0..1000).map(|i| format!("x{i}")).collect::<Vec<_>>().join(",")),
        (0..1000).map(|i| format!("_id=x{i}")).collect::<Vec<_>>().join("&").replace("_id=x0", "Patient?_id=x0"),
        format!("?_type=Patient&_id={}", (0..101).map(|i| format!("x{i}")).collect::<Vec<_>>().join(",")),
    ] {
        let r = s.get(&q);
        assert_eq!(r.status, 400, "{}: {}", &q[..40], r.text);
        assert!(r.text.contains("at most 100"), "{}", r.text);
    }
}

on_both_backends!(
    large_searches_are_bounded,
    crud_lifecycle,
    conditional_operations,
    transaction_is_atomic_and_links_entries,
    batch_entries_stand_alone,
    bad_requests_change_nothing,
    validation_points_at_the_element,
    json_patch,
    fhirpath_patch,
    history_and_search_paging,
    includes_and_revincludes,
    system_level_search,
    custom_search_parameters,
    clinician_query_set,
    stable_paging,
    patient_everything,
    concurrent_writers_never_overwrite_each_other,
    acknowledged_writes_survive_kill_9,
    bulk_export,
);

#[test]
fn capability_statement_and_health() {
    let s = Server::sqlite();
    let r = s.get("metadata");
    assert_eq!(r.status, 200);
    let cs = r.json();
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let rest = &cs["rest"][0];
    assert_eq!(rest["resource"].as_array().unwrap().len(), 146);
    let patient = rest["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Patient").unwrap();
    assert!(patient["searchParam"].as_array().unwrap().iter().any(|p| p["name"] == "identifier"));
    // every operation the server has, where it is served
    let names = |v: &Value| -> Vec<String> {
        v["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()).collect()
    };
    let of = |t: &str| names(rest["resource"].as_array().unwrap().iter().find(|r| r["type"] == t).unwrap());
    assert_eq!(of("Patient"), ["everything", "export", "validate"]);
    assert_eq!(of("Group"), ["export", "validate"]);
    assert_eq!(of("AuditEvent"), ["flag", "validate"]);
    assert_eq!(of("Observation"), ["validate"]);
    assert_eq!(names(rest), ["export", "reindex"]);
    let export = &rest["operation"][0];
    assert_eq!(export["definition"], "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export");
    assert_eq!(cs["instantiates"][0], "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data");
    // the OpenAPI document made from the same sources (with a token: it is large to make)
    assert_eq!(s.req_as(None, "GET", "openapi.json", &[], None).status, 401);
    let api = s.get("openapi.json");
    assert_eq!(api.status, 200, "{}", api.text);
    let api = api.json();
    assert_eq!(api["openapi"], "3.0.3");
    assert_eq!(api["servers"][0]["url"], s.base.as_str());
    let paths = api["paths"].as_object().unwrap();
    for p in [
        "/Patient",
        "/Patient/{id}",
        "/Patient/{id}/_history/{vid}",
        "/Patient/{id}/$everything",
        "/Group/{id}/$export",
        "/",
        "/$export",
    ] {
        assert!(paths.contains_key(p), "{p}");
    }
    let search = &paths["/Observation"]["get"]["parameters"];
    assert!(search.as_array().unwrap().iter().any(|p| p["name"] == "code"), "search parameters listed");
    let patient = &api["components"]["schemas"]["Patient"];
    assert_eq!(patient["properties"]["resourceType"]["enum"][0], "Patient");
    assert_eq!(patient["properties"]["gender"]["type"], "string");
    assert_eq!(patient["properties"]["name"]["type"], "array");
    assert!(patient["properties"]["deceasedBoolean"].is_object(), "choice elements by their names");
    assert!(validation::validate_resource(&cs).iter().all(|i| !i.is_error()), "our CapabilityStatement is valid FHIR");
    let base = s.base.trim_end_matches("/fhir").to_string();
    let agent = ureq::agent();
    assert_eq!(agent.get(&format!("{base}/healthz")).call().unwrap().status(), 200);
    assert_eq!(agent.get(&format!("{base}/readyz")).call().unwrap().status(), 200);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut s = Server::sqlite();
    assert_eq!(s.post("Patient", &patient("Прощальная")).status, 201);
    assert!(s.terminate().success(), "exit status 0 after SIGTERM");
}

#[test]
fn demo_data_loads_once() {
    let s = Server::start(common::Backend::Sqlite(tempfile::tempdir().unwrap()), &["--demo"]);
    let r = s.get("Patient?_count=100").json();
    assert_eq!(r["total"], 20);
    let snils = r["entry"][0]["resource"]["identifier"][0]["value"].as_str().unwrap();
    assert_eq!(snils.len(), "123-456-789 00".len(), "{snils}");
    let family = r["entry"][0]["resource"]["name"][0]["family"].as_str().unwrap();
    assert!(family.chars().all(|c| ('А'..='я').contains(&c) || c == 'ё'), "{family}");
    assert!(s.get("Observation?code=http://loinc.org|8867-4").json()["total"].as_u64().unwrap() >= 20);
    // the demo patient's personal limits and a message in their inbox; visits' protocols
    assert_eq!(s.get("Goal?patient=pat-0").json()["total"], 1);
    assert_eq!(s.get("Communication?recipient=Patient/pat-0").json()["total"], 1);
    assert!(s.get("DocumentReference?patient=pat-0").json()["total"].as_u64().unwrap() >= 5);
    // the demo patient's clinic takes appointments: its schedules get their slots
    let clinic = s.get("Patient/pat-0").json()["managingOrganization"]["reference"].as_str().unwrap().to_string();
    let schedules = s.get(&format!("Schedule?actor:Location.organization={clinic}")).json();
    assert!(schedules["total"].as_u64().unwrap() >= 2, "{schedules}");
    let first = schedules["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let slots = || s.get(&format!("Slot?schedule=Schedule/{first}&_summary=count")).json()["total"].as_u64().unwrap();
    for _ in 0..300 {
        if slots() > 100 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(slots() > 100, "{} slots", slots());
}

#[test]
fn settings_come_from_the_config_file_and_bad_ones_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("medkarta.toml");
    std::fs::write(&config, "base_url = \"https://medkarta.example.ru/fhir\"\nmax_body_bytes = 1000\n").unwrap();
    let s =
        Server::start(common::Backend::Sqlite(tempfile::tempdir().unwrap()), &["--config", config.to_str().unwrap()]);
    let r = s.post("Patient", &patient("Настроенная"));
    assert!(
        r.header("location").unwrap().starts_with("https://medkarta.example.ru/fhir/Patient/"),
        "{:?}",
        r.header("location")
    );
    let big = json!({"resourceType": "Patient", "name": [{"family": "x".repeat(2000)}]});
    assert_eq!(s.post("Patient", &big).status, 413);

    std::fs::write(&config, "listen_adress = \"0.0.0.0:1\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medkarta"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_adress"), "the unknown key is named: {err}");
    // bad values of the access and watch settings are refused, naming them
    for (flag, value, said) in [
        ("--care-relations", "registration,friendship", "unknown care relation 'friendship'"),
        ("--night-hours", "25-3", "--night-hours '25-3'"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_medkarta"))
            .args(["serve", "--data", dir.path().to_str().unwrap(), flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(said), "{flag} {value}: {err}");
    }
}
