//! One patient's record: demographics, then a life history planned as a list of visits
//! (check-ups, follow-ups of chronic diseases, acute episodes) inside the years covered by
//! electronic records, each visit emitted as an Encounter with what happened at it.
//! Everything is drawn from one generator seeded by `(seed, index)`.

use crate::fhir::{ATC, CVX, LOINC, OMS, SCT, SNILS, TERM, VACCINE, coding, concept, icd, quantity, reference, term};
use crate::ident::{snils, with_luhn};
use crate::rng::{Rng, civil, date, datetime, days, dec};
use crate::shared::{HOSPITAL, LAB, Name, POLYCLINIC, doctors, human_name, org_id, person_name, prac_id};
use crate::tables::*;
use serde_json::{Value, json};

/// "Today" for the generator, 2026-06-30 as days since 1970-01-01: fixed, so output never
/// depends on the clock.
pub const TODAY: i64 = days(2026, 6, 30);
/// Electronic records start here; nothing earlier is generated (except birth dates and onsets).
const RECORDS_FROM: i64 = days(2019, 1, 1);
const YEAR: f64 = 365.25;
/// Russian population by five-year age group, per mille (Rosstat, rounded).
const PYRAMID: [f64; 19] =
    [57.0, 66.0, 60.0, 52.0, 46.0, 51.0, 76.0, 81.0, 73.0, 68.0, 61.0, 70.0, 70.0, 64.0, 44.0, 26.0, 24.0, 10.0, 3.0];
/// Children's body-mass index by age (years), median.
const CHILD_BMI: [(f64, f64); 7] =
    [(0.0, 13.3), (0.5, 17.5), (1.0, 17.0), (5.0, 15.4), (10.0, 16.6), (15.0, 19.8), (18.0, 21.5)];
const PREFIX: [&str; 9] = ["enc", "cond", "obs", "dr", "proc", "med", "imm", "alg", "doc"];
const LOT: &str = "АБВГДЕКМНПРСТ";

#[derive(Clone, Copy)]
enum Reason {
    Checkup(i64),
    Chronic(usize, bool),
    Acute(&'static Acute),
}

struct Visit {
    start: i64,
    end: i64,
    class: Class,
    reason: Reason,
}

struct Disease {
    tpl: &'static Chronic,
    onset: i64,
    diagnosed: i64,
    abated: Option<i64>,
    id: String,
    meds: Vec<Med>,
}

/// What the current visit shares with the resources it produces.
struct At {
    enc: String,
    doctor: String,
    org: usize,
    start: i64,
}

struct Life {
    rng: Rng,
    pid: String,
    female: bool,
    birth: i64,
    start: i64,
    end: i64,
    region: usize,
    height: f64,
    bmi_z: f64,
    diseases: Vec<Disease>,
    allergies: Vec<usize>,
    allergies_recorded: bool,
    gp: usize,
    label: Option<&'static str>,
    out: Vec<Value>,
    n: [usize; 9],
}

/// Step functions `(age_below, value)`.
fn step(table: &[(u32, f64)], age: f64) -> f64 {
    table.iter().find(|(below, _)| age < f64::from(*below)).map_or(0.0, |t| t.1)
}

fn lerp(table: &[(f64, f64)], x: f64) -> f64 {
    let i = table.iter().position(|t| t.0 > x).unwrap_or(table.len()).clamp(1, table.len() - 1);
    let ((x0, y0), (x1, y1)) = (table[i - 1], table[i]);
    y0 + (y1 - y0) * ((x - x0) / (x1 - x0)).clamp(0.0, 1.0)
}

/// The patient `index`'s resources: the Patient first, then everything else.
pub fn record(seed: u64, index: usize) -> Vec<Value> {
    let mut rng = Rng::new(seed, index as u64);
    let female = rng.chance(0.54);
    let age = (rng.weighted(&PYRAMID) as i64 * 5 + rng.range(0, 4)).min(94);
    let birth = TODAY - (age as f64 * YEAR) as i64 - rng.range(0, 364);
    let region = rng.weighted(&REGIONS.map(|r| r.weight));
    let end = if age >= 70 && rng.chance(0.04) { TODAY - rng.range(30, 1400) } else { TODAY };
    let height = if female { rng.normal(164.0, 6.0) } else { rng.normal(176.0, 7.0) };
    let bmi_z = rng.normal(0.0, 1.0).clamp(-2.0, 3.0);
    let mut life = Life {
        rng,
        pid: format!("pat-{index}"),
        female,
        birth,
        start: birth.max(RECORDS_FROM),
        end,
        region,
        height,
        bmi_z,
        diseases: Vec::new(),
        allergies: Vec::new(),
        allergies_recorded: false,
        gp: 0,
        label: None,
        out: Vec::new(),
        n: [0; 9],
    };
    life.patient();
    life.plan_diseases();
    let visits = life.plan_visits();
    for v in &visits {
        life.visit(v);
    }
    life.vaccinations();
    life.out
}

impl Life {
    fn age(&self, day: i64) -> f64 {
        (day - self.birth) as f64 / YEAR
    }

