//! `create`, `update`, `patch`, `delete` and their conditional forms as single requests:
//! each runs [`crate::write::apply`] in its own transaction of the caller's handle, which
//! checks what it would store.

use fhir_model::{Issue, ResourceType};
use serde_json::Value;

use crate::meta::{etag, http_date};
use crate::write::{PatchDoc, WriteOp, Written, prepare};
use crate::{Body, Engine, FhirError, FhirResult, Handle, Request, Response, ResponseBody, Return};

fn body(req: &Request) -> FhirResult<Value> {
    match &req.body {
        Body::Json(v) => Ok(v.clone()),
        Body::None => Err(FhirError::bad_request("This interaction needs a resource in the request body")),
    }
}

/// Run one write in its own transaction.
pub fn run(engine: &Engine, h: &Handle, req: &Request, op: WriteOp) -> FhirResult<Response> {
    // the type first, before any work on the body
    if let Some(rt) = op_type(&op) {
        h.authorize(interaction_of(&op), rt)?;
    }
    let w = h.commit_one(prepare(op)?)?;
    crate::search_parameters::after_commit(engine, &[&w]);
    Ok(written_response(engine, &w, req.prefer_return))
}

/// The type a write is about (a create's from its body).
pub fn op_type(op: &WriteOp) -> Option<fhir_model::ResourceType> {
    match op {
        WriteOp::Create { resource, .. } => {
            resource.get("resourceType").and_then(Value::as_str).and_then(fhir_model::ResourceType::parse)
        }
        WriteOp::Update { resource_type, .. }
        | WriteOp::ConditionalUpdate { resource_type, .. }
        | WriteOp::Patch { resource_type, .. }
        | WriteOp::Delete { resource_type, .. }
        | WriteOp::ConditionalDelete { resource_type, .. } => Some(*resource_type),
    }
}

/// The interaction a write asks for (an update may turn out to create).
pub fn interaction_of(op: &WriteOp) -> auth::scope::Interaction {
    use auth::scope::Interaction;
    match op {
        WriteOp::Create { .. } => Interaction::Create,
        WriteOp::Delete { .. } | WriteOp::ConditionalDelete { .. } => Interaction::Delete,
        _ => Interaction::Update,
    }
}

/// The HTTP response for a completed write, honouring `Prefer: return=`.
pub fn written_response(engine: &Engine, w: &Written, ret: Return) -> Response {
    let mut r = Response::empty(w.status);
    if w.version > 0 && w.status != 204 {
        r.etag = Some(etag(w.version));
        r.last_modified = Some(http_date(w.last_updated));
        r.location = Some(engine.url(&format!("{}/{}/_history/{}", w.resource_type, w.id, w.version)));
    }
    match ret {
        Return::Minimal => {}
        Return::Representation => {
            if let Some(res) = &w.resource {
                r.body = ResponseBody::Json(res.clone());
            }
        }
        Return::OperationOutcome => {
            let what = match w.status {
                201 => format!("Created {}/{} (version {})", w.resource_type, w.id, w.version),
                204 if w.id.is_empty() => "Nothing matched; nothing was deleted".to_string(),
                204 => format!("Deleted {}/{}", w.resource_type, w.id),
                _ => format!("{}/{} is at version {}", w.resource_type, w.id, w.version),
            };
            if r.status == 204 {
                r.status = 200;
            }
            r.body = ResponseBody::Json(fhir_model::OperationOutcome::from(Issue::information(what)).to_json());
        }
    }
    r
}

pub fn create(engine: &Engine, h: &Handle, req: &Request, rt: ResourceType) -> FhirResult<Response> {
    let resource = body(req)?;
    let body_type = resource.get("resourceType").and_then(Value::as_str);
    if body_type != Some(rt.as_str()) {
        return Err(FhirError::new(
            400,
            Issue::error(
                fhir_model::IssueType::Invalid,
                format!("The body is a {} but the URL is for {rt}", body_type.unwrap_or("JSON without resourceType")),
            )
            .at("resourceType"),
        ));
    }
    let op = WriteOp::Create { resource, if_none_exist: req.if_none_exist.clone(), id: None };
    run(engine, h, req, op)
}

pub fn update(engine: &Engine, h: &Handle, req: &Request, rt: ResourceType, id: &str) -> FhirResult<Response> {
    let op =
        WriteOp::Update { resource_type: rt, id: id.to_string(), resource: body(req)?, if_match: req.if_match.clone() };
    run(engine, h, req, op)
}

pub fn conditional_update(engine: &Engine, h: &Handle, req: &Request, rt: ResourceType) -> FhirResult<Response> {
    if req.query.is_empty() {
        return Err(FhirError::bad_request(format!("PUT {rt} needs an id in the URL or search criteria in the query")));
    }
    let op = WriteOp::ConditionalUpdate {
        resource_type: rt,
        query: req.query.clone(),
        resource: body(req)?,
        if_match: req.if_match.clone(),
    };
    run(engine, h, req, op)
}

pub fn patch(engine: &Engine, h: &Handle, req: &Request, rt: ResourceType, id: &str) -> FhirResult<Response> {
    let doc = body(req)?;
    let patch = if req.json_patch {
        PatchDoc::Json(doc)
    } else if doc.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        PatchDoc::FhirPath(doc)
    } else {
        return Err(FhirError::new(
            415,
            Issue::error(
                fhir_model::IssueType::NotSupported,
                "PATCH takes a JSON Patch (application/json-patch+json) or a FHIRPath Patch Parameters resource (application/fhir+json)",
            ),
        ));
    };
    let op = WriteOp::Patch { resource_type: rt, id: id.to_string(), patch, if_match: req.if_match.clone() };
    run(engine, h, req, op)
}

pub fn delete(engine: &Engine, h: &Handle, req: &Request, rt: ResourceType, id: &str) -> FhirResult<Response> {
    if !fhir_model::is_valid_id(id) {
        return Err(FhirError::bad_request(format!("'{id}' is not a valid {rt} id")));
    }
    run(engine, h, req, WriteOp::Delete { resource_type: rt, id: id.to_string(), if_match: req.if_match.clone() })
}

pub fn conditional_delete(engine: &Engine, h: &Handle, req: &Request, rt: ResourceType) -> FhirResult<Response> {
    if req.query.is_empty() {
        return Err(FhirError::bad_request(format!(
            "DELETE {rt} needs an id in the URL or search criteria in the query"
        )));
    }
    run(engine, h, req, WriteOp::ConditionalDelete { resource_type: rt, query: req.query.clone() })
}
