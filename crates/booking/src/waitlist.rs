//! Waiting for a free slot. A patient joins the line with an Appointment of status
//! `waitlist`: a specialty (and perhaps a practitioner as participant), the window they
//! would come in (`requestedPeriod`), and perhaps the later appointment they would give
//! up (extension waitlist-replaces). When a slot is freed (a cancellation, a move, an
//! expired hold), in that same transaction the first entry in line (by `created`) that
//! the slot suits and was not offered it yet is offered it: a hold (an Appointment of
//! status `pending`, the slot `busy-tentative`) for `--booking-hold-minutes`, and a message
//! to the patient. Confirming the hold (status `booked`) closes the entry and cancels the
//! appointment it replaces, in one transaction; a hold not confirmed expires (a job), and
//! the slot goes to the next in line.

use fhir_model::ResourceType;
use guard::write::{WriteOp, parse_criteria, prepare};
use guard::{FhirResult, NewJob, WriteTx};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::rules::{codes, online, read, rt, time};

/// On a hold: the waiting-list entry it was offered from (`valueReference`).
pub const ENTRY: &str = "https://medkarta.org/fhir/StructureDefinition/waitlist-entry";
/// On a waiting-list entry: the appointment to give up for an earlier one (`valueReference`).
pub const REPLACES: &str = "https://medkarta.org/fhir/StructureDefinition/waitlist-replaces";
/// On a waiting-list entry (repeating): a slot offered to it (`valueReference`).
pub const OFFERED: &str = "https://medkarta.org/fhir/StructureDefinition/waitlist-offered";

/// Entries looked at per freed slot, at most.
const MAX_ENTRIES: usize = 500;

/// The reference an extension of `v` holds.
pub fn extension_ref<'a>(v: &'a Value, url: &str) -> Option<&'a str> {
    v["extension"].as_array()?.iter().find(|e| e["url"] == url)?["valueReference"]["reference"].as_str()
}

/// Does a waiting-list entry want this slot (of a schedule with these actors)?
fn suits(entry: &Value, slot_id: &str, slot: &Value, actors: &[String]) -> bool {
    let offered =
        entry["extension"].as_array().into_iter().flatten().any(|e| {
            e["url"] == OFFERED && e["valueReference"]["reference"].as_str() == Some(&format!("Slot/{slot_id}"))
        });
    let start = time(&slot["start"]);
    let in_window = entry["requestedPeriod"].as_array().is_none_or(|ps| {
        ps.is_empty()
            || ps.iter().any(|p| {
                time(&p["start"]).is_none_or(|s| start.is_some_and(|t| t >= s))
                    && time(&p["end"]).is_none_or(|e| start.is_some_and(|t| t < e))
            })
    });
    let wanted: Vec<&str> = entry["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .filter(|r| r.starts_with("Practitioner/"))
        .collect();
    let with_them = wanted.is_empty() || wanted.iter().any(|w| actors.iter().any(|a| a == w));
    let specialty = codes(&slot["specialty"]);
    let same = codes(&entry["specialty"]).iter().any(|c| specialty.contains(c));
    !offered && in_window && with_them && same
}

/// Offer a freed slot to the first entry in line it suits (see the module docs).
pub(crate) fn offer(tx: &mut WriteTx<'_>, slot_id: &str, slot: &Value, hold_minutes: i64) -> FhirResult<()> {
    if slot["status"] != "free" || !online(slot) || time(&slot["start"]).is_none_or(|t| t <= Timestamp::now()) {
        return Ok(());
    }
    let specialty = codes(&slot["specialty"]);
    if specialty.is_empty() {
        return Ok(());
    }
    let schedule = slot["schedule"]["reference"].as_str().and_then(|r| r.strip_prefix("Schedule/")).map(str::to_string);
    let schedule = match schedule {
        Some(id) => read(tx, "Schedule", &id)?.unwrap_or_default(),
        None => Value::Null,
    };
    let actors: Vec<String> = schedule["actor"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["reference"].as_str().map(str::to_string))
        .collect();
    let tokens: Vec<String> = specialty.iter().map(|t| t.replace('%', "%25").replace(',', "%2C")).collect();
    let q = parse_criteria(rt("Appointment")?, &format!("status=waitlist&specialty={}", tokens.join(",")))?;
    let mut entries = Vec::new();
    for id in tx.search_ids(&q, MAX_ENTRIES)? {
        if let Some(e) = read(tx, "Appointment", &id)? {
            entries.push((id, e));
        }
    }
    entries.sort_by(|a, b| a.1["created"].as_str().unwrap_or("").cmp(b.1["created"].as_str().unwrap_or("")));
    let Some((entry_id, mut entry)) = entries.into_iter().find(|(_, e)| suits(e, slot_id, slot, &actors)) else {
        return Ok(());
    };
    let Some(patient) = crate::rules::patient_of(&entry) else { return Ok(()) };
    // the hold: the slot is the patient's for a few minutes
    let mut participant: Vec<Value> = actors
        .iter()
        .map(|a| json!({"actor": {"reference": a}, "required": "required", "status": "accepted"}))
        .collect();
    participant.push(json!({"actor": {"reference": patient}, "required": "required", "status": "needs-action"}));
    let hold = json!({
        "resourceType": "Appointment", "status": "pending",
        "extension": [{"url": ENTRY, "valueReference": {"reference": format!("Appointment/{entry_id}")}}],
        "slot": [{"reference": format!("Slot/{slot_id}")}], "start": slot["start"], "end": slot["end"],
        "specialty": slot["specialty"], "participant": participant,
        "created": Timestamp::now().strftime("%Y-%m-%d").to_string(),
    });
    let written = tx.apply(prepare(WriteOp::Create { resource: hold, if_none_exist: None, id: None })?)?;
    // the entry remembers the offer (the next freed slot goes to it again, not this one)
    let offered = json!({"url": OFFERED, "valueReference": {"reference": format!("Slot/{slot_id}")}});
    match entry["extension"].as_array_mut() {
        Some(ext) => ext.push(offered),
        None => entry["extension"] = json!([offered]),
    }
    let version = entry["meta"]["versionId"].as_str().map(|v| format!("W/\"{v}\""));
    let rt_appointment = rt("Appointment")?;
    tx.apply(prepare(WriteOp::Update {
        resource_type: rt_appointment,
        id: entry_id,
        resource: entry,
        if_match: version,
    })?)?;
    let until = Timestamp::now().as_second() + hold_minutes * 60;
    let tz = crate::pattern::Pattern::of(&schedule).ok().flatten().map_or(jiff::tz::TimeZone::UTC, |p| p.tz);
    let local =
        |t: Option<Timestamp>| t.map(|t| t.to_zoned_datetime(tz.clone()).strftime("%d.%m.%Y %H:%M").to_string());
    let when = local(time(&slot["start"])).unwrap_or_default();
    let by = local(Timestamp::from_second(until).ok()).unwrap_or_default();
    let note = json!({
        "resourceType": "Communication", "status": "completed", "priority": "urgent",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}]}],
        "subject": {"reference": patient}, "recipient": [{"reference": patient}],
        "about": [{"reference": format!("Appointment/{}", written.id)}],
        "sent": guard::meta::instant(guard::meta::now_micros()),
        "payload": [
            {"contentString": format!("Освободилось время {when}. Подтвердите запись до {by} в разделе «Запись к врачу», иначе время предложат следующему.")},
            {"contentString": format!("A time has come free: {when}. Confirm it by {by} under Appointments, or it goes to the next in line.")}
        ]
    });
    tx.apply(prepare(WriteOp::Create { resource: note, if_none_exist: None, id: None })?)?;
    Ok(())
}

