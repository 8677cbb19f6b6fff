//! Booking over HTTP: schedules with working patterns whose slots the server generates
//! ahead (a job), `$find`, booking by `POST Appointment`, `$book` and transaction entries,
//! the rules (one appointment per slot, overlaps, one per specialty, online slots for
//! patients, a cancellation deadline), bad input that stores nothing, and 500 attempts at
//! one slot — by several paths, on both backends, and from two server processes on one
//! PostgreSQL — of which exactly one wins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, Server};
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};
use store_tests::PgDatabase;

const THERAPY: &str = "http://snomed.info/sct|419772000";
const CARDIOLOGY: &str = "http://snomed.info/sct|394579002";
const BOOKING: &str = "https://medkarta.org/fhir/CodeSystem/booking";

fn concept(token: &str) -> Value {
    let (system, code) = token.split_once('|').unwrap();
    json!([{"coding": [{"system": system, "code": code}]}])
}

fn period(start: &str, end: &str, minutes: u32, online: bool) -> Value {
    let mut ext: Vec<Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| json!({"url": "day", "valueCode": d}))
        .collect();
    ext.extend([
        json!({"url": "start", "valueTime": start}),
        json!({"url": "end", "valueTime": end}),
        json!({"url": "minutes", "valuePositiveInt": minutes}),
        json!({"url": "online", "valueBoolean": online}),
    ]);
    json!({"url": "https://medkarta.org/fhir/StructureDefinition/working-pattern", "extension": ext})
}

fn schedule(id: &str, practitioner: &str, specialty: &str, tz: &str, periods: Vec<Value>) -> Value {
    let mut ext =
        vec![json!({"url": "https://medkarta.org/fhir/StructureDefinition/schedule-timezone", "valueCode": tz})];
    ext.extend(periods);
    json!({"resourceType": "Schedule", "id": id, "active": true, "extension": ext,
           "specialty": concept(specialty),
           "actor": [{"reference": format!("Practitioner/{practitioner}")}, {"reference": "Location/loc-a"}]})
}

fn put(s: &Server, r: &Value) {
    let path = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
    let resp = s.put(&path, r);
    assert!(resp.status < 300, "{path}: {} {}", resp.status, resp.text);
}

fn seed(s: &Server) {
    put(s, &json!({"resourceType": "Organization", "id": "org-a", "name": "Поликлиника №1"}));
    put(
        s,
        &json!({"resourceType": "Location", "id": "loc-a", "name": "Корпус 1", "managingOrganization": {"reference": "Organization/org-a"}}),
    );
    for p in ["pr-1", "pr-2", "pr-3"] {
        put(s, &json!({"resourceType": "Practitioner", "id": p}));
    }
    for p in ["p-1", "p-2", "p-3"] {
        put(
            s,
            &json!({"resourceType": "Patient", "id": p, "managingOrganization": {"reference": "Organization/org-a"}}),
        );
    }
    put(
        s,
        &schedule(
            "sch-1",
            "pr-1",
            THERAPY,
            "Europe/Minsk",
            vec![period("08:00:00", "12:00:00", 15, true), period("12:00:00", "13:00:00", 30, false)],
        ),
    );
    put(s, &schedule("sch-2", "pr-2", CARDIOLOGY, "Europe/Minsk", vec![period("08:00:00", "12:00:00", 15, true)]));
    put(s, &schedule("sch-3", "pr-3", CARDIOLOGY, "Asia/Vladivostok", vec![period("08:00:00", "09:00:00", 30, true)]));
}

fn total(s: &Server, query: &str) -> u64 {
    s.get(&format!("{query}&_summary=count")).json()["total"].as_u64().unwrap()
}

