//! Extraction of index values from a resource: every base search parameter of the
//! resource's type, evaluated with FHIRPath and normalised by parameter type.

use std::collections::HashMap;
use std::sync::LazyLock;

use fhir_model::Reference;
use fhir_spec::{SearchParamType, spec};
use fhirpath::{Expr, Item};
use serde_json::Value;

use crate::normalize::{date_range, fold};
use crate::{registry, text};

/// One indexed value of one search parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The parameter code, e.g. `identifier`, or a derived code: `code:text` (words of
    /// the display text), `identifier:of-type`, `subject:identifier`, or `name#2` (second
    /// component of a composite).
    pub param: &'static str,
    pub value: IndexValue,
    /// Composite parameters: the components of one element share a group number.
    pub group: Option<u32>,
}

/// A normalised value, by parameter type.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    Token {
        system: Option<String>,
        code: String,
    },
    /// Text folded for matching (lower case, no accents) and as written, for `:exact`.
    String {
        value: String,
        exact: String,
    },
    Reference {
        resource_type: Option<String>,
        id: Option<String>,
        url: Option<String>,
    },
    /// Milliseconds since the epoch, inclusive bounds.
    Date {
        low: i64,
        high: i64,
    },
    Number(f64),
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Uri(String),
    /// A full-text term (`_text`, `_content`, a token's `:text`): a stemmed, folded word
    /// (see [`crate::text`]). A resource's terms are stored together, as one document.
    Term(String),
}

/// A search parameter compiled for one resource type.
pub struct CompiledParam {
    pub code: &'static str,
    pub kind: SearchParamType,
    expr: Expr,
    /// Index code of the words of display texts (token `:text`).
    pub text: &'static str,
    /// Index code of identifier types with values (token `:of-type`).
    pub of_type: &'static str,
    /// Index code of logical references' identifiers (reference `:identifier`).
    pub identifier: &'static str,
    /// Composite parameters: the components, each indexed under `code#n`.
    pub components: Vec<Component>,
}

/// One component of a composite parameter.
pub struct Component {
    pub code: &'static str,
    pub kind: SearchParamType,
    expr: Expr,
}

/// Where a value extracted from an element goes.
#[derive(Clone, Copy)]
enum Facet {
    Value,
    Text,
    OfType,
    Identifier,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Compile a parameter definition, or `None` if our FHIRPath engine cannot run it.
fn compile(p: &fhir_spec::SearchParamDef) -> Option<CompiledParam> {
    compile_checked(p, fhirpath::parse).ok()
}

/// Compile a parameter definition with `parser`, or say which element (`expression`,
/// `component`, `type`) cannot be used and why.
pub(crate) fn compile_checked(
    p: &fhir_spec::SearchParamDef,
    parser: fn(&str) -> Result<Expr, fhirpath::Error>,
) -> Result<CompiledParam, (&'static str, String)> {
    if p.kind == SearchParamType::Special {
        return Err(("type", "special parameters have no expression to index".into()));
    }
    let parse = |e: &str, path: &'static str| {
        parser(e).map_err(|err| (path, format!("FHIRPath '{e}' cannot be evaluated: {err}")))
    };
    let expr = parse(p.expression.as_deref().ok_or(("expression", "no expression".to_string()))?, "expression")?;
    let mut components = Vec::new();
    for (i, c) in p.component.iter().enumerate() {
        let def = spec().search_param_by_url(&c.definition).ok_or_else(|| {
            (
                "component",
                format!("component {} refers to '{}', which is not a base search parameter", i + 1, c.definition),
            )
        })?;
        let expr = parse(&c.expression, "component")?;
        components.push(Component { code: leak(format!("{}#{}", p.code, i + 1)), kind: def.kind, expr });
    }
    if p.kind == SearchParamType::Composite && components.is_empty() {
        return Err(("component", "a composite parameter needs components".into()));
    }
    Ok(CompiledParam {
        code: leak(p.code.clone()),
        kind: p.kind,
        expr,
        text: leak(format!("{}:text", p.code)),
        of_type: leak(format!("{}:of-type", p.code)),
        identifier: leak(format!("{}:identifier", p.code)),
        components,
    })
}

/// Parameters of each resource type whose expressions our FHIRPath engine handles.
static COMPILED: LazyLock<HashMap<&'static str, Vec<CompiledParam>>> = LazyLock::new(|| {
    let mut out: HashMap<&'static str, Vec<CompiledParam>> = HashMap::new();
    for rt in spec().resource_types() {
        let list = out.entry(rt).or_default();
        for p in spec().search_params() {
            let applies = p.base.iter().any(|b| {
                b == rt
                    || b == "Resource"
                    || (b == "DomainResource" && !matches!(*rt, "Bundle" | "Binary" | "Parameters"))
            });
            if applies && let Some(c) = compile(p) {
                list.push(c);
            }
        }
    }
    out
});

