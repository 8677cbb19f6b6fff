//! `transaction` and `batch` Bundles posted to the base.
//!
//! A transaction runs in one store transaction: all entries succeed or nothing is
//! stored. Entries are processed in the order the specification prescribes (DELETE, POST,
//! PUT/PATCH, then GET), `urn:uuid:` full URLs are given ids before any resource is
//! written so that references between entries can be rewritten, and conditional
//! references (`Patient?identifier=...`) are resolved inside the transaction — within the
//! caller's reach, as are `ifNoneExist` criteria, and every entry's write is checked by
//! the guard on what it stores (after the rewriting). A batch runs every entry on its own.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use fhir_model::{Issue, IssueType, OperationOutcome, Reference};
use guard::WriteTx;
use serde_json::{Value, json};

use crate::meta::{etag, instant};
use crate::write::{PatchDoc, Prepared, WriteOp, Written, parse_criteria, prepare};
use crate::{Body, Engine, FhirError, FhirResult, Handle, Method, Request, Response, resource_type};

/// One parsed bundle entry.
struct Entry {
    index: usize,
    full_url: Option<String>,
    method: Method,
    /// Path below the base and query string.
    path: String,
    query: String,
    resource: Option<Value>,
    if_match: Option<String>,
    if_none_exist: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
}

fn entry_error(index: usize, status: u16, msg: impl Into<String>) -> FhirError {
    FhirError::new(status, Issue::error(IssueType::Invalid, msg).at(format!("Bundle.entry[{index}]")))
}

pub fn bundle(engine: &Engine, h: &Handle, req: &Request) -> FhirResult<Response> {
    let Body::Json(b) = &req.body else {
        return Err(FhirError::bad_request("POST to the base takes a transaction or batch Bundle"));
    };
    if b.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::new(
            400,
            Issue::error(IssueType::Invalid, "POST to the base takes a Bundle").at("resourceType"),
        ));
    }
    let kind = b.get("type").and_then(Value::as_str).unwrap_or_default();
    let entries = match b.get("entry") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(FhirError::new(
                400,
                Issue::error(IssueType::Structure, "Bundle.entry must be an array").at("Bundle.entry"),
            ));
        }
    };
    if entries.len() > engine.config.max_bundle_entries {
        return Err(FhirError::new(
            413,
            Issue::error(
                IssueType::TooLong,
                format!(
                    "The bundle has {} entries; at most {} are accepted",
                    entries.len(),
                    engine.config.max_bundle_entries
                ),
            ),
        ));
    }
    match kind {
        "transaction" => {
            let parsed =
                entries.iter().enumerate().map(|(i, e)| parse_entry(engine, i, e)).collect::<FhirResult<Vec<_>>>()?;
            transaction(engine, h, req, parsed)
        }
        "batch" => Ok(batch(engine, h, req, &entries)),
        other => Err(FhirError::new(
            400,
            Issue::error(
                IssueType::Invalid,
                format!("POST to the base takes a transaction or batch Bundle, not '{other}'"),
            )
            .at("Bundle.type"),
        )),
    }
}

fn parse_entry(engine: &Engine, index: usize, e: &Value) -> FhirResult<Entry> {
    let request = e.get("request").ok_or_else(|| entry_error(index, 400, "entry.request is required"))?;
    let method =
        request.get("method").and_then(Value::as_str).and_then(Method::parse).ok_or_else(|| {
            entry_error(index, 400, "entry.request.method must be GET, HEAD, POST, PUT, PATCH or DELETE")
        })?;
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| entry_error(index, 400, "entry.request.url is required"))?;
    let base = engine.config.base_url.trim_end_matches('/');
    let rel = url.strip_prefix(base).unwrap_or(url).trim_start_matches('/');
    let (path, query) = match rel.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (rel.to_string(), String::new()),
    };
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Entry {
        index,
        full_url: e.get("fullUrl").and_then(Value::as_str).map(str::to_string),
        method,
        path,
        query,
        resource: e.get("resource").cloned(),
        if_match: text("ifMatch"),
        if_none_exist: text("ifNoneExist"),
        if_none_match: text("ifNoneMatch"),
        if_modified_since: text("ifModifiedSince"),
    })
}

fn need_resource(e: &Entry) -> FhirResult<Value> {
    e.resource
        .clone()
        .ok_or_else(|| entry_error(e.index, 400, format!("entry.resource is required for {:?}", e.method)))
}

