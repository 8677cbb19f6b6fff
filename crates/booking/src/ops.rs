//! The booking operations, as the Argonaut Scheduling IG and Medplum name them, over the
//! guard (the HTTP adapter turns a request into these calls):
//! - `find`: free slots in a span (and of a specialty, a service, a practitioner, a
//!   location, an organisation), soonest first, as proposed Appointments; a patient sees
//!   the slots open online only;
//! - `book`: an Appointment over the given slots for a patient, written as the caller —
//!   the rules of [`crate::rules`] decide, exactly as for a plain POST; with status
//!   `pending` it is `$hold`.

use std::collections::HashMap;

use guard::write::{WriteOp, Written, parse_criteria, prepare};
use guard::{FhirError, FhirResult, Handle};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::rules::{patient_caller, refuse, rt};

/// What `$find` looks for.
#[derive(Debug, Default, Clone)]
pub struct FindQuery {
    pub start: Option<String>,
    pub end: Option<String>,
    pub specialty: Option<String>,
    pub service_type: Option<String>,
    pub practitioner: Option<String>,
    pub location: Option<String>,
    pub organization: Option<String>,
    pub patient: Option<String>,
    pub count: Option<usize>,
}

/// Most proposals in one answer.
const MAX_FOUND: usize = 500;

fn instant(s: &str, name: &str) -> FhirResult<Timestamp> {
    let parsed = if s.len() == 10 { format!("{s}T00:00:00Z").parse() } else { s.parse() };
    parsed.map_err(|_| refuse(400, format!("{name} must be a date (YYYY-MM-DD) or an instant, not '{s}'")))
}

/// A reference parameter, checked: `Practitioner/x` or `x`.
fn reference(kind: &str, v: &str) -> FhirResult<String> {
    let id = v.strip_prefix(&format!("{kind}/")).unwrap_or(v);
    if fhir_model::is_valid_id(id) {
        Ok(format!("{kind}/{id}"))
    } else {
        Err(refuse(400, format!("'{v}' is not a {kind} reference")))
    }
}

/// A token parameter, checked (`system|code` or `code`; no separators of its own).
fn token(v: &str) -> FhirResult<String> {
    if v.is_empty() || v.contains(['&', '#', ',']) {
        return Err(refuse(400, format!("'{v}' is not a code")));
    }
    Ok(v.replace('%', "%25").replace(' ', "%20").replace('+', "%2B"))
}

/// Rows read from one window at most.
const WINDOW_ROWS: usize = 1000;

/// Windows (hours) looked at, at most: a month.
const MAX_WINDOWS: usize = 31 * 24;

/// The first `count` slots matching `query` that start in `[start, end)`, soonest first.
/// Read hour by hour from `start` (`start=eq<hour>`: one narrow date range, which the
/// database starts from, rather than a specialty almost every slot of a city shares), each
/// hour sorted by the database and read only as far as needed; rows that are not free (or
/// not online, for a patient) are skipped, reading further into the hour when they were many.
fn soonest(
    h: &Handle,
    query: &str,
    start: Timestamp,
    end: Timestamp,
    count: usize,
    online_only: bool,
) -> FhirResult<Vec<(String, Value)>> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut hour = start.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    for _ in 0..MAX_WINDOWS {
        if out.len() >= count || hour.timestamp() >= end {
            break;
        }
        let need = count - out.len();
        let mut read = (need * 2 + 10).min(WINDOW_ROWS);
        loop {
            let q = parse_criteria(
                rt("Slot")?,
                &format!("{query}&start=eq{}&_sort=start&_count={read}", hour.strftime("%Y-%m-%dT%H")),
            )?;
            let page = h.search(&q, read)?;
            let usable: Vec<(String, Value)> = page
                .resources
                .into_iter()
                .filter_map(|s| {
                    let slot: Value = serde_json::from_slice(s.body.as_deref()?).ok()?;
                    let at: Timestamp = slot["start"].as_str()?.parse().ok()?;
                    let ok = slot["status"] == "free"
                        && (!online_only || crate::rules::online(&slot))
                        && at >= start
                        && at < end;
                    ok.then_some((s.id, slot))
                })
                .collect();
            if usable.len() >= need || !page.more || read >= WINDOW_ROWS {
                out.extend(usable.into_iter().take(need));
                break;
            }
            read = (read * 4).min(WINDOW_ROWS);
        }
        let Ok(next) = hour.checked_add(jiff::SignedDuration::from_hours(1)) else { break };
        hour = next;
    }
    Ok(out)
}

