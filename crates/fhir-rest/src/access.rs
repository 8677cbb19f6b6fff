//! Enforcement of the access policy ([`auth::policy`]) inside the engine: every
//! interaction asks [`require`] before touching data, and applies what it gets back —
//! searches are restricted (to one patient's compartment, or to the patients in an
//! organisation's care) in the query itself, so counts, paging, chains and `_has` see
//! only that; single resources and included ones are checked with [`visible`], writes
//! with [`check_write`].

use auth::policy::{Access, Principal, authorize};
use auth::scope::Interaction;
use fhir_model::{Issue, IssueType, ResourceType};
use search::{Clause, IndexValue, Predicate, Query};
use serde_json::Value;

use crate::write::WriteOp;
use crate::{Engine, FhirError, FhirResult};

fn forbidden(msg: String) -> FhirError {
    FhirError::new(403, Issue::error(IssueType::Forbidden, msg))
}

/// What `principal` may reach of type `rt` for `interaction` (403 if nothing).
pub fn require(principal: &Principal, interaction: Interaction, rt: ResourceType) -> FhirResult<Access> {
    authorize(principal, interaction, rt).map_err(|d| forbidden(d.0))
}

/// Limited rights (summaries only, no downloads)?
pub fn limited(principal: &Principal) -> bool {
    matches!(principal, Principal::Token(c) if c.grant.as_ref().is_some_and(|g| g.limited))
}

/// Under limited rights, what a read returns: the summary of the resource; documents
/// (Binary) are not handed out at all.
pub fn limit_read(principal: &Principal, rt: ResourceType, body: Vec<u8>) -> FhirResult<crate::ResponseBody> {
    if !limited(principal) {
        return Ok(crate::ResponseBody::Raw(body));
    }
    if rt.as_str() == "Binary" {
        return Err(forbidden("Limited rights: documents cannot be downloaded".into()));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|_| FhirError::internal())?;
    Ok(crate::ResponseBody::Json(crate::shape::subset(v, search::Summary::True, None)))
}

/// Full access to every type is needed (system-wide history and search).
pub fn require_all(principal: &Principal, interaction: Interaction, types: &[ResourceType]) -> FhirResult<()> {
    for t in types {
        if require(principal, interaction, *t)? != Access::All {
            return Err(forbidden(format!(
                "Search or history across all {t} resources needs access to every patient's records: search by type (e.g. {t}?...)"
            )));
        }
    }
    Ok(())
}

/// The patients a resource belongs to: itself if a Patient, else those its compartment
/// parameters reference. `None` for resources outside the patient compartment.
pub(crate) fn patients_of(resource: &Value) -> Option<Vec<String>> {
    let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if rt == "Patient" {
        return Some(resource.get("id").and_then(Value::as_str).map(str::to_string).into_iter().collect());
    }
    let params = fhir_spec::spec().patient_compartment_params(rt);
    if params.is_empty() || auth::policy::DIRECTORY_TYPES.contains(&rt) {
        return None;
    }
    // only the compartment parameters are evaluated, not the whole index
    Some(
        params
            .iter()
            .filter_map(|p| search::index::indexed_param(rt, p))
            .flat_map(|p| search::index::extract_param(p, resource))
            .filter_map(|e| match e.value {
                IndexValue::Reference { resource_type: Some(t), id: Some(id), .. } if t == "Patient" => Some(id),
                _ => None,
            })
            .collect(),
    )
}

/// The care restriction of an access decision, for a query on `params`.
fn care_of(engine: &Engine, access: &Access, params: Vec<&'static str>) -> Option<search::Care> {
    match access {
        Access::Care { organization, practitioner, consents } => Some(search::Care {
            relations: engine.config.care,
            organization: organization.clone(),
            practitioner: practitioner.clone(),
            params,
            granted: consents.granted.clone(),
            denied: consents.denied.clone(),
            sensitive: consents.sensitive.clone(),
            unlocked: consents.unlocked.clone(),
        }),
        _ => None,
    }
}

/// Is the patient `id` in the care `access` describes?
fn in_care(engine: &Engine, access: &Access, id: &str) -> bool {
    let Some(patient) = ResourceType::parse("Patient") else { return false };
    let Ok(mut q) = search::parse_query(patient, &format!("_id={id}")) else { return false };
    q.care = care_of(engine, access, Vec::new());
    engine.store.search(&q, 0).ok().and_then(|p| p.total) == Some(1)
}

/// Is this resource within `access`? For a compartment: the Patient itself, or a
/// resource that one of its compartment parameters links to that patient; for care: the
/// same for any patient in the organisation's care.
pub fn visible(engine: &Engine, access: &Access, resource: &Value) -> bool {
    if *access == Access::All {
        return true; // nothing to compute
    }
    match (access, patients_of(resource)) {
        (Access::All, _) | (_, None) => true,
        (Access::Compartment(p), Some(ps)) => ps.contains(p),
        (Access::Care { consents, .. }, Some(ps)) => {
            let labels = security_labels(resource);
            ps.iter().any(|p| consents.section_open(p, &labels) && in_care(engine, access, p))
        }
    }
}

/// The `meta.security` codes of a resource.
fn security_labels(resource: &Value) -> Vec<&str> {
    resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str))
        .collect()
}

/// A clinician's request for access (a `proposed` Consent naming only the clinician or
/// their organisation as actor), which the patient answers.
fn access_request(principal: &Principal, op: &WriteOp) -> bool {
    let (Principal::Token(c), WriteOp::Create { resource, .. }) = (principal, op) else { return false };
    let mine = crate::consent::actors(c);
    resource.get("resourceType").and_then(Value::as_str) == Some("Consent")
        && resource.get("status").and_then(Value::as_str) == Some("proposed")
        && !mine.is_empty()
        && resource.pointer("/provision/actor").and_then(Value::as_array).is_some_and(|a| {
            !a.is_empty()
                && a.iter().all(|x| {
                    x.pointer("/reference/reference")
                        .and_then(Value::as_str)
                        .is_some_and(|r| mine.iter().any(|m| m == r))
                })
        })
}

