//! The demo data set: two clinics, their practitioners, and patients with Russian names,
//! patronymics and valid SNILS numbers, each with an encounter and vital signs. It is
//! deterministic and loaded once (a second run finds it and writes nothing).

use fhir_rest::{Body, Engine, Method, Request};
use serde_json::{Value, json};

const SNILS_SYSTEM: &str = "http://medkarta.ru/identifier/snils";
const OMS_SYSTEM: &str = "http://medkarta.ru/identifier/oms";

/// SNILS check digits for the nine-digit number `n` (ПФР algorithm).
pub fn snils_checksum(n: u32) -> u32 {
    let digits: Vec<u32> = format!("{n:09}").chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits.iter().enumerate().map(|(i, d)| d * (9 - i as u32)).sum();
    match sum {
        s if s < 100 => s,
        100 | 101 => 0,
        s => {
            let r = s % 101;
            if r == 100 { 0 } else { r }
        }
    }
}

/// `123-456-789 64`
pub fn snils(n: u32) -> String {
    let s = format!("{n:09}");
    format!("{}-{}-{} {:02}", &s[0..3], &s[3..6], &s[6..9], snils_checksum(n))
}

/// A small deterministic generator (xorshift), so the demo is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get((self.next() % items.len() as u64) as usize).copied().unwrap_or_default()
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

const MALE: &[&str] =
    &["Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Иван", "Михаил", "Никита", "Евгений"];
const FEMALE: &[&str] =
    &["Анна", "Мария", "Елена", "Ольга", "Татьяна", "Наталья", "Ирина", "Екатерина", "Светлана", "Юлия"];
const PATRONYMICS: &[(&str, &str)] = &[
    ("Александрович", "Александровна"),
    ("Дмитриевич", "Дмитриевна"),
    ("Сергеевич", "Сергеевна"),
    ("Андреевич", "Андреевна"),
    ("Алексеевич", "Алексеевна"),
    ("Иванович", "Ивановна"),
    ("Михайлович", "Михайловна"),
    ("Петрович", "Петровна"),
    ("Николаевич", "Николаевна"),
    ("Владимирович", "Владимировна"),
];
const SURNAMES: &[&str] = &[
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
];
const CITIES: &[(&str, &str)] = &[
    ("Москва", "Москва"),
    ("Казань", "Республика Татарстан"),
    ("Новосибирск", "Новосибирская область"),
    ("Минск", "Минская область"),
];

fn entry(resource: Value) -> Value {
    let url = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    );
    json!({"resource": resource, "request": {"method": "PUT", "url": url}})
}

fn patient(rng: &mut Rng, i: u32) -> Value {
    let female = rng.next().is_multiple_of(2);
    let surname = rng.pick(SURNAMES);
    let (male_patronymic, female_patronymic) =
        PATRONYMICS.get((rng.next() % PATRONYMICS.len() as u64) as usize).copied().unwrap_or(("Иванович", "Ивановна"));
    let (given, family, patronymic) = if female {
        (rng.pick(FEMALE), format!("{surname}а"), female_patronymic)
    } else {
        (rng.pick(MALE), surname.to_string(), male_patronymic)
    };
    let (city, region) =
        CITIES.get((rng.next() % CITIES.len() as u64) as usize).copied().unwrap_or(("Москва", "Москва"));
    let year = rng.range(1940, 2020);
    let snils_number = 100_000_000 + (rng.next() % 800_000_000) as u32;
    json!({
        "resourceType": "Patient",
        "id": format!("demo-patient-{i}"),
        "identifier": [
            {"use": "official", "system": SNILS_SYSTEM, "value": snils(snils_number)},
            {"system": OMS_SYSTEM, "value": format!("{:016}", 7_700_000_000_000_000u64 + rng.next() % 99_999_999_999_999)}
        ],
        "active": true,
        "name": [{"use": "official", "family": family, "given": [given, patronymic], "text": format!("{family} {given} {patronymic}")}],
        "gender": if female { "female" } else { "male" },
        "birthDate": format!("{year}-{:02}-{:02}", rng.range(1, 12), rng.range(1, 28)),
        "telecom": [{"system": "phone", "value": format!("+7 9{:02} {:03}-{:02}-{:02}", rng.range(10, 99), rng.range(100, 999), rng.range(10, 99), rng.range(10, 99)), "use": "mobile"}],
        "address": [{"use": "home", "city": city, "state": region, "country": "RU", "line": [format!("ул. Ленина, д. {}, кв. {}", rng.range(1, 120), rng.range(1, 300))]}],
        "managingOrganization": {"reference": format!("Organization/demo-org-{}", 1 + i % 2)},
        "generalPractitioner": [{"reference": format!("Practitioner/demo-practitioner-{}", 1 + i % 3)}]
    })
}

