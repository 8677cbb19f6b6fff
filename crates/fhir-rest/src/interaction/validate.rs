//! The `$validate` operation: the same checks as a write, without storing anything.

use fhir_model::{Issue, IssueType, OperationOutcome, ResourceType};
use serde_json::Value;

use crate::{Body, Engine, FhirError, FhirResult, Handle, Request, Response};

pub fn validate(
    _engine: &Engine,
    h: &Handle,
    req: &Request,
    rt: ResourceType,
    id: Option<&str>,
) -> FhirResult<Response> {
    h.authorize(auth::scope::Interaction::Read, rt)?;
    let Body::Json(body) = &req.body else {
        return Err(FhirError::bad_request(
            "$validate needs the resource (or a Parameters with a 'resource' parameter) in the body",
        ));
    };
    // Either the resource itself or Parameters { parameter: [{ name: "resource", resource }] }
    let resource =
        if body.get("resourceType").and_then(Value::as_str) == Some("Parameters") && rt.as_str() != "Parameters" {
            body.get("parameter")
                .and_then(Value::as_array)
                .and_then(|ps| ps.iter().find(|p| p.get("name").and_then(Value::as_str) == Some("resource")))
                .and_then(|p| p.get("resource"))
                .ok_or_else(|| FhirError::bad_request("The Parameters has no 'resource' parameter"))?
        } else {
            body
        };
    let mut issues = Vec::new();
    let body_type = resource.get("resourceType").and_then(Value::as_str);
    if body_type != Some(rt.as_str()) {
        issues.push(
            Issue::error(
                IssueType::Invalid,
                format!(
                    "The resource is a {} but the URL is for {rt}",
                    body_type.unwrap_or("JSON without resourceType")
                ),
            )
            .at("resourceType"),
        );
    }
    if let Some(id) = id
        && resource.get("id").and_then(Value::as_str) != Some(id)
    {
        issues.push(
            Issue::error(IssueType::Invalid, format!("The resource id does not match '{id}'")).at(format!("{rt}.id")),
        );
    }
    issues.extend(validation::validate_resource(resource));
    Ok(Response::json(200, OperationOutcome::new(issues).to_json()))
}
