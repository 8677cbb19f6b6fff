//! Custom search parameters: SearchParameter resources with `status = active`, added at
//! run time beside the base parameters of the specification.
//!
//! A registered parameter is indexed by every write from then on; it becomes searchable
//! only when the background reindex of the resources already stored has finished
//! ([`mark_ready`]). Until then a search that uses it is told how far the reindex is.
//!
//! Consistency with writes in flight: a write takes [`write_gate`] (shared) for the whole
//! of its store transaction, and [`register`] takes it exclusively, so registration waits
//! for the transactions that may have extracted their index without the new parameter.
//! A write extracted before a registration and applied after it sees [`epoch`] change and
//! extracts again. The reindex, started after registration, covers everything else.
//!
//! The registry is process-wide: one server process serves one database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError, RwLock, RwLockReadGuard};

use fhir_model::{Issue, IssueType};
use fhir_spec::{ComponentDef, SearchParamDef, SearchParamType, spec};
use serde_json::Value;

use crate::index::{CompiledParam, compile_checked};

/// A custom parameter as the server knows it.
#[derive(Clone)]
pub struct Custom {
    /// Id of the SearchParameter resource that defines it.
    pub id: String,
    /// What is indexed (code, type, expressions): a new version of the SearchParameter
    /// with the same key needs no reindex.
    pub key: String,
    pub url: String,
    /// The resource types it applies to.
    pub types: Vec<String>,
    pub param: &'static CompiledParam,
    pub state: State,
}

/// Whether a custom parameter can be searched yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reindex of existing resources under way: `done` of `total` resources.
    Indexing {
        done: u64,
        total: u64,
    },
    Ready,
}

static REGISTRY: LazyLock<RwLock<Vec<Custom>>> = LazyLock::new(RwLock::default);
/// Compiled definitions by their content: the same definition compiles once per process.
static INTERNED: LazyLock<Mutex<HashMap<String, &'static CompiledParam>>> = LazyLock::new(Mutex::default);
static GATE: RwLock<()> = RwLock::new(());
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Held (shared) by every write transaction, from index extraction check to commit.
pub fn write_gate() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Changes whenever the set of indexed parameters changes.
pub fn epoch() -> u64 {
    EPOCH.load(Ordering::SeqCst)
}

fn read() -> RwLockReadGuard<'static, Vec<Custom>> {
    REGISTRY.read().unwrap_or_else(PoisonError::into_inner)
}

fn invalid(path: &str, msg: impl Into<String>) -> Issue {
    Issue::error(IssueType::Invalid, msg.into()).at(format!("SearchParameter.{path}"))
}

/// The resource types a SearchParameter's `base` covers (`Resource` and `DomainResource`
/// stand for the types derived from them).
fn expand_base(base: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for b in base {
        let types: Vec<&str> = match b.as_str() {
            "Resource" => spec().resource_types().to_vec(),
            "DomainResource" => spec()
                .resource_types()
                .iter()
                .copied()
                .filter(|t| !matches!(*t, "Bundle" | "Binary" | "Parameters"))
                .collect(),
            t => vec![t],
        };
        for t in types {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        }
    }
    out
}