    fn id(&mut self, kind: usize) -> String {
        self.n[kind] += 1;
        format!("{}-{}-{}", self.pid, PREFIX[kind], self.n[kind])
    }

    /// Adds a resource; during a visit for a sensitive condition it is labelled restricted.
    fn push(&mut self, r: Value) {
        let (Some(label), Value::Object(fields)) = (self.label, &r) else {
            return self.out.push(r);
        };
        let display = if label == "PSY" {
            "psychiatry disorder information sensitivity"
        } else {
            "HIV/AIDS information sensitivity"
        };
        let meta = json!({"security": [coding(&format!("{TERM}v3-Confidentiality"), "R", "restricted"), coding(&format!("{TERM}v3-ActCode"), label, display)]});
        let mut labelled = serde_json::Map::new();
        for (k, v) in fields {
            labelled.insert(k.clone(), v.clone());
            if k == "id" {
                labelled.insert("meta".into(), meta.clone());
            }
        }
        self.out.push(Value::Object(labelled));
    }

    fn has(&self, icd: &str, day: i64) -> bool {
        self.diseases.iter().any(|d| d.tpl.dx.0 == icd && d.onset <= day && d.abated.is_none_or(|a| day < a))
    }

    fn phone(&mut self) -> Value {
        let r = &mut self.rng;
        let number =
            format!("+7 9{:02} {:03}-{:02}-{:02}", r.range(0, 99), r.range(100, 999), r.range(0, 99), r.range(0, 99));
        json!([{"system": "phone", "value": number, "use": "mobile"}])
    }

    fn patient(&mut self) {
        let (by, _, _) = civil(self.birth);
        let name: Name = person_name(&mut self.rng, self.region, self.female, by);
        let region = &REGIONS[self.region];
        let adult = self.age(self.end) >= 18.0;
        let r = &mut self.rng;
        let line = format!("{}, д. {}, кв. {}", r.pick(region.streets), r.range(1, 140), r.range(1, 320));
        let oms = with_luhn(&format!("{}{:013}", region.okato, r.range(0, 9_999_999_999_999)));
        let doctors = doctors(self.region, if adult { Spec::Therapist } else { Spec::Pediatrician }, POLYCLINIC);
        self.gp = r.pick(&doctors).0;
        let mut p = json!({
            "resourceType": "Patient",
            "id": self.pid,
            "identifier": [
                {"use": "official", "system": SNILS, "value": snils(r.range(2_000_000, 999_999_999) as u32)},
                {"system": OMS, "value": oms, "period": {"start": date(self.start)}}
            ],
            "active": true,
            "name": [human_name(&name)],
            "gender": if self.female { "female" } else { "male" },
            "birthDate": date(self.birth),
            "address": [{"use": "home", "type": "physical", "line": [line], "city": region.city, "district": r.pick(region.districts),
                "state": region.state, "postalCode": r.range(region.postal.0, region.postal.1).to_string(), "country": "RU"}],
            "managingOrganization": reference("Organization", &org_id(self.region, POLYCLINIC)),
            "generalPractitioner": [reference("Practitioner", &prac_id(self.gp))]
        });
        if self.age(self.end) >= 12.0 {
            p["telecom"] = self.phone();
        }
        if adult {
            let age = self.age(self.end);
            let weights = if age < 25.0 {
                [0.15, 0.8, 0.05, 0.0]
            } else if age < 70.0 {
                [0.58, 0.17, 0.18, 0.07]
            } else {
                [0.45, 0.05, 0.12, 0.38]
            };
            let (code, display) = [("M", "Married"), ("S", "Never Married"), ("D", "Divorced"), ("W", "Widowed")]
                [self.rng.weighted(&weights)];
            p["maritalStatus"] = term("v3-MaritalStatus", code, display);
        } else {
            let mother = person_name(&mut self.rng, self.region, true, by - 28);
            p["contact"] = json!([{
                "relationship": [term("v3-RoleCode", "MTH", "mother")],
                "name": {"use": "official", "family": name.family_female, "given": [mother.given, mother.patronymic]},
                "telecom": self.phone()
            }]);
        }
        if self.end < TODAY {
            p["deceasedDateTime"] = json!(datetime(self.end * 1440 + self.rng.range(0, 1439)));
        }
        self.out.push(p);
    }

    /// Adult body-mass index at a date: the personal level drifts up with age.
    fn bmi(&self, day: i64) -> f64 {
        let age = self.age(day);
        if age < 18.0 {
            return lerp(&CHILD_BMI, age) + 1.5 * self.bmi_z;
        }
        let mean = lerp(&[(18.0, 22.0), (30.0, 24.5), (45.0, 27.0), (60.0, 28.5), (80.0, 27.5), (95.0, 25.5)], age);
        (mean + 4.3 * self.bmi_z).max(17.0)
    }

    fn height_at(&self, day: i64) -> f64 {
        let a = self.age(day);
        let curve = if a < 1.0 {
            50.0 + 25.0 * a
        } else if a < 2.0 {
            75.0 + 12.0 * (a - 1.0)
        } else {
            87.0 + 6.2 * (a - 2.0)
        };
        let scale = self.height / if self.female { 164.0 } else { 176.0 };
        (curve * scale).min(self.height)
    }

