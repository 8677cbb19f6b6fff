//! `read` and `vread`, with `If-None-Match` and `If-Modified-Since` (304).

use fhir_model::{ResourceType, is_valid_id};
use guard::StoredResource;
use serde_json::Value;

use crate::meta::{etag, http_date, parse_etag, parse_http_date};
use crate::{Engine, FhirError, FhirResult, Handle, Request, Response, ResponseBody};

/// Under limited rights, what a read returns: the summary of the resource; documents
/// (Binary) are not handed out at all.
pub fn limit_read(h: &Handle, rt: ResourceType, body: Vec<u8>) -> FhirResult<ResponseBody> {
    if !h.limited() {
        return Ok(ResponseBody::Raw(body));
    }
    if rt.as_str() == "Binary" {
        return Err(FhirError::new(
            403,
            fhir_model::Issue::error(
                fhir_model::IssueType::Forbidden,
                "Limited rights: documents cannot be downloaded",
            ),
        ));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|_| FhirError::internal())?;
    Ok(ResponseBody::Json(crate::shape::subset(v, search::Summary::True, None)))
}

/// The response for a stored (non-deleted) version: body as stored, validators set.
pub fn stored_response(engine: &Engine, s: StoredResource, status: u16) -> Response {
    let mut r = Response::empty(status);
    r.etag = Some(etag(s.version));
    r.last_modified = Some(http_date(s.last_updated));
    r.content_location = Some(engine.url(&format!("{}/{}/_history/{}", s.resource_type, s.id, s.version)));
    if let Some(b) = s.body {
        r.body = ResponseBody::Raw(b);
    }
    r
}

fn check_id(rt: ResourceType, id: &str) -> FhirResult<()> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(FhirError::bad_request(format!("'{id}' is not a valid {rt} id (1-64 of A-Z a-z 0-9 - .)")))
    }
}

pub fn read(engine: &Engine, h: &Handle, req: &Request, rt: ResourceType, id: &str) -> FhirResult<Response> {
    check_id(rt, id)?;
    let Some(s) = h.read(rt, id)? else {
        return Err(FhirError::not_found(format!("{rt}/{id} does not exist")));
    };
    if s.deleted() {
        let mut r: Response = FhirError::gone(format!("{rt}/{id} was deleted (version {})", s.version)).into();
        r.etag = Some(etag(s.version));
        return Ok(r);
    }
    let unchanged = req.if_none_match.as_deref().and_then(parse_etag).is_some_and(|v| v == s.version)
        || req
            .if_modified_since
            .as_deref()
            .and_then(parse_http_date)
            .is_some_and(|since| s.last_updated / 1_000_000 <= since / 1_000_000);
    if unchanged {
        let mut r = stored_response(engine, s, 304);
        r.body = ResponseBody::None;
        return Ok(r);
    }
    let mut r = stored_response(engine, s, 200);
    if let ResponseBody::Raw(b) = std::mem::replace(&mut r.body, ResponseBody::None) {
        r.body = limit_read(h, rt, b)?;
    }
    Ok(r)
}

pub fn vread(
    engine: &Engine,
    h: &Handle,
    _req: &Request,
    rt: ResourceType,
    id: &str,
    version: &str,
) -> FhirResult<Response> {
    check_id(rt, id)?;
    let v: u64 = version.parse().map_err(|_| FhirError::bad_request(format!("'{version}' is not a version number")))?;
    match h.read_version(rt, id, v)? {
        None => Err(FhirError::not_found(format!("{rt}/{id} has no version {v}"))),
        Some(s) if s.deleted() => Err(FhirError::gone(format!("Version {v} of {rt}/{id} is its deletion"))),
        Some(s) => {
            let mut r = stored_response(engine, s, 200);
            if let ResponseBody::Raw(b) = std::mem::replace(&mut r.body, ResponseBody::None) {
                r.body = limit_read(h, rt, b)?;
            }
            Ok(r)
        }
    }
}
