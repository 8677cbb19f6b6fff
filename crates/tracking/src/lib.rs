//! Health tracking (a domain crate): the measurements a patient enters themselves (blood
//! pressure, pulse, weight, glucose), validated and marked as patient-reported, and the
//! alerts a value raises. A rule in the guard's write path ([`TrackingRule`]) holds for
//! every way an Observation is written:
//!
//! - a patient writes only their own patient-reported measurements of the kinds below
//!   (tagged [`SOURCE`] `patient-reported`, performer and subject themselves), never
//!   changes or deletes a result;
//! - a value outside the personal limits the doctor set as an active `Goal`
//!   (`target.measure` the code, `target.detailRange` the limits) — whoever recorded it —
//!   or a patient-reported value outside its usual range (the defaults below) raises an
//!   alert in the same transaction: a `Flag` on the record (active until
//!   the general practitioner acknowledges it: status `inactive`), and a `Communication`
//!   to the patient and one to their general practitioner (delivered by `notify`).
//!
//! Bulk loads (demo data, imports) raise no alerts: they are history, not news.

use fhir_model::{Issue, IssueType, ResourceType};
use guard::rules::{Change, WriteRule};
use guard::write::{WriteOp, parse_criteria, prepare};
use guard::{FhirError, FhirResult, Principal, SystemActor, WriteTx};
use serde_json::{Value, json};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
/// The code system of where a measurement comes from (`meta.tag`).
pub const SOURCE: &str = "http://medkarta.ru/fhir/CodeSystem/observation-source";
/// The code system of the alerts' codes.
pub const ALERT: &str = "http://medkarta.ru/fhir/CodeSystem/alert";

/// One value of a measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub loinc: &'static str,
    pub en: &'static str,
    pub ru: &'static str,
    /// What a person can have at all (outside: a typing error, refused).
    pub plausible: (f64, f64),
    /// The usual range of a patient-reported value (adults), when there is one.
    pub normal: Option<(f64, f64)>,
}

/// A kind of measurement a patient enters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    /// Its name in forms and links (`bp`, `pulse`, `weight`, `glucose`).
    pub key: &'static str,
    pub loinc: &'static str,
    pub en: &'static str,
    pub ru: &'static str,
    pub unit: &'static str,
    pub ucum: &'static str,
    /// One value, or two components (blood pressure: systolic, diastolic).
    pub parts: &'static [Part],
    /// The codes whose values belong on this measure's chart (laboratory ones too).
    pub charted: &'static [&'static str],
    pub decimals: usize,
}

const SYSTOLIC: Part = Part {
    loinc: "8480-6",
    en: "Systolic blood pressure",
    ru: "Систолическое артериальное давление",
    plausible: (50.0, 300.0),
    normal: Some((90.0, 139.0)),
};
const DIASTOLIC: Part = Part {
    loinc: "8462-4",
    en: "Diastolic blood pressure",
    ru: "Диастолическое артериальное давление",
    plausible: (30.0, 200.0),
    normal: Some((60.0, 89.0)),
};

/// The measurements a patient enters (and their charts).
pub const MEASURES: [Measure; 4] = [
    Measure {
        key: "bp",
        loinc: "85354-9",
        en: "Blood pressure panel with all children optional",
        ru: "Артериальное давление",
        unit: "мм рт. ст.",
        ucum: "mm[Hg]",
        parts: &[SYSTOLIC, DIASTOLIC],
        charted: &["85354-9", "55284-4"],
        decimals: 0,
    },
    Measure {
        key: "pulse",
        loinc: "8867-4",
        en: "Heart rate",
        ru: "Частота сердечных сокращений",
        unit: "уд/мин",
        ucum: "/min",
        parts: &[Part {
            loinc: "8867-4",
            en: "Heart rate",
            ru: "Частота сердечных сокращений",
            plausible: (20.0, 250.0),
            normal: Some((50.0, 100.0)),
        }],
        charted: &["8867-4"],
        decimals: 0,
    },
    Measure {
        key: "weight",
        loinc: "29463-7",
        en: "Body weight",
        ru: "Масса тела",
        unit: "кг",
        ucum: "kg",
        parts: &[Part {
            loinc: "29463-7", en: "Body weight", ru: "Масса тела", plausible: (1.0, 400.0), normal: None
        }],
        charted: &["29463-7"],
        decimals: 1,
    },
    Measure {
        key: "glucose",
        loinc: "14743-9",
        en: "Glucose [Moles/volume] in Capillary blood by Glucometer",
        ru: "Глюкоза крови (глюкометр)",
        unit: "ммоль/л",
        ucum: "mmol/L",
        parts: &[Part {
            loinc: "14743-9",
            en: "Glucose [Moles/volume] in Capillary blood by Glucometer",
            ru: "Глюкоза крови (глюкометр)",
            plausible: (0.5, 40.0),
            normal: Some((3.9, 7.8)),
        }],
        charted: &["14743-9", "14749-6", "15074-8", "2345-7", "2339-0"],
        decimals: 1,
    },
];

