//! Core FHIR vocabulary shared by every layer: typed resource types, ids, versions,
//! references and OperationOutcome issues. No IO, no async, no storage, no HTTP.
//!
//! Resources themselves stay raw JSON (`serde_json::Value` with exact decimals); typed
//! wrappers exist only where our own logic needs them.

pub mod json;
mod outcome;
mod reference;

pub use outcome::{Issue, IssueType, OperationOutcome, Severity};
pub use reference::Reference;

use std::fmt;

/// A concrete R4 resource type name, e.g. `Patient`. Only names of the specification parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

impl ResourceType {
    /// Parse a resource type name; `None` if R4 has no such concrete resource.
    pub fn parse(name: &str) -> Option<Self> {
        fhir_spec::spec().resource_type(name).map(ResourceType)
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A logical resource id: `[A-Za-z0-9\-\.]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// Parse an id, rejecting anything outside the FHIR id grammar.
    pub fn parse(s: &str) -> Option<Self> {
        is_valid_id(s).then(|| Id(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` matches the FHIR `id` grammar.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resource version number (`meta.versionId`), starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
