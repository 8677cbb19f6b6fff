//! The policy decision point: given who calls (role in an organisation, patient context,
//! token scopes) and what they want to do to which type of resource, allow — possibly
//! only within one patient's compartment — or deny with a reason. The FHIR engine asks
//! it before every read, search, history, include, operation and write, and applies the
//! restriction it returns in the data layer, so that no path around it exists.
//!
//! The rules, role by role (a token's scopes can only narrow them):
//! - patient: their own compartment (read, search; no writes yet), and the shared
//!   directory resources (organisations, practitioners, locations, medications) to read;
//! - doctor, nurse: the records of patients in the care of their organisation (managed by
//!   it, or with an encounter or episode of care it provides), read and write; writing
//!   an encounter or registering a patient there brings a patient into its care;
//! - registrar: demographics, appointments and the directory, no clinical records;
//! - administrator: the directory only (accounts are managed by operator commands);
//! - security officer, analyst: no patient data through the FHIR API (audit and
//!   de-identified analytics come with their own interfaces);
//! - a system (client credentials): what its `system/` scopes say.
//!
//! - a named system actor ([`crate::SystemActor`]: demo data, import, reindex): all.
//!
//! Consent (S3) comes in with the caller context ([`Consents`], loaded by the guard per
//! request) and shapes the care restriction; patients write their own Consent resources.
//!
//! This module is the whole decision: [`authorize`] (role x scope x type), and what a
//! decision means for one resource ([`Reach::visible`]), for a query ([`restrict`], a
//! compiled restriction the store applies in SQL) and for a write ([`write_allowed`]).
//! The guard calls it; nothing else does.

use auth::account::Role;
use auth::scope::{Context, Interaction};
use fhir_model::{Issue, IssueType, ResourceType};
use search::{Clause, IndexValue, Predicate, Query};
use serde_json::Value;

use crate::{FhirError, FhirResult, Principal};

/// What a request may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Every resource of the type.
    All,
    /// Only resources in the compartment of this patient (an id).
    Compartment(String),
    /// Only patients in the care of this organisation (an id), or of this practitioner,
    /// and the resources in their compartments — as the patients' consents widen or
    /// narrow it.
    Care { organization: String, practitioner: Option<String>, consents: Consents },
}

/// What patients' consents say about one caller (loaded by the engine for each of their
/// requests, so that a change takes effect on the next one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Consents {
    /// Patients outside the organisation's care who opened their record to the caller
    /// (a permit, or break-the-glass).
    pub granted: Vec<String>,
    /// Patients who closed their record to the caller (wins over care and permits).
    pub denied: Vec<String>,
    /// Security labels of the sensitive sections (mental health, HIV...): hidden from
    /// clinicians unless the patient opened them.
    pub sensitive: Vec<String>,
    /// Sensitive sections opened: (label, patient ids).
    pub unlocked: Vec<(String, Vec<String>)>,
}

impl Consents {
    /// `patient` opened the section `label`.
    pub fn unlock(&mut self, label: &str, patient: &str) {
        match self.unlocked.iter_mut().find(|(l, _)| l == label) {
            Some((_, ps)) if ps.iter().any(|p| p == patient) => {}
            Some((_, ps)) => ps.push(patient.to_string()),
            None => self.unlocked.push((label.to_string(), vec![patient.to_string()])),
        }
    }

    /// May the caller see a resource of `patient` labelled `labels`?
    pub fn section_open(&self, patient: &str, labels: &[&str]) -> bool {
        labels
            .iter()
            .filter(|l| self.sensitive.iter().any(|s| s == *l))
            .all(|l| self.unlocked.iter().any(|(u, ps)| u == l && ps.iter().any(|p| p == patient)))
    }
}

/// Resources that describe the health system rather than a patient (its schedules and
/// their slots too: where a patient may book), readable by anyone signed in.
pub const DIRECTORY_TYPES: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "HealthcareService",
    "Endpoint",
    "Medication",
    "Substance",
    "Schedule",
    "Slot",
];

/// Demographic and scheduling resources a registrar works with.
const REGISTRAR_TYPES: &[&str] =
    &["Patient", "RelatedPerson", "Person", "Appointment", "AppointmentResponse", "Schedule", "Slot", "Coverage"];

