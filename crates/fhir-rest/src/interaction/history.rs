//! `history` at instance, type and system level, newest first, with `_since`, `_count`
//! and paging links.

use fhir_model::ResourceType;
use guard::{HistoryQuery, HistoryScope, StoreMethod};
use serde_json::{Value, json};

use crate::meta::{etag, http_date, instant, now_micros, parse_instant};
use crate::{Engine, FhirError, FhirResult, Handle, Request, Response};

pub fn history(
    engine: &Engine,
    h: &Handle,
    req: &Request,
    rt: Option<ResourceType>,
    id: Option<&str>,
) -> FhirResult<Response> {
    let mut since = None;
    let mut count = engine.config.default_count;
    let mut offset = 0usize;
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        match &*k {
            "_since" => {
                since = Some(parse_instant(&v).ok_or_else(|| {
                    FhirError::from(
                        fhir_model::Issue::error(
                            fhir_model::IssueType::Invalid,
                            format!("_since '{v}' is not an instant"),
                        )
                        .at("_since"),
                    )
                })?)
            }
            "_count" => {
                count = v.parse().map_err(|_| FhirError::bad_request(format!("_count '{v}' is not a number")))?
            }
            "_offset" => {
                offset = v.parse().map_err(|_| FhirError::bad_request(format!("_offset '{v}' is not a number")))?
            }
            "_format" | "_pretty" => {}
            "_at" | "_list" | "_sort" => {
                return Err(FhirError::not_supported(format!("History parameter '{k}' is not supported yet")));
            }
            other => {
                return Err(FhirError::bad_request(format!("Unknown history parameter '{other}'")));
            }
        }
    }
    let count = count.min(engine.config.max_count);
    let scope = match (rt, id) {
        (Some(t), Some(i)) => HistoryScope::Instance(t.to_string(), i.to_string()),
        (Some(t), None) => HistoryScope::Type(t.to_string()),
        _ => HistoryScope::System,
    };
    // the handle checks the caller's reach (and leaves out versions that were not theirs)
    let (versions, total) = h.history(&HistoryQuery { scope: scope.clone(), since, count, offset })?;
    if let (HistoryScope::Instance(t, i), 0) = (&scope, total) {
        return Err(FhirError::not_found(format!("{t}/{i} does not exist")));
    }
    let path = match (rt, id) {
        (Some(t), Some(i)) => format!("{t}/{i}/_history"),
        (Some(t), None) => format!("{t}/_history"),
        _ => "_history".into(),
    };
    let since_q = since.map(|s| format!("&_since={}", instant(s))).unwrap_or_default();
    let link = |rel: &str, off: usize| json!({"relation": rel, "url": engine.url(&format!("{path}?_count={count}&_offset={off}{since_q}"))});
    let mut links = vec![link("self", offset)];
    if offset + versions.len() < total as usize && count > 0 {
        links.push(link("next", offset + count));
    }
    if offset > 0 {
        links.push(link("previous", offset.saturating_sub(count)));
    }
    let entries: Vec<Value> = versions
        .into_iter()
        .map(|s| {
            let url = format!("{}/{}", s.resource_type, s.id);
            let (method, status) = match s.method {
                StoreMethod::Create => ("POST", "201 Created"),
                StoreMethod::Update => ("PUT", "200 OK"),
                StoreMethod::Delete => ("DELETE", "204 No Content"),
            };
            let request_url = if s.method == StoreMethod::Create { s.resource_type.clone() } else { url.clone() };
            let mut e = json!({
                "fullUrl": engine.url(&url),
                "request": {"method": method, "url": request_url},
                "response": {"status": status, "etag": etag(s.version), "lastModified": instant(s.last_updated)}
            });
            if let (Some(b), Some(o)) = (s.body.as_deref(), e.as_object_mut())
                && let Ok(res) = serde_json::from_slice::<Value>(b)
            {
                o.insert("resource".into(), res);
            }
            e
        })
        .collect();
    let bundle = super::bundle_of("history", Some(total), links, entries);
    let mut r = Response::json(200, bundle);
    r.last_modified = Some(http_date(now_micros()));
    Ok(r)
}