    fn plan_diseases(&mut self) {
        for (a, allergen) in ALLERGENS.iter().enumerate() {
            if self.rng.chance(allergen.5) {
                self.allergies.push(a);
            }
        }
        let age = self.age(self.end);
        for (k, c) in CHRONIC.iter().enumerate() {
            let first = c.prevalence.iter().take_while(|t| t.1 == 0.0).last().map_or(1.0, |t| f64::from(t.0));
            let chance = match k {
                OBESITY if age >= 18.0 && self.bmi(self.end) >= 30.0 => 0.6,
                HAY_FEVER if self.allergies.contains(&POLLEN) && age >= 4.0 => 0.7,
                _ if c.female.is_some_and(|f| f != self.female) => 0.0,
                _ => step(c.prevalence, age),
            };
            if !self.rng.chance(chance) {
                continue;
            }
            let earliest = self.birth + ((if k == OBESITY { 18.0 } else { first }) * YEAR) as i64;
            let onset = self.rng.range(earliest.min(self.end - 30), self.end - 30);
            let diagnosed = if onset >= self.start {
                onset
            } else {
                self.start + self.rng.range(0, 365.min(self.end - self.start - 30))
            };
            let abated = Some(diagnosed + self.rng.range(150, 540)).filter(|a| c.remits && *a < self.end);
            let meds =
                c.meds.iter().enumerate().filter(|(i, _)| *i == 0 || self.rng.chance(0.5)).map(|m| *m.1).collect();
            self.diseases.push(Disease { tpl: c, onset, diagnosed, abated, id: String::new(), meds });
        }
    }

    fn plan_visits(&mut self) -> Vec<Visit> {
        let mut plan: Vec<(i64, Class, Reason)> = Vec::new();
        let nominal = CHECKUPS.iter().copied().chain((2..18).map(|y| y * 365));
        for at in nominal {
            if at > 2190 && at != 5110 && self.rng.chance(0.3) {
                continue; // school-age check-ups are often missed
            }
            plan.push((self.birth + at + self.rng.range(0, 10), Class::Amb, Reason::Checkup(at)));
        }
        let (y0, _, _) = civil(self.start);
        for year in y0..=2026 {
            let day = days(year, 1, 1) + self.rng.range(0, 364);
            let p = match self.age(day) {
                a if a < 18.0 => 0.0,
                a if a < 40.0 => 0.18,
                _ => 0.26,
            };
            if self.rng.chance(p) {
                plan.push((day, Class::Amb, Reason::Checkup(0)));
            }
        }
        for k in 0..self.diseases.len() {
            let d = &self.diseases[k];
            let until = d.abated.unwrap_or(self.end);
            let follow_ups = self.rng.poisson(d.tpl.visits * (until - d.diagnosed) as f64 / YEAR);
            plan.push((d.diagnosed, Class::Amb, Reason::Chronic(k, true)));
            for _ in 0..follow_ups {
                plan.push((self.rng.range(d.diagnosed + 14, until), Class::Amb, Reason::Chronic(k, false)));
            }
        }
        let mut from = self.start;
        while from < self.end {
            let to = (from + 365).min(self.end);
            let age = self.age(from);
            for a in &ACUTE {
                if a.female.is_some_and(|f| f != self.female) || a.requires.is_some_and(|icd| !self.has(icd, from)) {
                    continue;
                }
                for _ in 0..self.rng.poisson(step(a.rate, age) * (to - from) as f64 / 365.0) {
                    plan.push((self.rng.range(from, to - 1), a.class, Reason::Acute(a)));
                }
            }
            from = to;
        }
        let mut visits: Vec<Visit> = Vec::new();
        for (day, class, reason) in plan {
            let (begin, len) = match class {
                Class::Amb => (self.rng.range(8 * 60, 19 * 60), self.rng.range(15, 40)),
                Class::Emer => (self.rng.range(0, 1380), self.rng.range(60, 240)),
                Class::Imp => {
                    let stay = if let Reason::Acute(a) = reason { self.rng.range(a.stay.0, a.stay.1) } else { 1 };
                    (self.rng.range(9 * 60, 20 * 60), stay * 1440 + self.rng.range(-8 * 60, -5 * 60))
                }
            };
            let start = day * 1440 + begin;
            if day >= self.start && start + len < self.end * 1440 {
                visits.push(Visit { start, end: start + len, class, reason });
            }
        }
        visits.sort_by_key(|v| v.start);
        visits
    }

    /// The doctor and facility for a visit: the patient's own doctor for primary care.
    fn doctor(&mut self, spec: Spec, class: Class) -> (usize, usize) {
        if class == Class::Amb && STAFF[self.gp % STAFF.len()].0 == spec {
            return (self.gp, POLYCLINIC);
        }
        let kind = if class == Class::Amb { POLYCLINIC } else { HOSPITAL };
        *self.rng.pick(&doctors(self.region, spec, kind))
    }

