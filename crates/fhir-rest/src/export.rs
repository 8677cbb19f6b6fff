//! Bulk export (FHIR Bulk Data Access `$export`): every resource of the chosen types —
//! all, a patient's compartment for each patient, or each member of a Group — written as
//! one NDJSON file per type. Resources are read page by page by position (surrogate
//! key), each page written out before the next is read, so memory stays flat whatever
//! the size of the export. Used by the asynchronous `$export` operation and by
//! `medkarta export`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use fhir_model::{Issue, IssueType, ResourceType};
use search::page::{PageRequest, Position};
use search::{Query, Total, parse_query};

use crate::{FhirError, FhirResult, Handle};

/// Resources read per page.
const PAGE: usize = 1000;

/// Which resources an export covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every resource of the types (`[base]/$export`).
    System,
    /// Patients and everything in their compartments (`Patient/$export`).
    Patients,
    /// The compartments of these patients (ids; `Group/[id]/$export`).
    Members(Vec<String>),
}

/// What to export.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scope: Scope,
    /// Types in order (each searched through the requester's handle, within their reach).
    pub types: Vec<ResourceType>,
    /// `_lastUpdated` at or after this instant (`_since`).
    pub since: Option<String>,
    /// `_typeFilter`: per type, search queries (any may match).
    pub filters: Filters,
    /// `_elements`: only these top-level elements (and the mandatory ones), `Type.element`
    /// or `element` for every type; resources so cut are tagged `SUBSETTED`.
    pub elements: Option<Vec<String>>,
}

/// Check an `_elements` list (Bulk Data: `Patient.name` or `name`, top level only).
pub fn parse_elements(list: &str) -> FhirResult<Vec<String>> {
    let mut out = Vec::new();
    for e in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let ok = match e.split_once('.') {
            Some((t, el)) => ResourceType::parse(t).is_some() && !el.is_empty() && !el.contains('.'),
            None => true,
        };
        if !ok {
            return Err(invalid(
                "_elements",
                format!("'{e}' is not Type.element or element (top-level elements only)"),
            ));
        }
        out.push(e.to_string());
    }
    Ok(out)
}

/// The elements of an `_elements` list that apply to `rt` (none: the whole resource).
fn elements_for(elements: &[String], rt: ResourceType) -> Vec<String> {
    elements
        .iter()
        .filter_map(|e| match e.split_once('.') {
            Some((t, el)) => (t == rt.as_str()).then(|| el.to_string()),
            None => Some(e.clone()),
        })
        .collect()
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub resource_type: ResourceType,
    pub file: PathBuf,
    pub count: u64,
}

fn invalid(param: &str, msg: String) -> FhirError {
    FhirError::from(Issue::error(IssueType::Invalid, msg).at(param.to_string()))
}

/// The types in the Patient compartment (and Patient itself), in name order.
pub fn patient_types() -> Vec<ResourceType> {
    let mut types: Vec<ResourceType> = fhir_spec::spec()
        .resource_types()
        .iter()
        .filter(|t| **t == "Patient" || !fhir_spec::spec().patient_compartment_params(t).is_empty())
        .filter_map(|t| ResourceType::parse(t))
        .collect();
    types.sort_by_key(|t| t.as_str());
    types
}

/// `_typeFilter`s: a type and a search query.
pub type Filters = Vec<(ResourceType, String)>;

/// Parse `_type`, `_since` and `_typeFilter` values into the types and filters of a plan
/// (access still to be decided by the caller).
pub fn parse_params(
    scope: &Scope,
    type_param: Option<&str>,
    type_filters: &[String],
) -> FhirResult<(Vec<ResourceType>, Filters)> {
    let base: Vec<ResourceType> = match scope {
        Scope::System => fhir_spec::spec().resource_types().iter().filter_map(|t| ResourceType::parse(t)).collect(),
        _ => patient_types(),
    };
    let types = match type_param {
        None => base,
        Some(list) => {
            let mut out = Vec::new();
            for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                let rt =
                    ResourceType::parse(t).ok_or_else(|| invalid("_type", format!("'{t}' is not a resource type")))?;
                if !base.contains(&rt) {
                    return Err(invalid("_type", format!("{t} resources are not part of a patient's record")));
                }
                out.push(rt);
            }
            out
        }
    };
    let mut filters = Vec::new();
    for f in type_filters {
        let (t, q) = f.split_once('?').ok_or_else(|| invalid("_typeFilter", format!("'{f}' is not Type?query")))?;
        let rt =
            ResourceType::parse(t).ok_or_else(|| invalid("_typeFilter", format!("'{t}' is not a resource type")))?;
        parse_query(rt, q).map_err(|e| invalid("_typeFilter", e.diagnostics))?;
        filters.push((rt, q.to_string()));
    }
    Ok((types, filters))
}