fn base_params(resource_type: &str) -> &'static [CompiledParam] {
    COMPILED.get(resource_type).map(Vec::as_slice).unwrap_or(&[])
}

/// The searchable parameters of a resource type: the base ones and the custom ones whose
/// reindex has finished.
pub fn params_of(resource_type: &str) -> Vec<&'static CompiledParam> {
    let mut out: Vec<&'static CompiledParam> = base_params(resource_type).iter().collect();
    out.extend(registry::searchable_for(resource_type));
    out
}

/// Is `code` a searchable parameter of `resource_type`?
pub fn indexed_param(resource_type: &str, code: &str) -> Option<&'static CompiledParam> {
    base_params(resource_type).iter().find(|p| p.code == code).or_else(|| registry::searchable(resource_type, code))
}

impl CompiledParam {
    /// Every index code this parameter writes rows under (its own and derived ones).
    pub fn index_codes(&self) -> Vec<&'static str> {
        let mut out = vec![self.code, self.text, self.of_type, self.identifier];
        out.extend(self.components.iter().map(|c| c.code));
        out
    }
}

/// Most full-text terms kept per resource for `_content` (bounds the index of huge
/// documents; the first words are the ones kept).
const MAX_CONTENT_TERMS: usize = 2_000;

/// Every index value of a resource (which must carry `resourceType`).
pub fn extract(resource: &Value) -> Vec<IndexEntry> {
    let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
        return vec![];
    };
    let mut out: Vec<IndexEntry> = Vec::new();
    let mut group = 0u32;
    for p in base_params(rt) {
        extract_into(p, resource, &mut out, &mut group);
    }
    for p in registry::indexed_for(rt) {
        extract_into(p, resource, &mut out, &mut group);
    }
    full_text(resource, &mut out);
    out
}

/// The index values of one parameter (for a reindex after it was added).
pub fn extract_param(p: &CompiledParam, resource: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    extract_into(p, resource, &mut out, &mut 0);
    out
}

/// Append the values of parameter `p`; `group` numbers composite elements.
fn extract_into(p: &CompiledParam, resource: &Value, out: &mut Vec<IndexEntry>, group: &mut u32) {
    // duplicates are looked for among the entries of the parameter being extracted only
    let param_start = out.len();
    let push = |e: IndexEntry, out: &mut Vec<IndexEntry>| {
        if e.group.is_some() || !out.get(param_start..).is_some_and(|own| own.contains(&e)) {
            out.push(e);
        }
    };
    let Ok(items) = fhirpath::evaluate(&p.expr, resource) else {
        return;
    };
    if p.kind == SearchParamType::Composite {
        for item in &items {
            *group += 1;
            let mut rows = Vec::new();
            for c in &p.components {
                let before = rows.len();
                if let Ok(parts) = fhirpath::evaluate_item(&c.expr, item, resource) {
                    for part in &parts {
                        values(c.kind, part, &mut |facet, value| {
                            if let Facet::Value = facet {
                                rows.push(IndexEntry { param: c.code, value, group: Some(*group) });
                            }
                        });
                    }
                }
                if rows.len() == before {
                    // a component without a value: no composite search can match this element
                    rows.clear();
                    break;
                }
            }
            out.extend(rows);
        }
        return;
    }
    for item in &items {
        values(p.kind, item, &mut |facet, value| {
            let param = match facet {
                Facet::Value => p.code,
                Facet::Text => p.text,
                Facet::OfType => p.of_type,
                Facet::Identifier => p.identifier,
            };
            push(IndexEntry { param, value, group: None }, out);
        });
    }
}

/// `_text` (the narrative's words) and `_content` (the words of every string value).
fn full_text(resource: &Value, out: &mut Vec<IndexEntry>) {
    let term = |param: &'static str, code: String| IndexEntry { param, value: IndexValue::Term(code), group: None };
    if let Some(div) = resource.get("text").and_then(|t| t.get("div")).and_then(Value::as_str) {
        out.extend(text::terms(&text::narrative_text(div)).into_iter().map(|t| term("_text", t)));
    }
    let mut words = String::new();
    collect_strings(resource, &mut words);
    let mut terms = text::terms(&words);
    terms.truncate(MAX_CONTENT_TERMS);
    out.extend(terms.into_iter().map(|t| term("_content", t)));
}

