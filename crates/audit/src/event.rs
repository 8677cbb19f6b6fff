//! One audited event and its FHIR R4 AuditEvent form, after the IHE Basic Audit Log
//! Patterns: `type`/`subtype` say what kind of access (a RESTful interaction, a login, an
//! export, an operator command, a security alert); agents say who (the user with their
//! role, the organisation they act for, the client application, the network address);
//! entities say on what (each patient, each resource, the query); `purposeOfEvent` why.
//!
//! The log stores an event in a compact form of its own ([`Event::to_new`], about a fifth
//! of the resource's size: every read writes one) and turns it into the AuditEvent when it
//! is read ([`resource`]).

use base64::Engine as _;
use serde_json::{Map, Value, json};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const REST: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// Medkarta's roles (`auth::account::Role`).
pub const ROLE_SYSTEM: &str = "https://medkarta.org/fhir/CodeSystem/role";
/// Identifiers of OAuth clients.
pub const CLIENT_SYSTEM: &str = "https://medkarta.org/fhir/sid/client";

/// What kind of event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A FHIR RESTful interaction: `read`, `vread`, `search-type`, `create`, `update`,
    /// `patch`, `delete`, `history-instance`, `batch`, `transaction`, `operation`...
    Rest(&'static str),
    /// A sign-in (successful or not).
    Login,
    /// A sign-out or revocation.
    Logout,
    /// Data leaving the system (bulk export).
    Export,
    /// A command run by an operator on the server (`medkarta ...`).
    Operator(String),
    /// A security alert (suspicious activity, an entry flagged by a patient).
    Alert(String),
}

/// C, R, U, D or E (execute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused or not found (the request was wrong or not allowed).
    MinorFailure,
    /// The server failed.
    SeriousFailure,
}

