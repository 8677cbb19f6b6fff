//! The demo data set of `serve --demo` and `medkarta demo`: the synthetic population of
//! `medkarta generate` (the first 20 patients with their whole records, and the clinics
//! and doctors they use), loaded once (a second run finds it and writes nothing), and two
//! accounts to try it with.

use fhir_rest::{Body, Engine, Method, Principal, Request, SystemActor};
use serde_json::{Value, json};

/// Patients in the demo set.
pub const PATIENTS: usize = 20;
const SEED: u64 = 1;

/// Load the demo set unless it is already there; returns the number of resources written.
pub fn load(engine: &Engine) -> Result<usize, String> {
    let demo = Principal::System(SystemActor::DEMO);
    let probe = engine.handle(&Request::new(demo.clone(), Method::Get, "Patient/pat-0", ""));
    if probe.status == 200 {
        return Ok(0);
    }
    let mut resources = synth::shared_resources(SEED);
    for i in 0..PATIENTS {
        resources.extend(synth::patient_record(SEED, i));
    }
    resources.extend(first_patient_extras());
    let n = resources.len();
    let mut req = Request::new(demo, Method::Post, "", "");
    req.body = Body::Json(synth::transaction(resources));
    req.prefer_return = fhir_rest::Return::Minimal;
    let r = engine.handle(&req);
    if r.status != 200 {
        return Err(format!(
            "loading the demo data failed: {}",
            r.body_json().map(|b| b.to_string()).unwrap_or_default()
        ));
    }
    Ok(n)
}

/// What the first patient's pages show beyond the generated record: personal limits of
/// blood pressure their GP set (a Goal: a value entered above them raises an alert), a
/// welcome message from their clinic in the inbox, and their clinic's schedules to book.
fn first_patient_extras() -> Vec<Value> {
    let (clinic, gp) = first_patient_care();
    let loinc = |code: &str| json!({"coding": [{"system": "http://loinc.org", "code": code}]});
    let range = |low: u32, high: u32| json!({"low": {"value": low, "unit": "мм рт. ст."}, "high": {"value": high, "unit": "мм рт. ст."}});
    let mut goal = json!({
        "resourceType": "Goal", "id": "pat-0-goal-bp", "lifecycleStatus": "active",
        "description": {"text": "Артериальное давление не выше 135/85 мм рт. ст."},
        "subject": {"reference": "Patient/pat-0"},
        "target": [{"measure": loinc("8480-6"), "detailRange": range(100, 135)},
                   {"measure": loinc("8462-4"), "detailRange": range(60, 85)}]
    });
    if let Some(gp) = &gp {
        goal["expressedBy"] = json!({"reference": gp});
    }
    let mut welcome = json!({
        "resourceType": "Communication", "id": "pat-0-welcome", "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}]}],
        "subject": {"reference": "Patient/pat-0"}, "recipient": [{"reference": "Patient/pat-0"}],
        "sent": "2026-11-30T09:00:00+03:00",
        "payload": [
            {"contentString": "Добро пожаловать в личный кабинет. Здесь ваша медицинская карта, результаты анализов, \
                               показатели здоровья и сообщения от поликлиники."},
            {"contentString": "Welcome to your personal account: your medical record, results, health tracking and \
                               messages from your clinic."}
        ]
    });
    if let Some(clinic) = &clinic {
        welcome["sender"] = json!({"reference": clinic});
    }
    let mut extras = vec![goal, welcome];
    if let Some(clinic) = &clinic {
        extras.extend(schedules(clinic));
    }
    extras
}

/// The weekdays of a working pattern.
fn days(codes: &[&str]) -> Vec<Value> {
    codes.iter().map(|d| json!({"url": "day", "valueCode": d})).collect()
}

/// A working period: `days`, local hours, visit length, online or by the registry.
fn period(on: &[&str], start: &str, end: &str, minutes: u32, online: bool) -> Value {
    let mut ext = days(on);
    ext.extend([
        json!({"url": "start", "valueTime": start}),
        json!({"url": "end", "valueTime": end}),
        json!({"url": "minutes", "valuePositiveInt": minutes}),
        json!({"url": "online", "valueBoolean": online}),
    ]);
    json!({"url": booking::pattern::PATTERN, "extension": ext})
}

/// The first patient's clinic takes appointments: a Location for it, and a Schedule per
/// doctor's role there (Mon–Sat mornings online, Tue and Thu afternoons by the registry),
/// in the clinic's time zone; the server generates their slots.
fn schedules(clinic: &str) -> Vec<Value> {
    let shared = synth::shared_resources(SEED);
    let Some(org) = shared.iter().find(|r| format!("Organization/{}", r["id"].as_str().unwrap_or("")) == clinic) else {
        return Vec::new();
    };
    let tz = match org["address"][0]["city"].as_str() {
        Some("Новосибирск") => "Asia/Novosibirsk",
        _ => "Europe/Moscow",
    };
    let location = format!("loc-{}", org["id"].as_str().unwrap_or(""));
    let mut out = vec![json!({
        "resourceType": "Location", "id": location, "status": "active",
        "name": org["name"], "address": org["address"][0], "managingOrganization": {"reference": clinic}
    })];
    for role in
        shared.iter().filter(|r| r["resourceType"] == "PractitionerRole" && r["organization"]["reference"] == clinic)
    {
        let id = format!("sch-{}", role["id"].as_str().unwrap_or(""));
        out.push(json!({
            "resourceType": "Schedule", "id": id, "active": true,
            "specialty": role["specialty"],
            "actor": [role["practitioner"], {"reference": format!("Location/{location}")}],
            "extension": [
                {"url": booking::pattern::TIMEZONE, "valueCode": tz},
                period(&["mon", "tue", "wed", "thu", "fri", "sat"], "08:00:00", "14:00:00", 15, true),
                period(&["tue", "thu"], "14:00:00", "18:00:00", 20, false),
            ]
        }));
    }
    out
}

/// The first demo patient's clinic and doctor (`Organization/…`, `Practitioner/…`).
fn first_patient_care() -> (Option<String>, Option<String>) {
    let record = synth::patient_record(SEED, 0);
    let patient = record.iter().find(|r| r["resourceType"] == "Patient");
    let reference = |v: Option<&Value>| v.and_then(|r| r["reference"].as_str()).map(str::to_string);
    (
        reference(patient.and_then(|p| p.get("managingOrganization"))),
        reference(patient.and_then(|p| p["generalPractitioner"].get(0))),
    )
}

/// The demo accounts: the first patient (`Patient/pat-0`) and their general practitioner
/// at their clinic. Returns the (user name, generated password) of those created now, to
/// show once.
pub fn accounts(dir: &auth::directory::Directory) -> Result<Vec<(String, String)>, String> {
    use auth::account::{Role, RoleGrant};
    let (organization, practitioner) = first_patient_care();
    let people = [
        ("demo-doctor", RoleGrant { role: Role::Doctor, organization, practitioner, patient: None, limited: false }),
        (
            "demo-patient",
            RoleGrant {
                role: Role::Patient,
                organization: None,
                practitioner: None,
                patient: Some("Patient/pat-0".into()),
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
    fn the_demo_doctor_cares_for_the_demo_patient() {
        let (org, gp) = first_patient_care();
        assert!(org.is_some_and(|o| o.starts_with("Organization/org-")));
        assert!(gp.is_some_and(|p| p.starts_with("Practitioner/prac-")));
    }
}
