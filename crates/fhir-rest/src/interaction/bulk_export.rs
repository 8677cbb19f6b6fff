//! The asynchronous `$export` operation (FHIR Bulk Data Access 2.0): kick-off at
//! `[base]/$export`, `Patient/$export` and `Group/[id]/$export` (with `Prefer:
//! respond-async`; `_type`, `_since`, `_typeFilter`, `_outputFormat`, `_elements`, and
//! `patient` at Patient and Group level; in the query or, for POST, a Parameters body)
//! answers 202 with the status URL; the export runs on its own thread
//! ([`crate::export::run`]) and keeps
//! its state in an `export` record; `GET $export-status/[id]` answers 202 with
//! `X-Progress` while it runs and the manifest when done; `DELETE` cancels it; the files
//! are served (streamed) from `$export-file/[id]/[Type].ndjson`. Only the client that
//! started an export may see it, and it sees only what that client may read.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use auth::scope::Interaction;
use fhir_model::{Issue, IssueType, ResourceType};
use guard::Expect;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::export::{Plan, Scope, group_members, parse_params, run};
use crate::meta::{instant, now_micros, parse_instant};
use crate::{Engine, FhirError, FhirResult, Handle, Principal, Request, Response, ResponseBody, SystemActor};

const KIND: &str = "export";

/// An export as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    id: String,
    /// The client that started it (only it may poll and download).
    owner: String,
    request: String,
    transaction_time: String,
    /// `running`, `done`, `failed`, `cancelled`.
    state: String,
    #[serde(default)]
    progress: String,
    #[serde(default)]
    outputs: Vec<(String, u64)>,
    #[serde(default)]
    error: Option<String>,
}

/// Cancellation flags of the exports running in this process.
static RUNNING: LazyLock<Mutex<HashMap<String, Arc<AtomicBool>>>> = LazyLock::new(Mutex::default);

fn owner(principal: &Principal) -> String {
    match principal {
        Principal::System(a) => a.name().into(),
        Principal::Anonymous => "anonymous".into(),
        Principal::Token(c) => c.client_id.clone(),
    }
}

/// The export jobs' bookkeeping is the server's own.
fn jobs(engine: &Engine) -> Handle {
    engine.guard().system(SystemActor::new("system:export"))
}

fn save(engine: &Engine, job: &Job) -> FhirResult<()> {
    let data = serde_json::to_string(job).map_err(|_| FhirError::internal())?;
    let h = jobs(engine);
    let mut tx = h.begin()?;
    tx.put_record(KIND, &job.id, &data, Expect::Any)?;
    tx.commit()?;
    Ok(())
}

fn load(engine: &Engine, id: &str, principal: &Principal) -> FhirResult<Job> {
    let job: Option<Job> = engine
        .guard()
        .record(KIND, id)?
        .and_then(|r| serde_json::from_str(&r.data).ok())
        .filter(|j: &Job| j.owner == owner(principal));
    job.ok_or_else(|| FhirError::not_found(format!("no export '{id}'")))
}

fn dir(engine: &Engine, id: &str) -> std::path::PathBuf {
    engine.config.export_dir.join(id)
}

/// After a restart, exports that were running are marked failed.
pub fn recover(engine: &Engine) -> FhirResult<()> {
    let h = jobs(engine);
    for (_, r) in engine.guard().records(KIND)? {
        if let Ok(mut job) = serde_json::from_str::<Job>(&r.data)
            && job.state == "running"
        {
            job.state = "failed".into();
            job.error = Some("the server restarted during the export; start it again".into());
            if let Ok(data) = serde_json::to_string(&job) {
                let mut tx = h.begin()?;
                tx.put_record(KIND, &job.id, &data, Expect::Any)?;
                tx.commit()?;
            }
        }
    }
    Ok(())
}