/// The measure of a key.
pub fn measure(key: &str) -> Option<&'static Measure> {
    MEASURES.iter().find(|m| m.key == key)
}

/// Why a measurement was refused (a key of the portal's catalogue, and the part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub part: Option<&'static str>,
}

/// A patient's own measurement as an Observation: the values checked (plausible,
/// systolic above diastolic, a time not in the future), tagged patient-reported.
pub fn reported(m: &Measure, values: &[f64], when: jiff::Timestamp, patient: &str) -> Result<Value, Invalid> {
    if values.len() != m.parts.len() {
        return Err(Invalid { key: "health.error.missing", part: None });
    }
    for (v, p) in values.iter().zip(m.parts) {
        if !v.is_finite() || *v < p.plausible.0 || *v > p.plausible.1 {
            return Err(Invalid { key: "health.error.implausible", part: Some(p.ru) });
        }
    }
    if m.key == "bp" && values[0] <= values[1] {
        return Err(Invalid { key: "health.error.bp_order", part: None });
    }
    if when > jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5) {
        return Err(Invalid { key: "health.error.future", part: None });
    }
    let quantity = |v: f64| {
        let rounded = format!("{v:.*}", m.decimals).parse::<serde_json::Number>().ok();
        json!({"value": rounded, "unit": m.unit, "system": UCUM, "code": m.ucum})
    };
    let concept = |loinc: &str, en: &str, ru: &str| json!({"coding": [{"system": LOINC, "code": loinc, "display": en}], "text": ru});
    let me = json!({"reference": format!("Patient/{patient}")});
    let mut o = json!({
        "resourceType": "Observation",
        "meta": {"tag": [{"system": SOURCE, "code": "patient-reported", "display": "Patient-reported"}]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": concept(m.loinc, m.en, m.ru),
        "subject": me,
        "effectiveDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "performer": [me]
    });
    if m.parts.len() == 1 {
        o["valueQuantity"] = quantity(values[0]);
    } else {
        o["component"] = m
            .parts
            .iter()
            .zip(values)
            .map(|(p, v)| json!({"code": concept(p.loinc, p.en, p.ru), "valueQuantity": quantity(*v)}))
            .collect();
    }
    Ok(o)
}

/// Is an Observation marked patient-reported?
pub fn is_patient_reported(o: &Value) -> bool {
    o["meta"]["tag"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["system"] == SOURCE && t["code"] == "patient-reported"))
}

fn rt(name: &str) -> FhirResult<ResourceType> {
    ResourceType::parse(name).ok_or_else(FhirError::internal)
}

fn refuse(text: &str) -> FhirError {
    FhirError::new(403, Issue::error(IssueType::Forbidden, text))
}

fn codes(c: &Value) -> Vec<&str> {
    c["coding"].as_array().into_iter().flatten().filter_map(|c| c["code"].as_str()).collect()
}

/// Limits: low, high (either may be open).
pub type Range = (Option<f64>, Option<f64>);

/// One value of an Observation: its code, its number, its unit, its own range.
struct Value1<'a> {
    code: &'a str,
    name: String,
    name_en: String,
    value: f64,
    unit: String,
    range: Option<Range>,
}

fn range_of(r: &Value) -> Option<Range> {
    let (low, high) = (r["low"]["value"].as_f64(), r["high"]["value"].as_f64());
    (low.is_some() || high.is_some()).then_some((low, high))
}

/// One value: its code, number, unit and range.
fn value_of<'a>(code: &'a Value, q: &Value, ranges: &Value) -> Option<Value1<'a>> {
    Some(Value1 {
        code: codes(code).into_iter().next()?,
        name: code["text"].as_str().or_else(|| code["coding"][0]["display"].as_str()).unwrap_or("").to_string(),
        name_en: code["coding"][0]["display"].as_str().or_else(|| code["text"].as_str()).unwrap_or("").to_string(),
        value: q["value"].as_f64()?,
        unit: q["unit"].as_str().unwrap_or("").to_string(),
        range: ranges.as_array().and_then(|r| r.first()).and_then(range_of),
    })
}

/// The values of an Observation (its components, or itself).
fn values(o: &Value) -> Vec<Value1<'_>> {
    match o["component"].as_array() {
        Some(parts) => {
            parts.iter().filter_map(|c| value_of(&c["code"], &c["valueQuantity"], &c["referenceRange"])).collect()
        }
        None => value_of(&o["code"], &o["valueQuantity"], &o["referenceRange"]).into_iter().collect(),
    }
}

