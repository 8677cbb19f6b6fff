//! Slots generated from working patterns, ahead of time, as jobs of the durable queue:
//! `{"schedule": id}` (enqueued when a Schedule is written) plans that schedule's slots from
//! today to the horizon; `{"all": true}` does every active schedule and enqueues itself
//! for the next day; `{"expire": id}` ends a hold not confirmed in time. Idempotent: a slot's id is its schedule and start, so a slot that
//! exists is left as it is (booked or not), and free future slots the pattern no longer
//! plans are removed. Written as the system actor `system:booking`, in transactions of a
//! few hundred slots, each under a lock on the schedule.

use guard::write::{WriteOp, parse_criteria, prepare};
use guard::{FhirResult, Guard, Handle, Job, NewJob, SystemActor};
use jiff::{Timestamp, ToSpan};
use jobs::{Handler, Retry};
use serde_json::{Value, json};

use crate::pattern::Pattern;
use crate::rules::{Settings, rt};
use crate::{BOOKING, QUEUE};

/// Who generates slots.
pub const ACTOR: SystemActor = SystemActor::new("system:booking");

/// Slots written per transaction.
const BATCH: usize = 200;

/// A slot's id: its schedule's (or a hash of a long one) and its start in UTC.
pub fn slot_id(schedule: &str, start: Timestamp) -> String {
    let stamp = start.strftime("%Y%m%d%H%M").to_string();
    if schedule.len() <= 48 {
        return format!("{schedule}-{stamp}");
    }
    let h = crate::short_hash(schedule);
    format!("s{h:016x}-{stamp}")
}

/// The job handler (queue [`QUEUE`]).
pub struct Generate {
    pub guard: Guard,
    pub settings: Settings,
}

impl Handler for Generate {
    fn queue(&self) -> &'static str {
        QUEUE
    }

    fn run(&self, job: &Job) -> Result<(), Retry> {
        let p: Value = serde_json::from_str(&job.payload)?;
        let h = self.guard.system(ACTOR);
        if let Some(id) = p["schedule"].as_str() {
            self.schedule(&h, id)?;
        } else if let Some(id) = p["expire"].as_str() {
            // a hold not confirmed in time: cancelled, its slot goes to the next in line
            let mut tx = h.begin()?;
            let held = tx.read(rt("Appointment")?, id)?.and_then(|s| s.body);
            let held: Option<Value> = held.and_then(|b| serde_json::from_slice(&b).ok());
            if held.is_some_and(|a| a["status"] == "pending") {
                crate::waitlist::cancel(&mut tx, id, "Время не подтверждено")?;
                tx.commit()?;
            }
        } else if p["all"] == true {
            let q = parse_criteria(rt("Schedule")?, "active=true")?;
            for s in h.search(&q, 100_000)?.resources {
                self.schedule(&h, &s.id)?;
            }
            enqueue_daily(&h)?;
        }
        Ok(())
    }
}