/// Wait for the slot generation job to reach the horizon.
fn wait_for_slots(s: &Server, schedule: &str, at_least: u64) {
    for _ in 0..300 {
        if total(s, &format!("Slot?schedule=Schedule/{schedule}")) >= at_least {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the slots of {schedule} were not generated");
}

/// Tomorrow's date in UTC (every schedule here has slots every day).
fn tomorrow() -> jiff::civil::Date {
    Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date().tomorrow().unwrap()
}

fn find(s: &Server, token: &str, query: &str) -> Vec<Value> {
    let day = tomorrow();
    let r = s.req_as(
        Some(token),
        "GET",
        &format!("Appointment/$find?start={day}&end={}&{query}", day.tomorrow().unwrap()),
        &[],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"].as_array().unwrap().iter().map(|e| e["resource"].clone()).collect()
}

fn send(s: &Server, token: &str, method: &str, path: &str, body: &Value) -> common::Resp {
    s.req_as(Some(token), method, path, &[("Content-Type", "application/fhir+json")], Some(&body.to_string()))
}

/// A booking of a proposal `$find` returned, for `patient`.
fn booking(proposal: &Value, patient: &str) -> Value {
    let mut a = proposal.clone();
    a["status"] = json!("booked");
    let mut parts: Vec<Value> = a["participant"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["actor"]["reference"].as_str().unwrap().starts_with("Patient/"))
        .cloned()
        .collect();
    parts.push(json!({"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}));
    for p in &mut parts {
        p["status"] = json!("accepted");
    }
    a["participant"] = json!(parts);
    a
}

fn book_params(slot: &str, patient: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "slot", "valueReference": {"reference": slot}},
        {"name": "patient-reference", "valueReference": {"reference": format!("Patient/{patient}")}}]})
}

fn diagnostics(r: &common::Resp) -> String {
    r.json()["issue"][0]["diagnostics"].as_str().unwrap_or("").to_string()
}

fn scenario(s: &Server) {
    seed(s);
    // sch-1: 16 online and 2 registry slots a day, four weeks ahead
    wait_for_slots(s, "sch-1", 27 * 18);
    wait_for_slots(s, "sch-2", 27 * 16);
    wait_for_slots(s, "sch-3", 27 * 2);
    let p1 = s.user_token("pat-1", "patient", &["--patient", "Patient/p-1"]);
    let p2 = s.user_token("pat-2", "patient", &["--patient", "Patient/p-2"]);
    let p3 = s.user_token("pat-3", "patient", &["--patient", "Patient/p-3"]);
    let registrar = s.user_token("reg-1", "registrar", &["--organization", "Organization/org-a"]);

    // $find: tomorrow's free therapy slots, soonest first, online ones for a patient
    let found = find(s, &p1, &format!("specialty={THERAPY}"));
    assert_eq!(found.len(), 16, "online slots only");
    let day = tomorrow();
    assert_eq!(found[0]["start"], format!("{day}T05:00:00Z"), "08:00 in Minsk");
    assert!(found.windows(2).all(|w| w[0]["start"].as_str() < w[1]["start"].as_str()));
    assert_eq!(found[0]["status"], "proposed");
    assert_eq!(find(s, &registrar, &format!("specialty={THERAPY}")).len(), 18, "the registry sees all");
    let vl = find(s, &p1, "practitioner=Practitioner/pr-3");
    assert_eq!(vl[0]["start"], format!("{day}T22:00:00Z"), "08:00 in Vladivostok (UTC+10), its next day");
    assert_eq!(find(s, &p1, "organization=Organization/org-a&_count=500").len(), 16 + 16 + 2);

    // book: POST Appointment the GP Connect way; the slot is taken
    let first = booking(&found[0], "p-1");
    let slot = first["slot"][0]["reference"].as_str().unwrap().to_string();
    let r = send(s, &p1, "POST", "Appointment", &first);
    assert_eq!(r.status, 201, "{}", r.text);
    let appointment = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(s.get(&slot).json()["status"], "busy");
    assert_eq!(find(s, &p2, &format!("specialty={THERAPY}")).len(), 15);
    // the same slot again, by $book: 409 naming it, nothing stored
    let r = send(s, &p2, "POST", "Appointment/$book", &book_params(&slot, "p-2"));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(diagnostics(&r).contains(&slot), "{}", r.text);
    assert_eq!(total(s, &format!("Appointment?slot={slot}")), 1);

    // another patient learns nothing of it: not by id, not by the slot, not by a count
    assert_eq!(s.req_as(Some(&p2), "GET", &format!("Appointment/{appointment}"), &[], None).status, 404);
    let by_slot = s.req_as(Some(&p2), "GET", &format!("Appointment?slot={slot}&_summary=count"), &[], None);
    assert_eq!(by_slot.json()["total"], 0, "{}", by_slot.text);
    let r = s.req_as(Some(&p2), "GET", &format!("Slot?_id={}&_revinclude=Appointment:slot", &slot[5..]), &[], None);
    assert!(!r.text.contains(&appointment), "{}", r.text);
    // what $find and $book do not understand is a 400 that says so
    for (query, says) in [
        ("", "start and end"),
        ("start=2026-12-10&end=2026-12-09", "after start"),
        ("start=tomorrow&end=2026-12-09", "date"),
        ("start=2026-12-10&end=2026-12-11&specialty=a,b", "code"),
    ] {
        let r = s.req_as(Some(&p1), "GET", &format!("Appointment/$find?{query}"), &[], None);
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert!(diagnostics(&r).contains(says), "{query}: {}", r.text);
    }
    for body in [
        json!({"resourceType": "Patient"}),
        json!({"resourceType": "Parameters", "parameter": [
        {"name": "slot", "valueReference": {"reference": &slot}}]}),
    ] {
        let r = send(s, &p2, "POST", "Appointment/$book", &body);
        assert_eq!(r.status, 400, "{}", r.text);
    }

    // the patient's own rules: one future therapy appointment; no overlap
    let r = send(s, &p1, "POST", "Appointment", &booking(&found[3], "p-1"));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(diagnostics(&r).contains("already has a future appointment"), "{}", r.text);
    let cardio = find(s, &p1, &format!("specialty={CARDIOLOGY}&practitioner=Practitioner/pr-2"));
    let r = send(s, &p1, "POST", "Appointment", &booking(&cardio[0], "p-1"));
    assert_eq!(r.status, 409, "same time as the therapist: {}", r.text);
    assert!(diagnostics(&r).contains(&format!("Appointment/{appointment}")), "{}", r.text);
    let r = send(
        s,
        &p1,
        "POST",
        "Appointment/$book",
        &book_params(cardio[2]["slot"][0]["reference"].as_str().unwrap(), "p-1"),
    );
    assert_eq!(r.status, 201, "another time, another specialty: {}", r.text);

    // refused, and nothing stored
    let before = total(s, "Appointment?_lastUpdated=gt2000-01-01");
    let r = send(s, &p2, "POST", "Appointment", &booking(&found[5], "p-3"));
    assert_eq!(r.status, 403, "for another patient: {}", r.text);
    let registry_only = find(s, &registrar, &format!("specialty={THERAPY}")).into_iter().last().unwrap();
    let r = send(s, &p2, "POST", "Appointment", &booking(&registry_only, "p-2"));
    assert_eq!(r.status, 403, "a registry slot: {}", r.text);
    let mut wrong_time = booking(&found[5], "p-2");
    wrong_time["end"] = json!(format!("{day}T09:00:00Z"));
    let r = send(s, &p2, "POST", "Appointment", &wrong_time);
    assert_eq!(r.status, 422, "{}", r.text);
    let r = send(s, &p2, "POST", "Appointment/$book", &book_params("Slot/nothing-here", "p-2"));
    assert_eq!(r.status, 422, "{}", r.text);
    let yesterday = day.yesterday().unwrap().yesterday().unwrap();
    put(
        s,
        &json!({"resourceType": "Slot", "id": "past", "schedule": {"reference": "Schedule/sch-1"}, "status": "free",
                   "meta": {"tag": [{"system": BOOKING, "code": "online"}]},
                   "start": format!("{yesterday}T05:00:00Z"), "end": format!("{yesterday}T05:15:00Z")}),
    );
    let r = send(s, &p2, "POST", "Appointment/$book", &book_params("Slot/past", "p-2"));
    assert_eq!(r.status, 422, "a slot in the past: {}", r.text);
    assert!(diagnostics(&r).contains("in the past"));
    let r = s.put(
        "Slot/backwards",
        &json!({"resourceType": "Slot", "id": "backwards", "schedule": {"reference": "Schedule/sch-1"},
        "status": "free", "start": format!("{day}T05:15:00Z"), "end": format!("{day}T05:00:00Z")}),
    );
    assert_eq!(r.status, 422, "an end before its start: {}", r.text);
    let mut bad = schedule("sch-bad", "pr-1", THERAPY, "Mars/Olympus", vec![]);
    bad["extension"][0]["valueCode"] = json!("Mars/Olympus");
    assert_eq!(s.put("Schedule/sch-bad", &bad).status, 422);
    assert_eq!(total(s, "Appointment?_lastUpdated=gt2000-01-01"), before);
    // a booked slot is not freed or deleted behind its appointment's back
    let mut freed = s.get(&slot).json();
    freed["status"] = json!("free");
    assert_eq!(s.put(&slot, &freed).status, 409);
    assert_eq!(s.delete(&slot).status, 409);
    // the registry books its own slots for a patient
    let r = send(s, &registrar, "POST", "Appointment", &booking(&registry_only, "p-3"));
    assert_eq!(r.status, 201, "{}", r.text);

    // cancelling frees the slot for the next patient
    let cancel = json!([{"op": "replace", "path": "/status", "value": "cancelled"}]).to_string();
    let r = s.req_as(
        Some(&p1),
        "PATCH",
        &format!("Appointment/{appointment}"),
        &[("Content-Type", "application/json-patch+json")],
        Some(&cancel),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.get(&slot).json()["status"], "free");
    let r = send(s, &p2, "POST", "Appointment/$book", &book_params(&slot, "p-2"));
    assert_eq!(r.status, 201, "{}", r.text);

    // too late to cancel online: the registry cancels, saying why
    let soon = Timestamp::now().checked_add(1.hour()).unwrap().round(jiff::Unit::Minute).unwrap();
    put(
        s,
        &json!({"resourceType": "Slot", "id": "soon", "schedule": {"reference": "Schedule/sch-2"}, "status": "free",
                   "meta": {"tag": [{"system": BOOKING, "code": "online"}]},
                   "start": soon.to_string(), "end": soon.checked_add(15.minutes()).unwrap().to_string()}),
    );
    let r = send(s, &p3, "POST", "Appointment/$book", &book_params("Slot/soon", "p-3"));
    assert_eq!(r.status, 201, "{}", r.text);
    let late = format!("Appointment/{}", r.json()["id"].as_str().unwrap());
    let patch = |t: &str, ops: Value| {
        s.req_as(Some(t), "PATCH", &late, &[("Content-Type", "application/json-patch+json")], Some(&ops.to_string()))
            .status
    };
    assert_eq!(patch(&p3, json!([{"op": "replace", "path": "/status", "value": "cancelled"}])), 403);
    assert_eq!(patch(&registrar, json!([{"op": "replace", "path": "/status", "value": "cancelled"}])), 422);
    let with_reason = json!([{"op": "replace", "path": "/status", "value": "cancelled"},
                             {"op": "add", "path": "/cancelationReason", "value": {"text": "Врач заболел"}}]);
    assert_eq!(patch(&registrar, with_reason), 200);
    assert_eq!(s.get("Slot/soon").json()["status"], "free");
}

#[test]
fn booking_on_sqlite() {
    scenario(&Server::start(Backend::Sqlite(tempfile::tempdir().unwrap()), &[]));
}

#[test]
fn booking_on_postgres() {
    scenario(&Server::start(Backend::Postgres(PgDatabase::create()), &[]));
}

/// 500 attempts at one slot, by 500 patients at once, by three paths (POST, `$book`, a
/// transaction entry), spread over `bases` (server processes): exactly one wins, the rest
/// get 409, one Appointment is stored and the slot is busy.
fn contended(s: &Server, bases: &[String]) {
    seed(s);
    let n = 500;
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            json!({"resource": {"resourceType": "Patient", "id": format!("c-{i}")},
                         "request": {"method": "PUT", "url": format!("Patient/c-{i}")}})
        })
        .collect();
    let r = s.post("", &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}));
    assert_eq!(r.status, 200, "{}", r.text);
    let day = tomorrow();
    put(
        s,
        &json!({"resourceType": "Slot", "id": "contended", "schedule": {"reference": "Schedule/sch-1"}, "status": "free",
                   "specialty": concept(THERAPY), "start": format!("{day}T13:00:00Z"), "end": format!("{day}T13:15:00Z")}),
    );
    let appointment = |i: usize| {
        json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": "Slot/contended"}],
               "start": format!("{day}T13:00:00Z"), "end": format!("{day}T13:15:00Z"),
               "participant": [{"actor": {"reference": format!("Patient/c-{i}")}, "status": "accepted"}]})
    };
    let barrier = std::sync::Barrier::new(50);
    let outcomes: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..50)
            .map(|w| {
                let (barrier, token, base) = (&barrier, s.token.clone(), bases[w % bases.len()].clone());
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                    barrier.wait();
                    (0..n / 50)
                        .map(|k| {
                            let i = w * (n / 50) + k;
                            let (path, body) = match i % 3 {
                                0 => ("Appointment".to_string(), appointment(i)),
                                1 => ("Appointment/$book".to_string(), book_params("Slot/contended", &format!("c-{i}"))),
                                _ => (
                                    String::new(),
                                    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                                        {"resource": appointment(i), "request": {"method": "POST", "url": "Appointment"}}]}),
                                ),
                            };
                            let r = agent
                                .post(&format!("{base}/{path}"))
                                .header("Authorization", &format!("Bearer {token}"))
                                .header("Content-Type", "application/fhir+json")
                                .send(body.to_string())
                                .unwrap();
                            r.status().as_u16()
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let won = outcomes.iter().filter(|s| matches!(s, 200 | 201)).count();
    let lost = outcomes.iter().filter(|s| **s == 409).count();
    assert_eq!((won, lost), (1, n - 1), "{outcomes:?}");
    assert_eq!(total(s, "Appointment?slot=Slot/contended"), 1);
    assert_eq!(s.get("Slot/contended").json()["status"], "busy");
}

