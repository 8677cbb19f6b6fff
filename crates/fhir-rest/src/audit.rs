//! Auditing of FHIR requests (S4). [`crate::Engine::handle`] runs every request of an
//! authenticated caller inside [`audited`]: after the interaction, one AuditEvent
//! describes it — who, from where, what, on which patients (those of the resources
//! returned, or named in the path), the outcome — and the response is released only
//! once that entry is durable in the log; if it cannot be written, the caller gets a 503
//! instead of the data ("no audit, no access").
//!
//! Writes are different: their entries commit with them, appended by the guard's write
//! transaction ([`guard::WriteTx::commit`]) from the handle's caller context; a request
//! whose write committed is not recorded a second time here.

use audit::{Action, Agent, Event, Kind, Outcome};
use fhir_model::{Issue, IssueType};
use serde_json::Value;

use crate::{Engine, FhirError, Method, Request, Response, ResponseBody};

/// Run a request and record it; the response only if the record is durable.
pub fn audited(
    engine: &Engine,
    req: &Request,
    agent: Agent,
    purpose: Option<(String, Option<String>)>,
    run: impl FnOnce(&Request) -> (Response, bool),
) -> Response {
    let write = matches!(req.method, Method::Post | Method::Put | Method::Patch | Method::Delete);
    let (response, in_tx) = run(req);
    // a write recorded itself in its transaction (a read that opened a record by
    // break-the-glass wrote too, but is still a read to record)
    let bundle = req.method == Method::Post && req.path.trim_matches('/').is_empty();
    if in_tx && write && response.status < 400 && !bundle {
        return response;
    }
    let Some(mut event) = of_request(req, agent, &response) else { return response };
    event.purpose = purpose;
    if response.status == 403 && event.patients.is_empty() {
        refused_about(engine, req, &mut event);
    }
    match engine.guard().audit().record(event.to_new()) {
        Ok(()) => {
            engine.watch.observe(engine, &event);
            response
        }
        Err(e) => {
            tracing::error!("request refused, its audit entry could not be written: {e}");
            FhirError::new(
                503,
                Issue::error(
                    IssueType::Transient,
                    "The access could not be recorded in the audit log, so it was not performed; try again later",
                ),
            )
            .into()
        }
    }
}

/// Whose record a refused request was about, so that the patient sees the attempt in
/// their log: the patient its query names (`patient=`, `subject=`), or the patients of the
/// resource it tried to read or change (looked up by the server; the caller learns
/// nothing of it).
fn refused_about(engine: &Engine, req: &Request, e: &mut Event) {
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        if matches!(k.as_ref(), "patient" | "subject" | "subject:Patient" | "patient:Patient") {
            for id in v.split(',') {
                let id = id.trim_start_matches("Patient/");
                if !id.is_empty() && !id.contains('/') {
                    e.patient(id);
                }
            }
        }
    }
    let path = req.path.trim_matches('/');
    let segs: Vec<&str> = path.split('/').collect();
    if e.patients.is_empty()
        && let [rt, id, ..] = segs.as_slice()
        && !id.starts_with(['$', '_'])
        && let Ok(Some(stored)) = engine.guard().system(guard::SystemActor::WATCH).fetch(rt, id)
        && let Some(body) = stored.body
        && let Ok(resource) = serde_json::from_slice::<Value>(&body)
    {
        patients(&resource, e);
    }
}

/// The patients a resource concerns, into `e` (see [`guard::patients_into`]).
pub fn patients(resource: &Value, e: &mut Event) {
    let mut found = Vec::new();
    guard::patients_into(resource, &mut found);
    for p in found {
        e.patient(&p);
    }
}

/// What an audit entry needs of a stored resource or a Bundle of them (as sent): type, id,
/// `meta` and the elements that refer to a patient; everything else is skipped unparsed,
/// which costs a fraction of parsing it (every read is audited). `None`: not an object.
fn skim(raw: &[u8]) -> Option<Value> {
    use serde_json::value::RawValue;
    let top: std::collections::HashMap<&str, &RawValue> = serde_json::from_slice(raw).ok()?;
    let mut out = serde_json::Map::new();
    for (k, v) in top {
        let text = v.get();
        let value = match k {
            "entry" => Value::Array(
                serde_json::from_str::<Vec<std::collections::HashMap<&str, &RawValue>>>(text)
                    .ok()?
                    .into_iter()
                    .filter_map(|e| e.get("resource").and_then(|r| skim(r.get().as_bytes())))
                    .map(|r| serde_json::json!({"resource": r}))
                    .collect(),
            ),
            "resourceType" | "id" | "meta" => serde_json::from_str(text).ok()?,
            _ if text.contains("Patient/") => serde_json::from_str(text).ok()?,
            _ => continue,
        };
        out.insert(k.to_string(), value);
    }
    Some(Value::Object(out))
}