/// The queries to run for one type (its filters, or everything), for one patient or all.
fn queries(plan: &Plan, rt: ResourceType, patient: Option<&str>) -> FhirResult<Vec<Query>> {
    let filters: Vec<&str> = plan.filters.iter().filter(|(t, _)| *t == rt).map(|(_, q)| q.as_str()).collect();
    let filters = if filters.is_empty() { vec![""] } else { filters };
    let mut out = Vec::new();
    for f in filters {
        let mut q = parse_query(rt, f)?;
        if let Some(since) = &plan.since {
            let extra = parse_query(rt, &format!("_lastUpdated=ge{}", since.replace('+', "%2B")))?;
            q.clauses.extend(extra.clauses);
        }
        match patient {
            Some(p) if rt.as_str() == "Patient" => q.clauses.extend(parse_query(rt, &format!("_id={p}"))?.clauses),
            Some(p) => q.in_compartment(crate::resource_type("Patient")?, p)?,
            None => {}
        }
        q.total = Total::None;
        // pages go by surrogate key
        q.sort.clear();
        q.includes.clear();
        out.push(q);
    }
    Ok(out)
}

/// Run an export into `dir` (created), one `Type.ndjson` per type with resources; types
/// without any are left out. `progress` hears of each page (type, resources so far);
/// `cancel` stops it between pages. Every page is read through `h`, the requester's
/// handle: only what they may search is exported.
pub fn run(
    h: &Handle,
    plan: &Plan,
    dir: &Path,
    cancel: &AtomicBool,
    mut progress: impl FnMut(ResourceType, u64),
) -> FhirResult<Vec<Output>> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
    #[cfg(unix)]
    {
        // patient data: readable by the server's user only
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io_error(dir, &e))?;
    }
    let mut outputs = Vec::new();
    let patients: Vec<Option<String>> = match &plan.scope {
        Scope::Members(ids) => ids.iter().cloned().map(Some).collect(),
        _ => vec![None],
    };
    for rt in &plan.types {
        let path = dir.join(format!("{rt}.ndjson"));
        let elements = plan.elements.as_deref().map(|e| elements_for(e, *rt)).filter(|e| !e.is_empty());
        let mut file: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut count = 0u64;
        // with several filters or several members, a resource may match twice
        let mut seen: Option<HashSet<String>> = None;
        for patient in &patients {
            let qs = queries(plan, *rt, patient.as_deref())?;
            if qs.len() > 1 || patients.len() > 1 {
                seen.get_or_insert_with(HashSet::new);
            }
            for mut q in qs {
                loop {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(FhirError::new(
                            409,
                            Issue::error(IssueType::Processing, "the export was cancelled"),
                        ));
                    }
                    let page = h.search(&q, PAGE)?;
                    for s in &page.resources {
                        let Some(body) = &s.body else { continue };
                        if let Some(seen) = seen.as_mut()
                            && !seen.insert(s.id.clone())
                        {
                            continue;
                        }
                        let w = match file.as_mut() {
                            Some(w) => w,
                            None => file.insert(std::io::BufWriter::new(
                                std::fs::File::create(&path).map_err(|e| io_error(&path, &e))?,
                            )),
                        };
                        let cut;
                        let body: &[u8] = match &elements {
                            Some(list) => {
                                let v: serde_json::Value =
                                    serde_json::from_slice(body).map_err(|_| FhirError::internal())?;
                                let v = crate::shape::subset(v, search::Summary::False, Some(list));
                                cut = serde_json::to_vec(&v).map_err(|_| FhirError::internal())?;
                                &cut
                            }
                            None => body,
                        };
                        w.write_all(body).and_then(|()| w.write_all(b"\n")).map_err(|e| io_error(&path, &e))?;
                        count += 1;
                    }
                    progress(*rt, count);
                    match (page.more, page.last) {
                        (true, Some(last)) => {
                            q.page = Some(PageRequest {
                                forward: true,
                                from: Position { key: last.key, values: Vec::new() },
                            });
                        }
                        _ => break,
                    }
                }
            }
        }
        if let Some(mut w) = file {
            w.flush().map_err(|e| io_error(&path, &e))?;
            outputs.push(Output { resource_type: *rt, file: path, count });
        }
    }
    Ok(outputs)
}

/// The patient ids a Group's members are (`Group.member.entity` references to Patient).
pub fn group_members(h: &Handle, id: &str) -> FhirResult<Vec<String>> {
    let g = match h.read(crate::resource_type("Group")?, id)? {
        Some(s) if !s.deleted() => s,
        _ => return Err(FhirError::not_found(format!("Group/{id} does not exist"))),
    };
    let v: serde_json::Value =
        serde_json::from_slice(g.body.as_deref().unwrap_or_default()).map_err(|_| FhirError::internal())?;
    Ok(v["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["entity"]["reference"].as_str())
        .filter_map(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .collect())
}

fn io_error(path: &Path, e: &std::io::Error) -> FhirError {
    tracing::error!("export: {}: {e}", path.display());
    FhirError::new(500, Issue::error(IssueType::Exception, "the export could not write its files"))
}
