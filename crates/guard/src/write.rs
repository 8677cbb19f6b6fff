//! Every write — create, update, patch, delete and their conditional forms — as one
//! function over a store transaction, so that single requests and transaction bundles
//! share exactly the same checks: validation, preconditions, versioning, `meta`, and
//! index rows written with the resource. It runs over a caller's [`WriteTx`], which
//! checks what each write would store against the policy and the domain rules.

use fhir_model::{Issue, IssueType, ResourceType, is_valid_id};
use search::IndexEntry;
use search::query::parse_query;
use serde_json::Value;
use store::{Method as StoreMethod, NewVersion};

use crate::WriteTx;

use crate::error::{FhirError, FhirResult};
use crate::meta::{instant, now_micros, parse_etag, stamp};

/// A write to perform.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// POST; `id` is preassigned inside transactions (for `urn:uuid` references).
    Create {
        resource: Value,
        if_none_exist: Option<String>,
        id: Option<String>,
    },
    Update {
        resource_type: ResourceType,
        id: String,
        resource: Value,
        if_match: Option<String>,
    },
    ConditionalUpdate {
        resource_type: ResourceType,
        query: String,
        resource: Value,
        if_match: Option<String>,
    },
    Patch {
        resource_type: ResourceType,
        id: String,
        patch: PatchDoc,
        if_match: Option<String>,
    },
    Delete {
        resource_type: ResourceType,
        id: String,
        if_match: Option<String>,
    },
    ConditionalDelete {
        resource_type: ResourceType,
        query: String,
    },
}

/// A patch document.
#[derive(Debug, Clone)]
pub enum PatchDoc {
    /// RFC 6902 JSON Patch.
    Json(Value),
    /// FHIRPath Patch: a Parameters resource.
    FhirPath(Value),
}

/// The outcome of a write.
#[derive(Debug, Clone)]
pub struct Written {
    /// 200 (updated, or conditional create matched), 201 (created) or 204 (deleted/nothing).
    pub status: u16,
    pub resource_type: ResourceType,
    pub id: String,
    pub version: u64,
    pub last_updated: i64,
    /// The resource as stored (`None` after a delete).
    pub resource: Option<Value>,
}

/// A write checked before any database lock is taken: its body validated and its
/// search index extracted, so that a transaction holds the database only for database
/// work (the SQLite writer is one at a time).
#[derive(Debug)]
pub struct Prepared {
    op: WriteOp,
    /// Index of the body without the final `_id`/`_lastUpdated` (completed at write
    /// time); `None` when it must be extracted in the transaction (e.g. after a
    /// transaction rewrote references).
    index: Option<Vec<IndexEntry>>,
    /// [`search::registry::epoch`] when `index` was extracted: if custom search
    /// parameters changed since, it is extracted again at write time.
    epoch: u64,
}

impl Prepared {
    pub fn op(&self) -> &WriteOp {
        &self.op
    }

    /// The write, e.g. to assign an id inside a transaction bundle.
    pub fn op_mut(&mut self) -> &mut WriteOp {
        &mut self.op
    }

    /// The body was changed after preparation: extract its index again at write time.
    pub fn body_changed(&mut self) {
        self.index = None;
    }
}

/// Check a write without touching the database: body type and id, structure validation,
/// index extraction.
pub fn prepare(op: WriteOp) -> FhirResult<Prepared> {
    let resource = match &op {
        WriteOp::Create { resource, .. } => resource,
        WriteOp::Update { resource_type, id, resource, .. } => {
            check_body(resource, *resource_type, Some(id))?;
            resource
        }
        WriteOp::ConditionalUpdate { resource_type, resource, .. } => {
            check_body(resource, *resource_type, None)?;
            resource
        }
        _ => return Ok(Prepared { op, index: None, epoch: 0 }),
    };
    validate(resource)?;
    let epoch = search::registry::epoch();
    let index = Some(search::extract(resource));
    Ok(Prepared { op, index, epoch })
}