    fn visit(&mut self, v: &Visit) {
        let day = v.start.div_euclid(1440);
        // A follow-up whose diagnosis visit fell outside the records is the diagnosis visit.
        let reason = match v.reason {
            Reason::Chronic(k, first) => Reason::Chronic(k, first || self.diseases[k].id.is_empty()),
            r => r,
        };
        let adult = self.age(day) >= 18.0;
        let (spec, dx, kind_text) = match reason {
            Reason::Checkup(_) if adult => (
                Spec::Therapist,
                ("Z00.0", "Общий медицинский осмотр"),
                "Профилактический медицинский осмотр (диспансеризация)",
            ),
            Reason::Checkup(_) => (
                Spec::Pediatrician,
                ("Z00.1", "Рутинное обследование состояния здоровья ребенка"),
                "Профилактический осмотр ребёнка",
            ),
            Reason::Chronic(k, true) => (self.diseases[k].tpl.spec, self.diseases[k].tpl.dx, "Первичный приём"),
            Reason::Chronic(k, false) => {
                (self.diseases[k].tpl.spec, self.diseases[k].tpl.dx, "Диспансерное наблюдение")
            }
            Reason::Acute(a) => (a.spec, a.dx, ""),
        };
        let spec = match spec {
            Spec::Primary if adult => Spec::Therapist,
            Spec::Primary => Spec::Pediatrician,
            s => s,
        };
        let (prac, kind) = self.doctor(spec, v.class);
        let sp = spec as usize;
        let kind_text = match v.class {
            Class::Imp => "Госпитализация в стационар".to_string(),
            Class::Emer => "Обращение в приёмное отделение".to_string(),
            Class::Amb if kind_text.is_empty() => format!("Приём {}", SPECS[sp].4),
            Class::Amb if kind_text.starts_with("Проф") => kind_text.to_string(),
            Class::Amb => format!("{kind_text} {}", SPECS[sp].4),
        };
        self.label = if let Reason::Chronic(k, _) = reason { self.diseases[k].tpl.label } else { None };
        let at = At { enc: self.id(0), doctor: prac_id(prac), org: kind, start: v.start };
        let (class_code, class_display) = match v.class {
            Class::Amb => ("AMB", "ambulatory"),
            Class::Imp => ("IMP", "inpatient encounter"),
            Class::Emer => ("EMER", "emergency"),
        };
        let mut enc = json!({
            "resourceType": "Encounter",
            "id": at.enc,
            "status": "finished",
            "class": coding(&format!("{TERM}v3-ActCode"), class_code, class_display),
            "type": [{"text": kind_text}],
            "subject": reference("Patient", &self.pid),
            "participant": [{"type": [term("v3-ParticipationType", "PPRF", "primary performer")], "individual": reference("Practitioner", &at.doctor)}],
            "period": {"start": datetime(v.start), "end": datetime(v.end)},
            "reasonCode": [icd(dx)],
            "serviceProvider": reference("Organization", &org_id(self.region, kind))
        });
        if let Reason::Chronic(k, false) = reason {
            enc["reasonReference"] = json!([reference("Condition", &self.diseases[k].id)]);
        }
        if v.class == Class::Imp {
            let emergency = matches!(reason, Reason::Acute(a) if a.spec != Spec::Obstetrician);
            enc["hospitalization"] = json!({"dischargeDisposition": term("discharge-disposition", "home", "Home")});
            if emergency {
                enc["hospitalization"]["admitSource"] =
                    term("admit-source", "emd", "From accident/emergency department");
            }
        }
        self.push(enc);
        let age = self.age(day);
        if !self.allergies_recorded && (age >= 2.0 || self.allergies.is_empty()) {
            self.record_allergies(&at);
        }
        match reason {
            Reason::Checkup(nominal) => {
                self.vitals(&at, true, false, v.class);
                if adult {
                    self.panel(&at, &BIO_SCREEN, false);
                    if age >= 40.0 {
                        self.panel(&at, &CBC_SCREEN, false);
                    }
                    for (p, chance) in [(CHEST_XRAY, 0.4), (ECG, if age >= 35.0 { 0.4 } else { 0.0 })] {
                        if self.rng.chance(chance) {
                            self.procedure(&at, p, ("Z00.0", "Общий медицинский осмотр"), false);
                        }
                    }
                    if self.female && (40.0..76.0).contains(&age) && self.rng.chance(0.4) {
                        self.procedure(&at, MAMMOGRAPHY, ("Z00.0", "Общий медицинский осмотр"), false);
                    }
                } else {
                    if nominal == 91 || nominal == 365 || nominal >= 730 && self.rng.chance(0.2) {
                        self.panel(&at, &CBC_SCREEN, false);
                    }
                    for (_, vaccine, dose) in CALENDAR.iter().filter(|c| c.0 == nominal) {
                        self.immunization(v.start + 10, vaccine, *dose, Some(&at));
                    }
                }
            }
            Reason::Chronic(k, first) => {
                let tpl = self.diseases[k].tpl;
                if first {
                    let d = &self.diseases[k];
                    self.diseases[k].id = self.condition(&at, tpl.dx, true, d.onset, d.abated);
                }
                self.vitals(&at, first && matches!(tpl.dx.0, "E11" | "E66.0"), false, v.class);
                for p in tpl.panels {
                    if self.rng.chance(if first { 0.8 } else { 0.3 }) {
                        self.panel(&at, p, false);
                    }
                }
                if first && tpl.dx.0 == "I25.1" {
                    self.procedure(&at, ECHO, tpl.dx, false);
                } else if matches!(tpl.dx.0, "I10" | "I25.1") && self.rng.chance(0.2) {
                    self.procedure(&at, ECG, tpl.dx, false);
                }
                if first {
                    let status = match self.diseases[k].abated {
                        Some(_) => "completed",
                        None if self.end < TODAY => "stopped",
                        None => "active",
                    };
                    let reason = self.diseases[k].id.clone();
                    for m in self.diseases[k].meds.clone() {
                        self.prescribe(&at, m, &reason, status);
                    }
                }
            }
            Reason::Acute(a) => {
                let onset = day - self.rng.range(0, if a.infectious { 3 } else { 0 });
                let healed = Some(day + self.rng.range(5, 21)).filter(|h| *h < self.end);
                let cond = self.condition(&at, a.dx, false, onset, healed);
                self.vitals(&at, v.class == Class::Imp, a.infectious, v.class);
                let infectious_labs = a.infectious && adult && self.rng.chance(0.2);
                for p in a.panels.iter().copied().chain(infectious_labs.then_some(&CBC_SCREEN)) {
                    self.panel(&at, p, a.infectious);
                }
                if let Some(p) = a.procedure {
                    self.procedure(&at, p, a.dx, true);
                }
                if let Some(mut m) = a.med {
                    if m.0.starts_with("J01C") && self.allergies.contains(&PENICILLIN) {
                        m = AZITHROMYCIN;
                    }
                    let status = if v.end / 1440 + 14 < self.end { "completed" } else { "active" };
                    self.prescribe(&at, m, &cond, status);
                }
            }
        }
        self.protocol(&at, &kind_text, dx, v);
        self.label = None;
    }

