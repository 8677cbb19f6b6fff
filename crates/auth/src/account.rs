//! Accounts and registered clients as stored (JSON records): who can log in, with which
//! roles in which organisations, and which systems may ask for tokens.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a person does in the system; a person may hold several, each in an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Patient,
    Doctor,
    Nurse,
    Registrar,
    Administrator,
    SecurityOfficer,
    Analyst,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Patient,
        Role::Doctor,
        Role::Nurse,
        Role::Registrar,
        Role::Administrator,
        Role::SecurityOfficer,
        Role::Analyst,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Nurse => "nurse",
            Role::Registrar => "registrar",
            Role::Administrator => "administrator",
            Role::SecurityOfficer => "security-officer",
            Role::Analyst => "analyst",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Clinical staff, who see and write records of patients in their care.
    pub fn clinical(self) -> bool {
        matches!(self, Role::Doctor | Role::Nurse)
    }
}

/// One role of an account, with where it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    pub role: Role,
    /// `Organization/id` the role is held in (staff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// `Practitioner/id` the person is (staff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner: Option<String>,
    /// `Patient/id` the person is (patients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Limited rights: summaries only, no downloads.
    #[serde(default)]
    pub limited: bool,
}

impl RoleGrant {
    /// `role@Organization/x` — how a session names the role it chose.
    pub fn label(&self) -> String {
        match &self.organization {
            Some(o) => format!("{}@{o}", self.role.as_str()),
            None => self.role.as_str().to_string(),
        }
    }
}

/// Second factor state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    /// Shared secret, base32.
    pub secret: String,
    /// Enrolment finished (a first code was accepted).
    pub confirmed: bool,
    /// Last time step used (a code works once).
    #[serde(default)]
    pub last_step: Option<u64>,
}

/// Can this be a user name? 3 to 64 of a-z, 0-9, `.`, `_`, `-`, `@`.
pub fn valid_username(username: &str) -> bool {
    (3..=64).contains(&username.len())
        && username.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-@".contains(c))
}

/// A person who can log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub grants: Vec<RoleGrant>,
    #[serde(default)]
    pub totp: Option<TotpState>,
    /// SHA-256 of the unused recovery codes.
    #[serde(default)]
    pub recovery: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Failed logins since the last success.
    #[serde(default)]
    pub failed_logins: u32,
    /// Unix seconds until which logins are refused.
    #[serde(default)]
    pub locked_until: Option<u64>,
    /// Things to tell the owner at the next login (failed attempts, lockouts).
    #[serde(default)]
    pub notices: Vec<String>,
    /// When its sessions were last ended (password changed or reset, second factor reset,
    /// disabled; Unix microseconds): a sign-in begun before gives no tokens.
    #[serde(default)]
    pub sessions_ended: u64,
    pub created: u64,
}

/// A registered client (an app or an integrated system).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// Argon2id of the client secret (confidential clients using a secret).
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// Public keys for `private_key_jwt` (SMART Backend Services).
    #[serde(default)]
    pub jwks: Option<Value>,
    /// Where the authorization code flow may send the user back.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The most the client may be granted (space-separated scopes).
    pub scope: String,
    /// Origins allowed to call the API from a browser (CORS).
    #[serde(default)]
    pub origins: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    pub created: u64,
}
