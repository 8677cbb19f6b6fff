//! Search (GET and POST `_search`) at type, compartment and system level over the
//! indexed parameters. What is not supported is refused with a 400 that names the
//! parameter, never silently ignored.

use fhir_model::{Issue, IssueType, OperationOutcome, ResourceType};
use search::page::{PageRequest, Position};
use search::query::{parse_query, parse_system_query};
use serde_json::{Value, json};

use crate::search_parameters::pending_issue;
use crate::{Body, Engine, FhirError, FhirResult, Handle, Request, Response};

pub fn search(engine: &Engine, h: &Handle, req: &Request, rt: ResourceType, query: &str) -> FhirResult<Response> {
    let q = parse_query(rt, query)?;
    run(engine, h, req, q, rt.as_str(), query)
}

/// `GET [base]?...`: system-level search, over the types in `_type` or every type that
/// has the parameters used.
pub fn system(engine: &Engine, h: &Handle, req: &Request) -> FhirResult<Response> {
    let q = parse_system_query(&req.query)?;
    h.require_all(auth::scope::Interaction::Search, &q.types)?;
    run(engine, h, req, q, "", &req.query)
}

/// `GET Patient/123/Observation?...`: a search within a patient's compartment.
pub fn compartment(
    engine: &Engine,
    h: &Handle,
    req: &Request,
    owner: ResourceType,
    id: &str,
    rt: ResourceType,
) -> FhirResult<Response> {
    let mut q = parse_query(rt, &req.query)?;
    q.in_compartment(owner, id)?;
    run(engine, h, req, q, &format!("{owner}/{id}/{rt}"), &req.query)
}

/// Run a parsed search through the caller's handle (which restricts it to their
/// reach); `path` and `query` make the paging links.
fn run(
    engine: &Engine,
    h: &Handle,
    req: &Request,
    mut q: search::Query,
    path: &str,
    query: &str,
) -> FhirResult<Response> {
    // limited rights: summaries only
    if h.limited() && matches!(q.summary, search::Summary::False | search::Summary::Data) {
        q.summary = search::Summary::True;
        q.elements = None;
        if q.types.iter().any(|t| t.as_str() == "Binary") {
            return Err(FhirError::new(
                403,
                Issue::error(IssueType::Forbidden, "Limited rights: documents cannot be downloaded"),
            ));
        }
    }
    let rt = q.types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",");
    // unknown parameters, or custom ones whose reindex has not finished
    let ignored: Vec<Issue> = q
        .ignored
        .iter()
        .map(|p| {
            pending_issue(&q.types, p).unwrap_or_else(|| {
                Issue::warning(IssueType::NotSupported, format!("Unknown search parameter '{p}' for {rt} was ignored"))
                    .at(p.clone())
            })
        })
        .collect();
    if req.strict
        && let Some(first) = ignored.first()
    {
        let mut issue = first.clone();
        issue.severity = fhir_model::Severity::Error;
        issue.diagnostics = issue.diagnostics.trim_end_matches(" was ignored").to_string();
        return Err(FhirError::from(issue));
    }
    let count = match q.summary {
        search::Summary::Count => 0,
        _ => q.count.unwrap_or(engine.config.default_count).min(engine.config.max_count),
    };
    let page = h.search(&q, count)?;
    // self/next/previous: the query without paging parameters, then the page: `_page`
    // names the position of a boundary row, so pages do not shift as data changes
    let base: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != "_count" && k != "_offset" && k != "_page" && !q.ignored.contains(k))
        .collect();
    let link = |rel: &str, paging: (&str, String)| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &base {
            ser.append_pair(k, v);
        }
        ser.append_pair("_count", &count.to_string());
        if !paging.1.is_empty() {
            ser.append_pair(paging.0, &paging.1);
        }
        json!({"relation": rel, "url": engine.url(&format!("{path}?{}", ser.finish()))})
    };
    let at = |forward: bool, from: &Option<Position>| {
        from.clone().map(|from| ("_page", search::page::encode(&PageRequest { forward, from })))
    };
    let this = match &q.page {
        Some(p) => ("_page", search::page::encode(p)),
        None if q.offset > 0 => ("_offset", q.offset.to_string()),
        None => ("_offset", String::new()),
    };
    let mut links = vec![link("self", this)];
    let backward = q.page.as_ref().is_some_and(|p| !p.forward);
    if count > 0
        && (page.more || backward)
        && let Some(next) = at(true, &page.last)
    {
        links.push(link("next", next));
    }
    if (if backward { page.more } else { q.page.is_some() || q.offset > 0 })
        && let Some(previous) = at(false, &page.first)
    {
        links.push(link("previous", previous));
    }
    let matches: Vec<(String, Value)> = page
        .resources
        .into_iter()
        .filter_map(|s| {
            Some((format!("{}/{}", s.resource_type, s.id), serde_json::from_slice(s.body.as_deref()?).ok()?))
        })
        .collect();
    let whole: Vec<Value> = matches.iter().map(|(_, v)| v.clone()).collect();
    // included resources: only those the caller may read (the handle leaves others out)
    let included = super::include::included(h, &q, &whole)?;
    let entry = |url: String, res: Value, mode: &str| {
        json!({
            "fullUrl": engine.url(&url),
            "resource": crate::shape::subset(res, q.summary, q.elements.as_deref()),
            "search": {"mode": mode}
        })
    };
    let mut entries: Vec<Value> = matches.into_iter().map(|(url, res)| entry(url, res, "match")).collect();
    for res in included {
        let url =
            format!("{}/{}", res["resourceType"].as_str().unwrap_or_default(), res["id"].as_str().unwrap_or_default());
        entries.push(entry(url, res, "include"));
    }
    if !ignored.is_empty() {
        entries.push(json!({"resource": OperationOutcome::new(ignored).to_json(), "search": {"mode": "outcome"}}));
    }
    let total = page.total.filter(|_| q.total != search::Total::None || q.summary == search::Summary::Count);
    Ok(Response::json(200, super::bundle_of("searchset", total, links, entries)))
}

/// `POST [type]/_search`: parameters in an `application/x-www-form-urlencoded` body
/// (decoded by the HTTP layer into the query string) and/or the URL.
/// Without a type, a system-level search.
pub fn search_post(engine: &Engine, h: &Handle, req: &Request, rt: Option<ResourceType>) -> FhirResult<Response> {
    if let Body::Json(_) = req.body {
        return Err(FhirError::new(
            415,
            Issue::error(IssueType::NotSupported, "POST _search takes application/x-www-form-urlencoded parameters"),
        ));
    }
    match rt {
        Some(rt) => search(engine, h, req, rt, &req.query),
        None => system(engine, h, req),
    }
}