/// Definitions and infrastructure (no patient data): profiles, value sets, search
/// parameters, subscriptions.
const CONFORMANCE_TYPES: &[&str] = &[
    "CapabilityStatement",
    "StructureDefinition",
    "SearchParameter",
    "ValueSet",
    "CodeSystem",
    "ConceptMap",
    "NamingSystem",
    "OperationDefinition",
    "CompartmentDefinition",
    "ImplementationGuide",
    "Questionnaire",
    "ActivityDefinition",
    "PlanDefinition",
    "Library",
    "Measure",
];

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

fn reads(i: Interaction) -> bool {
    matches!(i, Interaction::Read | Interaction::Search)
}

/// The types a patient may write (within their own compartment); a domain rule may open
/// its types to them too (see [`patient_write`]).
const PATIENT_WRITES: &[&str] = &["Consent"];

/// Decide `interaction` on resources of `rt` for `principal`.
pub fn authorize(
    principal: &Principal,
    consents: &Consents,
    interaction: Interaction,
    rt: ResourceType,
) -> Result<Access, Denied> {
    let caller = match principal {
        Principal::System(_) => return Ok(Access::All),
        Principal::Anonymous => return Err(Denied("an access token is required".into())),
        Principal::Token(c) => c,
    };
    let t = rt.as_str();
    let verb = match interaction {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
    };
    let denied = |why: &str| Err(Denied(format!("Not allowed to {verb} {t}: {why}")));
    let Some(grant) = &caller.grant else {
        // a system: its scopes decide
        return if caller.scopes.allows(Context::System, rt, interaction) {
            Ok(Access::All)
        } else {
            denied("the token's scopes do not include it")
        };
    };
    let user_scope = caller.scopes.allows(Context::User, rt, interaction);
    let patient_scope = caller.scopes.allows(Context::Patient, rt, interaction);
    if !user_scope && !patient_scope {
        return denied("the token's scopes do not include it");
    }
    let directory = DIRECTORY_TYPES.contains(&t) || CONFORMANCE_TYPES.contains(&t);
    // patient/ scopes: only the patient in context, whatever the role
    let context = |own: Option<&str>| -> Result<Access, Denied> {
        match caller.patient.as_deref().or(own) {
            Some(p) => Ok(Access::Compartment(p.to_string())),
            None => denied("patient/ scopes need a patient in context (launch/patient)"),
        }
    };
    match grant.role {
        Role::Patient => {
            let own = grant.patient.as_deref().map(|p| p.trim_start_matches("Patient/"));
            if directory && reads(interaction) {
                return Ok(Access::All);
            }
            // what a patient writes: their consents (and what rules open, `patient_write`)
            if !reads(interaction) && !PATIENT_WRITES.contains(&t) {
                return denied("patients change only their consents here");
            }
            match own {
                Some(own) => Ok(Access::Compartment(own.to_string())),
                None => denied("the account is not linked to a Patient"),
            }
        }
        Role::Doctor | Role::Nurse => {
            if !user_scope {
                return context(None);
            }
            if directory {
                return Ok(Access::All);
            }
            let id = |r: &Option<String>, ty: &str| {
                r.as_deref().map(|r| r.strip_prefix(&format!("{ty}/")).unwrap_or(r).to_string())
            };
            match id(&grant.organization, "Organization") {
                Some(organization) => Ok(Access::Care {
                    organization,
                    practitioner: id(&grant.practitioner, "Practitioner"),
                    consents: consents.clone(),
                }),
                None => denied("the role is not held in an organisation"),
            }
        }
        Role::Registrar => {
            if !(REGISTRAR_TYPES.contains(&t) || (directory && reads(interaction))) {
                return denied("registrars handle demographics and appointments, not clinical records");
            }
            if user_scope { Ok(Access::All) } else { context(None) }
        }
        Role::Administrator => {
            if DIRECTORY_TYPES.contains(&t) || (CONFORMANCE_TYPES.contains(&t) && reads(interaction)) {
                Ok(Access::All)
            } else {
                denied("administrators manage the directory and accounts, not patient data")
            }
        }
        Role::SecurityOfficer | Role::Analyst => {
            if directory && reads(interaction) {
                Ok(Access::All)
            } else {
                denied("this role has no access to patient data through the FHIR API")
            }
        }
    }
}

fn forbidden(msg: String) -> FhirError {
    FhirError::new(403, Issue::error(IssueType::Forbidden, msg))
}