/// Enqueue the end of a hold (in the transaction that made it).
pub(crate) fn expire_later(tx: &mut WriteTx<'_>, id: &str, hold_minutes: i64) -> FhirResult<()> {
    let key = format!("expire:{id}");
    let payload = json!({"expire": id}).to_string();
    let run_at = guard::meta::now_micros() + hold_minutes * 60_000_000;
    tx.enqueue(&NewJob { queue: crate::QUEUE, key: &key, payload: &payload, run_at })?;
    Ok(())
}

/// A hold confirmed: its entry leaves the line, and the appointment it replaces is
/// cancelled (derived writes of the confirmation).
pub(crate) fn confirmed(tx: &mut WriteTx<'_>, hold: &Value) -> FhirResult<()> {
    let Some(entry_id) = extension_ref(hold, ENTRY).and_then(|r| r.strip_prefix("Appointment/")).map(str::to_string)
    else {
        return Ok(());
    };
    let Some(entry) = read(tx, "Appointment", &entry_id)? else { return Ok(()) };
    let patient = crate::rules::patient_of(hold);
    if crate::rules::patient_of(&entry) != patient {
        return Ok(()); // not this patient's entry: nothing of it is touched
    }
    // out of the line first: the time given up next is offered to others, not back to them
    cancel(tx, &entry_id, "Записан на освободившееся время")?;
    if let Some(old) = extension_ref(&entry, REPLACES).and_then(|r| r.strip_prefix("Appointment/")).map(str::to_string)
        && read(tx, "Appointment", &old)?.is_some_and(|a| crate::rules::patient_of(&a) == patient)
    {
        cancel(tx, &old, "Перенесено на более раннее время из листа ожидания")?;
    }
    Ok(())
}

/// Cancel an appointment with a reason (a derived write).
pub(crate) fn cancel(tx: &mut WriteTx<'_>, id: &str, reason: &str) -> FhirResult<()> {
    let Some(mut a) = read(tx, "Appointment", id)? else { return Ok(()) };
    if matches!(a["status"].as_str(), Some("cancelled" | "fulfilled" | "noshow" | "entered-in-error")) {
        return Ok(());
    }
    a["status"] = json!("cancelled");
    a["cancelationReason"] = json!({"text": reason});
    let version = a["meta"]["versionId"].as_str().map(|v| format!("W/\"{v}\""));
    let kind: ResourceType = rt("Appointment")?;
    tx.apply(prepare(WriteOp::Update { resource_type: kind, id: id.to_string(), resource: a, if_match: version })?)?;
    Ok(())
}