/// Perform a prepared write inside `tx` (the caller commits).
pub fn apply(tx: &mut WriteTx<'_>, prepared: Prepared) -> FhirResult<Written> {
    let index = prepared.index.filter(|_| prepared.epoch == search::registry::epoch());
    match prepared.op {
        WriteOp::Create { resource, if_none_exist, id } => create(tx, resource, if_none_exist.as_deref(), id, index),
        WriteOp::Update { resource_type, id, resource, if_match } => {
            put(tx, resource_type, &id, resource, if_match.as_deref(), index)
        }
        WriteOp::ConditionalUpdate { resource_type, query, resource, if_match } => {
            let q = parse_criteria(resource_type, &query)?;
            tx.lock_key(&format!("{resource_type}?{query}"))?;
            let matches = tx.search_ids(&q, 2)?;
            let body_id = resource.get("id").and_then(Value::as_str).map(str::to_string);
            match matches.as_slice() {
                [] => match body_id {
                    Some(id) => put(tx, resource_type, &id, resource, if_match.as_deref(), index),
                    None => create(tx, resource, None, None, index),
                },
                [one] => {
                    if body_id.as_deref().is_some_and(|b| b != one) {
                        return Err(FhirError::bad_request(format!(
                            "The criteria match {resource_type}/{one} but the resource has id '{}'",
                            body_id.unwrap_or_default()
                        )));
                    }
                    let mut resource = resource;
                    set_id(&mut resource, one);
                    put(tx, resource_type, one, resource, if_match.as_deref(), index)
                }
                _ => Err(multiple_matches(resource_type, &query)),
            }
        }
        WriteOp::Patch { resource_type, id, patch, if_match } => {
            let current = tx.read(resource_type, &id)?;
            let stored = match current {
                None => {
                    return Err(FhirError::not_found(format!("{resource_type}/{id} does not exist")));
                }
                Some(s) => s,
            };
            let Some(body) = stored.body else {
                return Err(FhirError::gone(format!("{resource_type}/{id} has been deleted")));
            };
            check_if_match(if_match.as_deref(), Some(stored.version), resource_type, &id)?;
            let mut resource: Value = serde_json::from_slice(&body).map_err(|e| {
                tracing::error!("stored {resource_type}/{id} is not JSON: {e}");
                FhirError::internal()
            })?;
            match patch {
                PatchDoc::Json(doc) => {
                    let ops: json_patch::Patch = serde_json::from_value(doc).map_err(|e| {
                        FhirError::bad_request(format!("The body is not a valid JSON Patch document: {e}"))
                    })?;
                    json_patch::patch(&mut resource, &ops).map_err(|e| {
                        FhirError::new(
                            422,
                            Issue::error(IssueType::Processing, format!("The patch cannot be applied: {e}")),
                        )
                    })?;
                }
                PatchDoc::FhirPath(params) => crate::fhirpath_patch::apply(&mut resource, &params)?,
            }
            check_body(&resource, resource_type, Some(&id))?;
            validate(&resource)?;
            put(tx, resource_type, &id, resource, None, None)
        }
        WriteOp::Delete { resource_type, id, if_match } => delete(tx, resource_type, &id, if_match.as_deref()),
        WriteOp::ConditionalDelete { resource_type, query } => {
            let q = parse_criteria(resource_type, &query)?;
            let matches = tx.search_ids(&q, 2)?;
            match matches.as_slice() {
                [] => Ok(Written {
                    status: 204,
                    resource_type,
                    id: String::new(),
                    version: 0,
                    last_updated: 0,
                    resource: None,
                }),
                [one] => delete(tx, resource_type, &one.clone(), None),
                _ => Err(multiple_matches(resource_type, &query)),
            }
        }
    }
}

fn multiple_matches(rt: ResourceType, query: &str) -> FhirError {
    FhirError::new(
        412,
        Issue::error(IssueType::MultipleMatches, format!("The criteria '{rt}?{query}' match more than one resource")),
    )
}

/// Parse criteria of a conditional operation; unknown parameters are errors here.
pub fn parse_criteria(rt: ResourceType, query: &str) -> FhirResult<search::Query> {
    let query = query.trim_start_matches('?');
    let query = query.strip_prefix(&format!("{rt}?")).unwrap_or(query);
    let q = parse_query(rt, query)?;
    if let Some(p) = q.ignored.first() {
        return Err(FhirError::new(
            400,
            Issue::error(
                IssueType::NotSupported,
                format!("Unknown search parameter '{p}' for {rt} in conditional criteria"),
            )
            .at(p.clone()),
        ));
    }
    if q.clauses.is_empty() {
        return Err(FhirError::bad_request("Conditional criteria must contain at least one search parameter"));
    }
    Ok(q)
}

