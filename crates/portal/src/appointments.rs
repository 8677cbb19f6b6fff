//! Appointments in the portal: a record's page lists its upcoming appointments (cancel,
//! move to another time) and finds free times — of a specialty, on a day — to book with one
//! button; patients see the slots open online, the registry all of them. The staff's day
//! list shows a doctor's (or the registry's organisation's) appointments of a day. Every
//! read and write is a FHIR request as the signed-in person (`Slot` search with its
//! schedules, `Appointment/$book`, a PATCH of the appointment), so the guard and the
//! booking rules decide, and times are shown in the place's time zone.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fhir_rest::Method;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use crate::pages::{Layout, message, render};
use crate::session::{Address, Ctx, DataError, posted, signed_in};
use crate::{Portal, found, language, safe_id, view};

const TIMEZONE: &str = "https://medkarta.org/fhir/StructureDefinition/schedule-timezone";
const ONLINE: &str = "https://medkarta.org/fhir/CodeSystem/booking|online";

/// One of the record's appointments.
pub(crate) struct Booked {
    pub id: String,
    pub when: String,
    pub with: String,
    pub status: &'static str,
    /// Still ahead and booked: may be cancelled or moved.
    pub open: bool,
    /// A time offered from the waiting list (held): confirm or decline.
    pub offer: bool,
}

/// A waiting-list entry of the record.
pub(crate) struct Waiting {
    pub id: String,
    pub what: String,
    pub until: String,
}

/// A free time to book.
pub(crate) struct Free {
    pub slot: String,
    pub time: String,
}

/// The free times of one schedule on the day.
pub(crate) struct Column {
    pub who: String,
    pub times: Vec<Free>,
}

#[derive(Template)]
#[template(path = "appointments.html")]
struct AppointmentsPage {
    l: Layout,
    pid: String,
    booked: Vec<Booked>,
    waiting: Vec<Waiting>,
    specialties: Vec<(String, String)>,
    specialty: String,
    day: String,
    columns: Vec<Column>,
    searched: bool,
    /// Moving this appointment (its id) to the time picked.
    moving: Option<String>,
    /// Just booked.
    done: bool,
    /// Just joined the waiting list.
    joined: bool,
}

fn zone_of(schedule: &Value) -> TimeZone {
    schedule["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == TIMEZONE)
        .and_then(|e| e["valueCode"].as_str())
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or_else(|| TimeZone::get("Europe/Moscow").unwrap_or(TimeZone::UTC))
}

fn local(v: &Value, tz: &TimeZone, format: &str) -> String {
    v.as_str()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(|t| t.to_zoned_datetime(tz.clone()).strftime(format).to_string())
        .unwrap_or_default()
}

/// Who and where: the names of a schedule's (or appointment's) actors other than patients.
fn actors(list: &Value, included: &HashMap<String, Value>) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|a| if a.get("actor").is_some() { &a["actor"] } else { a })
        .filter(|r| !r["reference"].as_str().unwrap_or("").starts_with("Patient/"))
        .map(|r| view::reference(r, included))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The catalogue's word for an appointment's status.
fn status_key(status: &str) -> &'static str {
    match status {
        "booked" => "appointments.status.booked",
        "pending" => "appointments.status.offer",
        "cancelled" => "appointments.status.cancelled",
        "fulfilled" | "arrived" | "checked-in" => "appointments.status.done",
        _ => "appointments.status.other",
    }
}