    /// The visit's protocol (a discharge summary after a stay): a DocumentReference whose
    /// text, in Russian, is made of what the visit recorded — the measurements, the
    /// diagnosis, the examinations and the prescriptions.
    fn protocol(&mut self, at: &At, kind_text: &str, dx: Dx, v: &Visit) {
        use base64::Engine as _;
        let enc = format!("Encounter/{}", at.enc);
        let of_visit = |r: &&Value| r["encounter"]["reference"] == enc.as_str();
        let mut measured = Vec::new();
        let (mut diagnoses, mut exams, mut prescribed) = (Vec::new(), Vec::new(), Vec::new());
        for r in self.out.iter().filter(of_visit) {
            let text = r["code"]["text"].as_str().unwrap_or("");
            match r["resourceType"].as_str().unwrap_or("") {
                "Observation" if r["category"][0]["coding"][0]["code"] == "vital-signs" => {
                    let q = |q: &Value| format!("{} {}", q["value"], q["unit"].as_str().unwrap_or(""));
                    let value = match r["component"].as_array() {
                        Some(c) if c.len() == 2 => format!(
                            "{}/{} {}",
                            c[0]["valueQuantity"]["value"],
                            c[1]["valueQuantity"]["value"],
                            c[0]["valueQuantity"]["unit"].as_str().unwrap_or("")
                        ),
                        _ => q(&r["valueQuantity"]),
                    };
                    measured.push(format!("{text}: {value}"));
                }
                "Condition" => {
                    diagnoses.push(format!("{} {text}", r["code"]["coding"][0]["code"].as_str().unwrap_or("")))
                }
                "DiagnosticReport" | "Procedure" => exams.push(text.to_string()),
                "MedicationRequest" => prescribed.push(format!(
                    "{} — {}",
                    r["medicationCodeableConcept"]["text"].as_str().unwrap_or(""),
                    r["dosageInstruction"][0]["text"].as_str().unwrap_or("")
                )),
                _ => {}
            }
        }
        if diagnoses.is_empty() {
            diagnoses.push(format!("{} {}", dx.0, dx.1));
        }
        // a time as a Russian reader writes it: 27.06.2026 15:31
        let when = |minute: i64| {
            let s = datetime(minute);
            format!("{}.{}.{} {}", &s[8..10], &s[5..7], &s[..4], &s[11..16])
        };
        let complaints = if dx.0.starts_with('Z') {
            "жалоб нет"
        } else {
            "по поводу основного заболевания"
        };
        let mut text = format!("{kind_text}\nДата: {}\n\nЖалобы: {complaints}.\n", when(v.start));
        if !measured.is_empty() {
            text.push_str(&format!("Объективно: {}.\n", measured.join("; ")));
        }
        text.push_str(&format!("Диагноз: {}.\n", diagnoses.join("; ")));
        if !exams.is_empty() {
            text.push_str(&format!("Обследования: {}.\n", exams.join("; ")));
        }
        let plan = if prescribed.is_empty() {
            "наблюдение участкового врача".to_string()
        } else {
            prescribed.join("; ")
        };
        text.push_str(&format!("Назначения и рекомендации: {plan}.\n"));
        let (loinc, en, ru) = match v.class {
            Class::Imp => ("18842-5", "Discharge summary", "Выписной эпикриз"),
            Class::Emer => ("34111-5", "Emergency department note", "Протокол осмотра в приёмном отделении"),
            Class::Amb => ("11488-4", "Consult note", "Протокол осмотра"),
        };
        let doc = json!({
            "resourceType": "DocumentReference",
            "id": self.id(8),
            "status": "current",
            "docStatus": "final",
            "type": concept(LOINC, loinc, en, ru),
            "subject": reference("Patient", &self.pid),
            "date": datetime(v.end),
            "author": [reference("Practitioner", &at.doctor)],
            "custodian": reference("Organization", &org_id(self.region, at.org)),
            "description": kind_text,
            "content": [{"attachment": {
                "contentType": "text/plain; charset=utf-8",
                "language": "ru",
                "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                "title": ru
            }}],
            "context": {"encounter": [reference("Encounter", &at.enc)], "period": {"start": datetime(v.start), "end": datetime(v.end)}}
        });
        self.push(doc);
    }

