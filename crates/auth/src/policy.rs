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
//! Consent (S3) comes in with the caller ([`Consents`], loaded by the engine per request)
//! and shapes the care restriction; patients write their own Consent resources.

use fhir_model::ResourceType;

use crate::account::Role;
use crate::directory::Caller;
use crate::scope::{Context, Interaction};

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

/// Who calls, as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// The server itself (demo data, operator commands, tests in process).
    Internal,
    /// An authenticated caller with a verified token.
    Token(Box<Caller>),
}

/// Resources that describe the health system rather than a patient, readable by anyone
/// signed in.
pub const DIRECTORY_TYPES: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "HealthcareService",
    "Endpoint",
    "Medication",
    "Substance",
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

/// Decide `interaction` on resources of `rt` for `principal`.
pub fn authorize(principal: &Principal, interaction: Interaction, rt: ResourceType) -> Result<Access, Denied> {
    let caller = match principal {
        Principal::Internal => return Ok(Access::All),
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
            if !reads(interaction) && t != "Consent" {
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
                    consents: caller.consents.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::RoleGrant;
    use crate::scope::Scopes;

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
            consents: Consents::default(),
            break_glass: None,
        }))
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
        assert_eq!(authorize(&p, Search, obs), Ok(Access::Compartment("p1".into())));
        assert!(authorize(&p, Create, obs).is_err());
        assert_eq!(authorize(&p, Read, rt("Organization")), Ok(Access::All));
        let dr = caller(Some(Role::Doctor), all, None);
        assert_eq!(
            authorize(&dr, Update, obs),
            Ok(Access::Care { organization: "o".into(), practitioner: None, consents: Consents::default() })
        );
        assert_eq!(authorize(&p, Update, rt("Consent")), Ok(Access::Compartment("p1".into())));
        assert_eq!(authorize(&dr, Read, rt("Organization")), Ok(Access::All));
        let reg = caller(Some(Role::Registrar), all, None);
        assert!(authorize(&reg, Read, obs).unwrap_err().0.contains("registrars"));
        assert_eq!(authorize(&reg, Create, rt("Appointment")), Ok(Access::All));
        let admin = caller(Some(Role::Administrator), all, None);
        assert!(authorize(&admin, Read, rt("Patient")).is_err());
        assert_eq!(authorize(&admin, Update, rt("Practitioner")), Ok(Access::All));
        for role in [Role::SecurityOfficer, Role::Analyst] {
            assert!(authorize(&caller(Some(role), all, None), Search, obs).is_err());
        }
        // scopes narrow: a doctor's app with patient/ scopes sees the patient in context
        let app = caller(Some(Role::Doctor), "patient/Observation.rs", Some("p9"));
        assert_eq!(authorize(&app, Search, obs), Ok(Access::Compartment("p9".into())));
        assert!(authorize(&app, Search, rt("Condition")).is_err());
        assert!(authorize(&caller(Some(Role::Doctor), "patient/*.rs", None), Read, obs).is_err());
        // systems: their scopes
        let sys = caller(None, "system/Observation.rs", None);
        assert_eq!(authorize(&sys, Read, obs), Ok(Access::All));
        assert!(authorize(&sys, Create, obs).is_err());
        assert!(authorize(&caller(None, "user/*.cruds", None), Read, obs).is_err(), "user scopes need a user");
        assert_eq!(authorize(&Principal::Internal, Delete, obs), Ok(Access::All));
    }
}