/// `Appointment/$find`: a searchset Bundle of proposed Appointments over free slots.
pub fn find(h: &Handle, q: &FindQuery) -> FhirResult<Value> {
    let (Some(start), Some(end)) = (q.start.as_deref(), q.end.as_deref()) else {
        return Err(refuse(400, "$find needs start and end"));
    };
    let (start, end) = (instant(start, "start")?, instant(end, "end")?);
    if end <= start {
        return Err(refuse(400, "end comes after start"));
    }
    let start = start.max(Timestamp::now());
    let count = q.count.unwrap_or(50).clamp(1, MAX_FOUND);
    // status and the online tag match almost every slot: they are checked on the rows read,
    // not given to the database (which would then start from them)
    let mut query = String::from("_total=none");
    if let Some(s) = &q.specialty {
        query.push_str(&format!("&specialty={}", token(s)?));
    }
    if let Some(s) = &q.service_type {
        query.push_str(&format!("&service-type={}", token(s)?));
    }
    if let Some(p) = &q.practitioner {
        query.push_str(&format!("&schedule.actor={}", reference("Practitioner", p)?));
    }
    if let Some(l) = &q.location {
        query.push_str(&format!("&schedule.actor={}", reference("Location", l)?));
    }
    if let Some(o) = &q.organization {
        query.push_str(&format!("&schedule.actor:Location.organization={}", reference("Organization", o)?));
    }
    let me = patient_caller(h.principal());
    let patient = match (&q.patient, &me) {
        (_, Some(me)) => Some(me.clone()),
        (Some(p), None) => Some(reference("Patient", p)?),
        _ => None,
    };
    let found = soonest(h, &query, start, end, count, me.is_some())?;
    let mut schedules: HashMap<String, Value> = HashMap::new();
    let mut entries = Vec::new();
    for (id, slot) in found {
        let sref = slot["schedule"]["reference"].as_str().unwrap_or("").to_string();
        if !schedules.contains_key(&sref)
            && let Some((_, id)) = sref.split_once('/')
        {
            let schedule = h.fetch("Schedule", id)?.and_then(|s| s.body);
            let schedule = schedule.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            schedules.insert(sref.clone(), schedule);
        }
        let schedule = &schedules[&sref];
        let mut participants: Vec<Value> = schedule["actor"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| json!({"actor": a, "required": "required", "status": "needs-action"}))
            .collect();
        if let Some(p) = &patient {
            participants.push(json!({"actor": {"reference": p}, "required": "required", "status": "needs-action"}));
        }
        let mut proposal = json!({
            "resourceType": "Appointment", "status": "proposed",
            "slot": [{"reference": format!("Slot/{id}")}],
            "start": slot["start"], "end": slot["end"], "participant": participants,
        });
        for field in ["serviceCategory", "serviceType", "specialty", "appointmentType"] {
            if !slot[field].is_null() {
                proposal[field] = slot[field].clone();
            }
        }
        entries.push(json!({"resource": proposal, "search": {"mode": "match"}}));
    }
    Ok(json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}))
}

/// What `$book` was given: the slots and the patient (Medplum's `slot` + `patient-reference`),
/// or an Appointment to book as it is (the Argonaut IG's `appt-resource`).
#[derive(Debug, Clone)]
pub enum BookRequest {
    Slots { slots: Vec<String>, patient: String },
    Appointment(Value),
}

