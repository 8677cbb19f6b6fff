//! Bulk loading: many resources written with the full checks of a normal write
//! (validation, index extraction, versioning) but in few transactions. Each resource is
//! written at its id (a resource without one gets an id derived from its content), and
//! a resource identical to the stored version is not written again, so loading the same
//! data twice changes nothing. A resource that fails is reported alone; the rest of its
//! chunk is written. Preparation (validation, indexing) and writing are separate steps, so
//! that a caller can run them on different threads.

use fhir_model::ResourceType;
use serde_json::Value;

use crate::write::{Prepared, WriteOp, prepare};
use crate::{Engine, FhirError, FhirResult, Handle};
use guard::WriteTx;

/// What happened to one resource of a chunk.
#[derive(Debug)]
pub enum Loaded {
    /// Written (new, or a new version).
    Written,
    /// Identical to what is stored: nothing written.
    Unchanged,
    /// Refused, with why.
    Rejected(FhirError),
}

/// An id for a resource that has none: the same content always gets the same id.
pub fn content_id(resource: &Value) -> String {
    use aws_lc_rs::digest;
    let d = digest::digest(&digest::SHA256, resource.to_string().as_bytes());
    d.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The resource without its `meta.versionId`/`meta.lastUpdated` (what the server sets).
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty()
            && let Some(o) = v.as_object_mut()
        {
            o.remove("meta");
        }
    }
    v
}

/// Type, id and prepared write of a resource, and the resource as it will be written
/// (with its id).
fn prepare_one(mut resource: Value) -> FhirResult<(ResourceType, String, Value, Prepared)> {
    let rt = crate::write::body_type(&resource)?;
    let id = match resource.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => {
            let id = content_id(&resource);
            if let Some(o) = resource.as_object_mut() {
                o.insert("id".into(), Value::String(id.clone()));
            }
            id
        }
    };
    let body = resource.clone();
    let prepared = prepare(WriteOp::Update { resource_type: rt, id: id.clone(), resource, if_match: None })?;
    Ok((rt, id, body, prepared))
}

/// Is the stored current version the same resource (apart from the server's meta)?
fn unchanged(tx: &mut WriteTx<'_>, rt: ResourceType, id: &str, new: &Value) -> FhirResult<bool> {
    let Some(cur) = tx.read(rt, id)? else { return Ok(false) };
    let Some(body) = cur.body else { return Ok(false) };
    let stored: Value = serde_json::from_slice(&body).map_err(|_| FhirError::internal())?;
    Ok(comparable(&stored) == comparable(new))
}

/// A chunk of resources checked and indexed outside any transaction (see
/// [`prepare_chunk`]), ready for [`write_chunk`]: preparation is the CPU-heavy half of a load and runs on as many
/// threads as there are cores, ahead of the writers.
pub struct Batch {
    /// Per input position: the outcome, where preparation already decided it.
    out: Vec<Option<Loaded>>,
    ready: Vec<Ready>,
}

/// Prepare a chunk (validated and indexed one by one; a failing resource is rejected
/// alone).
pub fn prepare_chunk(resources: Vec<Value>) -> Batch {
    let mut out: Vec<Option<Loaded>> = Vec::with_capacity(resources.len());
    let mut ready = Vec::new();
    for (i, r) in resources.into_iter().enumerate() {
        match prepare_one(r) {
            Ok((rt, id, body, p)) => {
                out.push(None);
                ready.push((i, rt, id, body, p));
            }
            Err(e) => out.push(Some(Loaded::Rejected(e))),
        }
    }
    Batch { out, ready }
}

/// Write a prepared chunk in one transaction; if that transaction fails, each resource
/// again in its own, so that only the failing ones are rejected. Results are in input
/// order.
pub fn write_chunk(engine: &Engine, h: &Handle, batch: Batch) -> Vec<Loaded> {
    let Batch { mut out, ready } = batch;
    match write_retrying(engine, h, ready) {
        Ok(results) => {
            for (i, l) in results {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(l);
                }
            }
        }
        Err((_, bodies)) => {
            // one by one: the failures are reported, the others written
            for (i, body) in bodies {
                let l = match prepare_one(body) {
                    Ok((rt, id, body, p)) => match write_retrying(engine, h, vec![(i, rt, id, body, p)]) {
                        Ok(mut r) => r.pop().map_or(Loaded::Unchanged, |(_, l)| l),
                        Err((e, _)) => Loaded::Rejected(e),
                    },
                    Err(e) => Loaded::Rejected(e),
                };
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(l);
                }
            }
        }
    }
    out.into_iter().map(|l| l.unwrap_or(Loaded::Unchanged)).collect()
}