/// Append the human-readable string values of a resource (not ids, references, URLs,
/// codes or the narrative, which `_text` covers), separated by spaces.
fn collect_strings(v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if !matches!(
                    k.as_str(),
                    "id" | "reference" | "system" | "url" | "div" | "meta" | "resourceType" | "data" | "fullUrl"
                ) {
                    collect_strings(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        Value::String(s) if !s.contains("://") => {
            out.push_str(s);
            out.push(' ');
        }
        _ => {}
    }
}

/// Index entries computed before the id and `meta.lastUpdated` were final, completed
/// with the `_id` and `_lastUpdated` entries of the version actually written.
pub fn with_identity(mut index: Vec<IndexEntry>, id: &str, last_updated: &str) -> Vec<IndexEntry> {
    index.retain(|e| e.param != "_id" && e.param != "_lastUpdated");
    index.push(IndexEntry {
        param: "_id",
        value: IndexValue::Token { system: None, code: id.to_string() },
        group: None,
    });
    if let Some((low, high)) = date_range(last_updated) {
        index.push(IndexEntry { param: "_lastUpdated", value: IndexValue::Date { low, high }, group: None });
    }
    index
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn values(kind: SearchParamType, item: &Item<'_>, emit: &mut dyn FnMut(Facet, IndexValue)) {
    let Some(node) = item.node() else { return };
    let ty = item.type_name().unwrap_or("");
    let words = |t: Option<&str>, emit: &mut dyn FnMut(Facet, IndexValue)| {
        for code in t.map(text::terms).unwrap_or_default() {
            emit(Facet::Text, IndexValue::Term(code));
        }
    };
    match kind {
        SearchParamType::Token => match (ty, node) {
            ("Coding", _) => {
                token(str_of(node, "system"), str_of(node, "code"), emit);
                words(str_of(node, "display"), emit);
            }
            ("CodeableConcept", _) => {
                for c in node.get("coding").and_then(Value::as_array).into_iter().flatten() {
                    token(str_of(c, "system"), str_of(c, "code"), emit);
                    words(str_of(c, "display"), emit);
                }
                words(str_of(node, "text"), emit);
            }
            ("Identifier", _) => {
                token(str_of(node, "system"), str_of(node, "value"), emit);
                if let (Some(t), Some(value)) = (node.get("type"), str_of(node, "value")) {
                    for c in t.get("coding").and_then(Value::as_array).into_iter().flatten() {
                        if let Some(code) = str_of(c, "code") {
                            emit(
                                Facet::OfType,
                                IndexValue::Token {
                                    system: str_of(c, "system").map(str::to_string),
                                    code: format!("{code}|{value}"),
                                },
                            );
                        }
                    }
                    words(str_of(t, "text"), emit);
                }
            }
            ("ContactPoint", _) => token(None, str_of(node, "value"), emit),
            (_, Value::String(s)) => token(None, Some(s), emit),
            (_, Value::Bool(b)) => token(None, Some(if *b { "true" } else { "false" }), emit),
            _ => {}
        },
        SearchParamType::String => match (ty, node) {
            (_, Value::String(s)) => emit(Facet::Value, string(s)),
            ("HumanName" | "Address", Value::Object(o)) => {
                for (k, v) in o {
                    if matches!(
                        k.as_str(),
                        "family"
                            | "given"
                            | "prefix"
                            | "suffix"
                            | "text"
                            | "line"
                            | "city"
                            | "district"
                            | "state"
                            | "postalCode"
                            | "country"
                    ) {
                        for s in v.as_array().map(|a| a.iter().collect()).unwrap_or_else(|| vec![v]) {
                            if let Some(s) = s.as_str() {
                                emit(Facet::Value, string(s));
                            }
                        }
                    }
                }
            }
            _ => {}
        },
        SearchParamType::Reference => {
            let r = match node {
                Value::String(s) => Some(s.as_str()),
                _ => str_of(node, "reference"),
            };
            match r.and_then(Reference::parse) {
                Some(Reference::Literal { base: None, resource_type, id, .. }) => emit(
                    Facet::Value,
                    IndexValue::Reference {
                        resource_type: Some(resource_type.as_str().to_string()),
                        id: Some(id.as_str().to_string()),
                        url: None,
                    },
                ),
                Some(Reference::Literal { .. } | Reference::External(_) | Reference::Urn(_)) => emit(
                    Facet::Value,
                    IndexValue::Reference { resource_type: None, id: None, url: r.map(str::to_string) },
                ),
                _ => {}
            }
            if let Some(i) = node.get("identifier")
                && let Some(value) = str_of(i, "value")
            {
                emit(
                    Facet::Identifier,
                    IndexValue::Token { system: str_of(i, "system").map(str::to_string), code: value.to_string() },
                );
            }
        }
        SearchParamType::Date => match node {
            Value::String(s) => {
                if let Some((low, high)) = date_range(s) {
                    emit(Facet::Value, IndexValue::Date { low, high });
                }
            }
            Value::Object(_) if ty == "Period" => {
                let low = str_of(node, "start").and_then(date_range).map_or(i64::MIN, |r| r.0);
                let high = str_of(node, "end").and_then(date_range).map_or(i64::MAX, |r| r.1);
                emit(Facet::Value, IndexValue::Date { low, high });
            }
            Value::Object(_) if ty == "Timing" => {
                for e in node.get("event").and_then(Value::as_array).into_iter().flatten() {
                    if let Some((low, high)) = e.as_str().and_then(date_range) {
                        emit(Facet::Value, IndexValue::Date { low, high });
                    }
                }
            }
            _ => {}
        },
        SearchParamType::Number => {
            if let Some(n) = node.as_number().and_then(|n| n.to_string().parse().ok()) {
                emit(Facet::Value, IndexValue::Number(n));
            }
        }
        SearchParamType::Quantity => {
            let value = node.get("value").and_then(Value::as_number).and_then(|n| n.to_string().parse().ok());
            if let Some(value) = value {
                emit(
                    Facet::Value,
                    IndexValue::Quantity {
                        value,
                        system: str_of(node, "system").map(str::to_string),
                        code: str_of(node, "code").or_else(|| str_of(node, "unit")).map(str::to_string),
                    },
                );
            }
        }
        SearchParamType::Uri => {
            if let Value::String(s) = node {
                emit(Facet::Value, IndexValue::Uri(s.clone()));
            }
        }
        SearchParamType::Composite | SearchParamType::Special => {}
    }
}

fn string(s: &str) -> IndexValue {
    IndexValue::String { value: fold(s), exact: s.to_string() }
}

fn token(system: Option<&str>, code: Option<&str>, emit: &mut dyn FnMut(Facet, IndexValue)) {
    if let Some(code) = code {
        emit(Facet::Value, IndexValue::Token { system: system.map(str::to_string), code: code.to_string() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_values_by_type() {
        let p = json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:snils", "value": "112-233-445 95"}],
            "name": [{"family": "Ёлкина", "given": ["Анна"]}],
            "birthDate": "1980-04-12", "gender": "female", "active": true,
            "generalPractitioner": [{"reference": "Practitioner/d1"}]});
        let e = extract(&p);
        let has = |param: &str, v: IndexValue| {
            e.contains(&IndexEntry { param: indexed_param("Patient", param).unwrap().code, value: v, group: None })
        };
        assert!(has(
            "identifier",
            IndexValue::Token { system: Some("urn:snils".into()), code: "112-233-445 95".into() }
        ));
        assert!(has("_id", IndexValue::Token { system: None, code: "p1".into() }));
        assert!(has("family", IndexValue::String { value: "елкина".into(), exact: "Ёлкина".into() }));
        assert!(has("name", IndexValue::String { value: "анна".into(), exact: "Анна".into() }));
        assert!(has("gender", IndexValue::Token { system: None, code: "female".into() }));
        assert!(has("active", IndexValue::Token { system: None, code: "true".into() }));
        assert!(has(
            "general-practitioner",
            IndexValue::Reference { resource_type: Some("Practitioner".into()), id: Some("d1".into()), url: None }
        ));
        assert!(e.iter().any(|x| x.param == "birthdate" && matches!(x.value, IndexValue::Date { .. })));
    }

    #[test]
    fn identity_entries_are_replaced() {
        let p = json!({"resourceType": "Patient", "id": "client-id", "meta": {"lastUpdated": "2001-01-01T00:00:00Z"}});
        let stamped = json!({"resourceType": "Patient", "id": "p9", "meta": {"lastUpdated": "2026-11-25T14:00:00.5Z"}});
        let completed = with_identity(extract(&p), "p9", "2026-11-25T14:00:00.5Z");
        let mut expected = extract(&stamped);
        let key = |e: &IndexEntry| format!("{e:?}");
        let mut got = completed.clone();
        got.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(got, expected);
    }

    #[test]
    fn most_base_parameters_compile() {
        let total: usize = spec().resource_types().iter().map(|rt| params_of(rt).len()).sum();
        assert!(total > 2500, "{total}");
    }
}