/// The patch carried by a PATCH entry: a Binary holding a JSON Patch document, or a
/// Parameters resource (FHIRPath Patch).
fn patch_document(e: &Entry) -> FhirResult<PatchDoc> {
    let r = need_resource(e)?;
    match r.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => Ok(PatchDoc::FhirPath(r)),
        Some("Binary") => {
            let data = r.get("data").and_then(Value::as_str).unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|_| entry_error(e.index, 400, "Binary.data of the PATCH entry is not base64"))?;
            serde_json::from_slice(&bytes)
                .map(PatchDoc::Json)
                .map_err(|_| entry_error(e.index, 400, "Binary.data of the PATCH entry is not a JSON Patch document"))
        }
        _ => Err(entry_error(
            e.index,
            400,
            "A PATCH entry carries a Parameters (FHIRPath Patch) or a Binary with a JSON Patch",
        )),
    }
}

/// Turn a write entry into a [`WriteOp`].
fn write_op(e: &Entry) -> FhirResult<WriteOp> {
    let segs: Vec<&str> = e.path.split('/').filter(|s| !s.is_empty()).collect();
    let bad_url = || entry_error(e.index, 400, format!("'{}' is not a valid URL for {:?}", e.path, e.method));
    let rt = |s: &str| {
        resource_type(s).map_err(|_| entry_error(e.index, 400, format!("'{s}' is not a FHIR R4 resource type")))
    };
    Ok(match (e.method, segs.as_slice()) {
        (Method::Post, [t]) => {
            rt(t)?;
            WriteOp::Create { resource: need_resource(e)?, if_none_exist: e.if_none_exist.clone(), id: None }
        }
        (Method::Put, [t, id]) => WriteOp::Update {
            resource_type: rt(t)?,
            id: id.to_string(),
            resource: need_resource(e)?,
            if_match: e.if_match.clone(),
        },
        (Method::Put, [t]) if !e.query.is_empty() => WriteOp::ConditionalUpdate {
            resource_type: rt(t)?,
            query: e.query.clone(),
            resource: need_resource(e)?,
            if_match: e.if_match.clone(),
        },
        (Method::Patch, [t, id]) => WriteOp::Patch {
            resource_type: rt(t)?,
            id: id.to_string(),
            patch: patch_document(e)?,
            if_match: e.if_match.clone(),
        },
        (Method::Delete, [t, id]) => {
            WriteOp::Delete { resource_type: rt(t)?, id: id.to_string(), if_match: e.if_match.clone() }
        }
        (Method::Delete, [t]) if !e.query.is_empty() => {
            WriteOp::ConditionalDelete { resource_type: rt(t)?, query: e.query.clone() }
        }
        _ => return Err(bad_url()),
    })
}

fn get_request(e: &Entry, req: &Request) -> Request {
    let mut r = Request::new(req.principal.clone(), e.method, e.path.clone(), e.query.clone());
    r.address = req.address.clone();
    r.if_none_match = e.if_none_match.clone();
    r.if_modified_since = e.if_modified_since.clone();
    r.prefer_return = req.prefer_return;
    r
}

/// Order of processing: DELETE, POST, PUT/PATCH, GET/HEAD.
fn rank(m: Method) -> u8 {
    match m {
        Method::Delete => 0,
        Method::Post => 1,
        Method::Put | Method::Patch => 2,
        Method::Get | Method::Head => 3,
    }
}