    /// A Condition diagnosed at this visit: a chronic one goes on the problem list (and into
    /// remission when abated), an acute one is an encounter diagnosis (resolved when healed).
    fn condition(&mut self, at: &At, dx: Dx, chronic: bool, onset: i64, abated: Option<i64>) -> String {
        let id = self.id(1);
        let status = match abated {
            Some(_) if chronic => ("remission", "Remission"),
            Some(_) => ("resolved", "Resolved"),
            None => ("active", "Active"),
        };
        let category = if chronic {
            ("problem-list-item", "Problem List Item")
        } else {
            ("encounter-diagnosis", "Encounter Diagnosis")
        };
        let mut c = json!({
            "resourceType": "Condition",
            "id": id,
            "clinicalStatus": term("condition-clinical", status.0, status.1),
            "verificationStatus": term("condition-ver-status", "confirmed", "Confirmed"),
            "category": [term("condition-category", category.0, category.1)],
            "code": icd(dx),
            "subject": reference("Patient", &self.pid),
            "encounter": reference("Encounter", &at.enc),
            "onsetDateTime": date(onset),
            "recordedDate": datetime(at.start),
            "recorder": reference("Practitioner", &at.doctor)
        });
        if let Some(a) = abated {
            c["abatementDateTime"] = json!(date(a));
        }
        self.push(c);
        id
    }

    fn observation(&mut self, at: &At, t: &Test, lab: bool, when: i64) -> Value {
        let (cat, display) = if lab { ("laboratory", "Laboratory") } else { ("vital-signs", "Vital Signs") };
        json!({
            "resourceType": "Observation",
            "id": self.id(2),
            "status": "final",
            "category": [term("observation-category", cat, display)],
            "code": concept(LOINC, t.loinc, t.en, t.ru),
            "subject": reference("Patient", &self.pid),
            "encounter": reference("Encounter", &at.enc),
            "effectiveDateTime": datetime(when)
        })
    }

    fn vital(&mut self, at: &At, t: &Test, value: f64, places: usize) {
        let mut o = self.observation(at, t, false, at.start + 5);
        o["performer"] = json!([reference("Practitioner", &at.doctor)]);
        o["valueQuantity"] = quantity(dec(value, places), t.unit, t.ucum);
        self.push(o);
    }

    fn vitals(&mut self, at: &At, anthropometry: bool, fever: bool, class: Class) {
        let day = at.start / 1440;
        let age = self.age(day);
        if age >= 18.0 || age >= 7.0 && (anthropometry || class != Class::Amb) {
            let base = if age < 18.0 { 95.0 + 1.2 * age } else { 112.0 + 0.5 * (age - 20.0).max(0.0) };
            let sys = self.rng.normal(base + if self.has("I10", day) { 16.0 } else { 0.0 }, 9.0).round();
            let dia = self.rng.normal(0.55 * sys + 10.0, 5.0).round();
            let mut o = self.observation(at, &BP, false, at.start + 5);
            let part = |t: &Test, v: f64| json!({"code": concept(LOINC, t.loinc, t.en, t.ru), "valueQuantity": quantity(dec(v, 0), t.unit, t.ucum)});
            o["performer"] = json!([reference("Practitioner", &at.doctor)]);
            o["component"] = json!([part(&SYSTOLIC, sys), part(&DIASTOLIC, dia)]);
            self.push(o);
        }
        let hr = lerp(&[(0.0, 135.0), (1.0, 120.0), (6.0, 100.0), (12.0, 85.0), (18.0, 74.0)], age)
            + if fever { 12.0 } else { 0.0 };
        let hr = self.rng.normal(hr, 8.0).round();
        if age < 18.0 || fever || class != Class::Amb || self.rng.chance(0.5) {
            self.vital(at, &HEART_RATE, hr, 0);
        }
        if fever || class == Class::Imp {
            let t = if fever {
                self.rng.normal(38.1, 0.5).clamp(37.1, 40.2)
            } else {
                self.rng.normal(36.6, 0.15).clamp(35.9, 37.0)
            };
            self.vital(at, &TEMPERATURE, t, 1);
        }
        if anthropometry {
            let h = (self.height_at(day) + self.rng.normal(0.0, 0.4)).max(45.0);
            let bmi = self.bmi(day) + self.rng.normal(0.0, 0.3);
            let w = bmi * (h / 100.0).powi(2);
            self.vital(at, &WEIGHT, w, if age < 2.0 { 2 } else { 1 });
            self.vital(at, &HEIGHT, h, if age < 2.0 { 1 } else { 0 });
            if age >= 18.0 {
                self.vital(at, &BMI, w / (h / 100.0).powi(2), 1);
            }
        }
    }

