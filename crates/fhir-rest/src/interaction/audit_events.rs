//! The audit log seen through FHIR. `GET AuditEvent?patient=...` lists every access to a
//! patient's record, newest first — who (name, role, organisation), when, what, why, the
//! outcome — with a readable summary in each entry's narrative; a patient sees their
//! own, a security officer (or a system with `system/AuditEvent.rs`) anyone's.
//! `GET AuditEvent/{id}` reads one entry; `POST AuditEvent/{id}/$flag` lets the patient
//! mark an entry as unexpected, which raises an alert for the security officers.
//!
//! The entries are not stored resources: they come from the log (`store::audit`), their
//! id is the log's sequence number, and nobody writes them through the API.

use std::collections::HashMap;

use audit::{Action, Event, Kind, Outcome};
use fhir_model::{Issue, IssueType};
use guard::{AuditQuery, AuditRow, Expect, SystemActor};
use serde_json::{Value, json};

use crate::meta::instant;
use crate::{Body, Engine, FhirError, FhirResult, Handle, Principal, Request, Response};

/// Record kind of security alerts (for the security officers: `medkarta audit alerts`).
pub const ALERTS: &str = "security-alert";

fn forbidden(msg: &str) -> FhirError {
    FhirError::new(403, Issue::error(IssueType::Forbidden, msg))
}

/// `GET AuditEvent?patient=...&_count=...`.
pub fn search(engine: &Engine, h: &Handle, req: &Request) -> FhirResult<Response> {
    let own = h.audit_reach()?;
    let (mut patient, mut count, mut before) = (None, engine.config.default_count, None);
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        match &*k {
            "patient" => patient = Some(v.trim_start_matches("Patient/").to_string()),
            "_count" => {
                count = v.parse().map_err(|_| FhirError::bad_request(format!("_count '{v}' is not a number")))?
            }
            "_before" => {
                before = Some(v.parse().map_err(|_| FhirError::bad_request(format!("_before '{v}' is not a number")))?)
            }
            "_format" | "_pretty" => {}
            other if req.strict => {
                return Err(FhirError::bad_request(format!(
                    "AuditEvent is searched by patient, _count and _before; '{other}' is not supported"
                )));
            }
            _ => {}
        }
    }
    let count = count.clamp(1, engine.config.max_count);
    let patient = match (own, patient) {
        (Some(own), None) => Some(own),
        (Some(own), Some(p)) if p == own => Some(own),
        (Some(_), Some(_)) => return Err(forbidden("A patient sees the audit log of their own record only")),
        (None, p) => p,
    };
    let q = match &patient {
        Some(p) => AuditQuery::Patient { patient: p.clone(), before, limit: count },
        None => AuditQuery::Newest { before, limit: count },
    };
    // everything recorded before this request, including what the journal still holds
    if let Err(e) = engine.guard().audit().catch_up() {
        tracing::warn!("the audit journal could not be moved into the log: {e}");
    }
    let rows = h.audit_rows(&q)?;
    let mut names = Names::new(engine);
    let mut links = vec![json!({"relation": "self", "url": engine.url(&format!("AuditEvent?{}", req.query))})];
    // the page is sorted by time; the next one starts below its lowest sequence number
    if rows.len() == count
        && let Some(lowest) = rows.iter().map(|r| r.seq).min()
    {
        let mut next = format!("AuditEvent?_count={count}&_before={lowest}");
        if let Some(p) = &patient {
            next.push_str(&format!("&patient={p}"));
        }
        links.push(json!({"relation": "next", "url": engine.url(&next)}));
    }
    let entries = rows
        .iter()
        .map(|r| {
            json!({"fullUrl": engine.url(&format!("AuditEvent/{}", r.seq)), "resource": render(r, &mut names),
                   "search": {"mode": "match"}})
        })
        .collect();
    Ok(Response::json(200, super::bundle_of("searchset", None, links, entries)))
}

/// The entry `id`, if the caller may see it.
fn visible_row(h: &Handle, id: &str) -> FhirResult<AuditRow> {
    let not_found = || FhirError::not_found(format!("AuditEvent/{id} does not exist"));
    let seq: i64 = id.parse().map_err(|_| not_found())?;
    h.audit_rows(&AuditQuery::Seq(seq))?.into_iter().next().ok_or_else(not_found)
}

/// `GET AuditEvent/{id}`.
pub fn read(engine: &Engine, h: &Handle, _req: &Request, id: &str) -> FhirResult<Response> {
    let row = visible_row(h, id)?;
    Ok(Response::json(200, render(&row, &mut Names::new(engine))))
}