fn transaction(engine: &Engine, h: &Handle, req: &Request, entries: Vec<Entry>) -> FhirResult<Response> {
    // The same resource may not be the target of two entries.
    let mut targets = HashSet::new();
    for e in &entries {
        if matches!(e.method, Method::Put | Method::Patch | Method::Delete)
            && e.query.is_empty()
            && !targets.insert(e.path.clone())
        {
            return Err(entry_error(
                e.index,
                400,
                format!("{} is the target of more than one entry of the transaction", e.path),
            ));
        }
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|i| entries.get(*i).map_or(9, |e| rank(e.method)));

    let mut ops: Vec<Option<Prepared>> = entries
        .iter()
        .map(|e| {
            if rank(e.method) == 3 {
                return Ok(None);
            }
            let rt = e.path.split('/').next().unwrap_or_default().to_string();
            write_op(e).and_then(prepare).map(Some).map_err(|err| at_entry(err, e.index, &rt))
        })
        .collect::<FhirResult<_>>()?;

    // the types first, before any database work
    for (e, op) in entries.iter().zip(ops.iter()) {
        if let Some(op) = op
            && let Some(rt) = super::write::op_type(op.op())
        {
            h.authorize(super::write::interaction_of(op.op()), rt)
                .map_err(|err| at_entry(err, e.index, e.path.split('/').next().unwrap_or_default()))?;
        }
    }
    let mut tx = h.begin()?;
    let mut results: Vec<Option<Written>> = vec![None; entries.len()];

    // 1. Identities: every POST gets its id (or its conditional match) before anything is
    //    written, so references to `urn:uuid:` full URLs can be rewritten everywhere.
    let mut ids: HashMap<String, String> = HashMap::new();
    for (e, op) in entries.iter().zip(ops.iter_mut()) {
        let Some(op) = op else { continue };
        let identity = match op.op_mut() {
            WriteOp::Create { resource, if_none_exist, id } => {
                let rt = resource.get("resourceType").and_then(Value::as_str).map(str::to_string).unwrap_or_default();
                let rt_typed = resource_type(&rt)
                    .map_err(|_| entry_error(e.index, 400, format!("'{rt}' is not a FHIR R4 resource type")))?;
                let existing = match if_none_exist.as_deref() {
                    Some(criteria) => {
                        let q = parse_criteria(rt_typed, criteria).map_err(|err| at_entry(err, e.index, &rt))?;
                        tx.lock_key(&format!("{rt}?{criteria}"))?;
                        match tx.search_ids(&q, 2)?.as_slice() {
                            [] => None,
                            [one] => Some(one.clone()),
                            _ => {
                                return Err(at_entry(
                                    FhirError::new(
                                        412,
                                        Issue::error(
                                            IssueType::MultipleMatches,
                                            format!("ifNoneExist '{criteria}' matches more than one {rt}"),
                                        ),
                                    ),
                                    e.index,
                                    &rt,
                                ));
                            }
                        }
                    }
                    None => None,
                };
                match existing {
                    Some(found) => {
                        let s = tx.read(rt_typed, &found)?;
                        results[e.index] = Some(Written {
                            status: 200,
                            resource_type: rt_typed,
                            id: found.clone(),
                            version: s.as_ref().map_or(0, |s| s.version),
                            last_updated: s.as_ref().map_or(0, |s| s.last_updated),
                            resource: s.and_then(|s| s.body).and_then(|b| serde_json::from_slice(&b).ok()),
                        });
                        *if_none_exist = None;
                        Some(format!("{rt}/{found}"))
                    }
                    None => {
                        let new_id = uuid::Uuid::now_v7().to_string();
                        *if_none_exist = None;
                        *id = Some(new_id.clone());
                        Some(format!("{rt}/{new_id}"))
                    }
                }
            }
            WriteOp::Update { resource_type, id, .. } => Some(format!("{resource_type}/{id}")),
            _ => None,
        };
        if let (Some(full_url), Some(identity)) = (&e.full_url, identity) {
            ids.insert(full_url.clone(), identity);
        }
    }

    // 2. Rewrite references in every resource to be written.
    for (e, op) in entries.iter().zip(ops.iter_mut()) {
        let Some(prepared) = op else { continue };
        let resource = match prepared.op_mut() {
            WriteOp::Create { resource, .. }
            | WriteOp::Update { resource, .. }
            | WriteOp::ConditionalUpdate { resource, .. } => resource,
            _ => continue,
        };
        if rewrite_references(resource, &ids, &mut tx).map_err(|err| at_entry(err, e.index, ""))? {
            prepared.body_changed();
        }
    }

    // 3. Write, in processing order.
    for i in order {
        let (Some(e), Some(slot)) = (entries.get(i), ops.get_mut(i)) else {
            continue;
        };
        let Some(op) = slot.take() else { continue };
        if results.get(i).is_some_and(Option::is_some) {
            continue; // a conditional create that matched an existing resource
        }
        let rt = e.path.split('/').next().unwrap_or_default().to_string();
        let w = tx.apply(op).map_err(|err| at_entry(err, e.index, &rt))?;
        results[i] = Some(w);
    }
    tx.commit()?;
    crate::search_parameters::after_commit(engine, &results.iter().flatten().collect::<Vec<_>>());

    // 4. Reads, after the writes, and the response in entry order.
    let mut out = Vec::with_capacity(entries.len());
    for (e, result) in entries.iter().zip(results) {
        out.push(match result {
            Some(w) => write_entry(&w, req),
            None => read_entry(engine.handle(&get_request(e, req))),
        });
    }
    Ok(Response::json(200, super::bundle_of("transaction-response", None, vec![], out)))
}

/// Point an error from an entry's own processing at that entry.
fn at_entry(mut err: FhirError, index: usize, rt: &str) -> FhirError {
    for issue in &mut err.outcome.issues {
        issue.diagnostics = format!("Bundle.entry[{index}]: {}", issue.diagnostics);
        for ex in &mut issue.expression {
            if !rt.is_empty() && (ex == rt || ex.starts_with(&format!("{rt}."))) {
                *ex = format!("Bundle.entry[{index}].resource{}", &ex[rt.len()..]);
            }
        }
        if issue.expression.is_empty() {
            issue.expression.push(format!("Bundle.entry[{index}]"));
        }
    }
    err
}

