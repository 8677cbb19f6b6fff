//! `_include` and `_revinclude` (with `:iterate`): the resources that search matches
//! refer to, or that refer to them, found through the same search index — through the
//! caller's handle, so a resource out of their reach is neither included nor followed.

use std::collections::HashSet;

use fhir_spec::SearchParamType;
use search::{Include, IndexValue, Query, parse_query};
use serde_json::Value;

use crate::{FhirResult, Handle};

/// Most resources one page may include.
const MAX_INCLUDED: usize = 1000;

fn key(v: &Value) -> (String, String) {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("resourceType"), s("id"))
}

/// The resources to add to a page of `matches`, in discovery order.
pub fn included(h: &Handle, q: &Query, matches: &[Value]) -> FhirResult<Vec<Value>> {
    if q.includes.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<(String, String)> = matches.iter().map(key).collect();
    let mut out: Vec<Value> = Vec::new();
    let mut frontier: Vec<Value> = matches.to_vec();
    let mut first = true;
    while !frontier.is_empty() && out.len() < MAX_INCLUDED {
        let mut found = Vec::new();
        for inc in q.includes.iter().filter(|i| first || i.iterate) {
            let candidates = if inc.reverse { reverse(h, inc, &frontier)? } else { forward(h, inc, &frontier)? };
            for c in candidates {
                if seen.insert(key(&c)) && out.len() + found.len() < MAX_INCLUDED {
                    found.push(c);
                }
            }
        }
        out.extend(found.iter().cloned());
        frontier = found;
        first = false;
    }
    Ok(out)
}

/// Reference parameters of `inc.source` that the include names.
fn params(inc: &Include) -> Vec<&'static str> {
    match inc.param {
        Some(p) => vec![p],
        None => search::index::params_of(inc.source.as_str())
            .iter()
            .filter(|p| p.kind == SearchParamType::Reference)
            .map(|p| p.code)
            .collect(),
    }
}

fn forward(h: &Handle, inc: &Include, from: &[Value]) -> FhirResult<Vec<Value>> {
    let wanted = params(inc);
    let mut out = Vec::new();
    for res in from.iter().filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(inc.source.as_str())) {
        for entry in search::extract(res) {
            let IndexValue::Reference { resource_type: Some(t), id: Some(id), .. } = &entry.value else { continue };
            if !wanted.contains(&entry.param) || inc.target.is_some_and(|target| target.as_str() != t) {
                continue;
            }
            if let Some(s) = h.fetch(t, id)?
                && let Some(body) = s.body
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
            {
                out.push(v);
            }
        }
    }
    Ok(out)
}

fn reverse(h: &Handle, inc: &Include, to: &[Value]) -> FhirResult<Vec<Value>> {
    let targets: Vec<String> = to
        .iter()
        .map(key)
        .filter(|(t, _)| inc.target.is_none_or(|target| target.as_str() == t))
        .map(|(t, id)| format!("{t}/{id}"))
        .collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for param in params(inc) {
        for chunk in targets.chunks(search::MAX_VALUES) {
            let q = parse_query(inc.source, &format!("{param}={}", chunk.join(",")))?;
            let Some(page) = h.search_if_allowed(&q, MAX_INCLUDED)? else { continue };
            out.extend(page.resources.into_iter().filter_map(|s| serde_json::from_slice(s.body.as_deref()?).ok()));
        }
    }
    Ok(out)
}