/// Check a SearchParameter resource about to be stored. `Ok(None)` if it is not active
/// (stored, but not used for search); an error names the offending element. A new
/// definition starts in [`State::Indexing`].
pub fn definition(resource: &Value, id: &str) -> Result<Option<Custom>, Issue> {
    if resource.get("status").and_then(Value::as_str) != Some("active") {
        return Ok(None);
    }
    let text = |k: &str| resource.get(k).and_then(Value::as_str).map(str::to_string);
    let code = text("code").unwrap_or_default();
    if code.is_empty() || code.starts_with('_') || !code.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "code",
            format!("'{code}' cannot be a search parameter code: use letters, digits and '-'"),
        ));
    }
    let kind = text("type").and_then(|t| SearchParamType::parse(&t));
    let kind = match kind {
        Some(SearchParamType::Special) | None => {
            return Err(invalid(
                "type",
                "Only number, date, string, token, reference, composite, quantity and uri parameters can be defined",
            ));
        }
        Some(k) => k,
    };
    let base: Vec<String> = resource
        .get("base")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.as_str().map(str::to_string))
        .collect();
    for b in &base {
        if !matches!(b.as_str(), "Resource" | "DomainResource") && !spec().resource_types().contains(&b.as_str()) {
            return Err(invalid("base", format!("'{b}' is not a FHIR R4 resource type")));
        }
    }
    let types = expand_base(&base);
    if types.is_empty() {
        return Err(invalid("base", "A search parameter needs at least one base resource type"));
    }
    let Some(expression) = text("expression") else {
        return Err(invalid("expression", "An active search parameter needs a FHIRPath expression"));
    };
    let component: Vec<ComponentDef> = resource
        .get("component")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| ComponentDef {
            definition: c.get("definition").and_then(Value::as_str).unwrap_or_default().to_string(),
            expression: c.get("expression").and_then(Value::as_str).unwrap_or_default().to_string(),
        })
        .collect();
    let url = text("url").unwrap_or_default();
    let def = SearchParamDef {
        id: id.to_string(),
        url: url.clone(),
        code: code.clone(),
        base: base.clone(),
        kind,
        expression: Some(expression),
        target: Vec::new(),
        component,
    };
    let key = format!("{code} {} {:?} {:?} {types:?}", kind.as_str(), def.expression, def.component);
    let interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner).get(&key).copied();
    let param = match interned {
        Some(p) => p,
        None => {
            let compiled =
                compile_checked(&def, fhirpath::parse_supported).map_err(|(path, msg)| invalid(path, msg))?;
            let leaked: &'static CompiledParam = Box::leak(Box::new(compiled));
            INTERNED.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone(), leaked);
            leaked
        }
    };
    // the code must be free on every base type
    for t in &types {
        if spec().search_param(t, &code).is_some() {
            return Err(invalid("code", format!("'{code}' is already a search parameter of {t}")));
        }
        if let Some(other) = read().iter().find(|c| c.id != id && c.param.code == code && c.types.contains(t)) {
            return Err(invalid(
                "code",
                format!("'{code}' is already defined for {t} by SearchParameter/{}", other.id),
            ));
        }
    }
    Ok(Some(Custom { id: id.to_string(), key, url, types, param, state: State::Indexing { done: 0, total: 0 } }))
}

/// Register a checked definition (replacing an earlier version of the same
/// SearchParameter). Returns `false` if the same definition is registered already.
pub fn register(def: Custom) -> bool {
    let _exclusive = GATE.write().unwrap_or_else(PoisonError::into_inner);
    let mut reg = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    if reg.iter().any(|c| c.id == def.id && c.key == def.key) {
        return false;
    }
    reg.retain(|c| c.id != def.id);
    reg.push(def);
    EPOCH.fetch_add(1, Ordering::SeqCst);
    true
}

/// Stop using a SearchParameter (deleted, or no longer active). Returns what it was.
pub fn unregister(id: &str) -> Option<Custom> {
    let _exclusive = GATE.write().unwrap_or_else(PoisonError::into_inner);
    let mut reg = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    let i = reg.iter().position(|c| c.id == id)?;
    EPOCH.fetch_add(1, Ordering::SeqCst);
    Some(reg.remove(i))
}

/// Record reindex progress of a definition.
pub fn set_state(id: &str, key: &str, state: State) {
    let mut reg = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = reg.iter_mut().find(|c| c.id == id && c.key == key) {
        c.state = state;
    }
}

/// Every registered custom parameter.
pub fn all() -> Vec<Custom> {
    read().clone()
}

/// The custom parameters to index for a resource type (searchable or not yet).
pub fn indexed_for(resource_type: &str) -> Vec<&'static CompiledParam> {
    read().iter().filter(|c| c.types.iter().any(|t| t == resource_type)).map(|c| c.param).collect()
}

/// The searchable custom parameter `code` of a resource type.
pub fn searchable(resource_type: &str, code: &str) -> Option<&'static CompiledParam> {
    read()
        .iter()
        .find(|c| c.state == State::Ready && c.param.code == code && c.types.iter().any(|t| t == resource_type))
        .map(|c| c.param)
}

/// Searchable custom parameters of a resource type.
pub fn searchable_for(resource_type: &str) -> Vec<&'static CompiledParam> {
    read()
        .iter()
        .filter(|c| c.state == State::Ready && c.types.iter().any(|t| t == resource_type))
        .map(|c| c.param)
        .collect()
}

/// Why `code` cannot be searched on yet, if it is a custom parameter being indexed.
pub fn pending(resource_type: &str, code: &str) -> Option<String> {
    read().iter().find(|c| c.param.code == code && c.types.iter().any(|t| t == resource_type)).and_then(|c| match c.state {
        State::Ready => None,
        State::Indexing { done, total } => Some(format!(
            "Search parameter '{code}' (SearchParameter/{}) is being indexed: {done} of {total} resources done; it can be used when indexing finishes",
            c.id
        )),
    })
}