/// Replace `urn:uuid:` (and other full URL) references by the ids assigned in this
/// transaction, and conditional references by the one resource they match. Returns
/// whether anything changed.
fn rewrite_references(v: &mut Value, ids: &HashMap<String, String>, tx: &mut WriteTx<'_>) -> FhirResult<bool> {
    let mut changed = false;
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "reference"
                    && let Value::String(r) = child
                {
                    if let Some(new) = resolve_reference(r, ids, tx)? {
                        *r = new;
                        changed = true;
                    }
                    continue;
                }
                changed |= rewrite_references(child, ids, tx)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= rewrite_references(item, ids, tx)?;
            }
        }
        _ => {}
    }
    Ok(changed)
}

fn resolve_reference(r: &str, ids: &HashMap<String, String>, tx: &mut WriteTx<'_>) -> FhirResult<Option<String>> {
    if let Some(id) = ids.get(r) {
        return Ok(Some(id.clone()));
    }
    match Reference::parse(r) {
        Some(Reference::Urn(u)) => Err(FhirError::new(
            400,
            Issue::error(IssueType::NotFound, format!("The reference '{u}' matches no fullUrl in this transaction")),
        )),
        Some(Reference::Conditional { resource_type: rt, query }) => {
            let q = parse_criteria(rt, &query)?;
            match tx.search_ids(&q, 2)?.as_slice() {
                [one] => Ok(Some(format!("{rt}/{one}"))),
                [] => Err(FhirError::new(
                    412,
                    Issue::error(IssueType::NotFound, format!("The conditional reference '{r}' matches no resource")),
                )),
                _ => Err(FhirError::new(
                    412,
                    Issue::error(
                        IssueType::MultipleMatches,
                        format!("The conditional reference '{r}' matches more than one resource"),
                    ),
                )),
            }
        }
        _ => Ok(None),
    }
}

fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_string()
}

fn write_entry(w: &Written, req: &Request) -> Value {
    let mut response = json!({"status": status_line(w.status)});
    if w.version > 0 && w.status != 204 {
        response["location"] = json!(format!("{}/{}/_history/{}", w.resource_type, w.id, w.version));
        response["etag"] = json!(etag(w.version));
        response["lastModified"] = json!(instant(w.last_updated));
    }
    let mut entry = json!({"response": response});
    if w.status != 204 {
        entry["fullUrl"] = json!(format!("{}/{}", w.resource_type, w.id));
    }
    match (req.prefer_return, &w.resource) {
        (crate::Return::Representation, Some(r)) => entry["resource"] = r.clone(),
        (crate::Return::OperationOutcome, _) => {
            entry["response"]["outcome"] = OperationOutcome::from(Issue::information(status_line(w.status))).to_json();
        }
        _ => {}
    }
    entry
}

fn read_entry(r: Response) -> Value {
    let mut response = json!({"status": status_line(r.status)});
    if let Some(e) = &r.etag {
        response["etag"] = json!(e);
    }
    let body = r.body_json();
    let mut entry = json!({});
    match body {
        Some(b) if r.status >= 400 => response["outcome"] = b,
        Some(b) => entry["resource"] = b,
        None => {}
    }
    entry["response"] = response;
    entry
}

fn batch(engine: &Engine, h: &Handle, req: &Request, entries: &[Value]) -> Response {
    let out: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let e = match parse_entry(engine, i, raw) {
                Ok(e) => e,
                Err(err) => return read_entry(err.into()),
            };
            if rank(e.method) == 3 {
                return read_entry(engine.handle(&get_request(&e, req)));
            }
            let result = write_op(&e)
                .and_then(|op| {
                    if let Some(rt) = super::write::op_type(&op) {
                        h.authorize(super::write::interaction_of(&op), rt)?;
                    }
                    Ok(op)
                })
                .and_then(prepare)
                .and_then(|prepared| h.commit_one(prepared))
                .inspect(|w| crate::search_parameters::after_commit(engine, &[w]));
            match result {
                Ok(w) => write_entry(&w, req),
                Err(err) => {
                    let rt = e.path.split('/').next().unwrap_or_default().to_string();
                    read_entry(at_entry(err, i, &rt).into())
                }
            }
        })
        .collect();
    Response::json(200, super::bundle_of("batch-response", None, vec![], out))
}