/// The kick-off's parameters: the query's, and for a POST those of its `Parameters`
/// body (Bulk Data 2.0: `valueString`, `valueInstant`, `valueCode`, `valueReference`...).
fn kickoff_parameters(req: &Request) -> FhirResult<Vec<(String, String, bool)>> {
    let mut out: Vec<(String, String, bool)> =
        form_urlencoded::parse(req.query.as_bytes()).into_owned().map(|(k, v)| (k, v, false)).collect();
    let crate::Body::Json(body) = &req.body else { return Ok(out) };
    if body.get("resourceType").and_then(serde_json::Value::as_str) != Some("Parameters") {
        return Err(FhirError::bad_request("a POST $export takes its parameters as a Parameters resource"));
    }
    for p in body.get("parameter").and_then(serde_json::Value::as_array).into_iter().flatten() {
        let name = p.get("name").and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
        let value = p.as_object().and_then(|o| {
            o.iter().find(|(k, _)| k.starts_with("value")).and_then(|(_, v)| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(r) => {
                    r.get("reference").and_then(serde_json::Value::as_str).map(str::to_string)
                }
                other => Some(other.to_string()),
            })
        });
        let value = value.ok_or_else(|| {
            FhirError::from(
                Issue::error(IssueType::Invalid, format!("parameter '{name}' has no value")).at(name.clone()),
            )
        })?;
        out.push((name, value, true));
    }
    Ok(out)
}

/// The most patients one kick-off may name (`patient`).
const MAX_PATIENTS: usize = 1000;

/// Kick-off: `scope` is `System`, `Patients`, or a Group id's members.
pub fn kickoff(
    engine: &Engine,
    h: &Handle,
    req: &Request,
    group: Option<&str>,
    patients: bool,
) -> FhirResult<Response> {
    if !req.prefer_async {
        return Err(FhirError::bad_request("$export runs asynchronously: send the header Prefer: respond-async"));
    }
    let mut type_param = None;
    let mut since = None;
    let mut filters = Vec::new();
    let mut elements = None;
    let mut patients_asked: Vec<String> = Vec::new();
    for (k, v, from_body) in kickoff_parameters(req)? {
        match k.as_str() {
            // repeated (one value each, as a Parameters body sends them): all of them
            "_elements" => elements.get_or_insert_with(Vec::new).extend(crate::export::parse_elements(&v)?),
            "patient" if group.is_some() || patients => {
                let id = v.strip_prefix("Patient/").filter(|id| fhir_model::is_valid_id(id)).ok_or_else(|| {
                    FhirError::from(
                        Issue::error(IssueType::Invalid, format!("patient '{v}' is not a Patient/id reference"))
                            .at("patient"),
                    )
                })?;
                if !patients_asked.iter().any(|p| p == id) {
                    patients_asked.push(id.to_string());
                }
                if patients_asked.len() > MAX_PATIENTS {
                    return Err(FhirError::from(
                        Issue::error(IssueType::TooLong, format!("at most {MAX_PATIENTS} patients per export"))
                            .at("patient"),
                    ));
                }
            }
            "patient" => {
                return Err(FhirError::from(
                    Issue::error(IssueType::NotSupported, "patient is taken by Patient/$export and Group/[id]/$export")
                        .at("patient"),
                ));
            }
            "includeAssociatedData" => {
                return Err(FhirError::from(
                    Issue::error(
                        IssueType::NotSupported,
                        format!(
                            "includeAssociatedData '{v}' is not supported: no Provenance or other associated data is exported"
                        ),
                    )
                    .at("includeAssociatedData"),
                ));
            }
            "_outputFormat" => {
                if !matches!(v.as_str(), "application/fhir+ndjson" | "application/ndjson" | "ndjson") {
                    return Err(FhirError::from(
                        Issue::error(
                            IssueType::NotSupported,
                            format!("_outputFormat '{v}' is not supported (application/fhir+ndjson)"),
                        )
                        .at("_outputFormat"),
                    ));
                }
            }
            "_type" => type_param = Some(type_param.map_or(v.clone(), |t: String| format!("{t},{v}"))),
            "_since" => {
                parse_instant(&v).ok_or_else(|| {
                    FhirError::from(
                        Issue::error(IssueType::Invalid, format!("_since '{v}' is not an instant")).at("_since"),
                    )
                })?;
                since = Some(v);
            }
            // in a query, filters are comma-separated; a Parameters body has one per value
            "_typeFilter" if from_body => filters.push(v),
            "_typeFilter" => filters.extend(v.split(',').map(str::to_string)),
            other => {
                return Err(FhirError::from(
                    Issue::error(IssueType::NotSupported, format!("$export does not take '{other}'"))
                        .at(other.to_string()),
                ));
            }
        }
    }
    let scope = match (group, patients) {
        // `patient`: only those (of the Group's members)
        (Some(g), _) if !patients_asked.is_empty() => {
            Scope::Members(group_members(h, g)?.into_iter().filter(|m| patients_asked.contains(m)).collect())
        }
        (Some(g), _) => Scope::Members(group_members(h, g)?),
        // the patients asked for that the caller may read (others are not exported, and
        // not told of an export)
        (None, true) if !patients_asked.is_empty() => {
            let mut readable = Vec::new();
            for p in patients_asked {
                if h.fetch("Patient", &p)?.is_some() {
                    readable.push(p);
                }
            }
            Scope::Members(readable)
        }
        (None, true) => Scope::Patients,
        (None, false) => Scope::System,
    };
    let (types, filters) = parse_params(&scope, type_param.as_deref(), &filters)?;
    // explicit types must all be allowed; otherwise what the caller may read is exported
    let mut planned = Vec::new();
    for t in types {
        match h.authorize(Interaction::Search, t) {
            Ok(_) => planned.push(t),
            Err(e) if type_param.is_some() => return Err(e),
            Err(_) => {}
        }
    }
    let plan = Plan { scope, types: planned, since, filters, elements };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let job = Job {
        id: id.clone(),
        owner: owner(&req.principal),
        request: engine.url(&format!("{}{}{}", req.path, if req.query.is_empty() { "" } else { "?" }, req.query)),
        transaction_time: instant(now_micros()),
        state: "running".into(),
        progress: String::new(),
        outputs: Vec::new(),
        error: None,
    };
    save(engine, &job)?;
    let cancel = Arc::new(AtomicBool::new(false));
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), cancel.clone());
    let engine2 = engine.clone();
    let h2 = h.clone();
    std::thread::Builder::new()
        .name(format!("export-{id}"))
        .spawn(move || work(&engine2, &h2, job, &plan, &cancel))
        .map_err(|_| FhirError::internal())?;
    let mut r = Response::empty(202);
    r.content_location = Some(engine.url(&format!("$export-status/{id}")));
    Ok(r)
}

