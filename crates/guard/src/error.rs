//! Errors of the FHIR layer: an HTTP status and an OperationOutcome, made in one place.
//! Store errors are mapped here; their internals are logged, never sent to the client.

use fhir_model::{Issue, IssueType, OperationOutcome};
use store::StoreError;

/// A failed interaction: what the client gets.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirError {
    pub status: u16,
    pub outcome: OperationOutcome,
}

impl FhirError {
    pub fn new(status: u16, issue: Issue) -> Self {
        FhirError { status, outcome: issue.into() }
    }

    pub fn with_issues(status: u16, issues: Vec<Issue>) -> Self {
        FhirError { status, outcome: OperationOutcome::new(issues) }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, Issue::error(IssueType::Invalid, msg))
    }

    pub fn not_supported(msg: impl Into<String>) -> Self {
        Self::new(400, Issue::error(IssueType::NotSupported, msg))
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(404, Issue::error(IssueType::NotFound, msg))
    }

    pub fn gone(msg: impl Into<String>) -> Self {
        Self::new(410, Issue::error(IssueType::Deleted, msg))
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::new(409, Issue::error(IssueType::Conflict, msg))
    }

    pub fn precondition_failed(msg: impl Into<String>) -> Self {
        Self::new(412, Issue::error(IssueType::Conflict, msg))
    }

    pub fn method_not_allowed(msg: impl Into<String>) -> Self {
        Self::new(405, Issue::error(IssueType::NotSupported, msg))
    }

    pub fn internal() -> Self {
        Self::new(500, Issue::error(IssueType::Exception, "Internal server error; the details are in the server log"))
    }
}

impl From<Issue> for FhirError {
    /// An issue from parsing a request (search criteria and the like): 400.
    fn from(issue: Issue) -> Self {
        FhirError::new(400, issue)
    }
}

impl From<StoreError> for FhirError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(msg) => {
                tracing::info!("write conflict: {msg}");
                FhirError::conflict(
                    "Another request changed this resource at the same time; retry with the current version",
                )
            }
            StoreError::Unavailable(msg) => {
                tracing::error!("database unavailable: {msg}");
                FhirError::new(503, Issue::error(IssueType::Transient, "The database is unavailable; retry later"))
            }
            StoreError::Backend(msg) => {
                tracing::error!("database error: {msg}");
                FhirError::internal()
            }
        }
    }
}

pub type FhirResult<T> = Result<T, FhirError>;

impl std::fmt::Display for FhirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why: Vec<&str> = self.outcome.issues.iter().map(|i| i.diagnostics.as_str()).collect();
        write!(f, "{} {}", self.status, why.join("; "))
    }
}
