//! The generated data: valid FHIR R4 as Medkarta validates it, deterministic, internally
//! consistent (references resolve, identifiers check out), and of the intended volume.

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use synth::{Options, claims, patient_record, shared_resources, snils, snils_check, write_bundles, write_ndjson};

/// The shared resources and `n` patients with their claims.
fn population(seed: u64, n: usize) -> Vec<Value> {
    let billed = (0..n).flat_map(|i| {
        let mut r = patient_record(seed, i);
        let c = claims(&r);
        r.extend(c);
        r
    });
    shared_resources(seed).into_iter().chain(billed).collect()
}

fn references<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) => out.push(s),
                    _ => references(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

#[test]
fn every_resource_is_valid_fhir_r4() {
    let mut failures = Vec::new();
    let all = population(1, 200);
    for r in &all {
        let issues = validation::validate_resource(r);
        if validation::has_errors(&issues) {
            failures.push(format!("{}/{}: {issues:#?}", r["resourceType"], r["id"]));
        }
    }
    let bundle = synth::transaction(patient_record(1, 3));
    let issues = validation::validate_resource(&bundle);
    if validation::has_errors(&issues) {
        failures.push(format!("bundle: {issues:#?}"));
    }
    assert!(
        failures.is_empty(),
        "{} invalid of {}:\n{}",
        failures.len(),
        all.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}

#[test]
fn ids_are_valid_unique_and_references_resolve() {
    let all = population(1, 200);
    let mut ids = HashSet::new();
    for r in &all {
        let id = r["id"].as_str().unwrap();
        assert!(id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'), "{id}");
        assert!(ids.insert(format!("{}/{id}", r["resourceType"].as_str().unwrap())), "duplicate {id}");
    }
    for r in &all {
        let mut refs = Vec::new();
        references(r, &mut refs);
        for target in refs {
            assert!(ids.contains(target), "{}/{} refers to missing {target}", r["resourceType"], r["id"]);
        }
    }
}

#[test]
fn deterministic_per_seed_and_index() {
    let a = serde_json::to_string(&patient_record(42, 17)).unwrap();
    assert_eq!(a, serde_json::to_string(&patient_record(42, 17)).unwrap());
    assert_ne!(a, serde_json::to_string(&patient_record(43, 17)).unwrap());
    assert_ne!(a, serde_json::to_string(&patient_record(42, 18)).unwrap());
    assert_eq!(shared_resources(5), shared_resources(5));
    let count = |t: &str| shared_resources(5).iter().filter(|r| r["resourceType"] == t).count();
    assert_eq!((count("Organization"), count("Practitioner"), count("PractitionerRole")), (12, 40, 60));
    assert_ne!(shared_resources(5), shared_resources(6));
    // The structure of the shared resources does not depend on the seed (patients refer to it).
    let ids = |s: u64| shared_resources(s).iter().map(|r| r["id"].to_string()).collect::<Vec<_>>();
    assert_eq!(ids(5), ids(6));
}

#[test]
fn snils_check_digits() {
    assert_eq!(snils(112_233_445), "112-233-445 95");
    assert_eq!(snils_check(112_233_445), 95);
    for r in population(1, 100) {
        for ident in r["identifier"].as_array().into_iter().flatten() {
            let value = ident["value"].as_str().unwrap();
            if ident["system"] == "http://medkarta.ru/identifier/snils" {
                let digits: String = value.chars().filter(char::is_ascii_digit).collect();
                assert_eq!(snils(digits[..9].parse().unwrap()), value);
            }
            if ident["system"] == "http://medkarta.ru/identifier/oms" {
                assert!(value.len() == 16 && value.chars().all(|c| c.is_ascii_digit()), "{value}");
            }
        }
    }
}

#[test]
fn plausible_by_age_and_sex() {
    let all = population(1, 500);
    let patients: BTreeMap<String, &Value> = all
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .map(|p| (format!("Patient/{}", p["id"].as_str().unwrap()), p))
        .collect();
    for p in patients.values() {
        let patronymic = p["name"][0]["given"][1].as_str().unwrap();
        let female = p["gender"] == "female";
        assert_eq!(patronymic.ends_with("вна") || patronymic.ends_with("чна"), female, "{patronymic}");
        assert!(p["birthDate"].as_str().unwrap() >= "1931-01-01");
    }
    // Nothing happens after "today" or after a patient's death.
    for r in &all {
        let subject = r["subject"]["reference"].as_str().or(r["patient"]["reference"].as_str());
        let end = subject
            .and_then(|s| patients.get(s))
            .and_then(|p| p["deceasedDateTime"].as_str())
            .unwrap_or("2026-06-30T23:59");
        for when in [
            &r["period"]["end"],
            &r["effectiveDateTime"],
            &r["occurrenceDateTime"],
            &r["authoredOn"],
            &r["recordedDate"],
        ] {
            assert!(when.as_str().is_none_or(|w| w <= end), "{} at {when} after {end}", r["id"]);
        }
    }
    for c in all.iter().filter(|r| r["resourceType"] == "Condition") {
        let code = c["code"]["coding"][0]["code"].as_str().unwrap();
        let p = patients[c["subject"]["reference"].as_str().unwrap()];
        let age = c["recordedDate"].as_str().unwrap()[..4].parse::<i32>().unwrap()
            - p["birthDate"].as_str().unwrap()[..4].parse::<i32>().unwrap();
        if ["O80", "O82", "E03.9", "D50.9", "N39.0"].contains(&code) {
            assert_eq!(p["gender"], "female", "{code}");
        }
        if code.starts_with('O') {
            assert!((18..=46).contains(&age), "{code} at {age}");
        }
        if ["I10", "E11", "I25.1", "I21.9"].contains(&code) {
            assert!(age >= 24, "{code} at {age}");
        }
    }
}

#[test]
fn volume_statistics() {
    let n = 1000;
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let (mut total, mut by_age) = (0, BTreeMap::<i64, (usize, usize)>::new());
    for i in 0..n {
        let record = patient_record(1, i);
        let born: i64 = record[0]["birthDate"].as_str().unwrap()[..4].parse().unwrap();
        let group = by_age.entry((2026 - born) / 20 * 20).or_default();
        *group = (group.0 + 1, group.1 + record.len());
        total += record.len();
        for r in &record {
            *by_type.entry(r["resourceType"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let average = total as f64 / n as f64;
    println!("{n} patients, {total} resources, {average:.1} per patient");
    for (t, c) in &by_type {
        println!("  {t:<20} {c:>7}  {:>6.2} per patient", *c as f64 / n as f64);
    }
    for (age, (patients, resources)) in &by_age {
        println!(
            "  age {age:>2}-{:<2} {patients:>4} patients  {:>6.1} per patient",
            age + 19,
            *resources as f64 / *patients as f64
        );
    }
    assert!((40.0..90.0).contains(&average), "{average}");
}

#[test]
fn writes_ndjson_and_bundles() {
    let dir = std::env::temp_dir().join(format!("synth-test-{}", std::process::id()));
    let opts = Options { patients: 7, seed: 3, claims: true };
    let mut seen = Vec::new();
    let expected = population(3, 7).len();
    assert_eq!(write_ndjson(&opts, &dir.join("ndjson"), |n| seen.push(n)).unwrap(), expected);
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    let patients = std::fs::read_to_string(dir.join("ndjson/Patient.ndjson")).unwrap();
    assert_eq!(patients.lines().count(), 7);
    let mut seen = Vec::new();
    assert_eq!(write_bundles(&opts, &dir.join("bundles"), 3, |n| seen.push(n)).unwrap(), expected);
    assert_eq!(seen, [3, 6, 7]);
    let first: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bundles/bundle-00001.json")).unwrap()).unwrap();
    assert_eq!(first["entry"][0]["request"]["url"], "Organization/org-0");
    assert!(dir.join("bundles/bundle-00004.json").exists() && !dir.join("bundles/bundle-00005.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn claims_bill_every_visit_as_synthea_does() {
    let (mut visits, mut sensitive) = (0, 0);
    for i in 0..100 {
        let record = patient_record(1, i);
        let billed = claims(&record);
        assert_eq!(claims(&record), billed, "deterministic");
        let of = |t: &str| billed.iter().filter(|r| r["resourceType"] == t).collect::<Vec<_>>();
        let encounters: Vec<&Value> = record.iter().filter(|r| r["resourceType"] == "Encounter").collect();
        let prescriptions = record.iter().filter(|r| r["resourceType"] == "MedicationRequest").count();
        assert_eq!(of("ExplanationOfBenefit").len(), encounters.len());
        assert_eq!(of("Claim").len(), encounters.len() + prescriptions);
        for eob in of("ExplanationOfBenefit") {
            let items: f64 = eob["item"].as_array().unwrap().iter().map(|i| i["net"]["value"].as_f64().unwrap()).sum();
            assert_eq!(eob["payment"]["amount"]["value"].as_f64().unwrap(), items, "{}", eob["id"]);
            assert_eq!(eob["total"][0]["amount"]["value"].as_f64().unwrap(), items);
            let claim = eob["claim"]["reference"].as_str().unwrap().trim_start_matches("Claim/");
            assert!(of("Claim").iter().any(|c| c["id"] == claim && c["total"]["value"] == items));
        }
        for enc in encounters {
            visits += 1;
            let eob = of("ExplanationOfBenefit").into_iter().find(|e| {
                e["item"][0]["encounter"][0]["reference"] == format!("Encounter/{}", enc["id"].as_str().unwrap())
            });
            let eob = eob.unwrap_or_else(|| panic!("no explanation of {}", enc["id"]));
            // a sensitive visit's bill is labelled as the visit is
            assert_eq!(eob["meta"]["security"], enc["meta"]["security"]);
            sensitive += usize::from(enc["meta"]["security"].is_array());
        }
    }
    assert!(visits > 500 && sensitive > 0, "{visits} visits, {sensitive} sensitive");
    let dir = std::env::temp_dir().join(format!("synth-claims-{}", std::process::id()));
    let opts = Options { patients: 3, seed: 1, claims: true };
    let written = write_ndjson(&opts, &dir, |_| {}).unwrap();
    let lines = |t: &str| std::fs::read_to_string(dir.join(format!("{t}.ndjson"))).map_or(0, |s| s.lines().count());
    assert!(lines("Claim") > 0 && lines("ExplanationOfBenefit") > 0);
    let plain = write_ndjson(&Options { claims: false, ..opts }, &dir.join("plain"), |_| {}).unwrap();
    assert_eq!(written, plain + lines("Claim") + lines("ExplanationOfBenefit"));
    std::fs::remove_dir_all(&dir).unwrap();
}