/// The AuditEvent of a request, from what it asked and what it got.
fn of_request(req: &Request, agent: Agent, response: &Response) -> Option<Event> {
    let path = req.path.trim_matches('/');
    let segs: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('/').collect() };
    use Method::*;
    let (kind, action, search) = match (req.method, segs.as_slice()) {
        (Get | Head, ["metadata" | "openapi.json"]) => return None,
        (Post, []) => {
            let t = match &req.body {
                crate::Body::Json(b) if b.get("type").and_then(Value::as_str) == Some("transaction") => "transaction",
                _ => "batch",
            };
            (Kind::Rest(t), Action::Execute, false)
        }
        (_, [op, ..]) if op.starts_with("$export") => (Kind::Export, Action::Execute, false),
        (_, [.., "$export"]) => (Kind::Export, Action::Execute, false),
        (Get | Head, [] | ["_search"]) | (Post, ["_search"]) => (Kind::Rest("search-system"), Action::Execute, true),
        (Get | Head, ["_history"]) => (Kind::Rest("history-system"), Action::Read, false),
        (Get | Head, [_, "_history"]) => (Kind::Rest("history-type"), Action::Read, false),
        (Get | Head, [_, _, "_history"]) => (Kind::Rest("history-instance"), Action::Read, false),
        (Get | Head, [_, _, "_history", _]) => (Kind::Rest("vread"), Action::Read, false),
        (Get | Head, [_]) | (Post, [_, "_search"]) => (Kind::Rest("search-type"), Action::Execute, true),
        (Get | Head, [_, _]) => (Kind::Rest("read"), Action::Read, false),
        (Get | Head, [_, _, op]) if op.starts_with('$') => (Kind::Rest("operation"), Action::Execute, false),
        (Get | Head, [_, _, _]) => (Kind::Rest("search-type"), Action::Execute, true),
        (Post, [_]) => (Kind::Rest("create"), Action::Create, false),
        (Put, _) => (Kind::Rest("update"), Action::Update, false),
        (Patch, _) => (Kind::Rest("patch"), Action::Update, false),
        (Delete, _) => (Kind::Rest("delete"), Action::Delete, false),
        _ => (Kind::Rest("operation"), Action::Execute, false),
    };
    let mut e = Event::new(kind, action, Outcome::of_status(response.status), agent);
    if search {
        e.query = Some(if req.query.is_empty() { path.to_string() } else { format!("{path}?{}", req.query) });
    }
    if let ["Patient", id, ..] = segs.as_slice()
        && !id.starts_with(['$', '_'])
    {
        e.patient(id);
    }
    if segs.first() == Some(&"AuditEvent") {
        // the log's own view: the patient asked about, not every patient in the entries
        for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
            if k == "patient" {
                e.patient(&v);
            }
        }
        // a patient looking at their own log
        if e.patients.is_empty()
            && let Some(own) = e.agent.person.as_deref().and_then(|p| p.strip_prefix("Patient/")).map(str::to_string)
        {
            e.patient(&own);
        }
        return Some(e);
    }
    let parsed;
    let body = match &response.body {
        ResponseBody::Json(v) => Some(v),
        ResponseBody::Raw(b) => {
            parsed = skim(b).or_else(|| serde_json::from_slice::<Value>(b).ok());
            parsed.as_ref()
        }
        _ => None,
    };
    if response.status >= 400 {
        e.detail = body
            .and_then(|b| b.pointer("/issue/0/diagnostics"))
            .and_then(Value::as_str)
            .map(|d| format!("HTTP {}: {d}", response.status));
        // whose record the refused request was about
        if let crate::Body::Json(b) = &req.body
            && b.get("resourceType").and_then(Value::as_str) != Some("Bundle")
        {
            patients(b, &mut e);
        }
        return Some(e);
    }
    match body {
        Some(b) if b.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
            for r in b.get("entry").and_then(Value::as_array).into_iter().flatten().filter_map(|x| x.get("resource")) {
                patients(r, &mut e);
            }
        }
        Some(b) => {
            patients(b, &mut e);
            if matches!(e.action, Action::Read)
                && let (Some(t), Some(id), Some(v)) = (
                    b.get("resourceType").and_then(Value::as_str),
                    b.get("id").and_then(Value::as_str),
                    b.pointer("/meta/versionId").and_then(Value::as_str),
                )
            {
                e.objects.push(format!("{t}/{id}/_history/{v}"));
            }
        }
        None => {}
    }
    Some(e)
}