/// A vital sign measured with a LOINC code and a UCUM unit.
struct VitalKind {
    id: &'static str,
    loinc: &'static str,
    name: &'static str,
    unit: &'static str,
    ucum: &'static str,
}

const HEART_RATE: VitalKind =
    VitalKind {
        id: "hr", loinc: "8867-4", name: "Частота сердечных сокращений", unit: "уд/мин", ucum: "/min"
    };
const WEIGHT: VitalKind =
    VitalKind { id: "weight", loinc: "29463-7", name: "Масса тела", unit: "кг", ucum: "kg" };

/// One vital-sign Observation of patient number `i` at their encounter.
fn vital(kind: &VitalKind, i: u32, when: &str, value: u64) -> Value {
    json!({
        "resourceType": "Observation",
        "id": format!("demo-{}-{i}", kind.id),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": kind.loinc, "display": kind.name}], "text": kind.name},
        "subject": {"reference": format!("Patient/demo-patient-{i}")},
        "encounter": {"reference": format!("Encounter/demo-encounter-{i}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": kind.unit, "system": "http://unitsofmeasure.org", "code": kind.ucum}
    })
}

/// The whole demo data set as one transaction bundle.
pub fn bundle(patients: u32) -> Value {
    let mut rng = Rng(0x4d65_646b_6172_7461);
    let mut entries = vec![
        entry(
            json!({"resourceType": "Organization", "id": "demo-org-1", "active": true, "name": "ГБУЗ «Городская поликлиника № 1»",
            "identifier": [{"system": "urn:oid:1.2.643.5.1.13.13.11.1461", "value": "1.2.643.5.1.13.13.12.2.77.7801"}],
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
            "address": [{"city": "Москва", "line": ["ул. Тверская, д. 1"], "country": "RU"}]}),
        ),
        entry(
            json!({"resourceType": "Organization", "id": "demo-org-2", "active": true, "name": "ГАУЗ «Республиканская клиническая больница»",
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
            "address": [{"city": "Казань", "line": ["Оренбургский тракт, д. 138"], "country": "RU"}]}),
        ),
    ];
    let doctors = [
        ("Петрова", "Ирина", "Сергеевна", "female"),
        ("Сидоров", "Павел", "Андреевич", "male"),
        ("Ахметова", "Гульнара", "Рашидовна", "female"),
    ];
    for (i, (family, given, patronymic, gender)) in doctors.iter().enumerate() {
        entries.push(entry(
            json!({"resourceType": "Practitioner", "id": format!("demo-practitioner-{}", i + 1), "active": true,
            "name": [{"family": family, "given": [given, patronymic], "prefix": ["д-р"]}], "gender": gender,
            "qualification": [{"code": {"text": "Врач-терапевт участковый"}}]}),
        ));
    }
    for i in 1..=patients {
        let p = patient(&mut rng, i);
        let pid = format!("demo-patient-{i}");
        let enc = format!("demo-encounter-{i}");
        let day = format!("2026-{:02}-{:02}", rng.range(1, 10), rng.range(1, 28));
        let when = format!("{day}T{:02}:{:02}:00+03:00", rng.range(8, 17), rng.range(0, 59));
        entries.push(entry(p));
        entries.push(entry(json!({"resourceType": "Encounter", "id": enc, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
            "type": [{"text": "Приём врача-терапевта участкового"}],
            "subject": {"reference": format!("Patient/{pid}")},
            "participant": [{"individual": {"reference": format!("Practitioner/demo-practitioner-{}", 1 + i % 3)}}],
            "period": {"start": when, "end": when},
            "serviceProvider": {"reference": format!("Organization/demo-org-{}", 1 + i % 2)}})));
        let systolic = rng.range(105, 165);
        let diastolic = rng.range(65, 100);
        entries.push(entry(vital(&HEART_RATE, i, &when, rng.range(55, 95))));
        entries.push(entry(vital(&WEIGHT, i, &when, rng.range(50, 110))));
        entries.push(entry(json!({"resourceType": "Observation", "id": format!("demo-bp-{i}"), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}], "text": "Артериальное давление"},
            "subject": {"reference": format!("Patient/{pid}")}, "encounter": {"reference": format!("Encounter/{enc}")},
            "effectiveDateTime": when,
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
                 "valueQuantity": {"value": systolic, "unit": "мм рт. ст.", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}]},
                 "valueQuantity": {"value": diastolic, "unit": "мм рт. ст.", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
            ]})));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// Load the demo set unless it is already there; returns the number of resources written.
