//! The rules of booking, in the guard's write path (so they hold for `$book`, a plain
//! POST/PUT/PATCH of an Appointment or a Slot, a transaction entry alike):
//! - a slot is one appointment's: each slot of an appointment that holds it (pending,
//!   booked, arrived, checked-in, fulfilled) is a unique key, claimed in the database in
//!   the write's transaction — a second booking gets `409` naming the slot;
//! - booking takes the slots (`busy`) and cancelling frees them, in the same transaction;
//!   a booked slot is not freed or deleted by anything else;
//! - a new booking is of free, future slots whose times it carries; a patient books only
//!   slots open online, for themselves; no two of a patient's appointments overlap, and
//!   (a ministry's setting) a patient holds one future appointment per specialty — checked
//!   under a lock on the patient, so two bookings of one patient are taken one at a time;
//! - a patient cancels up to a deadline before the visit; staff later, with a reason;
//! - a Schedule's working pattern must make sense, and a change of it has its slots
//!   generated again (a job); schedules and slots are changed by the registry of their
//!   organisation (and administrators), not by clinicians or patients;
//! - the referral-only specialties (a ministry's setting) are booked with an active
//!   referral.

use auth::account::Role;
use fhir_model::{Issue, IssueType, ResourceType};
use guard::rules::{Change, UniqueKey, WriteRule, key_holder};
use guard::write::{WriteOp, parse_criteria, prepare};
use guard::{FhirError, FhirResult, NewJob, Principal, WriteTx};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::pattern::Pattern;
use crate::waitlist;
use crate::{BOOKING, QUEUE};

/// Deployment settings of booking (the README's settings table).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A patient holds at most one future appointment per specialty.
    pub one_per_specialty: bool,
    /// A patient cancels online up to this many hours before the visit.
    pub cancel_hours: i64,
    /// Slots are generated this many days ahead.
    pub horizon_days: i64,
    /// Reminders this many minutes before a visit.
    pub reminders: Vec<i64>,
    /// A held slot (`$hold`, an offer from the waiting list) is kept this long.
    pub hold_minutes: i64,
    /// Specialties (`system|code`) booked only with an active referral (a ServiceRequest
    /// whose `performerType` is the specialty).
    pub referral_only: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            one_per_specialty: true,
            cancel_hours: 2,
            horizon_days: 28,
            reminders: vec![24 * 60, 60],
            hold_minutes: 5,
            referral_only: Vec::new(),
        }
    }
}

/// Statuses in which an appointment holds its slots.
pub fn holds(a: &Value) -> bool {
    matches!(a["status"].as_str(), Some("pending" | "booked" | "arrived" | "checked-in" | "fulfilled"))
}

/// The ids of the slots an appointment names.
pub fn slots_of(a: &Value) -> Vec<String> {
    a["slot"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["reference"].as_str()?.strip_prefix("Slot/"))
        .map(str::to_string)
        .collect()
}

/// The patient an appointment is for (`Patient/x`).
pub fn patient_of(a: &Value) -> Option<String> {
    a["participant"].as_array()?.iter().find_map(|p| {
        let r = p["actor"]["reference"].as_str()?;
        r.starts_with("Patient/").then(|| r.to_string())
    })
}

/// The caller, when a patient (`Patient/x`).
pub(crate) fn patient_caller(principal: &Principal) -> Option<String> {
    let Principal::Token(c) = principal else { return None };
    let g = c.grant.as_ref().filter(|g| g.role == Role::Patient)?;
    g.patient.as_deref().map(|p| format!("Patient/{}", p.trim_start_matches("Patient/")))
}

pub(crate) fn rt(name: &str) -> FhirResult<ResourceType> {
    ResourceType::parse(name).ok_or_else(FhirError::internal)
}

pub(crate) fn refuse(status: u16, text: impl Into<String>) -> FhirError {
    let kind = match status {
        403 => IssueType::Forbidden,
        409 => IssueType::Conflict,
        _ => IssueType::Invalid,
    };
    FhirError::new(status, Issue::error(kind, text.into()))
}

