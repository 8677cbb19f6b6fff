//! `Patient/[id]/$everything`: the patient, then every resource in their compartment,
//! type by type (in name order), with `_since`, `_type` and `_count`. One statement first
//! finds which types the record has at all, so that only those are searched. Pages are by
//! position (type and surrogate key, in the `_page` token), so they stay stable while
//! the record grows; each page is a few index range scans, never the whole record in
//! memory. What the caller may not see is left out (types they may not search, and
//! resources outside their reach).

use auth::scope::Interaction;
use fhir_model::{Issue, IssueType, ResourceType};
use search::page::{PageRequest, Position};
use search::{Total, parse_query};
use serde_json::{Value, json};

use crate::meta::parse_instant;
use crate::{Engine, FhirError, FhirResult, Handle, Request, Response};

fn bad(param: &str, msg: String) -> FhirError {
    FhirError::from(Issue::error(IssueType::Invalid, msg).at(param.to_string()))
}

/// The types in a patient's compartment (those with a reference parameter to it).
fn compartment_types() -> Vec<ResourceType> {
    let mut types: Vec<ResourceType> = fhir_spec::spec()
        .resource_types()
        .iter()
        .filter(|t| **t != "Patient" && !fhir_spec::spec().patient_compartment_params(t).is_empty())
        .filter_map(|t| ResourceType::parse(t))
        .collect();
    types.sort_by_key(|t| t.as_str());
    types
}

pub fn everything(engine: &Engine, h: &Handle, req: &Request, id: &str) -> FhirResult<Response> {
    let patient_rt = crate::resource_type("Patient")?;
    match h.read(patient_rt, id)? {
        Some(s) if !s.deleted() => {}
        _ => return Err(FhirError::not_found(format!("Patient/{id} does not exist"))),
    }

    let mut since = None;
    let mut only: Option<Vec<ResourceType>> = None;
    let mut count = engine.config.default_count;
    let mut cursor = (0usize, 0i64);
    for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
        match &*k {
            "_since" => {
                parse_instant(&v).ok_or_else(|| bad("_since", format!("_since '{v}' is not an instant")))?;
                since = Some(v.into_owned());
            }
            "_type" => {
                let types = v
                    .split(',')
                    .map(|t| {
                        ResourceType::parse(t.trim())
                            .ok_or_else(|| bad("_type", format!("'{t}' is not a resource type")))
                    })
                    .collect::<FhirResult<Vec<_>>>()?;
                only = Some(types);
            }
            "_count" => {
                count = v.parse().map_err(|_| bad("_count", format!("_count '{v}' is not a number")))?;
            }
            "_page" => {
                let parsed = v.split_once('.').and_then(|(t, k)| Some((t.parse().ok()?, k.parse().ok()?)));
                cursor = parsed.ok_or_else(|| bad("_page", format!("'{v}' is not a page of this operation")))?;
            }
            "_format" | "_pretty" => {}
            other => return Err(FhirError::not_supported(format!("$everything does not take '{other}'"))),
        }
    }
    let count = count.clamp(1, engine.config.max_count);
    // the patient itself is "type 0"; then the compartment types
    let wanted = |t: ResourceType| only.as_ref().is_none_or(|o| o.contains(&t));
    let mut types = vec![patient_rt];
    types.extend(compartment_types());
    let params: Vec<(&str, Vec<&str>)> = types[1..]
        .iter()
        .filter(|t| wanted(**t))
        .map(|t| {
            (t.as_str(), fhir_spec::spec().patient_compartment_params(t.as_str()).iter().map(String::as_str).collect())
        })
        .collect();
    let present = h.referring_types(id, &params)?;
    let in_record = |t: ResourceType| t == patient_rt || present.iter().any(|p| p == t.as_str());
    let mut entries: Vec<Value> = Vec::new();
    let mut next = None;
    let (mut ti, mut after) = cursor;
    while let Some(t) = types.get(ti).copied() {
        if entries.len() >= count {
            next = Some((ti, after));
            break;
        }
        if h.authorize(Interaction::Search, t).is_err() {
            (ti, after) = (ti + 1, 0);
            continue;
        };
        if !wanted(t) || !in_record(t) {
            (ti, after) = (ti + 1, 0);
            continue;
        }
        let mut criteria = if ti == 0 { format!("_id={id}") } else { String::new() };
        if let Some(s) = &since {
            let sep = if criteria.is_empty() { "" } else { "&" };
            criteria.push_str(&format!("{sep}_lastUpdated=ge{}", s.replace('+', "%2B")));
        }
        let mut q = parse_query(t, &criteria)?;
        if ti > 0 {
            q.in_compartment(patient_rt, id)?;
        }
        q.total = Total::None;
        if after > 0 {
            q.page = Some(PageRequest { forward: true, from: Position { key: after, values: Vec::new() } });
        }
        let page = h.search(&q, count - entries.len())?;
        for s in page.resources {
            if let Some(b) = s.body {
                let res: Value = serde_json::from_slice(&b).map_err(|_| FhirError::internal())?;
                entries.push(json!({"fullUrl": engine.url(&format!("{}/{}", s.resource_type, s.id)),
                    "resource": res, "search": {"mode": "match"}}));
            }
        }
        match (page.more, page.last) {
            (true, Some(last)) => {
                next = Some((ti, last.key));
                break;
            }
            _ => (ti, after) = (ti + 1, 0),
        }
    }
    let base: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != "_page" && k != "_count")
        .collect();
    let link = |rel: &str, page: Option<(usize, i64)>| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.extend_pairs(base.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        ser.append_pair("_count", &count.to_string());
        if let Some((t, k)) = page {
            ser.append_pair("_page", &format!("{t}.{k}"));
        }
        json!({"relation": rel, "url": engine.url(&format!("Patient/{id}/$everything?{}", ser.finish()))})
    };
    let mut links = vec![link("self", (cursor != (0, 0)).then_some(cursor))];
    if let Some(n) = next {
        links.push(link("next", Some(n)));
    }
    Ok(Response::json(200, super::bundle_of("searchset", None, links, entries)))
}