impl Outcome {
    /// From an HTTP status.
    pub fn of_status(status: u16) -> Self {
        match status {
            0..400 => Outcome::Success,
            400..500 => Outcome::MinorFailure,
            _ => Outcome::SeriousFailure,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Agent {
    /// The account's user name (none for a client acting on its own, or unknown).
    pub user: Option<String>,
    /// The role the user acts in (`doctor`, `patient`...).
    pub role: Option<String>,
    /// `Practitioner/id` or `Patient/id` the user is.
    pub person: Option<String>,
    /// `Organization/id` the role is held in.
    pub organization: Option<String>,
    /// OAuth client id of the application.
    pub client: Option<String>,
    /// Session (token family) id.
    pub session: Option<String>,
    /// Network address the request came from.
    pub address: Option<String>,
}

/// One event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub kind: Kind,
    pub action: Action,
    pub outcome: Outcome,
    /// Why it failed, or what it did, in words.
    pub detail: Option<String>,
    pub agent: Agent,
    /// Purpose of use (v3 ActReason: `TREAT`, `BTG`, `PATRQT`...) and the stated reason.
    pub purpose: Option<(String, Option<String>)>,
    /// Ids of the patients whose data was touched.
    pub patients: Vec<String>,
    /// References of the resources touched (`Observation/1/_history/2`).
    pub objects: Vec<String>,
    /// The query of a search, as sent.
    pub query: Option<String>,
}

impl Event {
    /// An event of `kind` now, by `agent`.
    pub fn new(kind: Kind, action: Action, outcome: Outcome, agent: Agent) -> Self {
        Event {
            at: jiff::Timestamp::now().as_microsecond(),
            kind,
            action,
            outcome,
            detail: None,
            agent,
            purpose: None,
            patients: Vec::new(),
            objects: Vec::new(),
            query: None,
        }
    }

    /// A patient whose data this concerns (duplicates, and what is not a FHIR id — e.g.
    /// from a refused request's body — ignored).
    pub fn patient(&mut self, id: &str) {
        let id = id.strip_prefix("Patient/").unwrap_or(id);
        let valid =
            (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if valid && !self.patients.iter().any(|p| p == id) {
            self.patients.push(id.to_string());
        }
    }

    /// The entry to store (the compact form; `at` and the patients are columns).
    pub fn to_new(&self) -> store::audit::NewAudit {
        let mut c = Map::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                c.insert(k.into(), json!(v));
            }
        };
        let kind = match &self.kind {
            Kind::Rest(i) => format!("rest:{i}"),
            Kind::Login => "login".into(),
            Kind::Logout => "logout".into(),
            Kind::Export => "export".into(),
            Kind::Operator(cmd) => format!("op:{cmd}"),
            Kind::Alert(what) => format!("alert:{what}"),
        };
        put("k", Some(&kind));
        put("a", Some(self.action.code()));
        put("o", Some(self.outcome.code()));
        put("d", self.detail.as_deref());
        let a = &self.agent;
        put("u", a.user.as_deref());
        put("r", a.role.as_deref());
        put("pe", a.person.as_deref());
        put("org", a.organization.as_deref());
        put("c", a.client.as_deref());
        put("s", a.session.as_deref());
        put("ip", a.address.as_deref());
        put("pu", self.purpose.as_ref().map(|p| p.0.as_str()));
        put("why", self.purpose.as_ref().and_then(|p| p.1.as_deref()));
        put("q", self.query.as_deref());
        if !self.objects.is_empty() {
            c.insert("ob".into(), json!(self.objects));
        }
        store::audit::NewAudit { at: self.at, patients: self.patients.clone(), entry: Value::Object(c).to_string() }
    }

    /// The event of a stored compact entry.
    pub fn from_stored(at: i64, patients: &str, entry: &str) -> Option<Event> {
        let v: Value = serde_json::from_str(entry).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let kind = s("k")?;
        let kind = match kind.split_once(':') {
            Some(("rest", i)) => Kind::Rest(INTERACTIONS.iter().find(|k| **k == i).copied().unwrap_or("operation")),
            Some(("op", cmd)) => Kind::Operator(cmd.into()),
            Some(("alert", what)) => Kind::Alert(what.into()),
            _ => match kind.as_str() {
                "login" => Kind::Login,
                "logout" => Kind::Logout,
                "export" => Kind::Export,
                _ => return None,
            },
        };
        let action = match s("a")?.as_str() {
            "C" => Action::Create,
            "R" => Action::Read,
            "U" => Action::Update,
            "D" => Action::Delete,
            _ => Action::Execute,
        };
        let outcome = match s("o")?.as_str() {
            "0" => Outcome::Success,
            "4" => Outcome::MinorFailure,
            _ => Outcome::SeriousFailure,
        };
        let agent = Agent {
            user: s("u"),
            role: s("r"),
            person: s("pe"),
            organization: s("org"),
            client: s("c"),
            session: s("s"),
            address: s("ip"),
        };
        Some(Event {
            at,
            kind,
            action,
            outcome,
            detail: s("d"),
            agent,
            purpose: s("pu").map(|code| (code, s("why"))),
            patients: patients.split(' ').filter(|p| !p.is_empty()).map(str::to_string).collect(),
            objects: v
                .get("ob")
                .and_then(Value::as_array)
                .map(|o| o.iter().filter_map(|r| r.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            query: s("q"),
        })
    }

    /// The AuditEvent resource (without `id`, which is the log's sequence number).
    pub fn to_json(&self) -> Value {
        let coding =
            |system: &str, code: &str, display: &str| json!({"system": system, "code": code, "display": display});
        let (kind, subtype) = match &self.kind {
            Kind::Rest(i) => (coding(REST, "rest", "Restful Operation"), Some(coding(INTERACTION, i, i))),
            Kind::Login => (coding(DCM, "110114", "User Authentication"), Some(coding(DCM, "110122", "Login"))),
            Kind::Logout => (coding(DCM, "110114", "User Authentication"), Some(coding(DCM, "110123", "Logout"))),
            Kind::Export => (coding(DCM, "110106", "Export"), None),
            Kind::Operator(cmd) => (coding(DCM, "110100", "Application Activity"), Some(json!({"display": cmd}))),
            Kind::Alert(what) => (coding(DCM, "110113", "Security Alert"), Some(json!({"display": what}))),
        };
        let mut e = Map::new();
        e.insert("resourceType".into(), json!("AuditEvent"));
        e.insert("type".into(), kind);
        if let Some(s) = subtype {
            e.insert("subtype".into(), json!([s]));
        }
        e.insert("action".into(), json!(self.action.code()));
        e.insert("recorded".into(), json!(instant(self.at)));
        e.insert("outcome".into(), json!(self.outcome.code()));
        if let Some(d) = &self.detail {
            e.insert("outcomeDesc".into(), json!(d));
        }
        if let Some((code, text)) = &self.purpose {
            let mut p = json!({"coding": [{"system": ACT_REASON, "code": code}]});
            if let Some(t) = text {
                p["text"] = json!(t);
            }
            e.insert("purposeOfEvent".into(), json!([p]));
        }
        e.insert("agent".into(), Value::Array(self.agents()));
        e.insert(
            "source".into(),
            json!({"observer": {"display": "Medkarta"}, "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4", "display": "Application Server"}]}),
        );
        let mut entities = Vec::new();
        for p in &self.patients {
            entities.push(json!({"what": {"reference": format!("Patient/{p}")},
                "type": coding(ENTITY_TYPE, "1", "Person"), "role": coding(OBJECT_ROLE, "1", "Patient")}));
        }
        for o in &self.objects {
            entities.push(json!({"what": {"reference": o},
                "type": coding(ENTITY_TYPE, "2", "System Object"), "role": coding(OBJECT_ROLE, "4", "Domain Resource")}));
        }
        if let Some(q) = &self.query {
            entities.push(json!({"type": coding(ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "24", "Query"),
                "query": base64::engine::general_purpose::STANDARD.encode(q)}));
        }
        if !entities.is_empty() {
            e.insert("entity".into(), Value::Array(entities));
        }
        Value::Object(e)
    }

    fn agents(&self) -> Vec<Value> {
        let a = &self.agent;
        let mut user = Map::new();
        let (code, display) = match self.action {
            Action::Read | Action::Execute => ("IRCP", "information recipient"),
            _ => ("AUT", "author"),
        };
        user.insert("type".into(), json!({"coding": [{"system": PARTICIPATION, "code": code, "display": display}]}));
        if let Some(role) = &a.role {
            user.insert("role".into(), json!([{"coding": [{"system": ROLE_SYSTEM, "code": role}]}]));
        }
        let mut who = Map::new();
        if let Some(p) = &a.person {
            who.insert("reference".into(), json!(p));
        }
        who.insert(
            "display".into(),
            json!(a.user.as_deref().unwrap_or(match &a.client {
                Some(_) => "client application",
                None => "unauthenticated",
            })),
        );
        user.insert("who".into(), Value::Object(who));
        if let Some(u) = &a.user {
            user.insert("altId".into(), json!(u));
        }
        user.insert("requestor".into(), json!(true));
        if let Some(s) = &a.session {
            user.insert("policy".into(), json!([format!("urn:medkarta:session:{s}")]));
        }
        if let Some(addr) = &a.address {
            user.insert("network".into(), json!({"address": addr, "type": "2"}));
        }
        let mut agents = vec![Value::Object(user)];
        if let Some(o) = &a.organization {
            agents.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                "code": "PROV", "display": "healthcare provider"}]},
                "who": {"reference": o}, "requestor": false}));
        }
        if let Some(c) = &a.client {
            agents.push(json!({"type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
                "who": {"identifier": {"system": CLIENT_SYSTEM, "value": c}}, "requestor": false}));
        }
        agents
    }
}