/// Patients told of one export at most; beyond (a whole-population extract), the audit
/// log alone records it.
const MAX_NOTIFIED: usize = 10_000;

/// Tell every patient whose record was exported (the group's members, or the Patient
/// resources in the files), with a Communication each.
fn notify_patients(engine: &Engine, job: &Job, plan: &Plan, outputs: &[crate::export::Output]) -> FhirResult<()> {
    let h = engine.guard().system(SystemActor::WATCH);
    let mut patients: Vec<String> = match &plan.scope {
        Scope::Members(ids) => ids.clone(),
        _ => Vec::new(),
    };
    if let Some(o) = outputs.iter().find(|o| o.resource_type.as_str() == "Patient") {
        use std::io::BufRead as _;
        let file = std::fs::File::open(&o.file).map_err(|_| FhirError::internal())?;
        // line by line, and no further than the limit (the file may be very large)
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            if patients.len() > MAX_NOTIFIED {
                break;
            }
            #[derive(serde::Deserialize)]
            struct Id {
                id: String,
            }
            if let Ok(r) = serde_json::from_str::<Id>(&line) {
                patients.push(r.id);
            }
        }
    }
    patients.sort_unstable();
    patients.dedup();
    if patients.len() > MAX_NOTIFIED {
        tracing::warn!(job = job.id, patients = patients.len(), "export of many records: patients not told one by one");
        return Ok(());
    }
    let text = format!(
        "Your health record was exported by {} on {} ({}). If you did not expect it, flag the entry in your access log. \
         Ваша медкарта выгружена: {}, {} ({}). Если вы этого не ожидали, отметьте запись в журнале доступа.",
        job.owner, job.transaction_time, job.request, job.owner, job.transaction_time, job.request
    );
    for chunk in patients.chunks(500) {
        let writes = chunk.iter().map(|p| crate::watch::notice(p, &text, "routine")).collect::<FhirResult<Vec<_>>>()?;
        h.commit_all(writes)?;
    }
    Ok(())
}