#[test]
fn one_slot_500_bookings_on_sqlite() {
    let s = Server::start(Backend::Sqlite(tempfile::tempdir().unwrap()), &[]);
    contended(&s, std::slice::from_ref(&s.base));
}

#[test]
fn one_slot_500_bookings_on_postgres_from_two_processes() {
    let s = Server::start(Backend::Postgres(PgDatabase::create()), &[]);
    let other = s.another_process();
    contended(&s, &[s.base.clone(), other.base.clone()]);
}

/// A reminder before the visit: a Communication in the patient's inbox, written once even
/// though the server is killed right after the booking (the job runs when it is back);
/// none for an appointment cancelled before its time.
#[test]
fn reminders_once_across_a_restart() {
    let mut s = Server::start(Backend::Sqlite(tempfile::tempdir().unwrap()), &["--booking-reminders", "10"]);
    seed(&s);
    let slot = |id: &str, seconds: i64| {
        let start = Timestamp::now().checked_add(seconds.seconds()).unwrap().round(jiff::Unit::Second).unwrap();
        put(
            &s,
            &json!({"resourceType": "Slot", "id": id, "schedule": {"reference": "Schedule/sch-1"}, "status": "free",
                        "start": start.to_string(), "end": start.checked_add(15.minutes()).unwrap().to_string()}),
        );
    };
    // due two seconds from now (ten minutes before the visit)
    slot("r-1", 602);
    slot("r-2", 603);
    let r = send(&s, &s.token, "POST", "Appointment/$book", &book_params("Slot/r-1", "p-1"));
    assert_eq!(r.status, 201, "{}", r.text);
    let r = send(&s, &s.token, "POST", "Appointment/$book", &book_params("Slot/r-2", "p-2"));
    assert_eq!(r.status, 201, "{}", r.text);
    let cancelled = r.json()["id"].as_str().unwrap().to_string();
    let cancel = json!([{"op": "replace", "path": "/status", "value": "cancelled"},
                        {"op": "add", "path": "/cancelationReason", "value": {"text": "Пациент позвонил"}}])
    .to_string();
    let r = s.req(
        "PATCH",
        &format!("Appointment/{cancelled}"),
        &[("Content-Type", "application/json-patch+json")],
        Some(&cancel),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    s.crash_and_restart();
    let reminders = |p: &str| total(&s, &format!("Communication?category=reminder&recipient=Patient/{p}"));
    for _ in 0..200 {
        if reminders("p-1") > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(reminders("p-1"), 1, "one reminder");
    assert_eq!(reminders("p-2"), 0, "not for a cancelled appointment");
    let note = s.get("Communication?category=reminder&recipient=Patient/p-1").json();
    let text = note["entry"][0]["resource"]["payload"][0]["contentString"].as_str().unwrap().to_string();
    assert!(text.starts_with("Напоминание: приём ") && text.contains("Корпус 1"), "{text}");
}

/// `$hold` keeps a slot for a patient (busy-tentative; others get 409) until they confirm;
/// the waiting list: a freed slot is offered, in the cancelling transaction, to the first in
/// line it suits (a hold and a message); confirming closes the entry and gives up the later
/// appointment it replaces; a slot outside an entry's window is not offered to it; an offer
/// not confirmed expires and the slot is free again.
#[test]
fn holds_and_the_waiting_list() {
    let s = Server::start(Backend::Sqlite(tempfile::tempdir().unwrap()), &["--booking-hold-minutes", "1"]);
    seed(&s);
    wait_for_slots(&s, "sch-1", 27 * 18);
    let p1 = s.user_token("pat-1", "patient", &["--patient", "Patient/p-1"]);
    let p2 = s.user_token("pat-2", "patient", &["--patient", "Patient/p-2"]);
    let p3 = s.user_token("pat-3", "patient", &["--patient", "Patient/p-3"]);
    let found = find(&s, &p1, &format!("specialty={THERAPY}"));
    let slot = |i: usize| found[i]["slot"][0]["reference"].as_str().unwrap().to_string();
    let status = |path: &str| s.get(path).json()["status"].as_str().unwrap().to_string();
    let patch = |t: &str, path: &str, ops: Value| {
        s.req_as(Some(t), "PATCH", path, &[("Content-Type", "application/json-patch+json")], Some(&ops.to_string()))
    };
    let to = |value: &str| json!([{"op": "replace", "path": "/status", "value": value}]);

    // a hold, then its confirmation
    let r = send(&s, &p3, "POST", "Appointment/$hold", &book_params(&slot(1), "p-3"));
    assert_eq!(r.status, 201, "{}", r.text);
    let held = format!("Appointment/{}", r.json()["id"].as_str().unwrap());
    assert_eq!(r.json()["status"], "pending");
    assert_eq!(status(&slot(1)), "busy-tentative");
    assert_eq!(send(&s, &p2, "POST", "Appointment/$book", &book_params(&slot(1), "p-2")).status, 409);
    assert_eq!(patch(&p3, &held, to("booked")).status, 200);
    assert_eq!(status(&slot(1)), "busy");

    // p-1 has the first time; p-2 a later one and waits for an earlier; p-3 waits too,
    // for something before their own
    assert_eq!(send(&s, &p1, "POST", "Appointment", &booking(&found[0], "p-1")).status, 201);
    let r = send(&s, &p2, "POST", "Appointment", &booking(&found[10], "p-2"));
    assert_eq!(r.status, 201, "{}", r.text);
    let later = format!("Appointment/{}", r.json()["id"].as_str().unwrap());
    let entry = |patient: &str, created: &str, until: &Value, replaces: &str| {
        json!({"resourceType": "Appointment", "status": "waitlist", "created": created,
               "specialty": concept(THERAPY), "requestedPeriod": [{"end": until}],
               "extension": [{"url": "https://medkarta.org/fhir/StructureDefinition/waitlist-replaces",
                              "valueReference": {"reference": replaces}}],
               "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}]})
    };
    // an entry giving up someone else's appointment is refused
    let r = send(&s, &p2, "POST", "Appointment", &entry("p-2", "2026-01-01T09:00:00Z", &found[10]["start"], &held));
    assert_eq!(r.status, 422, "{}", r.text);
    let r = send(&s, &p2, "POST", "Appointment", &entry("p-2", "2026-01-01T10:00:00Z", &found[10]["start"], &later));
    assert_eq!(r.status, 201, "{}", r.text);
    let line_2 = format!("Appointment/{}", r.json()["id"].as_str().unwrap());
    let r = send(&s, &p3, "POST", "Appointment", &entry("p-3", "2026-01-01T11:00:00Z", &found[1]["start"], &held));
    assert_eq!(r.status, 201, "{}", r.text);

    // p-1 cancels: the time is offered to p-2, first in line, in the same transaction
    let first = s.get("Appointment?patient=p-1&status=booked").json()["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(patch(&p1, &format!("Appointment/{first}"), to("cancelled")).status, 200);
    assert_eq!(status(&slot(0)), "busy-tentative");
    let offers = s.get("Appointment?patient=p-2&status=pending").json();
    assert_eq!(offers["total"], 1, "{offers}");
    let offer = format!("Appointment/{}", offers["entry"][0]["resource"]["id"].as_str().unwrap());
    let told = s.get("Communication?recipient=Patient/p-2").json().to_string();
    assert!(told.contains("Освободилось время"), "{told}");
    assert_eq!(send(&s, &p1, "POST", "Appointment/$book", &book_params(&slot(0), "p-1")).status, 409, "held");
    // p-2 confirms: the entry leaves the line, the later appointment is given up; its time
    // is after p-3's window, so it is not offered to them
    assert_eq!(patch(&p2, &offer, to("booked")).status, 200);
    assert_eq!(status(&slot(0)), "busy");
    assert_eq!(status(&line_2), "cancelled");
    assert_eq!(status(&later), "cancelled");
    assert_eq!(status(&slot(10)), "free");
    assert_eq!(s.get("Appointment?patient=p-3&status=pending").json()["total"], 0);

    // p-2 cancels the early time: offered to p-3 (within their window); not confirmed, the
    // hold expires and the time is free again
    assert_eq!(patch(&p2, &offer, to("cancelled")).status, 200);
    assert_eq!(status(&slot(0)), "busy-tentative");
    assert_eq!(s.get("Appointment?patient=p-3&status=pending").json()["total"], 1);
    for _ in 0..100 {
        if status(&slot(0)) == "free" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_eq!(status(&slot(0)), "free");
    assert_eq!(s.get("Appointment?patient=p-3&status=pending").json()["total"], 0);
}

/// A referral-only specialty is booked with an active referral; schedules and their slots
/// are changed by the registry of their organisation (and the server), not by another
/// organisation's registry, clinicians or patients.
#[test]
fn referrals_and_who_manages_schedules() {
    let s = Server::start(Backend::Sqlite(tempfile::tempdir().unwrap()), &["--booking-referral-only", CARDIOLOGY]);
    seed(&s);
    put(&s, &json!({"resourceType": "Organization", "id": "org-z", "name": "Другая поликлиника"}));
    wait_for_slots(&s, "sch-2", 27 * 16);
    let p1 = s.user_token("pat-1", "patient", &["--patient", "Patient/p-1"]);
    let cardio = find(&s, &p1, &format!("specialty={CARDIOLOGY}&practitioner=Practitioner/pr-2"));
    let r = send(&s, &p1, "POST", "Appointment", &booking(&cardio[0], "p-1"));
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(diagnostics(&r).contains("referral"), "{}", r.text);
    put(
        &s,
        &json!({"resourceType": "ServiceRequest", "id": "ref-1", "status": "active", "intent": "order",
                    "subject": {"reference": "Patient/p-1"}, "code": {"text": "Консультация кардиолога"},
                    "performerType": concept(CARDIOLOGY)[0]}),
    );
    assert_eq!(send(&s, &p1, "POST", "Appointment", &booking(&cardio[0], "p-1")).status, 201);

    let own = s.user_token("reg-a", "registrar", &["--organization", "Organization/org-a"]);
    let other = s.user_token("reg-z", "registrar", &["--organization", "Organization/org-z"]);
    let doctor = s.user_token("doc-a", "doctor", &["--organization", "Organization/org-a"]);
    let mut schedule = s.get("Schedule/sch-1").json();
    schedule["comment"] = json!("Кабинет 12");
    for (token, expected) in [(&other, 403), (&doctor, 403), (&p1, 403), (&own, 200)] {
        assert_eq!(send(&s, token, "PUT", "Schedule/sch-1", &schedule).status, expected);
    }
    let mut slot = s.get(cardio[5]["slot"][0]["reference"].as_str().unwrap()).json();
    slot["status"] = json!("busy-unavailable");
    let path = format!("Slot/{}", slot["id"].as_str().unwrap());
    assert_eq!(send(&s, &other, "PUT", &path, &slot).status, 403);
    assert_eq!(send(&s, &own, "PUT", &path, &slot).status, 200, "the registry blocks a time");
}