pub fn load(engine: &Engine) -> Result<usize, String> {
    let probe = engine.handle(&Request::new(Method::Get, "Organization/demo-org-1", ""));
    if probe.status == 200 {
        return Ok(0);
    }
    let mut req = Request::new(Method::Post, "", "");
    req.body = Body::Json(bundle(20));
    req.prefer_return = fhir_rest::Return::Minimal;
    let r = engine.handle(&req);
    if r.status != 200 {
        return Err(format!(
            "loading the demo data failed: {}",
            r.body_json().map(|b| b.to_string()).unwrap_or_default()
        ));
    }
    Ok(r.body_json().and_then(|b| b["entry"].as_array().map(Vec::len)).unwrap_or(0))
}

/// The demo accounts: a doctor of the first clinic and the first patient. Returns the
/// (user name, generated password) of those created now, to show once.
pub fn accounts(dir: &auth::directory::Directory) -> Result<Vec<(String, String)>, String> {
    use auth::account::{Role, RoleGrant};
    let people = [
        (
            "demo-doctor",
            RoleGrant {
                role: Role::Doctor,
                organization: Some("Organization/demo-org-1".into()),
                practitioner: Some("Practitioner/demo-practitioner-1".into()),
                patient: None,
                limited: false,
            },
        ),
        (
            "demo-patient",
            RoleGrant {
                role: Role::Patient,
                organization: None,
                practitioner: None,
                patient: Some("Patient/demo-patient-1".into()),
                limited: false,
            },
        ),
    ];
    let mut created = Vec::new();
    for (user, grant) in people {
        if dir.account(user).map_err(|e| e.to_string())?.is_none() {
            let (_, password) = dir.add_account(user, None, grant).map_err(|e| e.to_string())?;
            created.push((user.to_string(), password.unwrap_or_default()));
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snils_check_digits() {
        // published example: 112-233-445 95
        assert_eq!(snils(112_233_445), "112-233-445 95");
        assert_eq!(snils_checksum(87_654_303), 0); // sum 101 -> 00... guard for special cases
    }

    #[test]
    fn demo_bundle_is_valid() {
        let b = bundle(5);
        for e in b["entry"].as_array().unwrap() {
            let issues = validation::validate_resource(&e["resource"]);
            assert!(!validation::has_errors(&issues), "{}: {issues:?}", e["resource"]["id"]);
        }
    }
}