/// The default range of a patient-reported value of `code`.
fn default_range(code: &str) -> Option<Range> {
    MEASURES
        .iter()
        .flat_map(|m| m.parts)
        .find(|p| p.loinc == code)
        .and_then(|p| p.normal)
        .map(|(l, h)| (Some(l), Some(h)))
}

fn number(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").unwrap_or(&s).to_string()
}

fn limits_text(range: Range) -> String {
    match range {
        (Some(l), Some(h)) => format!("{}–{}", number(l), number(h)),
        (Some(l), None) => format!("≥ {}", number(l)),
        (None, Some(h)) => format!("≤ {}", number(h)),
        (None, None) => String::new(),
    }
}

/// The rule of Observations (see the module docs).
pub struct TrackingRule;

/// Bulk loads: history, no alerts.
const QUIET: [SystemActor; 2] = [SystemActor::DEMO, SystemActor::IMPORT];

impl WriteRule for TrackingRule {
    fn types(&self) -> &[&'static str] {
        &["Observation"]
    }

    fn opens_to_patients(&self) -> bool {
        true
    }

    fn check(&self, tx: &mut WriteTx<'_>, change: &Change<'_>) -> FhirResult<()> {
        let principal = tx.handle().principal().clone();
        if let Some(me) = patient_of(&principal).filter(|_| !tx.derived()) {
            let Some(after) = change.after.filter(|_| change.before.is_none()) else {
                return Err(refuse("A patient adds measurements; results are not changed or deleted"));
            };
            let code = codes(&after["code"]).into_iter().next().unwrap_or("");
            let mine = after["subject"]["reference"] == me.as_str()
                && after["performer"].as_array().is_some_and(|p| p.len() == 1 && p[0]["reference"] == me.as_str());
            if !is_patient_reported(after) || !mine || !MEASURES.iter().any(|m| m.loinc == code) {
                return Err(refuse(
                    "A patient enters only their own measurements (blood pressure, pulse, weight, glucose), \
                     marked patient-reported, themselves the performer",
                ));
            }
        }
        if matches!(&principal, Principal::System(a) if QUIET.contains(a)) {
            return Ok(());
        }
        match (change.before, change.after) {
            (None, Some(after)) => alert(tx, change.id, after),
            _ => Ok(()),
        }
    }
}

fn patient_of(principal: &Principal) -> Option<String> {
    match principal {
        Principal::Token(c) => {
            c.grant.as_ref().filter(|g| g.role == auth::account::Role::Patient).and_then(|g| g.patient.clone())
        }
        _ => None,
    }
}

/// The active personal limits of a patient: `(code, low, high)` of each Goal target.
fn personal_limits(tx: &mut WriteTx<'_>, patient: &str) -> FhirResult<Vec<(String, Range)>> {
    let id = patient.trim_start_matches("Patient/");
    let q = parse_criteria(rt("Goal")?, &format!("patient={id}&lifecycle-status=active"))?;
    let mut out = Vec::new();
    for gid in tx.search_ids(&q, 100)? {
        let Some(goal) = tx.read(rt("Goal")?, &gid)?.and_then(|s| s.body) else { continue };
        let goal: Value = serde_json::from_slice(&goal).unwrap_or_default();
        for t in goal["target"].as_array().into_iter().flatten() {
            if let (Some(code), Some((low, high))) =
                (codes(&t["measure"]).into_iter().next(), range_of(&t["detailRange"]))
            {
                out.push((code.to_string(), (low, high)));
            }
        }
    }
    Ok(out)
}