/// The resources of one transaction bundle, prepared for [`write_all_or_none`]: the first
/// that fails preparation fails the bundle.
pub fn prepare_all_or_none(resources: Vec<Value>) -> FhirResult<Vec<Ready>> {
    resources
        .into_iter()
        .enumerate()
        .map(|(i, r)| prepare_one(r).map(|(rt, id, body, p)| (i, rt, id, body, p)))
        .collect()
}

/// Write the prepared resources of one transaction bundle: all in one database
/// transaction, or none (the first failure says why, as a FHIR transaction would).
pub fn write_all_or_none(engine: &Engine, h: &Handle, ready: Vec<Ready>) -> FhirResult<Vec<Loaded>> {
    Ok(write_retrying(engine, h, ready).map_err(|(e, _)| e)?.into_iter().map(|(_, l)| l).collect())
}

/// Attempts of a transaction that conflicts with a concurrent one.
const ATTEMPTS: usize = 3;

/// [`write_all`], again when a concurrent transaction wrote one of the same resources at
/// the same moment (Synthea's bundles each carry the same practitioners, written by
/// parallel writers): once that one has committed, the same resource is unchanged here.
fn write_retrying(engine: &Engine, h: &Handle, ready: Vec<Ready>) -> Result<Vec<(usize, Loaded)>, WriteFailed> {
    let mut ready = ready;
    let mut attempt = 1;
    loop {
        match write_all(engine, h, ready) {
            Err((e, bodies)) if e.status == 409 && attempt < ATTEMPTS => {
                attempt += 1;
                let again: FhirResult<Vec<Ready>> = bodies
                    .into_iter()
                    .map(|(i, b)| prepare_one(b).map(|(rt, id, body, p)| (i, rt, id, body, p)))
                    .collect();
                ready = again.map_err(|e| (e, Vec::new()))?;
            }
            result => return result,
        }
    }
}

/// A prepared resource: its input position, type, id, body as it will be written, and
/// the prepared write.
pub type Ready = (usize, ResourceType, String, Value, Prepared);

/// Write in one transaction. On failure, the error and every input body (position, body)
/// for a retry one by one, without having copied them beforehand.
fn write_all(engine: &Engine, h: &Handle, ready: Vec<Ready>) -> Result<Vec<(usize, Loaded)>, WriteFailed> {
    let mut bodies: Vec<(usize, Value)> = Vec::with_capacity(ready.len());
    let mut rest = ready.into_iter();
    let result = (|| {
        let mut tx = h.begin()?;
        let mut results = Vec::with_capacity(rest.len());
        let mut written = Vec::new();
        for (i, rt, id, body, p) in rest.by_ref() {
            let same = unchanged(&mut tx, rt, &id, &body);
            bodies.push((i, body));
            if same? {
                results.push((i, Loaded::Unchanged));
                continue;
            }
            written.push(tx.apply(p)?);
            results.push((i, Loaded::Written));
        }
        tx.commit()?;
        Ok((results, written))
    })();
    match result {
        Ok((results, written)) => {
            crate::search_parameters::after_commit(engine, &written.iter().collect::<Vec<_>>());
            drop_later((bodies, written));
            Ok(results)
        }
        Err(e) => {
            bodies.extend(rest.map(|(i, _, _, body, _)| (i, body)));
            Err((e, bodies))
        }
    }
}

/// Free `garbage` on a thread of its own. A chunk's resource trees take a tenth of the
/// time of writing it to free, and the thread writing is the bound of a load (on SQLite,
/// there is one): it hands them over and goes on. At most one chunk waits (the sender
/// blocks beyond that), so memory stays bounded.
fn drop_later<T: Send + 'static>(garbage: T) {
    type Garbage = Box<dyn Send>;
    static BIN: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<Garbage>>> = std::sync::OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Garbage>(1);
        let started = std::thread::Builder::new().name("bulk-free".into()).spawn(move || rx.into_iter().for_each(drop));
        started.ok().map(|_| tx)
    });
    match bin {
        Some(tx) => drop(tx.send(Box::new(garbage))),
        None => drop(garbage),
    }
}

/// Why a transaction of [`write_all`] failed, and the bodies it was given back.
type WriteFailed = (FhirError, Vec<(usize, Value)>);