impl BookRequest {
    /// From a Parameters resource.
    pub fn from_parameters(p: &Value) -> FhirResult<BookRequest> {
        if p["resourceType"] != "Parameters" {
            return Err(refuse(400, "$book takes a Parameters resource"));
        }
        let params = p["parameter"].as_array().cloned().unwrap_or_default();
        if let Some(a) = params.iter().find(|x| x["name"] == "appt-resource") {
            return Ok(BookRequest::Appointment(a["resource"].clone()));
        }
        let slots: Vec<String> = params
            .iter()
            .filter(|x| x["name"] == "slot")
            .filter_map(|x| x["valueReference"]["reference"].as_str().or(x["valueString"].as_str()))
            .map(|r| r.trim_start_matches("Slot/").to_string())
            .collect();
        let patient = params
            .iter()
            .find(|x| x["name"] == "patient-reference")
            .and_then(|x| x["valueReference"]["reference"].as_str().or(x["valueString"].as_str()))
            .map(str::to_string);
        match (slots.is_empty(), patient) {
            (false, Some(patient)) => Ok(BookRequest::Slots { slots, patient }),
            _ => Err(refuse(400, "$book takes slot (1..*) and patient-reference, or appt-resource")),
        }
    }
}

/// `Appointment/$book` (`status` booked) or `$hold` (`pending`: the slots held for a few
/// minutes, then freed unless the appointment is made `booked`): the Appointment (201), or
/// why not.
pub fn book(h: &Handle, req: BookRequest, status: &str) -> FhirResult<Written> {
    let appointment = match req {
        BookRequest::Appointment(mut a) => {
            if a["resourceType"] != "Appointment" {
                return Err(refuse(400, "appt-resource is an Appointment"));
            }
            a["status"] = json!(status);
            a
        }
        BookRequest::Slots { slots, patient } => {
            let patient = reference("Patient", &patient)?;
            let (mut start, mut end): (Option<Value>, Option<Value>) = (None, None);
            let mut actors: Vec<Value> = Vec::new();
            let mut extra = serde_json::Map::new();
            for id in &slots {
                if !fhir_model::is_valid_id(id) {
                    return Err(refuse(400, format!("'{id}' is not a Slot id")));
                }
                let slot = h
                    .fetch("Slot", id)?
                    .and_then(|s| s.body)
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .ok_or_else(|| refuse(422, format!("Slot/{id} does not exist")))?;
                let earlier =
                    |a: &Option<Value>, b: &Value, less: bool| match (a.as_ref().and_then(Value::as_str), b.as_str()) {
                        (Some(x), Some(y)) => (y < x) == less,
                        (None, _) => true,
                        _ => false,
                    };
                if earlier(&start, &slot["start"], true) {
                    start = Some(slot["start"].clone());
                }
                if earlier(&end, &slot["end"], false) {
                    end = Some(slot["end"].clone());
                }
                if let Some(sid) = slot["schedule"]["reference"].as_str().and_then(|r| r.strip_prefix("Schedule/"))
                    && let Some(schedule) = h.fetch("Schedule", sid)?.and_then(|s| s.body)
                {
                    let schedule: Value = serde_json::from_slice(&schedule).map_err(|_| FhirError::internal())?;
                    for a in schedule["actor"].as_array().into_iter().flatten() {
                        if !actors.contains(a) {
                            actors.push(a.clone());
                        }
                    }
                }
                for field in ["serviceCategory", "serviceType", "specialty", "appointmentType"] {
                    if !slot[field].is_null() {
                        extra.entry(field).or_insert_with(|| slot[field].clone());
                    }
                }
            }
            let mut participant: Vec<Value> =
                actors.into_iter().map(|a| json!({"actor": a, "required": "required", "status": "accepted"})).collect();
            participant.push(json!({"actor": {"reference": patient}, "required": "required", "status": "accepted"}));
            let mut a = json!({
                "resourceType": "Appointment", "status": status,
                "slot": slots.iter().map(|s| json!({"reference": format!("Slot/{s}")})).collect::<Vec<_>>(),
                "start": start, "end": end, "participant": participant,
                "created": Timestamp::now().strftime("%Y-%m-%d").to_string(),
            });
            for (k, v) in extra {
                a[k] = v;
            }
            a
        }
    };
    let mut tx = h.begin()?;
    let written = tx.apply(prepare(WriteOp::Create { resource: appointment, if_none_exist: None, id: None })?)?;
    tx.commit()?;
    Ok(written)
}