/// A patient's write of `rt` within their own compartment, for a type whose domain rule
/// opens it to patients and checks each such write (`WriteRule::opens_to_patients`):
/// `None` unless the caller is a patient whose token's scopes allow it.
pub(crate) fn patient_write(principal: &Principal, interaction: Interaction, rt: ResourceType) -> Option<Access> {
    let Principal::Token(caller) = principal else { return None };
    let grant = caller.grant.as_ref().filter(|g| g.role == Role::Patient)?;
    let scoped =
        caller.scopes.allows(Context::User, rt, interaction) || caller.scopes.allows(Context::Patient, rt, interaction);
    let own = grant.patient.as_deref()?.trim_start_matches("Patient/");
    (scoped && !reads(interaction)).then(|| Access::Compartment(own.to_string()))
}

/// [`authorize`], as a FHIR error (403) when nothing is allowed.
pub(crate) fn require(
    principal: &Principal,
    consents: &Consents,
    interaction: Interaction,
    rt: ResourceType,
) -> FhirResult<Access> {
    authorize(principal, consents, interaction, rt).map_err(|d| forbidden(d.0))
}

/// Limited rights (summaries only, no downloads)?
pub fn limited(principal: &Principal) -> bool {
    matches!(principal, Principal::Token(c) if c.grant.as_ref().is_some_and(|g| g.limited))
}