/// Resources included in a search's answer, by `Type/id`.
fn included(all: &[(String, Value)]) -> HashMap<String, Value> {
    all.iter()
        .filter(|(m, _)| m == "include")
        .map(|(_, r)| {
            (format!("{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or("")), r.clone())
        })
        .collect()
}

/// The time zone of an appointment's place: its first slot's schedule's (read once per
/// schedule; `included` holds the slots).
fn zone(ctx: &Ctx, a: &Value, included: &HashMap<String, Value>, zones: &mut HashMap<String, TimeZone>) -> TimeZone {
    let slot = a["slot"][0]["reference"].as_str().and_then(|r| included.get(r));
    let schedule = slot.and_then(|s| s["schedule"]["reference"].as_str()).unwrap_or("").to_string();
    zones
        .entry(schedule.clone())
        .or_insert_with(|| match schedule.strip_prefix("Schedule/").filter(|id| safe_id(id)) {
            Some(id) => ctx.read(&format!("Schedule/{id}")).map(|s| zone_of(&s)).unwrap_or(TimeZone::UTC),
            None => TimeZone::get("Europe/Moscow").unwrap_or(TimeZone::UTC),
        })
        .clone()
}

/// The specialties of the active schedules: (token, name).
fn specialties(ctx: &Ctx) -> Result<Vec<(String, String)>, DataError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for s in ctx.search("Schedule", "active=true&_elements=specialty", 1000)? {
        for c in s["specialty"].as_array().into_iter().flatten() {
            let Some(coding) = c["coding"].get(0) else { continue };
            let token =
                format!("{}|{}", coding["system"].as_str().unwrap_or(""), coding["code"].as_str().unwrap_or(""));
            if !out.iter().any(|(t, _)| *t == token) {
                out.push((token, view::concept(c, ctx.tr.lang)));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// The record's appointments from today on, soonest first.
fn booked(ctx: &Ctx, pid: &str) -> Result<Vec<Booked>, DataError> {
    let today = Timestamp::now().strftime("%Y-%m-%d").to_string();
    let query = format!("patient={pid}&date=ge{today}&_sort=date&_include=Appointment:actor&_include=Appointment:slot");
    let all = ctx.search_all("Appointment", &query, 200)?;
    let included = included(&all);
    let mut zones: HashMap<String, TimeZone> = HashMap::new();
    let now = Timestamp::now();
    let mut out = Vec::new();
    for (_, a) in all.iter().filter(|(m, _)| m != "include") {
        let tz = &zone(ctx, a, &included, &mut zones);
        let status = a["status"].as_str().unwrap_or("");
        let ahead = a["start"].as_str().and_then(|s| s.parse::<Timestamp>().ok()).is_some_and(|t| t > now);
        out.push(Booked {
            id: a["id"].as_str().unwrap_or("").to_string(),
            when: local(&a["start"], tz, "%d.%m.%Y %H:%M"),
            with: actors(&a["participant"], &included),
            status: status_key(status),
            open: status == "booked" && ahead,
            offer: status == "pending" && ahead,
        });
    }
    Ok(out)
}

/// The record's places in the waiting list.
fn waiting(ctx: &Ctx, pid: &str) -> Result<Vec<Waiting>, DataError> {
    let list = ctx.search("Appointment", &format!("patient={pid}&status=waitlist"), 50)?;
    Ok(list
        .iter()
        .map(|w| Waiting {
            id: w["id"].as_str().unwrap_or("").to_string(),
            what: w["specialty"].get(0).map(|c| view::concept(c, ctx.tr.lang)).unwrap_or_default(),
            until: view::date(&w["requestedPeriod"][0]["end"], ctx.tr.lang),
        })
        .collect())
}

/// The free times of a specialty on a day (local to each schedule), by schedule.
fn free(ctx: &Ctx, specialty: &str, day: jiff::civil::Date) -> Result<Vec<Column>, DataError> {
    // the day in the zones of the country: from its start in the east to its end in the west
    let from = day.at(0, 0, 0, 0).to_zoned_datetime(TimeZone::fixed(jiff::tz::offset(14))).map(|z| z.timestamp());
    let to = day
        .tomorrow()
        .map(|d| d.at(0, 0, 0, 0))
        .and_then(|d| d.to_zoned_datetime(TimeZone::fixed(jiff::tz::offset(-12))));
    let (Ok(from), Ok(to)) = (from, to.map(|z| z.timestamp())) else { return Ok(Vec::new()) };
    let from = from.max(Timestamp::now());
    let specialty: String = form_urlencoded::byte_serialize(specialty.as_bytes()).collect();
    let mut query = format!(
        "status=free&specialty={specialty}&start=ge{from}&start=lt{to}&_sort=start&_include=Slot:schedule&_include:iterate=Schedule:actor"
    );
    if ctx.own_patient().is_some() {
        query.push_str(&format!("&_tag={}", form_urlencoded::byte_serialize(ONLINE.as_bytes()).collect::<String>()));
    }
    let all = ctx.search_all("Slot", &query, 1000)?;
    let included = included(&all);
    let mut columns: Vec<(String, Column)> = Vec::new();
    for (_, s) in all.iter().filter(|(m, _)| m != "include") {
        let sref = s["schedule"]["reference"].as_str().unwrap_or("").to_string();
        let Some(schedule) = included.get(&sref) else { continue };
        let tz = zone_of(schedule);
        // this day where the schedule is
        let local_day = s["start"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.to_zoned_datetime(tz.clone()).date());
        if local_day != Some(day) {
            continue;
        }
        let time = Free { slot: s["id"].as_str().unwrap_or("").to_string(), time: local(&s["start"], &tz, "%H:%M") };
        match columns.iter_mut().find(|(r, _)| *r == sref) {
            Some((_, c)) => c.times.push(time),
            None => columns.push((sref, Column { who: actors(&schedule["actor"], &included), times: vec![time] })),
        }
    }
    Ok(columns.into_iter().map(|(_, c)| c).collect())
}

/// `GET /portal/r/{pid}/appointments[?specialty=&day=&move=]`.
pub(crate) async fn page(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !safe_id(&pid) {
        return crate::pages::not_found(headers).await;
    }
    signed_in(p, headers, address, move |ctx| {
        if let Err(r) = crate::pages::owner(&ctx, &pid) {
            return *r;
        }
        let t = ctx.tr;
        let tomorrow = Timestamp::now().to_zoned_datetime(TimeZone::UTC).date().tomorrow().ok();
        let day = q.get("day").and_then(|d| d.parse::<jiff::civil::Date>().ok()).or(tomorrow);
        let specialty = q.get("specialty").cloned().unwrap_or_default();
        let moving = q.get("move").filter(|m| safe_id(m)).cloned();
        let result = (|| -> Result<AppointmentsPage, DataError> {
            let booked = booked(&ctx, &pid)?;
            let waiting = waiting(&ctx, &pid)?;
            let specialties = specialties(&ctx)?;
            let searched = !specialty.is_empty();
            let columns = match (searched, day) {
                (true, Some(day)) => free(&ctx, &specialty, day)?,
                _ => Vec::new(),
            };
            let back = format!("/portal/r/{pid}/appointments");
            let l = Layout::signed_in(&ctx, t.s("appointments.title"), &back, Some((&pid, "appointments")));
            Ok(AppointmentsPage {
                l,
                pid: pid.clone(),
                booked,
                waiting,
                specialties,
                specialty: specialty.clone(),
                day: day.map(|d| d.to_string()).unwrap_or_default(),
                columns,
                searched,
                moving: moving.clone(),
                done: q.contains_key("done"),
                joined: q.contains_key("waiting"),
            })
        })();
        match result {
            Ok(page) => render(StatusCode::OK, &page),
            Err(e) => crate::pages::refused(&ctx, &e),
        }
    })
    .await
}

/// A form posted on a record's appointments page: the record's id checked, the session
/// and its CSRF token (see [`posted`]), the record's owner read as the caller (a record out
/// of reach shows nothing), then `f` with the form and the page to come back to.
async fn on_record(
    p: Portal,
    headers: HeaderMap,
    address: Option<String>,
    pid: String,
    body: axum::body::Bytes,
    f: impl FnOnce(Ctx, HashMap<String, String>, String) -> Response + Send + 'static,
) -> Response {
    if !safe_id(&pid) {
        return crate::pages::not_found(headers).await;
    }
    let back = format!("/portal/r/{pid}/appointments");
    posted(p, headers, address, body, back.clone(), move |ctx, form| {
        if let Err(r) = crate::pages::owner(&ctx, &pid) {
            return *r;
        }
        f(ctx, form, back)
    })
    .await
}

/// What a refused booking tells the person.
fn refusal(status: u16) -> &'static str {
    match status {
        409 => "appointments.taken",
        403 => "appointments.refused",
        _ => "appointments.failed",
    }
}

/// `POST /portal/r/{pid}/appointments`: book the slot picked (`slot`), or move an
/// appointment (`move`) to it — one PATCH, so the old time is freed as the new one is taken.
pub(crate) async fn book(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    on_record(p, headers, address, pid.clone(), body, move |ctx, form, back| {
        let Some(slot) = form.get("slot").filter(|s| safe_id(s)) else {
            return message(lang, StatusCode::BAD_REQUEST, "appointments.failed", Some(&back));
        };
        let r = match form.get("move").filter(|m| safe_id(m)) {
            Some(id) => {
                let s = ctx.read(&format!("Slot/{slot}"));
                let Ok(s) = s else { return message(lang, StatusCode::NOT_FOUND, "appointments.taken", Some(&back)) };
                let patch = json!([
                    {"op": "replace", "path": "/slot", "value": [{"reference": format!("Slot/{slot}")}]},
                    {"op": "replace", "path": "/start", "value": s["start"]},
                    {"op": "replace", "path": "/end", "value": s["end"]},
                ]);
                ctx.send(Method::Patch, &format!("Appointment/{id}"), patch, true)
            }
            None => {
                let params = json!({"resourceType": "Parameters", "parameter": [
                    {"name": "slot", "valueReference": {"reference": format!("Slot/{slot}")}},
                    {"name": "patient-reference", "valueReference": {"reference": format!("Patient/{pid}")}}]});
                ctx.send(Method::Post, "Appointment/$book", params, false)
            }
        };
        match r.status {
            200..=299 => found(&format!("{back}?done=1")),
            s => {
                tracing::info!(status = s, "a booking in the portal was refused");
                message(lang, StatusCode::from_u16(s).unwrap_or(StatusCode::CONFLICT), refusal(s), Some(&back))
            }
        }
    })
    .await
}

/// `POST /portal/r/{pid}/appointments/{id}/cancel`.
pub(crate) async fn cancel(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path((pid, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    if !safe_id(&id) {
        return crate::pages::not_found(headers).await;
    }
    on_record(p, headers, address, pid.clone(), body, move |ctx, _, back| {
        let mut patch = vec![json!({"op": "replace", "path": "/status", "value": "cancelled"})];
        if ctx.own_patient().is_none() {
            // staff say why (a late cancellation needs it)
            patch.push(json!({"op": "add", "path": "/cancelationReason", "value": {"text": ctx.tr.s("appointments.cancelled_by_registry")}}));
        }
        let r = ctx.send(Method::Patch, &format!("Appointment/{id}"), json!(patch), true);
        match r.status {
            200..=299 => found(&back),
            403 => message(lang, StatusCode::FORBIDDEN, "appointments.too_late", Some(&back)),
            s => message(lang, StatusCode::from_u16(s).unwrap_or(StatusCode::CONFLICT), "appointments.failed", Some(&back)),
        }
    })
    .await
}

/// A row of the day list.
pub(crate) struct DayRow {
    pub time: String,
    pub patient: String,
    pub pid: String,
    pub with: String,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "day.html")]
struct DayPage {
    l: Layout,
    day: String,
    rows: Vec<DayRow>,
}

/// `GET /portal/day[?day=]`: a doctor's appointments of a day (a registrar's: their
/// organisation's).
pub(crate) async fn day(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let lang = language(&headers);
    signed_in(p, headers, address, move |ctx| {
        let grant = ctx.caller.grant.clone();
        let whose = match (&grant, ctx.registrar()) {
            (Some(g), false) => g.practitioner.as_deref().map(|p| format!("actor={p}")),
            (Some(g), true) => g.organization.as_deref().map(|o| format!("actor:Location.organization={o}")),
            _ => None,
        };
        let Some(whose) = whose.filter(|_| ctx.own_patient().is_none()) else {
            return message(lang, StatusCode::FORBIDDEN, "day.staff_only", Some("/portal/"));
        };
        let today = Timestamp::now().to_zoned_datetime(TimeZone::UTC).date();
        let day = q.get("day").and_then(|d| d.parse::<jiff::civil::Date>().ok()).unwrap_or(today);
        let query = format!(
            "{whose}&date=ge{}&date=lt{}&_sort=date&_include=Appointment:actor&_include=Appointment:slot",
            day.yesterday().unwrap_or(day),
            day.tomorrow().and_then(|d| d.tomorrow()).unwrap_or(day)
        );
        let all = match ctx.search_all("Appointment", &query, 500) {
            Ok(a) => a,
            Err(e) => return crate::pages::refused(&ctx, &e),
        };
        let included = included(&all);
        let mut zones = HashMap::new();
        let mut rows = Vec::new();
        for (_, a) in all.iter().filter(|(m, _)| m != "include") {
            let tz = zone(&ctx, a, &included, &mut zones);
            let start = a["start"].as_str().and_then(|s| s.parse::<Timestamp>().ok());
            if start.map(|t| t.to_zoned_datetime(tz.clone()).date()) != Some(day) {
                continue;
            }
            let patient = a["participant"].as_array().into_iter().flatten().find_map(|p| {
                p["actor"]["reference"].as_str().filter(|r| r.starts_with("Patient/")).map(str::to_string)
            });
            rows.push(DayRow {
                time: local(&a["start"], &tz, "%H:%M"),
                pid: patient.as_deref().map(|p| p.trim_start_matches("Patient/").to_string()).unwrap_or_default(),
                patient: patient.as_ref().and_then(|p| included.get(p)).map(view::name).unwrap_or_default(),
                with: actors(&a["participant"], &included),
                status: status_key(a["status"].as_str().unwrap_or("")),
            });
        }
        let l = Layout::signed_in(&ctx, ctx.tr.s("day.title"), "/portal/day", None);
        render(StatusCode::OK, &DayPage { l, day: day.to_string(), rows })
    })
    .await
}

/// `POST /portal/r/{pid}/appointments/{id}/confirm`: take the time offered (a hold made
/// `booked`, which gives up the appointment it replaces).
pub(crate) async fn confirm(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path((pid, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    if !safe_id(&id) {
        return crate::pages::not_found(headers).await;
    }
    on_record(p, headers, address, pid.clone(), body, move |ctx, _, back| {
        let patch = json!([{"op": "test", "path": "/status", "value": "pending"},
                           {"op": "replace", "path": "/status", "value": "booked"}]);
        match ctx.send(Method::Patch, &format!("Appointment/{id}"), patch, true).status {
            200..=299 => found(&format!("{back}?done=1")),
            s => message(
                lang,
                StatusCode::from_u16(s).unwrap_or(StatusCode::CONFLICT),
                "appointments.offer_gone",
                Some(&back),
            ),
        }
    })
    .await
}

/// `POST /portal/r/{pid}/appointments/wait`: join the waiting list for a specialty (until
/// the day chosen; giving up the appointment being moved, if any).
pub(crate) async fn wait(
    State(p): State<Portal>,
    headers: HeaderMap,
    Address(address): Address,
    Path(pid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let lang = language(&headers);
    on_record(p, headers, address, pid.clone(), body, move |ctx, form, back| {
        let token = form.get("specialty").cloned().unwrap_or_default();
        let day = form.get("day").and_then(|d| d.parse::<jiff::civil::Date>().ok());
        let (Some((system, code)), Some(day)) = (token.split_once('|'), day) else {
            return message(lang, StatusCode::BAD_REQUEST, "appointments.failed", Some(&back));
        };
        let until = day.tomorrow().map(|d| format!("{d}T00:00:00Z")).unwrap_or_default();
        let mut entry = json!({
            "resourceType": "Appointment", "status": "waitlist",
            "created": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "specialty": [{"coding": [{"system": system, "code": code}]}],
            "requestedPeriod": [{"end": until}],
            "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "accepted"}]
        });
        if let Some(m) = form.get("move").filter(|m| safe_id(m)) {
            entry["extension"] = json!([{"url": "https://medkarta.org/fhir/StructureDefinition/waitlist-replaces",
                                         "valueReference": {"reference": format!("Appointment/{m}")}}]);
        }
        match ctx.send(Method::Post, "Appointment", entry, false).status {
            200..=299 => found(&format!("{back}?waiting=1")),
            s => message(
                lang,
                StatusCode::from_u16(s).unwrap_or(StatusCode::CONFLICT),
                "appointments.failed",
                Some(&back),
            ),
        }
    })
    .await
}