    fn lab_value(&mut self, t: &Test, day: i64, infectious: bool) -> f64 {
        let age = self.age(day);
        let (mean, sd) = match t.loinc {
            l if l == GLUCOSE.loinc && self.has("E11", day) => (8.2, 1.6),
            l if l == HBA1C_TEST.loinc && self.has("E11", day) => (7.6, 1.0),
            l if l == CHOLESTEROL.loinc && (self.has("E78.0", day) || self.has("I25.1", day)) => (6.3, 0.8),
            l if l == CHOLESTEROL.loinc => (3.9 + 0.022 * age, 0.65),
            l if l == HB.loinc && self.has("D50.9", day) => (98.0, 8.0),
            l if l == HB.loinc && age < 12.0 => (124.0, 8.0),
            l if l == HB.loinc => {
                if self.female {
                    (131.0, 8.0)
                } else {
                    (146.0, 9.0)
                }
            }
            l if l == WBC.loinc && infectious => (11.5, 2.5),
            l if l == ESR.loinc && infectious => (24.0, 8.0),
            l if l == TSH.loinc && self.has("E03.9", day) => (6.5, 2.5),
            l if l == CREATININE.loinc && age < 14.0 => (45.0, 10.0),
            l if l == CREATININE.loinc => {
                let base = if self.female { 70.0 } else { 88.0 };
                (base + if self.has("E11", day) && age > 60.0 { 25.0 } else { 0.0 }, 11.0)
            }
            _ => (t.mean, t.sd),
        };
        self.rng.normal(mean, sd).max(t.lo[0] * 0.5).max(1.0 / 10f64.powi(t.places as i32))
    }

    fn panel(&mut self, at: &At, p: &Panel, infectious: bool) {
        let taken = at.start + 10;
        let issued = datetime(taken + self.rng.range(120, 1800));
        let lab = if at.org == POLYCLINIC && self.rng.chance(0.6) { LAB } else { at.org };
        let performer = json!([reference("Organization", &org_id(self.region, lab))]);
        let age = self.age(taken / 1440);
        let (sex, mut results, mut abnormal) = (usize::from(self.female && age >= 14.0), Vec::new(), Vec::new());
        for t in p.tests {
            // Children have their own reference ranges for haemoglobin and creatinine.
            let (lo, hi) = match t.loinc {
                "718-7" if age < 12.0 => (110.0, 140.0),
                "14682-9" if age < 14.0 => (27.0, 62.0),
                _ => (t.lo[sex], t.hi[sex]),
            };
            let v = self.lab_value(t, taken / 1440, infectious);
            let rounded = format!("{v:.*}", t.places).parse::<f64>().unwrap_or(v);
            let (code, display, text) = if rounded < lo {
                ("L", "Low", "Ниже нормы")
            } else if rounded > hi {
                ("H", "High", "Выше нормы")
            } else {
                ("N", "Normal", "Норма")
            };
            if code != "N" {
                abnormal.push(format!("{} {}", t.ru, if code == "H" { "повышен(а)" } else { "снижен(а)" }));
            }
            let mut o = self.observation(at, t, true, taken);
            o["issued"] = json!(issued);
            o["performer"] = performer.clone();
            o["valueQuantity"] = quantity(dec(v, t.places), t.unit, t.ucum);
            o["interpretation"] = json!([concept(&format!("{TERM}v3-ObservationInterpretation"), code, display, text)]);
            o["referenceRange"] = json!([{"low": quantity(dec(lo, t.places), t.unit, t.ucum), "high": quantity(dec(hi, t.places), t.unit, t.ucum)}]);
            results.push(reference("Observation", o["id"].as_str().unwrap_or_default()));
            self.push(o);
        }
        let conclusion = if abnormal.is_empty() {
            "Показатели в пределах референсных значений".to_string()
        } else {
            format!("Отклонения: {}", abnormal.join("; "))
        };
        let dr = json!({
            "resourceType": "DiagnosticReport",
            "id": self.id(3),
            "status": "final",
            "category": [term("v2-0074", "LAB", "Laboratory")],
            "code": concept(LOINC, p.loinc, p.en, p.ru),
            "subject": reference("Patient", &self.pid),
            "encounter": reference("Encounter", &at.enc),
            "effectiveDateTime": datetime(taken),
            "issued": issued,
            "performer": performer,
            "result": results,
            "conclusion": conclusion
        });
        self.push(dr);
    }

