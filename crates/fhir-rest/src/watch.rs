//! Watching accesses as they happen (after each audited read or search of a user):
//!
//! - **a first access by an organisation**: the first time anyone of an organisation
//!   opens a patient's record, the patient gets a Communication saying who (remembered as
//!   a `org-access` record, so once per organisation and patient);
//! - **suspicious activity**, by configurable rules ([`Rules`]): one user opening more
//!   than `max_patients` patients' records within `window_secs` (a request about one
//!   patient opens their record: a read, a search in their record, `$everything`; a list
//!   of many patients does not count), or opening records in the night hours from an
//!   address not among those the user came from before (a user's first address is not
//!   "new"). Then the user's session is
//!   blocked (its requests refused at once, the session revoked so no token of it works
//!   again), the security officer alerted (a `security-alert` record and an audit entry,
//!   `medkarta audit alerts`), and every patient whose record that user opened in the
//!   window is told (a Communication).
//!
//! The counters live in memory (one process); what must outlast it — sessions, alerts,
//! addresses seen, organisations seen — is stored.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use audit::{Action, Event, Kind, Outcome};
use guard::{Expect, SystemActor};
use serde_json::json;

use crate::Engine;
use crate::meta::{instant, now_micros};

/// The suspicious-activity rules of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// More distinct patients than this by one user within `window_secs`: suspicious
    /// (0: the rule is off).
    pub max_patients: usize,
    pub window_secs: i64,
    /// Night hours `[from, to)`, local time of the server: a record opened then from an
    /// address not seen before for the user is suspicious (none: the rule is off).
    pub night: Option<(u8, u8)>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { max_patients: 50, window_secs: 600, night: Some((22, 6)) }
    }
}

#[derive(Default)]
struct State {
    /// Per user: the patients whose records they opened, with the last time.
    recent: HashMap<String, HashMap<String, i64>>,
    /// Sessions blocked.
    blocked: HashSet<String>,
    /// (user, address) and (patient, organisation) pairs known to be stored.
    addresses: HashSet<(String, String)>,
    organisations: HashSet<(String, String)>,
}

/// The watcher of one engine.
#[derive(Default)]
pub struct Watch {
    state: Mutex<State>,
}

const ADDRESSES: &str = "seen-address";
const ORGANISATIONS: &str = "org-access";

