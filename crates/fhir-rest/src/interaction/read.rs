//! `read` and `vread`, with `If-None-Match` and `If-Modified-Since` (304).

use fhir_model::{ResourceType, is_valid_id};
use store::StoredResource;

use auth::policy::Access;
use auth::scope::Interaction;

use crate::access::{check_visible, limit_read, require};
use crate::meta::{etag, http_date, parse_etag, parse_http_date};
use crate::{Engine, FhirError, FhirResult, Request, Response, ResponseBody};

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

pub fn read(engine: &Engine, req: &Request, rt: ResourceType, id: &str) -> FhirResult<Response> {
    check_id(rt, id)?;
    let access = require(&req.principal, Interaction::Read, rt)?;
    let Some(s) = engine.store.read(rt.as_str(), id)? else {
        return Err(FhirError::not_found(format!("{rt}/{id} does not exist")));
    };
    if let Some(b) = &s.body {
        check_visible(engine, &access, rt, id, b)?;
    } else if access != Access::All {
        return Err(FhirError::not_found(format!("{rt}/{id} does not exist")));
    }
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
        r.body = limit_read(&req.principal, rt, b)?;
    }
    Ok(r)
}

pub fn vread(engine: &Engine, req: &Request, rt: ResourceType, id: &str, version: &str) -> FhirResult<Response> {
    check_id(rt, id)?;
    let access = require(&req.principal, Interaction::Read, rt)?;
    let v: u64 = version.parse().map_err(|_| FhirError::bad_request(format!("'{version}' is not a version number")))?;
    match engine.store.read_version(rt.as_str(), id, v)? {
        None => Err(FhirError::not_found(format!("{rt}/{id} has no version {v}"))),
        Some(s) if s.deleted() && access == Access::All => {
            Err(FhirError::gone(format!("Version {v} of {rt}/{id} is its deletion")))
        }
        Some(s) => {
            check_visible(engine, &access, rt, id, s.body.as_deref().unwrap_or_default())?;
            let mut r = stored_response(engine, s, 200);
            if let ResponseBody::Raw(b) = std::mem::replace(&mut r.body, ResponseBody::None) {
                r.body = limit_read(&req.principal, rt, b)?;
            }
            Ok(r)
        }
    }
}
