//! The resources every patient refers to: twelve facilities (a polyclinic, a hospital and a
//! laboratory in each of four regions), forty doctors and their roles. Ids are predictable
//! (`org-{region*3+kind}`, `prac-{region*10+slot}`, `role-N`), so patients can be generated
//! without them; names depend on the seed.

use crate::fhir::{FRMO, OGRN, SCT, SNILS, TERM, concept, reference, term};
use crate::ident::{ogrn, snils};
use crate::rng::Rng;
use crate::tables::{Names, REGIONS, RUSSIAN, SPECS, STAFF, Spec, TATAR};
use serde_json::{Value, json};

/// Facility kinds, the second number of `org-{region*3+kind}`.
pub const POLYCLINIC: usize = 0;
pub const HOSPITAL: usize = 1;
pub const LAB: usize = 2;

const KINDS: [&str; 3] = ["Поликлиника", "Больница", "Клинико-диагностическая лаборатория"];

/// The id of a region's facility of `kind`.
pub fn org_id(region: usize, kind: usize) -> String {
    format!("org-{}", region * 3 + kind)
}

/// The id of practitioner number `p`.
pub fn prac_id(p: usize) -> String {
    format!("prac-{p}")
}

/// The facilities where staff slot `slot` works: its main one first.
fn workplaces(slot: usize) -> Vec<usize> {
    let (_, hospital, both) = STAFF[slot % STAFF.len()];
    let main = if hospital { HOSPITAL } else { POLYCLINIC };
    if both { vec![main, HOSPITAL + POLYCLINIC - main] } else { vec![main] }
}

/// Doctors of `spec` in `region`, preferring facility `kind`: `(practitioner, facility kind)`.
pub fn doctors(region: usize, spec: Spec, kind: usize) -> Vec<(usize, usize)> {
    let all: Vec<(usize, usize)> = (0..STAFF.len())
        .filter(|&s| STAFF[s].0 == spec)
        .flat_map(|s| workplaces(s).into_iter().map(move |k| (region * STAFF.len() + s, k)))
        .collect();
    let here: Vec<_> = all.iter().copied().filter(|d| d.1 == kind).collect();
    if here.is_empty() { all } else { here }
}

/// A person's name, drawn from Russian (in Tatarstan, often Tatar) names.
pub struct Name {
    pub family: String,
    pub given: String,
    pub patronymic: String,
    /// The feminine form of the family name (a mother's or wife's).
    pub family_female: String,
}

/// A name for someone of that sex, region and birth year (given names follow fashion).
pub fn person_name(rng: &mut Rng, region: usize, female: bool, birth_year: i64) -> Name {
    let names: &Names = if region == 3 && rng.chance(0.5) { &TATAR } else { &RUSSIAN };
    let generation = match birth_year {
        ..1970 => 0,
        1970..1995 => 1,
        _ => 2,
    };
    let mut word = |list: &str| {
        let words: Vec<&str> = list.split_whitespace().collect();
        rng.pick(&words).to_string()
    };
    let given = word(if female { names.female[generation] } else { names.male[generation] });
    let (patronymic, family) = (word(names.patronymics), word(names.surnames));
    // Иванов → Иванова, Никитин → Никитина (Шевченко, Ковальчук do not change); -вич → -вна.
    let family_female = if ["ов", "ев", "ёв", "ин"].iter().any(|e| family.ends_with(e)) {
        format!("{family}а")
    } else {
        family.clone()
    };
    let patronymic = match patronymic.strip_suffix("ич") {
        Some(stem) if female => format!("{stem}на"),
        _ => patronymic,
    };
    Name { family: if female { family_female.clone() } else { family }, given, patronymic, family_female }
}

/// An official HumanName: the patronymic is the second given name.
pub fn human_name(n: &Name) -> Value {
    let (f, g, p) = (&n.family, &n.given, &n.patronymic);
    json!({"use": "official", "text": format!("{f} {g} {p}"), "family": f, "given": [g, p]})
}

/// Organizations, Practitioners and PractitionerRoles, in that order.
pub fn resources(seed: u64) -> Vec<Value> {
    let mut out = Vec::new();
    for (r, region) in REGIONS.iter().enumerate() {
        let mut rng = Rng::new(seed, 1 << 40 | r as u64);
        for (k, (name, line)) in region.orgs.iter().enumerate() {
            let code = 1000 + 37 * (r * 3 + k);
            out.push(json!({
                "resourceType": "Organization",
                "id": org_id(r, k),
                "identifier": [
                    {"system": FRMO, "value": format!("1.2.643.5.1.13.13.12.2.{}.{code}", region.subject)},
                    {"system": OGRN, "value": ogrn(102_000_000_000 + region.subject as u64 * 100_000_000 + rng.range(0, 99_999_999) as u64)}
                ],
                "active": true,
                "type": [concept(&format!("{TERM}organization-type"), "prov", "Healthcare Provider", KINDS[k])],
                "name": name,
                "telecom": [{"system": "phone", "value": format!("+7 {} {}-{:02}-{:02}", region.phone, rng.range(200, 999), rng.range(0, 99), rng.range(0, 99)), "use": "work"}],
                "address": [{"use": "work", "type": "physical", "line": [line], "city": region.city, "state": region.state,
                    "postalCode": rng.range(region.postal.0, region.postal.1).to_string(), "country": "RU"}]
            }));
        }
    }
    let mut roles = Vec::new();
    for p in 0..REGIONS.len() * STAFF.len() {
        let (region, slot) = (p / STAFF.len(), p % STAFF.len());
        let spec = STAFF[slot].0 as usize;
        let mut rng = Rng::new(seed, 2 << 40 | p as u64);
        let female = rng.chance(if STAFF[slot].0 == Spec::Surgeon { 0.3 } else { 0.75 });
        let birth_year = rng.range(1958, 1996);
        let name = person_name(&mut rng, region, female, birth_year);
        out.push(json!({
            "resourceType": "Practitioner",
            "id": prac_id(p),
            "identifier": [{"system": SNILS, "value": snils(rng.range(100_000_000, 999_999_999) as u32)}],
            "active": true,
            "name": [human_name(&name)],
            "gender": if female { "female" } else { "male" },
            "birthDate": format!("{birth_year}-{:02}-{:02}", rng.range(1, 12), rng.range(1, 28)),
            "qualification": [{
                "code": concept(&format!("{TERM}v2-0360"), "MD", "Doctor of Medicine", SPECS[spec].0),
                "period": {"start": format!("{}-07-01", birth_year + 24 + rng.range(0, 3))}
            }]
        }));
        for kind in workplaces(slot) {
            roles.push(json!({
                "resourceType": "PractitionerRole",
                "id": format!("role-{}", roles.len()),
                "active": true,
                "practitioner": reference("Practitioner", &prac_id(p)),
                "organization": reference("Organization", &org_id(region, kind)),
                "code": [term("practitioner-role", "doctor", "Doctor")],
                "specialty": [concept(SCT, SPECS[spec].2, SPECS[spec].3, SPECS[spec].1)]
            }));
        }
    }
    out.extend(roles);
    out
}