fn in_night(hour: u8, (from, to): (u8, u8)) -> bool {
    if from <= to { (from..to).contains(&hour) } else { hour >= from || hour < to }
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Is this session blocked?
    pub fn blocked(&self, session: &str) -> bool {
        self.lock().blocked.contains(session)
    }

    /// Look at an access that was answered (and recorded).
    pub fn observe(&self, engine: &Engine, e: &Event) {
        let (Some(user), Some(session)) = (&e.agent.user, &e.agent.session) else { return };
        if e.agent.role.as_deref() == Some("patient") || e.patients.is_empty() || e.outcome != Outcome::Success {
            return;
        }
        if !matches!(e.action, Action::Read | Action::Execute) {
            return;
        }
        if let Err(err) = self.first_access(engine, e) {
            tracing::error!("first-access notification: {err:?}");
        }
        let rules = &engine.config.watch;
        let mut why = None;
        {
            let mut s = self.lock();
            let recent = s.recent.entry(user.clone()).or_default();
            if let [p] = e.patients.as_slice() {
                recent.insert(p.clone(), e.at);
            }
            let since = e.at - rules.window_secs * 1_000_000;
            recent.retain(|_, at| *at >= since);
            if rules.max_patients > 0 && recent.len() > rules.max_patients {
                why = Some(format!(
                    "{user} opened the records of {} patients within {} minutes (the limit is {})",
                    recent.len(),
                    rules.window_secs / 60,
                    rules.max_patients
                ));
            }
        }
        if why.is_none()
            && let (Some(night), Some(address)) = (rules.night, &e.agent.address)
        {
            match self.night_from_new_address(engine, user, address, night, e.at) {
                Ok(Some(w)) => why = Some(w),
                Ok(None) => {}
                Err(err) => tracing::error!("address check: {err}"),
            }
        }
        // the first request to find it blocks the session and raises the alert, once
        if let Some(why) = why
            && self.lock().blocked.insert(session.clone())
        {
            let opened: Vec<String> =
                self.lock().recent.get(user).map(|r| r.keys().cloned().collect()).unwrap_or_default();
            if let Err(err) = self.raise(engine, e, session, &why, &opened) {
                tracing::error!("suspicious activity could not be handled: {err:?}");
            }
        }
    }

    /// In the night hours from an address the user has not come from before: why that is
    /// suspicious. A user's addresses are remembered (stored, the last 50).
    fn night_from_new_address(
        &self,
        engine: &Engine,
        user: &str,
        address: &str,
        night: (u8, u8),
        at: i64,
    ) -> crate::FhirResult<Option<String>> {
        let key = (user.to_string(), address.to_string());
        if self.lock().addresses.contains(&key) {
            return Ok(None);
        }
        let stored = engine.guard().record(ADDRESSES, user)?;
        let mut list: Vec<String> = stored
            .as_ref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.data).ok())
            .and_then(|v| serde_json::from_value(v["addresses"].clone()).ok())
            .unwrap_or_default();
        // the first address of a user is theirs, not a new one
        let known = list.is_empty() || list.iter().any(|a| a == address);
        if !list.iter().any(|a| a == address) {
            list.push(address.to_string());
            if list.len() > 50 {
                list.remove(0);
            }
            let expect = stored.map_or(Expect::Absent, |r| Expect::Version(r.version));
            let h = engine.guard().system(SystemActor::WATCH);
            let mut tx = h.begin()?;
            // lost to a concurrent request of the same user: it is remembered next time
            if tx.put_record(ADDRESSES, user, &json!({"addresses": list}).to_string(), expect)? {
                tx.commit()?;
            }
        }
        self.lock().addresses.insert(key);
        let local = jiff::Timestamp::from_microsecond(at)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_zoned_datetime(jiff::tz::TimeZone::system());
        let hour = u8::try_from(local.hour()).unwrap_or(0);
        Ok((!known && in_night(hour, night)).then(|| {
            format!(
                "{user} opened records at {:02}:{:02} (night hours) from an address not seen before: {address}",
                local.hour(),
                local.minute()
            )
        }))
    }

    /// Tell each patient the first time someone of an organisation opens their record.
    fn first_access(&self, engine: &Engine, e: &Event) -> crate::FhirResult<()> {
        let Some(org) = &e.agent.organization else { return Ok(()) };
        let fresh: Vec<&String> = {
            let s = self.lock();
            e.patients.iter().filter(|p| !s.organisations.contains(&((*p).clone(), org.clone()))).collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        let mut untold = Vec::new();
        for p in fresh {
            match engine.guard().record(ORGANISATIONS, &format!("{p}|{org}"))? {
                Some(_) => drop(self.lock().organisations.insert((p.clone(), org.clone()))),
                None => untold.push(p),
            }
        }
        let who = e.agent.user.clone().unwrap_or_default();
        let org_name = name_of(engine, org).unwrap_or_else(|| org.clone());
        let when = instant(e.at);
        let text = format!(
            "{org_name} opened your record for the first time ({who}, {when}). If you did not expect it, \
             flag the entry in your access log. {org_name} впервые открыл(а) вашу медкарту ({who}, {when}). \
             Если вы этого не ожидали, отметьте запись в журнале доступа."
        );
        let record = json!({"first": e.at, "by": who}).to_string();
        // all in one transaction (a list of patients is one access); one told meanwhile by
        // a concurrent request rolls it back, and then each is told on its own
        let tell = |patients: &[&String]| {
            let notes = patients.iter().map(|p| notice(p, &text, "routine")).collect::<crate::FhirResult<Vec<_>>>()?;
            let h = engine.guard().system(SystemActor::WATCH);
            let mut tx = h.begin()?;
            for n in notes {
                tx.apply(n)?;
            }
            for p in patients {
                let id = format!("{p}|{org}");
                if !tx.put_record(ORGANISATIONS, &id, &record, Expect::Absent)? {
                    return Err(crate::FhirError::conflict(format!("{id} told already")));
                }
            }
            tx.commit()
        };
        let done = match tell(&untold) {
            Err(err) if err.status == 409 && untold.len() > 1 => {
                untold.iter().map(|p| tell(&[p])).find_map(|r| r.err().filter(|e| e.status != 409)).map_or(Ok(()), Err)
            }
            Err(err) if err.status == 409 => Ok(()),
            other => other.map(|_| ()),
        };
        done?;
        let mut s = self.lock();
        for p in untold {
            s.organisations.insert((p.clone(), org.clone()));
        }
        Ok(())
    }

    /// A blocked session: revoke it, alert the security officer, tell the patients.
    fn raise(
        &self,
        engine: &Engine,
        e: &Event,
        session: &str,
        why: &str,
        patients: &[String],
    ) -> crate::FhirResult<()> {
        tracing::warn!(session, "suspicious activity: {why}; session blocked");
        if let Err(err) = engine.guard().revoke_session(session) {
            tracing::error!(session, "the blocked session could not be revoked in the store: {err}");
        }
        let alert = json!({"kind": "suspicious-activity", "at": e.at, "status": "open", "by": e.agent.user,
            "session": session, "address": e.agent.address, "reason": why, "patients": patients});
        let alert_id = uuid::Uuid::now_v7().to_string();
        let text = format!(
            "Unusual activity was detected on your record and stopped: {why}. The security officer is looking into it. \
             Необычная активность с вашей медкартой обнаружена и остановлена: {why}. Служба безопасности проверяет её."
        );
        let writes = patients.iter().map(|p| notice(p, &text, "urgent")).collect::<crate::FhirResult<Vec<_>>>()?;
        let mut alert_event =
            Event::new(Kind::Alert("suspicious activity".into()), Action::Execute, Outcome::Success, e.agent.clone());
        for p in patients {
            alert_event.patient(p);
        }
        alert_event.detail = Some(why.to_string());
        let h = engine.guard().system(SystemActor::WATCH);
        let mut tx = h.begin()?;
        for w in writes {
            tx.apply(w)?;
        }
        tx.put_record(crate::interaction::audit_events::ALERTS, &alert_id, &alert.to_string(), Expect::Absent)?;
        tx.record_event(&alert_event);
        tx.commit()
    }
}