/// The RESTful interactions (and pseudo-interactions) an event names.
const INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "history-system",
    "create",
    "search-type",
    "search-system",
    "capabilities",
    "batch",
    "transaction",
    "operation",
];

/// The AuditEvent of a stored entry (without `id`): compact entries are expanded; an
/// entry already in resource form is returned as it is.
pub fn resource(at: i64, patients: &str, entry: &str) -> Value {
    match Event::from_stored(at, patients, entry) {
        Some(e) => e.to_json(),
        None => serde_json::from_str(entry).unwrap_or_else(|_| json!({"resourceType": "AuditEvent"})),
    }
}

/// An instant in FHIR form (UTC, microseconds).
pub fn instant(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_names_patients_query_and_agents() {
        let agent = Agent {
            user: Some("ivanova".into()),
            role: Some("doctor".into()),
            person: Some("Practitioner/pr1".into()),
            organization: Some("Organization/o1".into()),
            client: Some("portal".into()),
            session: Some("s1".into()),
            address: Some("10.0.0.7".into()),
        };
        let mut e = Event::new(Kind::Rest("search-type"), Action::Execute, Outcome::Success, agent);
        e.patient("Patient/p1");
        e.patient("p1");
        e.patient("p2");
        e.query = Some("Observation?code=1234-5".into());
        let v = e.to_json();
        assert_eq!(v["patients"], Value::Null);
        assert_eq!(e.patients, vec!["p1", "p2"]);
        let entities = v["entity"].as_array().unwrap();
        assert_eq!(entities.len(), 3);
        assert_eq!(entities[0]["what"]["reference"], "Patient/p1");
        assert_eq!(entities[2]["query"], "T2JzZXJ2YXRpb24/Y29kZT0xMjM0LTU=");
        let agents = v["agent"].as_array().unwrap();
        assert_eq!(agents.len(), 3);
        assert_eq!(agents[0]["who"]["reference"], "Practitioner/pr1");
        assert_eq!(agents[0]["network"]["address"], "10.0.0.7");
        assert_eq!(agents[1]["who"]["reference"], "Organization/o1");
        assert_eq!(agents[2]["who"]["identifier"]["value"], "portal");
        assert!(v["recorded"].as_str().unwrap().ends_with('Z'));
        // stored compact, read back as the same resource
        e.purpose = Some(("BTG".into(), Some("unconscious".into())));
        e.detail = Some("ok".into());
        let stored = e.to_new();
        assert!(stored.entry.len() * 3 < e.to_json().to_string().len(), "{}", stored.entry);
        assert_eq!(resource(stored.at, &stored.patients.join(" "), &stored.entry), e.to_json());
        for kind in
            [Kind::Login, Kind::Logout, Kind::Export, Kind::Operator("admin x".into()), Kind::Alert("flag".into())]
                .into_iter()
                .chain(INTERACTIONS.iter().map(|i| Kind::Rest(i)))
        {
            let mut e = e.clone();
            e.kind = kind;
            let s = e.to_new();
            assert_eq!(Event::from_stored(s.at, &s.patients.join(" "), &s.entry), Some(e));
        }
    }
}