/// Does writing this resource bring its patient into the caller's care (an encounter or
/// episode of care the organisation provides, a patient it manages)?
fn establishes_care(access: &Access, resource: &Value) -> bool {
    let Access::Care { organization, .. } = access else { return false };
    let target = format!("Organization/{organization}");
    let field = match resource.get("resourceType").and_then(Value::as_str) {
        Some("Encounter") => "serviceProvider",
        Some("EpisodeOfCare" | "Patient") => "managingOrganization",
        _ => return false,
    };
    resource.get(field).and_then(|r| r.get("reference")).and_then(Value::as_str) == Some(target.as_str())
}

/// Restrict a search to what `access` allows.
pub fn restrict(engine: &Engine, q: &mut Query, access: &Access) -> FhirResult<()> {
    let rt = q.resource_type;
    if let Access::Care { .. } = access {
        let params: Vec<&'static str> = fhir_spec::spec()
            .patient_compartment_params(rt.as_str())
            .iter()
            .filter_map(|p| search::index::indexed_param(rt.as_str(), p))
            .filter(|p| p.kind == fhir_spec::SearchParamType::Reference)
            .map(|p| p.code)
            .collect();
        if rt.as_str() == "Patient" || !params.is_empty() {
            q.care = care_of(engine, access, if rt.as_str() == "Patient" { Vec::new() } else { params });
        }
        return Ok(());
    }
    let Access::Compartment(patient) = access else { return Ok(()) };
    if rt.as_str() == "Patient" {
        q.clauses.push(Clause {
            param: "_id",
            kind: fhir_spec::SearchParamType::Token,
            any_of: vec![Predicate::Token { system: None, code: Some(patient.clone()), not: false }],
            path: Vec::new(),
        });
        return Ok(());
    }
    if auth::policy::DIRECTORY_TYPES.contains(&rt.as_str()) {
        return Ok(());
    }
    match &q.compartment {
        Some(c) if c.id != *patient => Err(forbidden(format!("Patient/{} is not the patient you may see", c.id))),
        Some(_) => Ok(()),
        None => q
            .in_compartment(ResourceType::parse("Patient").ok_or_else(FhirError::internal)?, patient)
            .map_err(|_| forbidden(format!("{rt} resources are not part of a patient's record"))),
    }
}

/// A stored resource outside the caller's reach reads as not found (its existence is not
/// revealed).
/// To a clinician, a record outside their reach says that the patient's consent is
/// needed, and how to ask for it or open it in an emergency.
pub fn check_visible(engine: &Engine, access: &Access, rt: ResourceType, id: &str, body: &[u8]) -> FhirResult<()> {
    if matches!(access, Access::All) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| FhirError::internal())?;
    if visible(engine, access, &v) {
        return Ok(());
    }
    match access {
        Access::Care { .. } => Err(forbidden(format!(
            "Consent required: {rt}/{id} belongs to a record that is not open to you. Ask the patient (create a \
             Consent with status 'proposed' naming you as actor; they answer it in their portal), or in an \
             emergency repeat the request with the header X-Break-Glass-Reason: <reason> (the patient is told)"
        ))),
        _ => Err(FhirError::not_found(format!("{rt}/{id} does not exist"))),
    }
}

/// May `principal` perform this write? Checks the type and interaction, and under a
/// compartment restriction both the new body and the version it replaces.
pub fn check_write(engine: &Engine, principal: &Principal, op: &WriteOp) -> FhirResult<()> {
    let (interaction, rt, id, body): (Interaction, ResourceType, Option<&str>, Option<&Value>) = match op {
        WriteOp::Create { resource, .. } => {
            let t = resource.get("resourceType").and_then(Value::as_str).and_then(ResourceType::parse);
            let Some(t) = t else { return Ok(()) }; // refused later as invalid
            (Interaction::Create, t, None, Some(resource))
        }
        WriteOp::Update { resource_type, id, resource, .. } => {
            (Interaction::Update, *resource_type, Some(id), Some(resource))
        }
        WriteOp::ConditionalUpdate { resource_type, resource, .. } => {
            (Interaction::Update, *resource_type, None, Some(resource))
        }
        WriteOp::Patch { resource_type, id, .. } => (Interaction::Update, *resource_type, Some(id), None),
        WriteOp::Delete { resource_type, id, .. } => (Interaction::Delete, *resource_type, Some(id), None),
        WriteOp::ConditionalDelete { resource_type, .. } => (Interaction::Delete, *resource_type, None, None),
    };
    let access = require(principal, interaction, rt)?;
    if access == Access::All {
        return Ok(());
    }
    if matches!(access, Access::Care { .. }) && access_request(principal, op) {
        return Ok(());
    }
    if matches!(op, WriteOp::ConditionalUpdate { .. } | WriteOp::ConditionalDelete { .. }) {
        return Err(forbidden("Conditional writes need access to every patient's records".into()));
    }
    if let Some(b) = body
        && !visible(engine, &access, b)
        && !establishes_care(&access, b)
    {
        return Err(forbidden(match access {
            Access::Care { .. } => format!("The {rt} would not belong to a patient in your organisation's care"),
            _ => format!("The {rt} would not belong to the patient you may write for"),
        }));
    }
    if let Some(id) = id
        && let Some(cur) = engine.store.read(rt.as_str(), id)?
        && let Some(b) = &cur.body
    {
        check_visible(engine, &access, rt, id, b)?;
    }
    Ok(())
}