/// The name of an Organization (or Practitioner), for a message.
fn name_of(engine: &Engine, reference: &str) -> Option<String> {
    let (rt, id) = reference.split_once('/')?;
    let body = engine.guard().system(SystemActor::WATCH).fetch(rt, id).ok()??.body?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    match &v["name"] {
        serde_json::Value::String(s) => Some(s.clone()),
        n => n[0]["text"].as_str().map(str::to_string).or_else(|| n[0]["family"].as_str().map(str::to_string)),
    }
}

/// A Communication to a patient (prepared for a write).
pub(crate) fn notice(patient: &str, text: &str, priority: &str) -> crate::FhirResult<crate::write::Prepared> {
    crate::write::prepare(crate::write::WriteOp::Create {
        resource: json!({
            "resourceType": "Communication",
            "status": "completed",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification"}]}],
            "priority": priority,
            "subject": {"reference": format!("Patient/{patient}")},
            "recipient": [{"reference": format!("Patient/{patient}")}],
            "sent": instant(now_micros()),
            "payload": [{"contentString": text}]
        }),
        if_none_exist: None,
        id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::in_night;

    #[test]
    fn night_hours_wrap_around_midnight() {
        assert!(in_night(23, (22, 6)) && in_night(2, (22, 6)) && !in_night(6, (22, 6)) && !in_night(12, (22, 6)));
        assert!(in_night(3, (1, 5)) && !in_night(5, (1, 5)));
        assert!(in_night(0, (0, 24)) && in_night(23, (0, 24)));
    }
}
