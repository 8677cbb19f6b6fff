//! Custom SearchParameter resources at run time. An `active` SearchParameter is checked
//! when written (its FHIRPath must be one we can evaluate, its code free), registered
//! with [`search::registry`] once committed — from then on every write indexes it — and
//! made searchable by a background reindex of the resources already stored.
//!
//! The reindex walks each base type in surrogate-key order, in batches of [`BATCH`]
//! resources, each batch its own short transaction that also saves the job's position
//! (a `reindex` record), so reads and writes go on meanwhile and a restart resumes where the
//! last committed batch ended. Progress is logged, shown by `GET [base]/$reindex`, and
//! quoted to anyone who searches with the parameter before it is ready.

use std::sync::{Condvar, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use fhir_model::{Issue, IssueType, ResourceType};
use search::registry::{self, Custom, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::write::Written;
use crate::{Engine, FhirError, FhirResult, Handle, Response, SystemActor};

fn reindexer(engine: &Engine) -> Handle {
    engine.guard().system(SystemActor::REINDEX)
}

fn failed(msg: String) -> FhirError {
    tracing::error!("{msg}");
    FhirError::internal()
}

/// Record kind of reindex jobs in the store.
const JOB_KIND: &str = "reindex";
/// Resources per reindex transaction.
const BATCH: usize = 200;

/// A reindex job's saved position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Job {
    /// The SearchParameter's id.
    id: String,
    /// The definition being indexed (see [`Custom::key`]).
    key: String,
    /// Index into the parameter's types of the type being walked.
    type_index: usize,
    /// Last surrogate key done in that type.
    after: i64,
    done: u64,
    total: u64,
    finished: bool,
}

impl Job {
    fn new(c: &Custom) -> Self {
        Job { id: c.id.clone(), key: c.key.clone(), type_index: 0, after: 0, done: 0, total: 0, finished: false }
    }
}

/// Wakes the reindex worker.
static WAKE: LazyLock<(Mutex<bool>, Condvar)> = LazyLock::new(Default::default);

fn wake() {
    let (flag, cv) = &*WAKE;
    *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
    cv.notify_all();
}

/// After a commit: register, replace or drop the custom parameters the writes defined.
pub fn after_commit(engine: &Engine, written: &[&Written]) {
    for w in written.iter().filter(|w| w.resource_type.as_str() == "SearchParameter" && !w.id.is_empty()) {
        let def = match &w.resource {
            Some(res) => registry::definition(res, &w.id).unwrap_or_else(|issue| {
                // checked before the write; a concurrent definition may have taken the code
                tracing::warn!("SearchParameter/{} is not used for search: {}", w.id, issue.diagnostics);
                None
            }),
            None => None,
        };
        match def {
            Some(def) => {
                let id = def.id.clone();
                if registry::register(def) {
                    tracing::info!("SearchParameter/{id}: indexing existing resources in the background");
                    wake();
                }
            }
            None => {
                if registry::unregister(&w.id).is_some() {
                    tracing::info!("SearchParameter/{} is no longer used for search", w.id);
                    if let Err(e) = forget_job(engine, &w.id) {
                        tracing::warn!("SearchParameter/{}: cannot remove its reindex job: {e}", w.id);
                    }
                }
            }
        }
    }
}

fn forget_job(engine: &Engine, id: &str) -> FhirResult<()> {
    let h = reindexer(engine);
    let mut tx = h.begin()?;
    tx.delete_record(JOB_KIND, id)?;
    tx.commit()
}

fn saved_jobs(engine: &Engine) -> FhirResult<Vec<Job>> {
    Ok(engine.guard().records(JOB_KIND)?.iter().filter_map(|(_, r)| serde_json::from_str(&r.data).ok()).collect())
}

/// At start-up: register every active SearchParameter in the database, with the state
/// its saved reindex job reached, and start the reindex worker.
pub fn start(engine: &Engine) -> FhirResult<()> {
    let jobs = saved_jobs(engine)?;
    let rt = ResourceType::parse("SearchParameter").ok_or_else(FhirError::internal)?;
    let h = reindexer(engine);
    let mut offset = 0;
    loop {
        let mut q = search::parse_query(rt, "status=active")?;
        q.offset = offset;
        let page = h.search(&q, 500)?;
        for s in &page.resources {
            let Some(res) = s.body.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok()) else { continue };
            match registry::definition(&res, &s.id) {
                Ok(Some(mut def)) => {
                    if jobs.iter().any(|j| j.id == def.id && j.key == def.key && j.finished) {
                        def.state = State::Ready;
                    }
                    registry::register(def);
                }
                Ok(None) => {}
                Err(issue) => tracing::warn!("SearchParameter/{} is not used for search: {}", s.id, issue.diagnostics),
            }
        }
        offset += page.resources.len();
        if !page.more {
            break;
        }
    }
    let registered = registry::all();
    for stale in jobs.iter().filter(|j| !registered.iter().any(|c| c.id == j.id)) {
        forget_job(engine, &stale.id)?;
    }
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("reindex".into())
        .spawn(move || worker(&engine))
        .map_err(|e| failed(format!("cannot start the reindex worker: {e}")))?;
    Ok(())
}

