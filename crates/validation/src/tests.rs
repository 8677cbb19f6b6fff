//! Unit tests of the structural validator.

use super::*;
use serde_json::json;

fn errors(v: Value) -> Vec<(String, String)> {
    validate_resource(&v).into_iter().filter(Issue::is_error).map(|i| (i.expression.join(","), i.diagnostics)).collect()
}

#[test]
fn a_valid_patient_passes() {
    let p = json!({
        "resourceType": "Patient", "id": "p1",
        "identifier": [{"system": "http://medkarta.ru/snils", "value": "112-233-445 95"}],
        "name": [{"family": "Иванов", "given": ["Иван", "Иванович"]}],
        "gender": "male", "birthDate": "1980-04-12",
        "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
        "contact": [{"name": {"text": "Мария"}}],
        "deceasedBoolean": false,
        "contained": [{"resourceType": "Organization", "id": "o1", "name": "ГП №1"}],
        "managingOrganization": {"reference": "#o1"}
    });
    assert_eq!(errors(p), vec![]);
}

#[test]
fn each_kind_of_error_is_pointed_at() {
    let p = json!({
        "resourceType": "Patient",
        "name": {"family": "X"},
        "gender": "woman",
        "birthDate": "1980-02-30",
        "foo": 1,
        "deceasedBoolean": true, "deceasedDateTime": "2020",
        "managingOrganization": {"reference": "Patient/1"},
        "link": [{"type": "seealso"}]
    });
    let e = errors(p);
    let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "Patient.name",
        "Patient.gender",
        "Patient.birthDate",
        "Patient.foo",
        "Patient.deceasedDateTime",
        "Patient.managingOrganization.reference",
        "Patient.link[0].other",
    ] {
        assert!(paths.contains(&want), "missing issue at {want}: {e:?}");
    }
}

#[test]
fn choice_types_contained_and_nested_resources() {
    let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"},
        "valueQuantity": {"value": 1.5, "unit": "kg"}, "valueFoo": 1});
    assert_eq!(errors(o).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["Observation.valueFoo"]);
    let b = json!({"resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "active": "yes"}}]});
    assert_eq!(errors(b).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["Bundle.entry[0].resource.active"]);
    let q = json!({"resourceType": "Questionnaire", "status": "draft",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "nonsense"}]}]});
    assert_eq!(errors(q).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["Questionnaire.item[0].item[0].type"]);
}

#[test]
fn unknown_resource_type_and_shape_errors() {
    assert!(!errors(json!({"resourceType": "Patiant"})).is_empty());
    assert!(!errors(json!([1])).is_empty());
    assert!(!errors(json!({"resourceType": "Patient", "name": []})).is_empty());
    assert!(!errors(json!({"resourceType": "Patient", "active": null})).is_empty());
    assert!(!errors(json!({"resourceType": "Patient", "name": [{}]})).is_empty());
}

#[test]
fn nearly_every_invariant_is_evaluable() {
    let s = spec();
    let mut total = 0;
    let mut parsed = 0;
    let mut unsupported = Vec::new();
    let names = s.resource_types().iter().map(|r| r.to_string()).chain(
        [
            "Period",
            "Quantity",
            "Reference",
            "Attachment",
            "HumanName",
            "Identifier",
            "Timing",
            "Narrative",
            "Extension",
            "Ratio",
            "Range",
        ]
        .iter()
        .map(|t| t.to_string()),
    );
    for name in names {
        let Some(t) = s.type_def(&name) else { continue };
        let mut all: Vec<&fhir_spec::Constraint> = t.constraints.iter().collect();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            for el in t.children(&prefix) {
                all.extend(el.constraints.iter());
                if t.has_children(&el.path) {
                    stack.push(el.path.clone());
                }
            }
        }
        for c in all {
            total += 1;
            match fhirpath::parse_supported(&c.expression) {
                Ok(_) => parsed += 1,
                Err(e) => unsupported.push(format!("{}: {e}", c.key)),
            }
        }
    }
    println!("invariants evaluable: {parsed}/{total}; not yet: {unsupported:?}");
    assert!(parsed * 100 >= total * 95, "{parsed}/{total}: {unsupported:?}");
}

#[test]
fn invariants_are_enforced() {
    let e = errors(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "effectivePeriod": {"start": "2024-05-02", "end": "2024-05-01"},
        "referenceRange": [{"text": "n"}, {"appliesTo": [{"text": "adults"}]}]}));
    let texts: Vec<String> = e.iter().map(|(p, d)| format!("{p}: {d}")).collect();
    assert!(texts.iter().any(|t| t.starts_with("Observation.effectivePeriod: Constraint failed: per-1")), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.starts_with("Observation.referenceRange[1]: Constraint failed: obs-3")),
        "{texts:?}"
    );
    assert!(!texts.iter().any(|t| t.starts_with("Observation.referenceRange[0]")), "{texts:?}");
    let p =
        json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o1", "name": "x"}]});
    assert!(errors(p).iter().any(|(_, d)| d.contains("dom-3")), "an unreferenced contained resource");
}

#[test]
fn active_content_is_refused_in_text() {
    let p = json!({"resourceType": "Patient", "name": [{"text": "Иванов <script>alert(1)</script>"}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"x\" onerror=\"alert(1)\"/></div>"}});
    let e = errors(p);
    let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, vec!["Patient.name[0].text", "Patient.text.div"], "{e:?}");
    assert!(errors(json!({"resourceType": "Patient", "name": [{"text": "доза <5 мг, x > 3"}]})).is_empty());
}