/// Enqueue tomorrow's run over every schedule (at 00:10 UTC; once per day).
pub fn enqueue_daily(h: &Handle) -> FhirResult<()> {
    let tomorrow = Timestamp::now().strftime("%Y-%m-%d").to_string().parse::<jiff::civil::Date>();
    let Ok(tomorrow) = tomorrow.and_then(|d| d.tomorrow()) else { return Ok(()) };
    let at = tomorrow.at(0, 10, 0, 0).to_zoned_datetime(jiff::tz::TimeZone::UTC).map(|z| z.timestamp());
    let run_at = at.map_or_else(|_| guard::meta::now_micros(), |t| t.as_microsecond());
    let key = format!("all:{tomorrow}");
    let mut tx = h.begin()?;
    tx.enqueue(&NewJob { queue: QUEUE, key: &key, payload: r#"{"all":true}"#, run_at })?;
    tx.commit()
}

/// Enqueue a run over every schedule now (at start; a run already waiting is enough).
pub fn enqueue_now(guard: &Guard) -> FhirResult<()> {
    let h = guard.system(ACTOR);
    let mut tx = h.begin()?;
    let key = format!("all:{}", Timestamp::now().strftime("%Y-%m-%d"));
    tx.enqueue(&NewJob { queue: QUEUE, key: &key, payload: r#"{"all":true}"#, run_at: guard::meta::now_micros() })?;
    tx.commit()
}

fn slot(schedule: &Value, id: &str, start: Timestamp, end: Timestamp, period: &crate::pattern::Period) -> Value {
    let mut tags = vec![json!({"system": BOOKING, "code": "generated"})];
    if period.online {
        tags.push(json!({"system": BOOKING, "code": "online"}));
    }
    let kind = period.slot_type.clone().unwrap_or_else(|| {
        json!({"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "ROUTINE", "display": "Routine appointment"})
    });
    let mut s = json!({
        "resourceType": "Slot", "id": id, "meta": {"tag": tags},
        "schedule": {"reference": format!("Schedule/{}", schedule["id"].as_str().unwrap_or(""))},
        "status": "free", "start": start.to_string(), "end": end.to_string(),
        "appointmentType": {"coding": [kind]},
    });
    for field in ["serviceCategory", "serviceType", "specialty"] {
        if schedule[field].is_array() {
            s[field] = schedule[field].clone();
        }
    }
    s
}

impl Generate {
    /// Plan one schedule's slots to the horizon (see the module docs).
    fn schedule(&self, h: &Handle, id: &str) -> FhirResult<()> {
        let Some(s) = h.read(rt("Schedule")?, id)? else { return Ok(()) };
        let Some(body) = s.body else { return Ok(()) };
        let schedule: Value = serde_json::from_slice(&body).unwrap_or_default();
        let pattern = match Pattern::of(&schedule) {
            Ok(Some(p)) if schedule["active"] != false => Some(p),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("Schedule/{id}: {e}");
                None
            }
        };
        let now = Timestamp::now();
        let planned = match &pattern {
            Some(p) => {
                let today = p.today();
                let last = today.checked_add(self.settings.horizon_days.days()).unwrap_or(today);
                p.plan(today, last).into_iter().filter(|s| s.start > now).collect()
            }
            None => Vec::new(),
        };
        let wanted: Vec<String> = planned.iter().map(|p| slot_id(id, p.start)).collect();
        // the generated free future slots the pattern no longer plans
        let q = parse_criteria(
            rt("Slot")?,
            &format!("schedule=Schedule/{id}&status=free&start=ge{now}&_tag={BOOKING}|generated"),
        )?;
        let stale: Vec<String> =
            h.search(&q, 100_000)?.resources.into_iter().map(|r| r.id).filter(|sid| !wanted.contains(sid)).collect();
        for chunk in stale.chunks(BATCH) {
            let mut tx = h.begin()?;
            tx.lock_key(&format!("generate:{id}"))?;
            for sid in chunk {
                let op = WriteOp::Delete { resource_type: rt("Slot")?, id: sid.clone(), if_match: None };
                // one booked meanwhile stays (its rule refuses the deletion)
                if let Err(e) = tx.apply(prepare(op)?)
                    && e.status != 409
                {
                    return Err(e);
                }
            }
            tx.commit()?;
        }
        let Some(pattern) = pattern else { return Ok(()) };
        for chunk in planned.chunks(BATCH) {
            let mut tx = h.begin()?;
            tx.lock_key(&format!("generate:{id}"))?;
            let mut wrote = false;
            for p in chunk {
                let sid = slot_id(id, p.start);
                if tx.read(rt("Slot")?, &sid)?.is_some() {
                    continue; // there already: booked or not, it stays as it is
                }
                let body = slot(&schedule, &sid, p.start, p.end, &pattern.periods[p.period]);
                let op = WriteOp::Update { resource_type: rt("Slot")?, id: sid, resource: body, if_match: None };
                tx.apply(prepare(op)?)?;
                wrote = true;
            }
            if wrote {
                tx.commit()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_ids_are_stable_and_short() {
        let t: Timestamp = "2026-12-07T05:00:00Z".parse().unwrap();
        assert_eq!(slot_id("sch-ivanov", t), "sch-ivanov-202612070500");
        let long = "x".repeat(64);
        assert_eq!(slot_id(&long, t), slot_id(&long, t));
        assert!(slot_id(&long, t).len() <= 64 && fhir_model::is_valid_id(&slot_id(&long, t)));
    }
}