/// Raise the alert of a new Observation out of its range (see the module docs).
fn alert(tx: &mut WriteTx<'_>, id: &str, o: &Value) -> FhirResult<()> {
    if !matches!(o["status"].as_str(), Some("final" | "amended" | "corrected" | "preliminary")) {
        return Ok(());
    }
    let Some(patient) = o["subject"]["reference"].as_str().filter(|s| s.starts_with("Patient/")) else {
        return Ok(());
    };
    let values = values(o);
    if values.is_empty() {
        return Ok(());
    }
    let personal = personal_limits(tx, patient)?;
    let reported = is_patient_reported(o);
    let mut out_of_range = Vec::new();
    for v in &values {
        // personal limits hold for every value; the usual ranges for one's own
        // measurements (a laboratory's result out of its range is flagged on the result,
        // critical values are the laboratory service's)
        let limits = personal
            .iter()
            .find(|(c, _)| c == v.code)
            .map(|(_, r)| (*r, true))
            .or_else(|| reported.then(|| v.range.or_else(|| default_range(v.code))).flatten().map(|r| (r, false)));
        let Some(((low, high), own)) = limits else { continue };
        let high_out = high.is_some_and(|h| v.value > h);
        if high_out || low.is_some_and(|l| v.value < l) {
            let (ru, en) = if high_out { ("выше", "above") } else { ("ниже", "below") };
            let whose = if own {
                ("личной нормы", "your personal limits")
            } else {
                ("нормы", "the normal range")
            };
            out_of_range.push((
                format!("{} {} {}: {} {} ({})", v.name, number(v.value), v.unit, ru, whose.0, limits_text((low, high))),
                format!(
                    "{} {} {}: {en} {} ({})",
                    v.name_en,
                    number(v.value),
                    v.unit,
                    whose.1,
                    limits_text((low, high))
                ),
            ));
        }
    }
    if out_of_range.is_empty() {
        return Ok(());
    }
    let ru: Vec<String> = out_of_range.iter().map(|(r, _)| r.clone()).collect();
    let en: Vec<String> = out_of_range.iter().map(|(_, e)| e.clone()).collect();
    let now = guard::meta::instant(guard::meta::now_micros());
    let observation = json!({"reference": format!("Observation/{id}")});
    let flag = json!({
        "resourceType": "Flag",
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail", "valueReference": observation}],
        "status": "active",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "clinical", "display": "Clinical"}]}],
        "code": {"coding": [{"system": ALERT, "code": "out-of-range", "display": "Value out of range"}],
                 "text": format!("Показатель вне нормы: {}", ru.join("; "))},
        "subject": {"reference": patient},
        "period": {"start": now}
    });
    let flag = tx.apply(prepare(WriteOp::Create { resource: flag, if_none_exist: None, id: None })?)?;
    let flag = json!({"reference": format!("Flag/{}", flag.id)});
    // the general practitioner: the patient's first, if they have one
    let gp = tx
        .read(rt("Patient")?, patient.trim_start_matches("Patient/"))?
        .and_then(|s| s.body)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|p| {
            p["generalPractitioner"].as_array()?.iter().find_map(|g| g["reference"].as_str().map(str::to_string))
        })
        .filter(|g| g.starts_with("Practitioner/") || g.starts_with("PractitionerRole/"));
    let (to_patient_ru, to_gp_ru) = if reported {
        ("Измеренное вами значение вне нормы", "Пациент сообщил значение вне нормы")
    } else {
        ("Результат вне нормы", "Результат пациента вне нормы")
    };
    let mut recipients = vec![(patient.to_string(), to_patient_ru, "A value of yours is out of range")];
    if let Some(gp) = gp {
        recipients.push((gp, to_gp_ru, "A patient's value is out of range"));
    }
    for (to, ru_head, en_head) in recipients {
        let note = json!({
            "resourceType": "Communication",
            "status": "completed",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "alert"}]}],
            "priority": "urgent",
            "subject": {"reference": patient},
            "about": [flag, observation],
            "recipient": [{"reference": to}],
            "sent": now,
            "payload": [{"contentString": format!("{ru_head}: {}.", ru.join("; "))},
                        {"contentString": format!("{en_head}: {}.", en.join("; "))}]
        });
        tx.apply(prepare(WriteOp::Create { resource: note, if_none_exist: None, id: None })?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measurement_is_checked_and_marked_as_the_patients() {
        let bp = measure("bp").unwrap();
        let now = jiff::Timestamp::now();
        let o = reported(bp, &[165.0, 100.0], now, "p1").unwrap();
        assert!(is_patient_reported(&o));
        assert_eq!(o["performer"][0]["reference"], "Patient/p1");
        assert_eq!(o["component"][0]["valueQuantity"]["value"], 165);
        assert!(!validation::has_errors(&validation::validate_resource(&o)), "{o}");
        let e = |values: &[f64]| reported(bp, values, now, "p1").unwrap_err().key;
        assert_eq!(e(&[80.0, 120.0]), "health.error.bp_order");
        assert_eq!(e(&[400.0, 90.0]), "health.error.implausible");
        assert_eq!(e(&[120.0]), "health.error.missing");
        let later = now + jiff::SignedDuration::from_hours(2);
        assert_eq!(reported(bp, &[120.0, 80.0], later, "p1").unwrap_err().key, "health.error.future");
        let w = reported(measure("weight").unwrap(), &[72.46], now, "p1").unwrap();
        assert_eq!(w["valueQuantity"]["value"].to_string(), "72.5");
    }

    #[test]
    fn values_and_their_ranges() {
        let o = json!({"code": {"coding": [{"code": "14749-6"}], "text": "Глюкоза"},
                       "valueQuantity": {"value": 7.4, "unit": "ммоль/л"},
                       "referenceRange": [{"low": {"value": 3.9}, "high": {"value": 6.1}}]});
        let v = values(&o);
        assert_eq!((v[0].code, v[0].value, v[0].range), ("14749-6", 7.4, Some((Some(3.9), Some(6.1)))));
        assert_eq!(default_range("8480-6"), Some((Some(90.0), Some(139.0))));
        assert_eq!(limits_text((Some(90.0), Some(139.0))), "90–139");
    }
}