/// The patients a resource belongs to: itself if a Patient, else those its compartment
/// parameters reference. `None` for resources outside the patient compartment.
pub fn patients_of(resource: &Value) -> Option<Vec<String>> {
    let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if rt == "Patient" {
        return Some(resource.get("id").and_then(Value::as_str).map(str::to_string).into_iter().collect());
    }
    if rt == "Binary" {
        // outside the compartment, a Binary is the record of the patient its
        // securityContext leads to (found at each write, see `crate::binary`); without one
        // it is no one's, and only those who reach every Binary see it
        return Some(store::blob::binary_owner(resource).map(str::to_string).into_iter().collect());
    }
    let params = fhir_spec::spec().patient_compartment_params(rt);
    if params.is_empty() || DIRECTORY_TYPES.contains(&rt) {
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
fn care_of(relations: search::CareRelations, access: &Access, params: Vec<&'static str>) -> Option<search::Care> {
    match access {
        Access::Care { organization, practitioner, consents } => Some(search::Care {
            relations,
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

/// The query that finds Patient `id` if it is in the care `access` describes (one row or
/// none), for the store or a write transaction to run.
pub(crate) fn care_probe(relations: search::CareRelations, access: &Access, id: &str) -> Option<Query> {
    let patient = ResourceType::parse("Patient")?;
    let mut q = search::parse_query(patient, "").ok()?;
    q.clauses.push(id_clause(id));
    q.care = care_of(relations, access, Vec::new());
    Some(q)
}

fn id_clause(id: &str) -> Clause {
    Clause {
        param: "_id",
        kind: fhir_spec::SearchParamType::Token,
        any_of: vec![Predicate::Token { system: None, code: Some(id.to_string()), not: false }],
        path: Vec::new(),
    }
}

/// Is this resource within `access`? For a compartment: the Patient itself, or a
/// resource that one of its compartment parameters links to that patient; for care: the
/// same for any patient in the organisation's care (`in_care` runs a [`care_probe`]).
pub(crate) fn visible(
    relations: search::CareRelations,
    access: &Access,
    resource: &Value,
    in_care: &mut dyn FnMut(&Query) -> FhirResult<bool>,
) -> FhirResult<bool> {
    if *access == Access::All {
        return Ok(true); // nothing to compute
    }
    match (access, patients_of(resource)) {
        (Access::All, _) | (_, None) => Ok(true),
        (Access::Compartment(p), Some(ps)) => Ok(ps.contains(p)),
        (Access::Care { consents, .. }, Some(ps)) => {
            let labels = security_labels(resource);
            for p in &ps {
                if consents.section_open(p, &labels)
                    && let Some(q) = care_probe(relations, access, p)
                    && in_care(&q)?
                {
                    return Ok(true);
                }
            }
            Ok(false)
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

/// A stored version within `access` (`Ok`), or the refusal: a deletion is shown only to
/// those who see every resource of the type.
pub(crate) fn check_stored(
    relations: search::CareRelations,
    access: &Access,
    s: &store::StoredResource,
    in_care: &mut dyn FnMut(&Query) -> FhirResult<bool>,
) -> FhirResult<()> {
    if *access == Access::All {
        return Ok(());
    }
    let Some(body) = s.body.as_deref() else {
        return Err(FhirError::not_found(format!("{}/{} does not exist", s.resource_type, s.id)));
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        tracing::error!("stored {}/{} is not JSON: {e}", s.resource_type, s.id);
        FhirError::internal()
    })?;
    if visible(relations, access, &v, in_care)? { Ok(()) } else { Err(refused(access, &s.resource_type, &s.id)) }
}

/// What a caller gets for a resource outside their reach: to a clinician, that the
/// patient's consent is needed and how to ask for it or open it in an emergency; to
/// others, that it does not exist (its existence is not revealed).
pub(crate) fn refused(access: &Access, rt: &str, id: &str) -> FhirError {
    match access {
        Access::Care { .. } => forbidden(format!(
            "Consent required: {rt}/{id} belongs to a record that is not open to you. Ask the patient (create a \
             Consent with status 'proposed' naming you as actor; they answer it in their portal), or in an \
             emergency repeat the request with the header X-Break-Glass-Reason: <reason> (the patient is told)"
        )),
        _ => FhirError::not_found(format!("{rt}/{id} does not exist")),
    }
}

/// A clinician's request for access (a `proposed` Consent naming only the clinician or
/// their organisation as actor), which the patient answers.
fn access_request(principal: &Principal, resource: &Value) -> bool {
    let Principal::Token(c) = principal else { return false };
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

/// May a version with this body be stored by a caller with `access` (a create: `fresh`)?
/// The body itself must be within reach, or bring its patient into the caller's care,
/// or (a create) be a clinician's request for access.
pub(crate) fn write_allowed(
    relations: search::CareRelations,
    principal: &Principal,
    access: &Access,
    body: &Value,
    fresh: bool,
    in_care: &mut dyn FnMut(&Query) -> FhirResult<bool>,
) -> FhirResult<()> {
    if *access == Access::All
        || (fresh && matches!(access, Access::Care { .. }) && access_request(principal, body))
        || establishes_care(access, body)
        || visible(relations, access, body, in_care)?
    {
        return Ok(());
    }
    let rt = body.get("resourceType").and_then(Value::as_str).unwrap_or("resource");
    Err(forbidden(match access {
        Access::Care { .. } => format!("The {rt} would not belong to a patient in your organisation's care"),
        _ => format!("The {rt} would not belong to the patient you may write for"),
    }))
}

/// Restrict a query on one type to what `access` allows: the store applies it in SQL,
/// so totals, paging, chains and `_has` see only that.
pub(crate) fn restrict(relations: search::CareRelations, q: &mut Query, access: &Access) -> FhirResult<()> {
    let rt = q.resource_type;
    if let Access::Care { .. } = access {
        if rt.as_str() == "Binary" {
            return Err(forbidden(
                "Binary resources are read by id: their securityContext says whose record they belong to".into(),
            ));
        }
        let params: Vec<&'static str> = fhir_spec::spec()
            .patient_compartment_params(rt.as_str())
            .iter()
            .filter_map(|p| search::index::indexed_param(rt.as_str(), p))
            .filter(|p| p.kind == fhir_spec::SearchParamType::Reference)
            .map(|p| p.code)
            .collect();
        if rt.as_str() == "Patient" || !params.is_empty() {
            q.care = care_of(relations, access, if rt.as_str() == "Patient" { Vec::new() } else { params });
        }
        return Ok(());
    }
    let Access::Compartment(patient) = access else { return Ok(()) };
    if rt.as_str() == "Patient" {
        q.clauses.push(id_clause(patient));
        return Ok(());
    }
    if DIRECTORY_TYPES.contains(&rt.as_str()) {
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

/// Whose entries of the audit log a caller may see: `None` anyone's (a security officer
/// whose scopes include AuditEvent, a system with `system/AuditEvent.rs`, a system
/// actor), `Some(patient)` one patient's own.
pub(crate) fn audit_reach(principal: &Principal, consents: &Consents) -> FhirResult<Option<String>> {
    let Principal::Token(c) = principal else {
        return match principal {
            Principal::System(_) => Ok(None),
            _ => Err(forbidden("an access token is required".into())),
        };
    };
    let rt = ResourceType::parse("AuditEvent").ok_or_else(FhirError::internal)?;
    let role = c.grant.as_ref().map(|g| g.role);
    if role == Some(Role::SecurityOfficer) {
        return if c.scopes.allows(Context::User, rt, Interaction::Read) {
            Ok(None)
        } else {
            Err(forbidden("The token's scopes do not include reading AuditEvent".into()))
        };
    }
    match (role, authorize(principal, consents, Interaction::Search, rt)) {
        (None, Ok(Access::All)) => Ok(None),
        (Some(Role::Patient), Ok(Access::Compartment(p))) => Ok(Some(p)),
        _ => Err(forbidden("The audit log of a record is shown to its patient and to security officers".into())),
    }
}

/// Full access to every type is needed (system-wide history and search).
pub(crate) fn require_all(
    principal: &Principal,
    consents: &Consents,
    interaction: Interaction,
    types: &[ResourceType],
) -> FhirResult<()> {
    for t in types {
        if require(principal, consents, interaction, *t)? != Access::All {
            return Err(forbidden(format!(
                "Search or history across all {t} resources needs access to every patient's records: search by type (e.g. {t}?...)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth::account::RoleGrant;
    use auth::directory::Caller;
    use auth::scope::Scopes;

    fn caller(role: Option<Role>, scope: &str, patient: Option<&str>) -> Principal {
        Principal::Token(Box::new(Caller {
            sid: "s".into(),
            username: role.map(|_| "u".into()),
            client_id: "c".into(),
            scopes: Scopes::parse(scope).unwrap(),
            grant: role.map(|role| RoleGrant {
                role,
                organization: Some("Organization/o".into()),
                practitioner: None,
                patient: (role == Role::Patient).then(|| "Patient/p1".into()),
                limited: false,
            }),
            patient: patient.map(str::to_string),
            break_glass: None,
        }))
    }

    fn az(p: &Principal, i: Interaction, rt: ResourceType) -> Result<Access, Denied> {
        authorize(p, &Consents::default(), i, rt)
    }

    fn rt(s: &str) -> ResourceType {
        ResourceType::parse(s).unwrap()
    }

    #[test]
    fn roles_and_scopes() {
        use Interaction::*;
        let all = "user/*.cruds patient/*.cruds system/*.cruds";
        let obs = rt("Observation");
        let p = caller(Some(Role::Patient), all, None);
        assert_eq!(az(&p, Search, obs), Ok(Access::Compartment("p1".into())));
        assert!(az(&p, Create, obs).is_err());
        assert_eq!(az(&p, Read, rt("Organization")), Ok(Access::All));
        let dr = caller(Some(Role::Doctor), all, None);
        assert_eq!(
            az(&dr, Update, obs),
            Ok(Access::Care { organization: "o".into(), practitioner: None, consents: Consents::default() })
        );
        assert_eq!(az(&p, Update, rt("Consent")), Ok(Access::Compartment("p1".into())));
        assert_eq!(az(&dr, Read, rt("Organization")), Ok(Access::All));
        let reg = caller(Some(Role::Registrar), all, None);
        assert!(az(&reg, Read, obs).unwrap_err().0.contains("registrars"));
        assert_eq!(az(&reg, Create, rt("Appointment")), Ok(Access::All));
        let admin = caller(Some(Role::Administrator), all, None);
        assert!(az(&admin, Read, rt("Patient")).is_err());
        assert_eq!(az(&admin, Update, rt("Practitioner")), Ok(Access::All));
        for role in [Role::SecurityOfficer, Role::Analyst] {
            assert!(az(&caller(Some(role), all, None), Search, obs).is_err());
        }
        // scopes narrow: a doctor's app with patient/ scopes sees the patient in context
        let app = caller(Some(Role::Doctor), "patient/Observation.rs", Some("p9"));
        assert_eq!(az(&app, Search, obs), Ok(Access::Compartment("p9".into())));
        assert!(az(&app, Search, rt("Condition")).is_err());
        assert!(az(&caller(Some(Role::Doctor), "patient/*.rs", None), Read, obs).is_err());
        // systems: their scopes
        let sys = caller(None, "system/Observation.rs", None);
        assert_eq!(az(&sys, Read, obs), Ok(Access::All));
        assert!(az(&sys, Create, obs).is_err());
        assert!(az(&caller(None, "user/*.cruds", None), Read, obs).is_err(), "user scopes need a user");
        assert_eq!(az(&Principal::System(crate::SystemActor::new("system:test")), Delete, obs), Ok(Access::All));
    }
}
