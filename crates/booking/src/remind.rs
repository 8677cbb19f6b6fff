//! Reminders of appointments: when an appointment is booked, a job per lead time (the day
//! before, an hour before: `--booking-reminders`) is enqueued in the booking's own
//! transaction; at its time the job writes a `Communication` (category `reminder`) to the
//! patient's inbox, which the delivery jobs then send by e-mail and SMS. A job that was
//! missed (the server was down) runs when the server is back, if the visit is still ahead.
//! Each reminder is created exactly once: its id is made of the appointment, the lead and
//! the start, written under a lock only if absent — a job run twice (a crash between the
//! write and the job's end) finds it there. A reminder of an appointment cancelled or moved
//! since is not sent.

use guard::write::{WriteOp, prepare};
use guard::{FhirResult, Guard, Job, NewJob, WriteTx};
use jiff::Timestamp;
use jobs::{Handler, Retry};
use serde_json::{Value, json};

use crate::rules::{holds, patient_of, rt};

/// The job queue of reminders.
pub const QUEUE: &str = "remind";

/// Enqueue the reminders of a booked appointment (in the booking's transaction).
pub(crate) fn enqueue(tx: &mut WriteTx<'_>, id: &str, appointment: &Value, leads: &[i64]) -> FhirResult<()> {
    let Some(start) = appointment["start"].as_str().and_then(|s| s.parse::<Timestamp>().ok()) else { return Ok(()) };
    let now = Timestamp::now().as_microsecond();
    for lead in leads {
        let at = start.as_microsecond() - lead * 60_000_000;
        if at <= now - 60_000_000 {
            continue; // booked after the reminder's time: the booking itself told them
        }
        let key = format!("remind:{id}:{lead}:{start}");
        let payload = json!({"appointment": id, "lead": lead, "start": start.to_string()}).to_string();
        tx.enqueue(&NewJob { queue: QUEUE, key: &key, payload: &payload, run_at: at.max(now) })?;
    }
    Ok(())
}

/// The reminders' job handler.
pub struct Remind {
    pub guard: Guard,
}

/// Words of a reminder: Russian and English, times in the place's zone.
fn words(appointment: &Value, tz: &jiff::tz::TimeZone, names: &[String]) -> (String, String) {
    let start = appointment["start"].as_str().and_then(|s| s.parse::<Timestamp>().ok());
    let local = start.map(|t| t.to_zoned_datetime(tz.clone()));
    let when = local.map(|z| z.strftime("%d.%m.%Y %H:%M").to_string()).unwrap_or_default();
    let with = if names.is_empty() { String::new() } else { format!(" — {}", names.join(", ")) };
    (format!("Напоминание: приём {when}{with}."), format!("Reminder: appointment on {when}{with}."))
}