/// Reindex whatever is registered and not ready; sleep until woken otherwise.
fn worker(engine: &Engine) {
    loop {
        let pending: Vec<Custom> =
            registry::all().into_iter().filter(|c| matches!(c.state, State::Indexing { .. })).collect();
        for c in pending {
            if let Err(e) = reindex(engine, &c) {
                tracing::error!("reindex of SearchParameter/{} stopped: {e}; retrying in 5 s", c.id);
                std::thread::sleep(Duration::from_secs(5));
                wake();
            }
        }
        let (flag, cv) = &*WAKE;
        let mut woken = flag.lock().unwrap_or_else(PoisonError::into_inner);
        while !*woken {
            woken = cv.wait(woken).unwrap_or_else(PoisonError::into_inner);
        }
        *woken = false;
    }
}

/// Is `c` still the registered definition?
fn current(c: &Custom) -> bool {
    registry::all().iter().any(|r| r.id == c.id && r.key == c.key)
}

fn count(h: &Handle, rt: &str) -> FhirResult<u64> {
    let q = ResourceType::parse(rt)
        .and_then(|t| search::parse_query(t, "").ok())
        .ok_or_else(|| failed(format!("'{rt}' is not a resource type")))?;
    Ok(h.search(&q, 0)?.total.unwrap_or(0))
}

/// Run (or resume) the reindex of one custom parameter to the end.
fn reindex(engine: &Engine, c: &Custom) -> FhirResult<()> {
    let h = reindexer(engine);
    let mut job =
        saved_jobs(engine)?.into_iter().find(|j| j.id == c.id && j.key == c.key).unwrap_or_else(|| Job::new(c));
    let mut total = 0;
    for t in &c.types {
        total += count(&h, t)?;
    }
    job.total = total.max(job.done);
    let codes = c.param.index_codes();
    let started = std::time::Instant::now();
    let mut last_log = started;
    while let Some(rt) = c.types.get(job.type_index) {
        if !current(c) {
            return Ok(()); // replaced or dropped meanwhile
        }
        let mut tx = h.begin()?;
        let batch = tx.scan(rt, job.after, BATCH)?;
        let rows: Vec<(i64, Vec<search::IndexEntry>)> = batch
            .iter()
            .map(|(rkey, s)| {
                let entries = s
                    .body
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                    .map(|res| search::index::extract_param(c.param, &res))
                    .unwrap_or_default();
                (*rkey, entries)
            })
            .collect();
        tx.reindex(rt, &codes, &rows)?;
        match batch.last() {
            Some((rkey, _)) => job.after = *rkey,
            None => {
                job.type_index += 1;
                job.after = 0;
            }
        }
        job.done += batch.len() as u64;
        job.total = job.total.max(job.done);
        job.finished = job.type_index >= c.types.len();
        let state = serde_json::to_string(&job).map_err(|e| failed(e.to_string()))?;
        tx.put_record(JOB_KIND, &job.id, &state, guard::Expect::Any)?;
        tx.commit()?;
        registry::set_state(&c.id, &c.key, State::Indexing { done: job.done, total: job.total });
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = std::time::Instant::now();
            tracing::info!("reindex of SearchParameter/{}: {} of {} resources", c.id, job.done, job.total);
        }
    }
    if current(c) {
        registry::set_state(&c.id, &c.key, State::Ready);
        tracing::info!(
            "SearchParameter/{} ('{}') is searchable: {} resources indexed in {:.1} s",
            c.id,
            c.param.code,
            job.done,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `GET [base]/$reindex`: every custom search parameter with its reindex progress.
pub fn status(_engine: &Engine) -> FhirResult<Response> {
    let params: Vec<Value> = registry::all()
        .iter()
        .map(|c| {
            let (state, done, total) = match c.state {
                State::Ready => ("ready", None, None),
                State::Indexing { done, total } => ("indexing", Some(done), Some(total)),
            };
            let mut parts = vec![
                json!({"name": "searchParameter", "valueReference": {"reference": format!("SearchParameter/{}", c.id)}}),
                json!({"name": "code", "valueCode": c.param.code}),
                json!({"name": "base", "valueString": c.types.join(",")}),
                json!({"name": "status", "valueCode": state}),
            ];
            if let (Some(done), Some(total)) = (done, total) {
                parts.push(json!({"name": "done", "valueInteger": done}));
                parts.push(json!({"name": "total", "valueInteger": total}));
            }
            json!({"name": "parameter", "part": parts})
        })
        .collect();
    Ok(Response::json(200, json!({"resourceType": "Parameters", "parameter": params})))
}

/// The warning (or, with `Prefer: handling=strict`, the error) for a parameter that is a
/// custom one still being indexed; `None` if it is simply unknown.
pub fn pending_issue(types: &[ResourceType], code: &str) -> Option<Issue> {
    types
        .iter()
        .find_map(|t| registry::pending(t.as_str(), code))
        .map(|msg| Issue::warning(IssueType::Transient, msg).at(code.to_string()))
}
