//! Claims and explanations of benefit derived from a generated record, in the shape
//! Synthea gives them (a Claim and an ExplanationOfBenefit per Encounter, itemising the
//! visit and what was done at it; a pharmacy Claim per prescription), billed to the
//! patient's compulsory insurance (ОМС) at fixed tariffs in roubles. Pure functions of the
//! record, so the output stays deterministic.

use serde_json::{Map, Value, json};

use crate::fhir::{OMS, TERM, reference, term};

/// Tariff of a visit by encounter class, of each item done at it, roubles.
const VISIT: [(&str, f64); 3] = [("AMB", 1_150.0), ("EMER", 3_420.0), ("IMP", 38_900.0)];
const PROCEDURE: f64 = 1_480.0;
const PANEL: f64 = 640.0;
const VACCINATION: f64 = 420.0;
const DISPENSING: f64 = 95.0;

/// The Claims and ExplanationOfBenefits of one patient's record (`record[0]` the Patient).
pub fn claims(record: &[Value]) -> Vec<Value> {
    let Some(patient) = record.first() else { return Vec::new() };
    let pid = patient["id"].as_str().unwrap_or_default();
    let policy = patient["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == OMS)
        .map_or(Value::Null, |i| i["value"].clone());
    let coverage = json!({"identifier": {"system": OMS, "value": policy}, "display": "Полис ОМС"});
    let mut out = Vec::new();
    for enc in record.iter().filter(|r| r["resourceType"] == "Encounter") {
        let eid = enc["id"].as_str().unwrap_or_default();
        let at = format!("Encounter/{eid}");
        let done: Vec<&Value> = record.iter().filter(|r| r["encounter"]["reference"] == at.as_str()).collect();
        let class = enc["class"]["code"].as_str().unwrap_or("AMB");
        let visit = VISIT.iter().find(|(c, _)| *c == class).map_or(VISIT[0].1, |v| v.1);
        let mut items = vec![(enc["type"][0].clone(), visit)];
        for r in &done {
            match r["resourceType"].as_str() {
                Some("Procedure") => items.push((r["code"].clone(), PROCEDURE)),
                Some("DiagnosticReport") => items.push((r["code"].clone(), PANEL)),
                Some("Immunization") => items.push((r["vaccineCode"].clone(), VACCINATION)),
                _ => {}
            }
        }
        let mut diagnoses: Vec<Value> = enc["reasonCode"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"diagnosisCodeableConcept": c}))
            .collect();
        diagnoses.extend(
            done.iter()
                .filter(|r| r["resourceType"] == "Condition")
                .map(|c| json!({"diagnosisReference": reference("Condition", c["id"].as_str().unwrap_or_default())})),
        );
        for (i, d) in diagnoses.iter_mut().enumerate() {
            d["sequence"] = json!(i + 1);
        }
        let kind = if class == "IMP" { "institutional" } else { "professional" };
        let common = Common {
            pid,
            period: enc["period"].clone(),
            created: enc["period"]["end"].clone(),
            provider: enc["serviceProvider"].clone(),
            kind: term("claim-type", kind, if class == "IMP" { "Institutional" } else { "Professional" }),
            coverage: coverage.clone(),
            security: enc["meta"]["security"].clone(),
        };
        let claim_id = format!("{eid}-claim");
        let lines: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, (service, price))| {
                json!({"sequence": i + 1, "productOrService": service, "encounter": [reference("Encounter", eid)],
                    "net": money(*price)})
            })
            .collect();
        let total: f64 = items.iter().map(|(_, p)| p).sum();
        let mut claim = common.claim(&claim_id, lines.clone(), total);
        claim["diagnosis"] = json!(diagnoses);
        out.push(claim);
        out.push(common.explanation(&format!("{eid}-eob"), &claim_id, lines, diagnoses, total));
        for med in done.iter().filter(|r| r["resourceType"] == "MedicationRequest") {
            let mid = med["id"].as_str().unwrap_or_default();
            let pharmacy = Common { kind: term("claim-type", "pharmacy", "Pharmacy"), ..common.clone() };
            let line = json!({"sequence": 1, "productOrService": med["medicationCodeableConcept"],
                "encounter": [reference("Encounter", eid)], "net": money(DISPENSING)});
            let mut claim = pharmacy.claim(&format!("{mid}-claim"), vec![line], DISPENSING);
            claim["prescription"] = reference("MedicationRequest", mid);
            out.push(claim);
        }
    }
    out
}

fn money(value: f64) -> Value {
    json!({"value": value, "currency": "RUB"})
}

/// What a Claim and its ExplanationOfBenefit share.
#[derive(Clone)]
struct Common<'a> {
    pid: &'a str,
    period: Value,
    created: Value,
    provider: Value,
    kind: Value,
    coverage: Value,
    /// The encounter's security labels (a sensitive visit's claim is as sensitive).
    security: Value,
}

impl Common<'_> {
    fn start(&self, rtype: &str, id: &str) -> Map<String, Value> {
        let mut r = Map::new();
        r.insert("resourceType".into(), json!(rtype));
        r.insert("id".into(), json!(id));
        if self.security.is_array() {
            r.insert("meta".into(), json!({"security": self.security}));
        }
        r.insert("status".into(), json!("active"));
        r.insert("type".into(), self.kind.clone());
        r.insert("use".into(), json!("claim"));
        r.insert("patient".into(), reference("Patient", self.pid));
        r.insert("billablePeriod".into(), self.period.clone());
        r.insert("created".into(), self.created.clone());
        r
    }

    fn claim(&self, id: &str, items: Vec<Value>, total: f64) -> Value {
        let mut r = self.start("Claim", id);
        r.insert("provider".into(), self.provider.clone());
        r.insert("priority".into(), term("processpriority", "normal", "Normal"));
        r.insert("insurance".into(), json!([{"sequence": 1, "focal": true, "coverage": self.coverage}]));
        r.insert("item".into(), json!(items));
        r.insert("total".into(), money(total));
        Value::Object(r)
    }

    fn explanation(&self, id: &str, claim: &str, items: Vec<Value>, diagnoses: Vec<Value>, total: f64) -> Value {
        let category = |code: &str, display: &str| json!({"coding": [{"system": format!("{TERM}adjudication"), "code": code, "display": display}]});
        let amounts = |value: f64| {
            json!([{"category": category("submitted", "Submitted Amount"), "amount": money(value)},
                {"category": category("benefit", "Benefit Amount"), "amount": money(value)}])
        };
        let items: Vec<Value> = items
            .into_iter()
            .map(|mut i| {
                i["adjudication"] = amounts(i["net"]["value"].as_f64().unwrap_or(0.0));
                i
            })
            .collect();
        let mut r = self.start("ExplanationOfBenefit", id);
        r.insert("insurer".into(), json!({"display": "Территориальный фонд ОМС"}));
        r.insert("provider".into(), self.provider.clone());
        r.insert("claim".into(), reference("Claim", claim));
        r.insert("outcome".into(), json!("complete"));
        r.insert("insurance".into(), json!([{"focal": true, "coverage": self.coverage}]));
        r.insert("diagnosis".into(), json!(diagnoses));
        r.insert("item".into(), json!(items));
        r.insert("total".into(), amounts(total));
        r.insert("payment".into(), json!({"amount": money(total)}));
        Value::Object(r)
    }
}