/// The display names of an appointment's other participants (the doctor, the place).
fn participants(tx: &mut WriteTx<'_>, appointment: &Value) -> FhirResult<Vec<String>> {
    let mut out = Vec::new();
    for p in appointment["participant"].as_array().into_iter().flatten() {
        let Some((kind, id)) = p["actor"]["reference"].as_str().and_then(|r| r.split_once('/')) else { continue };
        if kind == "Patient" || !["Practitioner", "Location", "HealthcareService"].contains(&kind) {
            continue;
        }
        let Some(r) = tx.read(rt(kind)?, id)?.and_then(|s| s.body) else { continue };
        let r: Value = serde_json::from_slice(&r).unwrap_or_default();
        let name = match kind {
            "Practitioner" => {
                let n = &r["name"][0];
                n["text"].as_str().map(str::to_string).unwrap_or_else(|| {
                    let given: Vec<&str> =
                        n["given"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    format!("{} {}", n["family"].as_str().unwrap_or(""), given.join(" ")).trim().to_string()
                })
            }
            _ => r["name"].as_str().unwrap_or("").to_string(),
        };
        if !name.is_empty() {
            out.push(name);
        }
    }
    Ok(out)
}

/// The time zone of an appointment's first slot's schedule.
fn zone(tx: &mut WriteTx<'_>, appointment: &Value) -> FhirResult<jiff::tz::TimeZone> {
    let slot = crate::rules::slots_of(appointment).into_iter().next();
    let schedule = match slot {
        Some(s) => tx.read(rt("Slot")?, &s)?.and_then(|s| s.body),
        None => None,
    };
    let schedule = schedule.and_then(|b| serde_json::from_slice::<Value>(&b).ok()).and_then(|s| {
        s["schedule"]["reference"].as_str().and_then(|r| r.strip_prefix("Schedule/")).map(str::to_string)
    });
    let schedule = match schedule {
        Some(id) => tx.read(rt("Schedule")?, &id)?.and_then(|s| s.body),
        None => None,
    };
    let name = schedule
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|s| {
            s["extension"].as_array()?.iter().find(|e| e["url"] == crate::pattern::TIMEZONE)?["valueCode"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| crate::pattern::DEFAULT_TIMEZONE.to_string());
    Ok(jiff::tz::TimeZone::get(&name).unwrap_or(jiff::tz::TimeZone::UTC))
}

/// The id of a reminder: the appointment, the lead and the start (hashed, short).
pub fn reminder_id(appointment: &str, lead: i64, start: &str) -> String {
    let text = format!("{appointment}|{lead}|{start}");
    let h = crate::short_hash(&text);
    format!("remind-{h:016x}")
}

impl Handler for Remind {
    fn queue(&self) -> &'static str {
        QUEUE
    }

    fn run(&self, job: &Job) -> Result<(), Retry> {
        let p: Value = serde_json::from_str(&job.payload)?;
        let (Some(id), Some(lead), Some(start)) = (p["appointment"].as_str(), p["lead"].as_i64(), p["start"].as_str())
        else {
            return Ok(());
        };
        let h = self.guard.system(crate::ACTOR);
        let mut tx = h.begin()?;
        let Some(a) = tx.read(rt("Appointment")?, id)?.and_then(|s| s.body) else { return Ok(()) };
        let a: Value = serde_json::from_slice(&a)?;
        let still = holds(&a)
            && a["status"] == "booked"
            && a["start"].as_str().and_then(|s| s.parse::<Timestamp>().ok()) == start.parse::<Timestamp>().ok();
        let ahead = start.parse::<Timestamp>().is_ok_and(|t| t > Timestamp::now());
        let Some(patient) = patient_of(&a).filter(|_| still && ahead) else { return Ok(()) };
        let rid = reminder_id(id, lead, start);
        tx.lock_key(&format!("reminder:{rid}"))?;
        if tx.read(rt("Communication")?, &rid)?.is_some() {
            return Ok(()); // this job ran before, up to its commit
        }
        let tz = zone(&mut tx, &a)?;
        let names = participants(&mut tx, &a)?;
        let (ru, en) = words(&a, &tz, &names);
        let note = json!({
            "resourceType": "Communication", "id": rid, "status": "completed",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "reminder"}]}],
            "subject": {"reference": patient}, "about": [{"reference": format!("Appointment/{id}")}],
            "recipient": [{"reference": patient}], "sent": guard::meta::instant(guard::meta::now_micros()),
            "payload": [{"contentString": ru}, {"contentString": en}]
        });
        let op =
            WriteOp::Update { resource_type: rt("Communication")?, id: rid.clone(), resource: note, if_match: None };
        tx.apply(prepare(op)?)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reminder_says_when_in_local_time_in_both_languages() {
        let a = json!({"start": "2026-12-07T05:00:00Z"});
        let tz = jiff::tz::TimeZone::get("Europe/Minsk").unwrap();
        let (ru, en) = words(&a, &tz, &["Петров Пётр".into()]);
        assert_eq!(ru, "Напоминание: приём 07.12.2026 08:00 — Петров Пётр.");
        assert_eq!(en, "Reminder: appointment on 07.12.2026 08:00 — Петров Пётр.");
        assert_eq!(reminder_id("a", 60, "x"), reminder_id("a", 60, "x"));
        assert_ne!(reminder_id("a", 60, "x"), reminder_id("a", 1440, "x"));
    }
}
