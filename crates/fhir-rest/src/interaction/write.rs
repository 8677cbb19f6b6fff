//! `create`, `update`, `patch`, `delete` and their conditional forms as single requests:
//! each runs [`crate::write::apply`] in its own transaction.

use fhir_model::{Issue, ResourceType};
use serde_json::Value;

use crate::meta::{etag, http_date};
use crate::write::{PatchDoc, WriteOp, Written, commit_one, prepare};
use crate::{Body, Engine, FhirError, FhirResult, Request, Response, ResponseBody, Return};

fn body(req: &Request) -> FhirResult<Value> {
    match &req.body {
        Body::Json(v) => Ok(v.clone()),
        Body::None => Err(FhirError::bad_request("This interaction needs a resource in the request body")),
    }
}

/// Run one write in its own transaction.
pub fn run(engine: &Engine, req: &Request, op: WriteOp) -> FhirResult<Response> {
    crate::access::check_write(engine, &req.principal, &op)?;
    let w = commit_one(engine, prepare(op)?)?;
    Ok(written_response(engine, &w, req.prefer_return))
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

pub fn create(engine: &Engine, req: &Request, rt: ResourceType) -> FhirResult<Response> {
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
    run(engine, req, op)
}

pub fn update(engine: &Engine, req: &Request, rt: ResourceType, id: &str) -> FhirResult<Response> {
    let op =
        WriteOp::Update { resource_type: rt, id: id.to_string(), resource: body(req)?, if_match: req.if_match.clone() };
    run(engine, req, op)
}

pub fn conditional_update(engine: &Engine, req: &Request, rt: ResourceType) -> FhirResult<Response> {
    if req.query.is_empty() {
        return Err(FhirError::bad_request(format!("PUT {rt} needs an id in the URL or search criteria in the query")));
    }
    let op = WriteOp::ConditionalUpdate {
        resource_type: rt,
        query: req.query.clone(),
        resource: body(req)?,
        if_match: req.if_match.clone(),
    };
    run(engine, req, op)
}

pub fn patch(engine: &Engine, req: &Request, rt: ResourceType, id: &str) -> FhirResult<Response> {
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
    run(engine, req, op)
}

pub fn delete(engine: &Engine, req: &Request, rt: ResourceType, id: &str) -> FhirResult<Response> {
    if !fhir_model::is_valid_id(id) {
        return Err(FhirError::bad_request(format!("'{id}' is not a valid {rt} id")));
    }
    run(engine, req, WriteOp::Delete { resource_type: rt, id: id.to_string(), if_match: req.if_match.clone() })
}

pub fn conditional_delete(engine: &Engine, req: &Request, rt: ResourceType) -> FhirResult<Response> {
    if req.query.is_empty() {
        return Err(FhirError::bad_request(format!(
            "DELETE {rt} needs an id in the URL or search criteria in the query"
        )));
    }
    run(engine, req, WriteOp::ConditionalDelete { resource_type: rt, query: req.query.clone() })
}