/// The body must be a resource of the URL's type, carrying the URL's id (if any).
fn check_body(resource: &Value, rt: ResourceType, id: Option<&str>) -> FhirResult<()> {
    let body_type = resource.get("resourceType").and_then(Value::as_str);
    if body_type != Some(rt.as_str()) {
        return Err(FhirError::new(
            400,
            Issue::error(
                IssueType::Invalid,
                format!("The body is a {} but the URL is for {rt}", body_type.unwrap_or("JSON without resourceType")),
            )
            .at("resourceType"),
        ));
    }
    if let Some(id) = id {
        match resource.get("id").and_then(Value::as_str) {
            None => {
                return Err(FhirError::new(
                    400,
                    Issue::error(IssueType::Required, format!("An update must carry the id in the body ('{id}')"))
                        .at(format!("{rt}.id")),
                ));
            }
            Some(b) if b != id => {
                return Err(FhirError::new(
                    400,
                    Issue::error(
                        IssueType::Invalid,
                        format!("The id in the body ('{b}') does not match the URL ('{id}')"),
                    )
                    .at(format!("{rt}.id")),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn set_id(resource: &mut Value, id: &str) {
    if let Some(o) = resource.as_object_mut() {
        o.insert("id".into(), Value::String(id.to_string()));
    }
}

/// Validate against the structure definitions (422 with every issue if invalid), and a
/// SearchParameter also as a search parameter we can use.
pub fn validate(resource: &Value) -> FhirResult<()> {
    let issues = validation::validate_resource(resource);
    if validation::has_errors(&issues) {
        return Err(FhirError::with_issues(422, issues));
    }
    check_search_parameter(resource)
}

/// A SearchParameter about to be written must be one we can use (422 naming the element
/// otherwise). Other resources pass.
fn check_search_parameter(resource: &Value) -> FhirResult<()> {
    if resource.get("resourceType").and_then(Value::as_str) != Some("SearchParameter") {
        return Ok(());
    }
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
    search::registry::definition(resource, id).map(drop).map_err(|issue| FhirError::new(422, issue))
}

fn check_if_match(if_match: Option<&str>, current: Option<u64>, rt: ResourceType, id: &str) -> FhirResult<()> {
    let Some(expected) = if_match else {
        return Ok(());
    };
    let Some(expected) = parse_etag(expected) else {
        return Err(FhirError::bad_request(format!("If-Match '{expected}' is not a version ETag such as W/\"3\"")));
    };
    match current {
        Some(v) if v == expected => Ok(()),
        Some(v) => Err(FhirError::precondition_failed(format!(
            "{rt}/{id} is at version {v}, not {expected}: it was changed by someone else; read it again and reapply your change"
        ))),
        None => {
            Err(FhirError::precondition_failed(format!("{rt}/{id} does not exist, so version {expected} cannot match")))
        }
    }
}

/// The type a resource body names (400 if it is not an R4 resource type).
pub fn body_type(resource: &Value) -> FhirResult<ResourceType> {
    let name = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    ResourceType::parse(name).ok_or_else(|| {
        FhirError::new(
            400,
            Issue::error(IssueType::Invalid, format!("'{name}' is not a FHIR R4 resource type")).at("resourceType"),
        )
    })
}

fn create(
    tx: &mut WriteTx<'_>,
    resource: Value,
    if_none_exist: Option<&str>,
    id: Option<String>,
    index: Option<Vec<IndexEntry>>,
) -> FhirResult<Written> {
    let rt = body_type(&resource)?;
    if let Some(criteria) = if_none_exist {
        let q = parse_criteria(rt, criteria)?;
        tx.lock_key(&format!("{rt}?{criteria}"))?;
        match tx.search_ids(&q, 2)?.as_slice() {
            [] => {}
            [one] => {
                let existing = tx.read(rt, one)?;
                let (version, last_updated, resource) = match existing {
                    Some(s) => (s.version, s.last_updated, s.body.and_then(|b| serde_json::from_slice(&b).ok())),
                    None => (0, 0, None),
                };
                return Ok(Written {
                    status: 200,
                    resource_type: rt,
                    id: one.clone(),
                    version,
                    last_updated,
                    resource,
                });
            }
            _ => return Err(multiple_matches(rt, criteria)),
        }
    }
    let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut resource = resource;
    set_id(&mut resource, &id);
    store_version(tx, Version { rt, id: &id, number: 1, method: StoreMethod::Create, status: 201 }, resource, index)
}

fn put(
    tx: &mut WriteTx<'_>,
    rt: ResourceType,
    id: &str,
    resource: Value,
    if_match: Option<&str>,
    index: Option<Vec<IndexEntry>>,
) -> FhirResult<Written> {
    if !is_valid_id(id) {
        return Err(FhirError::bad_request(format!("'{id}' is not a valid resource id (1-64 of A-Z a-z 0-9 - .)")));
    }
    let mut current = tx.current(rt, id)?;
    if current.is_none() {
        // a create at a chosen id: concurrent creators of the same id wait for each other
        // here (there is no row to lock yet), and the later one then updates what the
        // earlier one created instead of failing on the unique key
        tx.lock_key(&format!("{rt}/{id}"))?;
        current = tx.current(rt, id)?;
    }
    check_if_match(if_match, current.map(|c| c.version), rt, id)?;
    let (number, method, status) = match current {
        None => (1, StoreMethod::Create, 201),
        Some(c) if c.deleted => (c.version + 1, StoreMethod::Create, 201),
        Some(c) => (c.version + 1, StoreMethod::Update, 200),
    };
    store_version(tx, Version { rt, id, number, method, status }, resource, index)
}

fn delete(tx: &mut WriteTx<'_>, rt: ResourceType, id: &str, if_match: Option<&str>) -> FhirResult<Written> {
    let current = tx.current(rt, id)?;
    check_if_match(if_match, current.map(|c| c.version), rt, id)?;
    let nothing =
        Written { status: 204, resource_type: rt, id: id.to_string(), version: 0, last_updated: 0, resource: None };
    match current {
        None => Ok(nothing),
        Some(c) if c.deleted => Ok(Written { version: c.version, ..nothing }),
        Some(c) => {
            let last_updated = now_micros();
            let v = NewVersion {
                resource_type: rt.as_str(),
                id,
                version: c.version + 1,
                last_updated,
                method: StoreMethod::Delete,
                body: None,
                index: &[],
            };
            tx.write_version(&v, None, None)?;
            Ok(Written { version: c.version + 1, last_updated, ..nothing })
        }
    }
}

/// The version about to be written.
struct Version<'a> {
    rt: ResourceType,
    id: &'a str,
    number: u64,
    method: StoreMethod,
    /// HTTP status of the outcome: 201 created, 200 updated.
    status: u16,
}

fn store_version(
    tx: &mut WriteTx<'_>,
    v: Version<'_>,
    mut resource: Value,
    index: Option<Vec<IndexEntry>>,
) -> FhirResult<Written> {
    let content =
        if v.rt.as_str() == "Binary" { crate::binary::prepare(tx, v.id, v.number, &mut resource)? } else { None };
    let last_updated = now_micros();
    stamp(&mut resource, v.number, last_updated);
    let index = match index {
        Some(prepared) => search::index::with_identity(prepared, v.id, &instant(last_updated)),
        None => search::extract(&resource),
    };
    let body = serde_json::to_vec(&resource).map_err(|_| FhirError::internal())?;
    let nv = NewVersion {
        resource_type: v.rt.as_str(),
        id: v.id,
        version: v.number,
        last_updated,
        method: v.method,
        body: Some(&body),
        index: &index,
    };
    tx.write_version(&nv, Some(&resource), content.as_ref().map(crate::binary::Content::bytes))?;
    if let Some(c) = content {
        crate::binary::put(tx, c)?;
    }
    Ok(Written {
        status: v.status,
        resource_type: v.rt,
        id: v.id.to_string(),
        version: v.number,
        last_updated,
        resource: Some(resource),
    })
}