/// Is a slot open for patients to book themselves?
pub fn online(slot: &Value) -> bool {
    slot["meta"]["tag"].as_array().into_iter().flatten().any(|t| t["system"] == BOOKING && t["code"] == "online")
}

pub(crate) fn time(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

pub(crate) fn read(tx: &mut WriteTx<'_>, kind: &str, id: &str) -> FhirResult<Option<Value>> {
    Ok(tx.read(rt(kind)?, id)?.and_then(|s| s.body).and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Set a slot's status (a derived write, at the version read).
fn set_status(tx: &mut WriteTx<'_>, id: &str, mut slot: Value, status: &str) -> FhirResult<()> {
    if slot["status"] == status {
        return Ok(());
    }
    slot["status"] = json!(status);
    let version = slot["meta"]["versionId"].as_str().map(|v| format!("W/\"{v}\""));
    let op = WriteOp::Update { resource_type: rt("Slot")?, id: id.to_string(), resource: slot, if_match: version };
    tx.apply(prepare(op)?)?;
    Ok(())
}

/// The codes of a CodeableConcept list (`system|code`).
pub(crate) fn codes(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .filter_map(|c| Some(format!("{}|{}", c["system"].as_str().unwrap_or(""), c["code"].as_str()?)))
        .collect()
}

/// The rule of Appointments (see the module docs).
pub struct AppointmentRule {
    pub settings: Settings,
}

impl AppointmentRule {
    /// The checks of slots newly taken by `after` (`kept`: those it held already).
    fn take(&self, tx: &mut WriteTx<'_>, id: &str, after: &Value, new: &[String], me: Option<&str>) -> FhirResult<()> {
        let patient = patient_of(after)
            .ok_or_else(|| refuse(422, "An appointment names its patient (participant.actor Patient/...)"))?;
        if me.is_some_and(|m| m != patient) {
            return Err(refuse(403, "A patient books appointments for themselves only"));
        }
        // a patient's bookings one at a time: the overlap and specialty checks see the others
        tx.lock_key(&format!("appointments-of:{patient}"))?;
        let now = Timestamp::now();
        let mut taken = Vec::new();
        for s in new {
            let slot = read(tx, "Slot", s)?.ok_or_else(|| refuse(422, format!("Slot/{s} does not exist")))?;
            if slot["status"] != "free" {
                return Err(refuse(409, format!("Slot/{s} is not free ({})", slot["status"].as_str().unwrap_or(""))));
            }
            if time(&slot["start"]).is_none_or(|t| t <= now) {
                return Err(refuse(422, format!("Slot/{s} is in the past")));
            }
            if me.is_some() && !online(&slot) {
                return Err(refuse(403, format!("Slot/{s} is booked through the registry, not online")));
            }
            taken.push((s.clone(), slot));
        }
        // the appointment's times are those of its slots
        let mut span: Option<(Timestamp, Timestamp)> = None;
        for s in slots_of(after) {
            let slot = match taken.iter().find(|(id, _)| *id == s) {
                Some((_, slot)) => slot.clone(),
                None => read(tx, "Slot", &s)?.unwrap_or_default(),
            };
            let (Some(a), Some(b)) = (time(&slot["start"]), time(&slot["end"])) else {
                return Err(refuse(422, format!("Slot/{s} has no start and end")));
            };
            span = Some(span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
        let Some((start, end)) = span else { return Ok(()) };
        if time(&after["start"]) != Some(start) || time(&after["end"]) != Some(end) {
            return Err(refuse(
                422,
                format!("The appointment's start and end are those of its slots: {start} to {end}"),
            ));
        }
        // the patient's other appointments: none overlaps; one future per specialty (an
        // offer from the waiting list may replace one of them)
        let replaced =
            match waitlist::extension_ref(after, waitlist::ENTRY).and_then(|r| r.strip_prefix("Appointment/")) {
                Some(entry) => read(tx, "Appointment", entry)?.and_then(|e| {
                    waitlist::extension_ref(&e, waitlist::REPLACES)
                        .map(|r| r.trim_start_matches("Appointment/").to_string())
                }),
                None => None,
            };
        let pid = patient.trim_start_matches("Patient/");
        for token in codes(&after["specialty"]).iter().filter(|t| self.settings.referral_only.contains(t)) {
            let q = parse_criteria(
                rt("ServiceRequest")?,
                &format!("patient={pid}&status=active&performer-type={}", token.replace('%', "%25")),
            )?;
            if tx.search_ids(&q, 1)?.is_empty() {
                return Err(refuse(
                    422,
                    format!("This specialty ({token}) is booked with a referral: the patient has no active one"),
                ));
            }
        }
        // by the patient alone (their appointments are few; status and date would make the
        // database start from rows that almost every appointment has)
        let q = parse_criteria(rt("Appointment")?, &format!("patient={pid}"))?;
        let specialties: Vec<String> = codes(&after["specialty"]);
        for other in tx.search_ids(&q, 1000)? {
            if other == id || replaced.as_deref() == Some(other.as_str()) {
                continue;
            }
            let Some(o) = read(tx, "Appointment", &other)? else { continue };
            if !matches!(o["status"].as_str(), Some("pending" | "booked" | "arrived" | "checked-in")) {
                continue;
            }
            let (Some(os), Some(oe)) = (time(&o["start"]), time(&o["end"])) else { continue };
            if oe <= now {
                continue;
            }
            if os < end && start < oe {
                return Err(refuse(409, format!("The patient has Appointment/{other} at that time ({os} to {oe})")));
            }
            if self.settings.one_per_specialty
                && oe > now
                && codes(&o["specialty"]).iter().any(|c| specialties.contains(c))
            {
                return Err(refuse(
                    409,
                    format!(
                        "The patient already has a future appointment of this specialty (Appointment/{other}): \
                         reschedule or cancel it instead"
                    ),
                ));
            }
        }
        let status = if after["status"] == "pending" { "busy-tentative" } else { "busy" };
        for (s, slot) in taken {
            set_status(tx, &s, slot, status)?;
        }
        Ok(())
    }

    /// A cancellation's deadline: patients cancel online up to `cancel_hours` before the
    /// visit; staff later, saying why.
    fn may_cancel(&self, before: &Value, after: Option<&Value>, me: Option<&str>) -> FhirResult<()> {
        let Some(start) = time(&before["start"]) else { return Ok(()) };
        let late = start.as_second() - Timestamp::now().as_second() < self.settings.cancel_hours * 3600;
        if !late {
            return Ok(());
        }
        if me.is_some() {
            return Err(refuse(
                403,
                format!(
                    "Less than {} hours before the visit an appointment is cancelled by the registry: call them",
                    self.settings.cancel_hours
                ),
            ));
        }
        let reason = after.map(|a| &a["cancelationReason"]).is_some_and(|r| r.is_object());
        if !reason {
            return Err(refuse(422, "A late cancellation says why (cancelationReason)"));
        }
        Ok(())
    }
}

impl WriteRule for AppointmentRule {
    fn types(&self) -> &[&'static str] {
        &["Appointment"]
    }

    fn opens_to_patients(&self) -> bool {
        true
    }

    fn unique_keys(&self, a: &Value) -> Vec<UniqueKey> {
        if !holds(a) {
            return Vec::new();
        }
        slots_of(a)
            .into_iter()
            .map(|s| UniqueKey {
                name: "slot",
                label: format!("Slot/{s}"),
                taken: Some(format!(
                    "Slot/{s} is already booked: choose another time (Appointment/$find lists free ones)"
                )),
                value: s,
            })
            .collect()
    }

    fn check(&self, tx: &mut WriteTx<'_>, change: &Change<'_>) -> FhirResult<()> {
        // a derived write (an offer from the waiting list) is the server's, not the caller's
        let me = if tx.derived() { None } else { patient_caller(tx.handle().principal()) };
        let before_slots = change.before.filter(|b| holds(b)).map(slots_of).unwrap_or_default();
        let Some(after) = change.after else {
            if me.is_some() {
                return Err(refuse(403, "A patient cancels an appointment (status cancelled) rather than deleting it"));
            }
            if let Some(b) = change.before.filter(|b| holds(b)) {
                self.may_cancel(b, None, None)?;
            }
            return free(tx, &before_slots, self.settings.hold_minutes);
        };
        if me.is_some() && !matches!(after["status"].as_str(), Some("booked" | "cancelled" | "pending" | "waitlist")) {
            return Err(refuse(
                403,
                "A patient holds (pending), books (booked), cancels (cancelled) an appointment, or waits for one (waitlist)",
            ));
        }
        if after["status"] == "waitlist" && !slots_of(after).is_empty() {
            return Err(refuse(422, "A waiting-list entry names no slot: a specialty and the times wanted"));
        }
        if let Some(r) = waitlist::extension_ref(after, waitlist::REPLACES) {
            let theirs = match r.strip_prefix("Appointment/") {
                Some(id) => read(tx, "Appointment", id)?.and_then(|a| patient_of(&a)),
                None => None,
            };
            if theirs.is_none() || theirs != patient_of(after) {
                return Err(refuse(422, format!("{r} is not an appointment of this patient to give up")));
            }
        }
        let after_slots = if holds(after) { slots_of(after) } else { Vec::new() };
        let new: Vec<String> = after_slots.iter().filter(|s| !before_slots.contains(s)).cloned().collect();
        let freed: Vec<String> = before_slots.iter().filter(|s| !after_slots.contains(s)).cloned().collect();
        if let Some(b) = change.before.filter(|b| holds(b) && !holds(after)) {
            self.may_cancel(b, Some(after), me.as_deref())?;
        }
        if !new.is_empty() {
            self.take(tx, change.id, after, &new, me.as_deref())?;
        } else if holds(after) && change.before.is_none() && after_slots.is_empty() && me.is_some() {
            return Err(refuse(422, "A patient books a time: name the slot (Appointment.slot)"));
        }
        let newly_booked = after["status"] == "booked"
            && change.before.is_none_or(|b| b["status"] != "booked" || b["start"] != after["start"]);
        if newly_booked {
            crate::remind::enqueue(tx, change.id, after, &self.settings.reminders)?;
        }
        if after["status"] == "pending" && !new.is_empty() {
            waitlist::expire_later(tx, change.id, self.settings.hold_minutes)?;
        }
        if change.before.is_some_and(|b| b["status"] == "pending") && after["status"] == "booked" {
            // a hold confirmed: its slots become busy, a waiting-list offer closes its entry
            for s in after_slots.iter().filter(|s| before_slots.contains(s)) {
                if let Some(slot) = read(tx, "Slot", s)? {
                    set_status(tx, s, slot, "busy")?;
                }
            }
            waitlist::confirmed(tx, after)?;
        }
        free(tx, &freed, self.settings.hold_minutes)
    }
}

/// Free the future ones of `slots` (the appointment gave them up; its keys are released),
/// and offer each to the waiting list.
fn free(tx: &mut WriteTx<'_>, slots: &[String], hold_minutes: i64) -> FhirResult<()> {
    let now = Timestamp::now();
    for s in slots {
        if let Some(slot) = read(tx, "Slot", s)?
            && time(&slot["start"]).is_some_and(|t| t > now)
        {
            set_status(tx, s, slot, "free")?;
            if let Some(freed) = read(tx, "Slot", s)? {
                waitlist::offer(tx, s, &freed, hold_minutes)?;
            }
        }
    }
    Ok(())
}

/// The organisation whose schedule this is: its Location's `managingOrganization`, or its
/// PractitionerRole's or HealthcareService's organisation.
fn organization_of(tx: &mut WriteTx<'_>, schedule: &Value) -> FhirResult<Option<String>> {
    for a in schedule["actor"].as_array().into_iter().flatten() {
        let Some((kind, id)) = a["reference"].as_str().and_then(|r| r.split_once('/')) else { continue };
        let field = match kind {
            "Location" => "managingOrganization",
            "PractitionerRole" => "organization",
            "HealthcareService" => "providedBy",
            _ => continue,
        };
        if let Some(r) = read(tx, kind, id)?
            && let Some(org) = r[field]["reference"].as_str()
        {
            return Ok(Some(org.to_string()));
        }
    }
    Ok(None)
}

/// Who may change a schedule and its slots (the server's own writes and derived ones
/// aside): the registry of the schedule's organisation, and administrators; not
/// clinicians or patients.
fn manages(tx: &mut WriteTx<'_>, schedule: &Value) -> FhirResult<()> {
    if tx.derived() {
        return Ok(());
    }
    let Principal::Token(c) = tx.handle().principal() else { return Ok(()) };
    let Some(g) = c.grant.clone() else { return Ok(()) };
    match g.role {
        Role::Administrator => Ok(()),
        Role::Registrar => {
            let theirs = organization_of(tx, schedule)?;
            let mine = g.organization.map(|o| format!("Organization/{}", o.trim_start_matches("Organization/")));
            if theirs.is_some() && theirs == mine {
                Ok(())
            } else {
                Err(refuse(403, "A registry manages the schedules of its own organisation"))
            }
        }
        _ => Err(refuse(403, "Schedules and their slots are managed by the registry")),
    }
}

/// The rule of Slots: they make sense, and a booked one stays busy until its appointment
/// gives it up.
pub struct SlotRule;

impl WriteRule for SlotRule {
    fn types(&self) -> &[&'static str] {
        &["Slot"]
    }

    fn check(&self, tx: &mut WriteTx<'_>, change: &Change<'_>) -> FhirResult<()> {
        if !tx.derived() {
            let slot = change.after.or(change.before).cloned().unwrap_or_default();
            let schedule = match slot["schedule"]["reference"].as_str().and_then(|r| r.strip_prefix("Schedule/")) {
                Some(id) => read(tx, "Schedule", id)?.unwrap_or_default(),
                None => Value::Null,
            };
            manages(tx, &schedule)?;
        }
        let holder = key_holder(tx, "slot", change.id)?;
        match (change.after, holder) {
            (None, Some(h)) => Err(refuse(409, format!("Slot/{} is booked ({h}): cancel that first", change.id))),
            (Some(s), Some(h)) if !matches!(s["status"].as_str(), Some("busy" | "busy-tentative")) => {
                Err(refuse(409, format!("Slot/{} is booked ({h}): cancel the appointment to free it", change.id)))
            }
            (Some(s), _) => match (time(&s["start"]), time(&s["end"])) {
                (Some(a), Some(b)) if a < b => Ok(()),
                _ => Err(refuse(422, "A slot ends after it starts")),
            },
            (None, None) => Ok(()),
        }
    }
}

/// The rule of Schedules: a working pattern that makes sense; when one is written, its
/// slots are generated (again) by a job.
pub struct ScheduleRule;

impl WriteRule for ScheduleRule {
    fn types(&self) -> &[&'static str] {
        &["Schedule"]
    }

    fn check(&self, tx: &mut WriteTx<'_>, change: &Change<'_>) -> FhirResult<()> {
        if let Some(before) = change.before {
            manages(tx, before)?;
        }
        let Some(after) = change.after else { return Ok(()) };
        manages(tx, after)?;
        let pattern = Pattern::of(after).map_err(|e| refuse(422, format!("The working pattern: {e}")))?;
        if pattern.is_some() || change.before.is_some_and(|b| Pattern::of(b).is_ok_and(|p| p.is_some())) {
            let version = after["meta"]["versionId"].as_str().unwrap_or("0");
            let key = format!("generate:{}:{version}", change.id);
            let payload = json!({"schedule": change.id}).to_string();
            tx.enqueue(&NewJob { queue: QUEUE, key: &key, payload: &payload, run_at: guard::meta::now_micros() })?;
        }
        Ok(())
    }
}