    /// A procedure during the visit: an operation (`surgery`) some hours after admission.
    fn procedure(&mut self, at: &At, p: Proc, reason: Dx, surgery: bool) {
        let start = at.start + if surgery { self.rng.range(60, 240) } else { 5 };
        let end = start + if surgery { self.rng.range(40, 120) } else { 10 };
        let proc = json!({
            "resourceType": "Procedure",
            "id": self.id(4),
            "status": "completed",
            "code": concept(SCT, p.0, p.1, p.2),
            "subject": reference("Patient", &self.pid),
            "encounter": reference("Encounter", &at.enc),
            "performedPeriod": {"start": datetime(start), "end": datetime(end)},
            "performer": [{"actor": reference("Practitioner", &at.doctor)}],
            "reasonCode": [icd(reason)]
        });
        self.push(proc);
    }

    fn prescribe(&mut self, at: &At, m: Med, condition: &str, status: &str) {
        let mr = json!({
            "resourceType": "MedicationRequest",
            "id": self.id(5),
            "status": status,
            "intent": "order",
            "medicationCodeableConcept": concept(ATC, m.0, m.1, m.2),
            "subject": reference("Patient", &self.pid),
            "encounter": reference("Encounter", &at.enc),
            "authoredOn": datetime(at.start + 10),
            "requester": reference("Practitioner", &at.doctor),
            "reasonReference": [reference("Condition", condition)],
            "dosageInstruction": [{"text": m.3}]
        });
        self.push(mr);
    }

    fn immunization(&mut self, when: i64, v: &Vaccine, dose: u32, at: Option<&At>) {
        let lot =
            format!("{}{}", LOT.chars().nth(self.rng.range(0, 12) as usize).unwrap_or('А'), self.rng.range(100, 9999));
        let mut imm = json!({
            "resourceType": "Immunization",
            "id": self.id(6),
            "status": "completed",
            "vaccineCode": {"coding": [coding(VACCINE, v.0, v.1), coding(CVX, v.2, v.3)], "text": v.1},
            "patient": reference("Patient", &self.pid),
            "occurrenceDateTime": datetime(when),
            "primarySource": true,
            "lotNumber": lot,
            "route": term("v3-RouteOfAdministration", v.5.0, v.5.1),
            "doseQuantity": quantity(v.6.parse::<serde_json::Number>().map_or(Value::Null, Value::Number), "мл", "mL"),
            "protocolApplied": [{"targetDisease": [{"text": v.4}], "doseNumberPositiveInt": dose}]
        });
        match at {
            Some(at) => {
                imm["encounter"] = reference("Encounter", &at.enc);
                imm["performer"] = json!([{"actor": reference("Practitioner", &at.doctor)}]);
            }
            None => {
                let kind = if when / 1440 - self.birth < 14 { HOSPITAL } else { POLYCLINIC };
                imm["performer"] = json!([{"actor": reference("Organization", &org_id(self.region, kind))}]);
            }
        }
        self.push(imm);
    }

    /// Vaccinations outside visits: at the maternity hospital, and yearly influenza.
    fn vaccinations(&mut self) {
        for (age, vaccine, dose) in CALENDAR.iter().filter(|c| c.0 < 30) {
            let day = self.birth + age;
            if day >= self.start && day < self.end {
                let when = day * 1440 + self.rng.range(9 * 60, 17 * 60);
                self.immunization(when, vaccine, *dose, None);
            }
        }
        let age = self.age(self.end);
        let p = if age < 18.0 {
            0.3
        } else if age < 60.0 {
            0.15
        } else {
            0.45
        };
        if !self.rng.chance(p) {
            return;
        }
        let (y0, _, _) = civil(self.start);
        for year in y0..=2025 {
            let day = days(year, 9, 15) + self.rng.range(0, 75);
            if day >= self.start && day < self.end && self.age(day) >= 0.5 && self.rng.chance(0.8) {
                let when = day * 1440 + self.rng.range(9 * 60, 17 * 60);
                self.immunization(when, &FLU, 1, None);
            }
        }
    }

    /// The patient's allergies, recorded at the first visit from the age of two (unlabelled).
    fn record_allergies(&mut self, at: &At) {
        let label = self.label.take();
        self.allergies_recorded = true;
        for a in self.allergies.clone() {
            let (code, en, ru, category, criticality, _, reaction, severity) = ALLERGENS[a];
            let onset = self.rng.range(self.birth + 365, at.start / 1440).min(at.start / 1440);
            let alg = json!({
                "resourceType": "AllergyIntolerance",
                "id": self.id(7),
                "clinicalStatus": term("allergyintolerance-clinical", "active", "Active"),
                "verificationStatus": term("allergyintolerance-verification", "confirmed", "Confirmed"),
                "type": "allergy",
                "category": [category],
                "criticality": criticality,
                "code": concept(SCT, code, en, ru),
                "patient": reference("Patient", &self.pid),
                "encounter": reference("Encounter", &at.enc),
                "onsetDateTime": date(onset),
                "recordedDate": datetime(at.start + 10),
                "recorder": reference("Practitioner", &at.doctor),
                "reaction": [{"manifestation": [concept(SCT, reaction.0, reaction.1, reaction.2)], "severity": severity}]
            });
            self.push(alg);
        }
        self.label = label;
    }
}