/// `POST AuditEvent/{id}/$flag`: the patient did not expect this access. Raises a security
/// alert (a record the security officers work through) and records the flag in the log.
pub fn flag(_engine: &Engine, h: &Handle, req: &Request, id: &str) -> FhirResult<Response> {
    let row = visible_row(h, id)?;
    let Principal::Token(c) = &req.principal else {
        return Err(FhirError::bad_request("Entries are flagged by their patient"));
    };
    let Some(patient) = h.audit_reach()? else {
        return Err(forbidden("Entries are flagged by the patient they concern"));
    };
    let reason = match &req.body {
        Body::Json(p) => p
            .get("parameter")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|x| x.get("name").and_then(Value::as_str) == Some("reason"))
            .and_then(|x| x.get("valueString"))
            .and_then(Value::as_str)
            .map(str::to_string),
        Body::None => None,
    };
    let at = crate::meta::now_micros();
    let alert = json!({"kind": "flagged-by-patient", "at": at, "status": "open", "entry": row.seq,
        "patient": patient, "by": c.username, "reason": reason});
    let alert_id = uuid::Uuid::now_v7().to_string();
    let mut tx = h.begin()?;
    tx.put_record(ALERTS, &alert_id, &alert.to_string(), Expect::Absent)?;
    let agent = guard::agent(&req.principal, req.address.as_deref());
    let mut e =
        Event::new(Kind::Alert("access flagged by the patient".into()), Action::Create, Outcome::Success, agent);
    e.patient(&patient);
    e.objects.push(format!("AuditEvent/{}", row.seq));
    e.detail = reason.clone();
    tx.record_event(&e);
    tx.commit()?;
    tracing::warn!(alert = %alert_id, entry = row.seq, "security alert: a patient flagged an access as unexpected");
    Ok(Response::json(
        200,
        fhir_model::OperationOutcome::new(vec![Issue::information(format!(
            "Thank you: entry {} was reported to the security officers (alert {alert_id})",
            row.seq
        ))])
        .to_json(),
    ))
}

/// Names of practitioners and organisations, looked up once per response.
struct Names {
    /// Practitioners and organisations are the directory, readable by the server.
    directory: Handle,
    cache: HashMap<String, Option<String>>,
}

impl Names {
    fn new(engine: &Engine) -> Self {
        Names { directory: engine.guard().system(SystemActor::new("system:audit-view")), cache: HashMap::new() }
    }

    fn of(&mut self, reference: &str) -> Option<String> {
        if let Some(n) = self.cache.get(reference) {
            return n.clone();
        }
        let name = reference.split_once('/').and_then(|(t, id)| {
            let body = self.directory.fetch(t, id).ok()??.body?;
            let v: Value = serde_json::from_slice(&body).ok()?;
            match v.get("name")? {
                Value::String(s) => Some(s.clone()),
                Value::Array(names) => {
                    let n = names.first()?;
                    n.get("text").and_then(Value::as_str).map(str::to_string).or_else(|| {
                        let given: Vec<&str> = n
                            .get("given")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        let family = n.get("family").and_then(Value::as_str).unwrap_or_default();
                        Some(format!("{} {family}", given.join(" ")).trim().to_string())
                    })
                }
                _ => None,
            }
        });
        self.cache.insert(reference.to_string(), name.clone());
        name
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// An entry as an AuditEvent: its id, the names of the people and organisations it
/// refers to, and a one-line summary as narrative.
fn render(row: &AuditRow, names: &mut Names) -> Value {
    let mut v = ::audit::event::resource(row.at, &row.patients, &row.entry);
    v["id"] = json!(row.seq.to_string());
    v["meta"] = json!({"lastUpdated": instant(row.at)});
    let mut who = String::new();
    let mut org = None;
    if let Some(agents) = v.get_mut("agent").and_then(Value::as_array_mut) {
        for a in agents.iter_mut() {
            let Some(r) = a.pointer("/who/reference").and_then(Value::as_str).map(str::to_string) else { continue };
            if let Some(name) = names.of(&r) {
                let user = a.pointer("/who/display").and_then(Value::as_str).unwrap_or_default().to_string();
                let display = if user.is_empty() || r.starts_with("Organization/") {
                    name.clone()
                } else {
                    format!("{name} ({user})")
                };
                a["who"]["display"] = json!(display);
                if r.starts_with("Organization/") {
                    org = Some(name);
                } else if a.get("requestor") == Some(&json!(true)) {
                    who = display;
                }
            }
        }
    }
    if who.is_empty() {
        who = v.pointer("/agent/0/who/display").and_then(Value::as_str).unwrap_or("someone").to_string();
    }
    let role = v.pointer("/agent/0/role/0/coding/0/code").and_then(Value::as_str).unwrap_or_default();
    let what = v
        .pointer("/subtype/0/code")
        .or_else(|| v.pointer("/subtype/0/display"))
        .or_else(|| v.pointer("/type/display"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let why = v.pointer("/purposeOfEvent/0/text").and_then(Value::as_str);
    let outcome = if v.get("outcome").and_then(Value::as_str) == Some("0") { "" } else { " (refused or failed)" };
    let mut line = format!("{}: {who}", instant(row.at));
    if !role.is_empty() {
        line.push_str(&format!(", {role}"));
    }
    if let Some(o) = org {
        line.push_str(&format!(", {o}"));
    }
    line.push_str(&format!(" — {what}{outcome}"));
    if let Some(w) = why {
        line.push_str(&format!("; reason: {w}"));
    }
    v["text"] = json!({"status": "generated",
        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", esc(&line))});
    v
}