fn work(engine: &Engine, h: &Handle, mut job: Job, plan: &Plan, cancel: &AtomicBool) {
    let mut last_saved = std::time::Instant::now();
    let result = run(h, plan, &dir(engine, &job.id), cancel, |rt: ResourceType, n| {
        if last_saved.elapsed().as_millis() > 500 {
            last_saved = std::time::Instant::now();
            job.progress = format!("{rt}: {n} resources");
            let _ = save(engine, &job);
        }
    });
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner).remove(&job.id);
    if job.state == "cancelled" || cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return; // the canceller removed the record and the files
    }
    match result {
        Ok(outputs) => {
            job.state = "done".into();
            job.outputs = outputs.iter().map(|o| (o.resource_type.to_string(), o.count)).collect();
            tracing::info!(job = job.id, files = outputs.len(), "export done");
            if let Err(e) = notify_patients(engine, &job, plan, &outputs) {
                tracing::error!("export {}: the patients could not be told: {e:?}", job.id);
            }
        }
        Err(e) => {
            job.state = "failed".into();
            job.error = e.outcome.issues.first().map(|i| i.diagnostics.clone());
        }
    }
    if let Err(e) = save(engine, &job) {
        tracing::error!("export {}: cannot record the result: {e:?}", job.id);
    }
}

/// `GET $export-status/[id]`.
pub fn status(engine: &Engine, req: &Request, id: &str) -> FhirResult<Response> {
    let job = load(engine, id, &req.principal)?;
    match job.state.as_str() {
        "running" => {
            let mut r = Response::empty(202);
            r.headers.push(("x-progress", if job.progress.is_empty() { "starting".into() } else { job.progress }));
            r.headers.push(("retry-after", "2".into()));
            Ok(r)
        }
        "done" => {
            let output: Vec<serde_json::Value> = job
                .outputs
                .iter()
                .map(|(t, n)| json!({"type": t, "url": engine.url(&format!("$export-file/{id}/{t}.ndjson")), "count": n}))
                .collect();
            let mut r = Response::json(
                200,
                json!({"transactionTime": job.transaction_time, "request": job.request, "requiresAccessToken": true,
                    "output": output, "error": []}),
            );
            r.headers.push(("content-type", "application/json".into()));
            Ok(r)
        }
        _ => Err(FhirError::new(
            500,
            Issue::error(IssueType::Exception, job.error.unwrap_or_else(|| format!("the export {}", job.state))),
        )),
    }
}

/// `DELETE $export-status/[id]`: stop it and remove its files.
pub fn cancel(engine: &Engine, req: &Request, id: &str) -> FhirResult<Response> {
    let job = load(engine, id, &req.principal)?;
    if let Some(flag) = RUNNING.lock().unwrap_or_else(PoisonError::into_inner).get(&job.id) {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let h = jobs(engine);
    let mut tx = h.begin()?;
    tx.delete_record(KIND, &job.id)?;
    tx.commit()?;
    let _ = std::fs::remove_dir_all(dir(engine, &job.id));
    Ok(Response::empty(202))
}

/// `GET $export-file/[id]/[Type].ndjson`: streamed by the HTTP layer.
pub fn file(engine: &Engine, req: &Request, id: &str, name: &str) -> FhirResult<Response> {
    let job = load(engine, id, &req.principal)?;
    let ty = name.strip_suffix(".ndjson").unwrap_or_default();
    if job.state != "done" || !job.outputs.iter().any(|(t, _)| t == ty) {
        return Err(FhirError::not_found(format!("export {id} has no file {name}")));
    }
    let mut r = Response::empty(200);
    r.body = ResponseBody::File(dir(engine, &job.id).join(name));
    r.headers.push(("content-type", "application/fhir+ndjson".into()));
    Ok(r)
}
